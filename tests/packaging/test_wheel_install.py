"""The install path (issue 11, point 8): build the wheel from a copy of the tracked tree,
install it with the dependencies it declares into a fresh virtual environment (no system
site-packages), and run copytrade from there as a user would.

A package-data file the wheel leaves out, or a module copytrade imports that no declared
dependency provides, fails here instead of on a user's machine. The build works on a copy
(`git ls-files`), so no build/ or egg-info lands in the repository.

uv (a test extra) builds and installs in about 5 s and caches what it downloaded; without
it pip does the same in 25-80 s on a 2-core machine (the package index here sends no cache
headers, so pip's HTTP cache cannot help).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from copytrade import __version__

# The fixture builds and installs once for the module: allow for a cold cache with pip.
pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("probe_installed.py")
# Always among the package data; the test checks every non-Python file the tree has.
KNOWN_DATA_FILES = ("data/trading_calendar.json", "data/freeze_limits.csv", "py.typed")
COMMAND_TIMEOUT = 60


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    data_files: tuple[str, ...]  # every non-Python file of the package it was built from
    workdir: Path  # outside the repository: nothing there shadows the installed package

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def env(self, home: Path) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "COPYTRADE_DEBUG"}
        }
        return {**env, "COPYTRADE_HOME": str(home), "COLUMNS": "100"}

    def copytrade(
        self, home: Path, *args: str, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return run([str(self.bin("copytrade")), *args], self.workdir, self.env(home), timeout)


def run(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def checked(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.args, result.stdout[-2000:], result.stderr[-2000:])
    return result


def uv_binary() -> str | None:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def copy_tracked_tree(repo: Path, target: Path) -> Path:
    """Tracked files, plus new ones git does not ignore: what a commit would hold."""
    listed = checked(
        run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], repo)
    )
    for name in filter(None, listed.stdout.split("\0")):
        source = repo / name
        if source.is_file():  # a tracked file deleted in the work tree is not copied
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def package_data_files(package: Path) -> tuple[str, ...]:
    """Every file of the package's tree that is not Python source, relative to it: a new
    data file is checked without anyone remembering to list it here."""
    return tuple(sorted(
        path.relative_to(package).as_posix() for path in package.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc")
        and "__pycache__" not in path.parts))


def build_wheel(source: Path, dist: Path) -> Path:
    uv = uv_binary()
    if uv:
        argv = [uv, "build", "--quiet", "--wheel", "--python", sys.executable]
        argv += ["--out-dir", str(dist), str(source)]
    else:
        argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
        argv += ["--wheel-dir", str(dist), str(source)]
    checked(run(argv, source))
    (wheel,) = dist.glob("copytrade-*.whl")
    return wheel


def install_into_fresh_venv(wheel: Path, venv: Path) -> None:
    # No system site-packages: only what the wheel declares gets in.
    create = [sys.executable, "-m", "venv", "--without-pip", str(venv)]
    checked(run(create, venv.parent, timeout=60))
    python = str(venv / "bin" / "python")
    uv = uv_binary()
    if uv:
        argv = [uv, "pip", "install", "--quiet", "--python", python, str(wheel)]
    else:  # pip >= 22.3 installs into another interpreter's environment
        argv = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet"]
        argv += ["--no-compile", str(wheel)]
    checked(run(argv, venv.parent, timeout=600))


def build_and_install(repo: Path, workdir: Path) -> Installed:
    source = copy_tracked_tree(repo, workdir / "source")
    wheel = build_wheel(source, workdir / "dist")
    install_into_fresh_venv(wheel, workdir / "venv")
    return Installed(wheel=wheel, venv=workdir / "venv", workdir=workdir,
                     data_files=package_data_files(source / "copytrade"))


def probe(installed: Installed) -> dict[str, object]:
    """What the fresh environment's own Python finds (-I: no cwd, no PYTHON* variables)."""
    argv = [str(installed.bin("python")), "-I", str(PROBE), json.dumps(installed.data_files)]
    result = checked(run(argv, installed.workdir, timeout=COMMAND_TIMEOUT))
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return build_and_install(REPO, tmp_path_factory.mktemp("wheel-install"))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return home


def test_package_data_files_are_every_non_python_file(tmp_path: Path) -> None:
    for name in ("__init__.py", "py.typed", "data/calendar.json", "sim/deep/scrip.csv",
                 "sim/__pycache__/x.cpython-311.pyc", "sim/__pycache__/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert package_data_files(tmp_path) == ("data/calendar.json", "py.typed",
                                            "sim/deep/scrip.csv")


def test_the_wheel_carries_the_package_data(installed: Installed) -> None:
    assert set(KNOWN_DATA_FILES) <= set(installed.data_files)
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert {f"copytrade/{name}" for name in installed.data_files} <= names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


def test_the_installed_package_has_its_data_and_every_import_declared(
    installed: Installed,
) -> None:
    found = probe(installed)
    # The copy in the fresh environment, not the repository's.
    assert Path(str(found["package"])).is_relative_to(installed.venv)
    assert found["data"] == dict.fromkeys(installed.data_files, True)
    assert found["undeclared"] == {}, "imported, but no dependency in pyproject.toml gives it"


def test_help_and_version(installed: Installed, home: Path) -> None:
    help_text = checked(installed.copytrade(home, "--help")).stdout
    assert "Usage: copytrade" in help_text
    assert {"follow", "demo", "config", "--install-completion"} <= set(help_text.split())
    version = checked(installed.copytrade(home, "--version"))
    assert version.stdout == f"copytrade {__version__}\n"


def test_paper_trading_config_then_validate(installed: Installed, home: Path) -> None:
    checked(installed.copytrade(home, "config", "init", "--sim"))
    assert (home / "copytrade.toml").is_file()
    assert (home / "secrets.toml").stat().st_mode & 0o777 == 0o600
    validated = checked(installed.copytrade(home, "config", "validate"))
    assert "0 errors" in validated.stdout


def test_the_demo_runs(installed: Installed, home: Path) -> None:
    # The shortest demo still runs the emulator, follow and the store: every dependency.
    demo = checked(installed.copytrade(home, "demo", "--duration", "5", timeout=120))
    assert demo.stdout.strip()
    assert "error:" not in demo.stderr
