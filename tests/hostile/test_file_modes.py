"""Files an older version left readable by others (0644) are made 0600 when copytrade opens
them, and directories it uses are 0700: they hold order history and the log can quote
broker replies."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from copytrade.cli.logs import log_to_file
from copytrade.engine.limits import AccountLimiter
from copytrade.engine.lock import acquire_follow_lock
from copytrade.home import ensure_private_file, home_paths

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leave_open(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)
    return path


@pytest.fixture
def root_handlers() -> Iterator[None]:
    """log_to_file changes the root logger: put it back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.mark.usefixtures("root_handlers")
def test_an_old_log_file_and_its_directory_become_private() -> None:
    paths = home_paths()
    log = leave_open(paths.log_dir / "copytrade.log", "old line\n")
    paths.log_dir.chmod(0o755)
    assert log_to_file(paths.log_dir) == log
    assert mode(log) == 0o600
    assert mode(paths.log_dir) == 0o700
    logging.getLogger("copytrade.test").warning("a new line")
    assert mode(log) == 0o600
    assert log.read_text().startswith("old line\n")  # appended, not replaced


def test_a_new_log_file_is_private_whatever_the_umask() -> None:
    paths = home_paths()
    old = os.umask(0)
    try:
        path = ensure_private_file(paths.log_dir.parent / "fresh.log")
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_an_old_limits_db_and_its_sidecars_become_private() -> None:
    data_dir = home_paths().data_dir
    db = data_dir / "limits.db"
    # An older run's database at 0644, its WAL files too (as a crash leaves them).
    AccountLimiter(db, "1000000002", now_ms=lambda: 0, wait=lambda _: False).close()
    db.chmod(0o644)
    sidecars = [Path(f"{db}{suffix}") for suffix in ("-wal", "-shm", "-journal")]
    for sidecar in sidecars:
        if not sidecar.exists():
            leave_open(sidecar)
        sidecar.chmod(0o644)
    limiter = AccountLimiter(db, "1000000002", now_ms=lambda: 1_700_000_000_000,
                             wait=lambda _: False)
    try:
        assert limiter.acquire()
        assert mode(db) == 0o600
        for sidecar in sidecars:
            if sidecar.exists():
                assert mode(sidecar) == 0o600, sidecar.name
    finally:
        limiter.close()


def test_a_new_limits_db_is_private() -> None:
    db = home_paths().data_dir / "limits.db"
    limiter = AccountLimiter(db, "1000000003", now_ms=lambda: 1_700_000_000_000,
                             wait=lambda _: False)
    try:
        assert limiter.acquire()
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            if path.exists():
                assert mode(path) == 0o600, path.name
    finally:
        limiter.close()


def test_an_old_follow_lock_becomes_private() -> None:
    lock = leave_open(home_paths().data_dir / "follow.lock", "12345")
    handle = acquire_follow_lock(lock)
    try:
        assert mode(lock) == 0o600
        assert lock.read_text() == str(os.getpid())
    finally:
        handle.close()
