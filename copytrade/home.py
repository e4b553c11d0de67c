"""Where copytrade keeps its files, and how it writes the private ones.

With COPYTRADE_HOME set, everything copytrade writes lives under that one
directory; otherwise the platform's usual places (platformdirs). Files hold
access tokens and order history, so directories are created 0700 and files
0600 with explicit modes, whatever the process umask.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from copytrade.errors import ConfigError, StoreError

HOME_ENV_VAR = "COPYTRADE_HOME"
APP_NAME = "copytrade"

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

# Mode bits and ownership mean nothing on Windows; only check them on POSIX.
_POSIX = os.name == "posix"


@dataclass(frozen=True)
class HomePaths:
    config_dir: Path
    data_dir: Path
    log_dir: Path
    config_file: Path
    secrets_file: Path
    database_file: Path

    @classmethod
    def from_dirs(cls, config_dir: Path, data_dir: Path, log_dir: Path) -> HomePaths:
        return cls(
            config_dir=config_dir,
            data_dir=data_dir,
            log_dir=log_dir,
            config_file=config_dir / "copytrade.toml",
            secrets_file=config_dir / "secrets.toml",
            database_file=data_dir / "copytrade.db",
        )

    def create_dirs(self) -> None:
        """Create every directory, private to the current user; a home that cannot be
        written is a StoreError (exit 7) with one line, not a traceback."""
        for directory in (self.config_dir, self.data_dir, self.log_dir):
            try:
                ensure_private_dir(directory)
            except OSError as exc:
                raise StoreError(f"cannot use the directory {directory}: "
                                 f"{exc.strerror or exc}; check that the copytrade home "
                                 f"({HOME_ENV_VAR}) is writable") from None


def home_paths(environ: Mapping[str, str] | None = None) -> HomePaths:
    """The paths copytrade uses now; reads COPYTRADE_HOME, creates nothing."""
    env = os.environ if environ is None else environ
    home = env.get(HOME_ENV_VAR, "").strip()
    if home:
        root = Path(home).expanduser().absolute()
        return HomePaths.from_dirs(config_dir=root, data_dir=root, log_dir=root / "logs")
    return HomePaths.from_dirs(
        # appauthor=False: no "copytrade\copytrade" nesting on Windows.
        config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
        data_dir=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
        log_dir=Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
    )


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and any missing parents) with mode 0700; tighten it if it exists.

    Parents that already exist are left alone: they may be shared directories.
    """
    path = Path(path)
    missing: list[Path] = []
    cursor = path
    while not cursor.exists():
        missing.append(cursor)
        cursor = cursor.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process won the race
            os.mkdir(directory, PRIVATE_DIR_MODE)
        if _POSIX:
            os.chmod(directory, PRIVATE_DIR_MODE)  # the umask may have removed owner bits
    if not path.is_dir():
        raise ConfigError(f"{path} exists but is not a directory")
    if _POSIX and not missing:
        info = path.stat()
        if info.st_uid != os.getuid():
            raise ConfigError(f"{path} belongs to another user; point {HOME_ENV_VAR} elsewhere")
        if stat.S_IMODE(info.st_mode) != PRIVATE_DIR_MODE:
            os.chmod(path, PRIVATE_DIR_MODE)
    return path


def ensure_private_file(path: Path) -> Path:
    """Create `path` empty with mode 0600 if missing; make an existing one 0600.

    For files opened by other code (logging, SQLite, a lock): a file an older version
    or another tool left at 0644 is tightened, not trusted.
    """
    path = Path(path)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    if _POSIX:
        os.chmod(path, PRIVATE_FILE_MODE)
    return path


def tighten_sidecars(path: Path, suffixes: tuple[str, ...] = ("-wal", "-shm", "-journal")) -> None:
    """Make SQLite's sidecar files of `path` that exist 0600 (SQLite gives new ones the
    database's mode, but keeps the mode of ones already there)."""
    if not _POSIX:
        return
    for suffix in suffixes:
        with contextlib.suppress(FileNotFoundError):  # absent, or removed at a checkpoint
            os.chmod(f"{path}{suffix}", PRIVATE_FILE_MODE)


def write_private_file(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`; the file is 0600 from its first byte.

    Readers see the old content or the new, never a torn file: the text goes to
    a temporary file in the same directory, is fsynced, then renamed over.
    """
    path = Path(path)
    if not path.parent.is_dir():
        ensure_private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    while True:
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temp, flags, PRIVATE_FILE_MODE)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as file:
            if _POSIX:
                os.fchmod(file.fileno(), PRIVATE_FILE_MODE)  # exact, whatever the umask
            file.write(text.encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


def check_private_file(path: Path) -> None:
    """Refuse a file (e.g. secrets.toml) that other users could read or change."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    if not _POSIX:
        return
    if info.st_uid != os.getuid():
        raise ConfigError(f"{path} belongs to another user; it must be yours alone")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{path} is accessible to other users (mode {mode:04o}); "
            f"it holds secrets, so run: chmod 600 {path}"
        )


def fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    if not _POSIX:
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
