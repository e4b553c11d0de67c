"""Opening the store: SQLite in WAL mode (readers never block the writer), private files,
schema migrations applied in order from the first schema on."""

from __future__ import annotations

import os
from pathlib import Path

from peewee import SqliteDatabase

from copytrade.errors import StoreError
from copytrade.home import ensure_private_dir
from copytrade.store.migrations import migrate
from copytrade.store.models import database

PRAGMAS = {
    "journal_mode": "wal",
    # WAL + NORMAL survives a crash of the process (kill -9); only power loss can undo
    # the last commits, and an fsync per frame would cost more than the whole hot path.
    "synchronous": "normal",
    "busy_timeout": 5000,
    "foreign_keys": 1,
}


def _create_private(path: Path) -> None:
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)


def open_store(path: Path) -> SqliteDatabase:
    """Open (creating and migrating as needed) the database and bind the models to it."""
    ensure_private_dir(path.parent)
    _create_private(path)
    db = SqliteDatabase(str(path), pragmas=PRAGMAS, check_same_thread=False)
    try:
        db.connect(reuse_if_open=True)
    except Exception as exc:
        raise StoreError(f"cannot open the database {path}: {exc}") from exc
    for suffix in ("-wal", "-shm"):
        sidecar = Path(f"{path}{suffix}")
        if sidecar.exists():
            os.chmod(sidecar, 0o600)
    database.initialize(db)
    migrate(db)
    return db
