from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import platformdirs
import pytest

from copytrade import home
from copytrade.errors import ConfigError
from copytrade.home import (
    HomePaths,
    check_private_file,
    ensure_private_dir,
    home_paths,
    write_private_file,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Modes must come from the code, not from a friendly umask."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_copytrade_home_holds_every_file(copytrade_home: Path) -> None:
    paths = home_paths()
    assert paths.config_file == copytrade_home / "copytrade.toml"
    assert paths.secrets_file == copytrade_home / "secrets.toml"
    assert paths.database_file == copytrade_home / "copytrade.db"
    assert paths.log_dir == copytrade_home / "logs"
    assert paths.config_dir == paths.data_dir == copytrade_home


def test_relative_copytrade_home_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    paths = home_paths({"COPYTRADE_HOME": "relative-home"})
    assert paths.config_dir == tmp_path / "relative-home"
    assert paths.config_dir.is_absolute()


@pytest.mark.parametrize("environ", [{}, {"COPYTRADE_HOME": ""}, {"COPYTRADE_HOME": "  "}])
def test_without_copytrade_home_uses_platform_dirs(environ: dict[str, str]) -> None:
    paths = home_paths(environ)
    config_dir = Path(platformdirs.user_config_dir("copytrade", appauthor=False))
    assert paths.config_file == config_dir / "copytrade.toml"
    assert paths.secrets_file == config_dir / "secrets.toml"
    data_dir = Path(platformdirs.user_data_dir("copytrade", appauthor=False))
    assert paths.database_file == data_dir / "copytrade.db"
    assert paths.log_dir == Path(platformdirs.user_log_dir("copytrade", appauthor=False))


def test_home_paths_reads_the_environment_and_creates_nothing(
    copytrade_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COPYTRADE_HOME", str(copytrade_home / "not-yet"))
    paths = home_paths()
    assert paths.config_dir == copytrade_home / "not-yet"
    assert not paths.config_dir.exists()


def test_home_paths_are_frozen(copytrade_home: Path) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        home_paths().config_file = copytrade_home  # type: ignore[misc]


@posix_only
def test_create_dirs_makes_private_dirs_and_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, permissive_umask: None
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    monkeypatch.setenv("COPYTRADE_HOME", str(shared / "a" / "b" / "home"))

    paths = home_paths()
    paths.create_dirs()

    for created in (shared / "a", shared / "a" / "b", paths.config_dir, paths.log_dir):
        assert mode_of(created) == 0o700, created
    assert mode_of(shared) == 0o755  # an existing parent is not ours to change


@posix_only
def test_ensure_private_dir_tightens_an_existing_dir(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o755)
    ensure_private_dir(loose)
    assert mode_of(loose) == 0o700


def test_ensure_private_dir_refuses_a_file(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        ensure_private_dir(not_a_dir)


@posix_only
def test_write_private_file_is_0600_whatever_the_umask(
    tmp_path: Path, permissive_umask: None
) -> None:
    target = tmp_path / "secrets.toml"
    write_private_file(target, 'token = "abc"\n')
    assert target.read_text() == 'token = "abc"\n'
    assert mode_of(target) == 0o600


@posix_only
def test_write_private_file_creates_the_file_private_from_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mode is given to os.open itself: no window where the file is 0644.
    calls: list[tuple[int, int]] = []
    real_open = os.open

    def recording_open(path, flags, mode=0o777, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((flags, mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(home.os, "open", recording_open)
    write_private_file(tmp_path / "secrets.toml", "x")
    creating = [(flags, mode) for flags, mode in calls if flags & os.O_CREAT]
    assert creating, "the file must be created through os.open"
    for flags, mode in creating:
        assert flags & os.O_EXCL
        assert mode == 0o600


@posix_only
def test_write_private_file_replaces_a_loose_file_with_a_private_one(tmp_path: Path) -> None:
    target = tmp_path / "copytrade.toml"
    target.write_text("old")
    os.chmod(target, 0o644)
    write_private_file(target, "new")
    assert target.read_text() == "new"
    assert mode_of(target) == 0o600


def test_write_private_file_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "copytrade.toml"
    write_private_file(target, "old")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(home.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_private_file(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copytrade.toml"]  # no temp left


@posix_only
def test_write_private_file_creates_a_missing_parent_privately(tmp_path: Path) -> None:
    target = tmp_path / "new-home" / "secrets.toml"
    write_private_file(target, "x")
    assert mode_of(target.parent) == 0o700
    assert mode_of(target) == 0o600


@posix_only
def test_check_private_file_accepts_0600(tmp_path: Path) -> None:
    target = tmp_path / "secrets.toml"
    write_private_file(target, "x")
    check_private_file(target)


@posix_only
@pytest.mark.parametrize("loose_mode", [0o644, 0o640, 0o604, 0o620])
def test_check_private_file_refuses_group_or_world_access(tmp_path: Path, loose_mode: int) -> None:
    target = tmp_path / "secrets.toml"
    target.write_text("x")
    os.chmod(target, loose_mode)
    with pytest.raises(ConfigError) as caught:
        check_private_file(target)
    message = caught.value.message
    assert str(target) in message
    assert f"{loose_mode:04o}" in message
    assert f"chmod 600 {target}" in message
    assert "\n" not in message


def test_check_private_file_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        check_private_file(tmp_path / "secrets.toml")


def test_home_paths_from_dirs_names_the_files(tmp_path: Path) -> None:
    paths = HomePaths.from_dirs(tmp_path / "c", tmp_path / "d", tmp_path / "l")
    assert paths.secrets_file == tmp_path / "c" / "secrets.toml"
    assert paths.database_file == tmp_path / "d" / "copytrade.db"
