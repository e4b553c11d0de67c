"""Opening the store: SQLite in WAL mode (readers never block the writer), private files,
schema migrations applied in order from the first schema on."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from peewee import DatabaseError as PeeweeDatabaseError
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


RESTORE_HINT = ("restore it from a backup, or move it away to start a new one (follow then "
                "adopts the orders of ours it finds at each follower's broker)")


def _create_private(path: Path) -> None:
    """A new database file, 0600 from its first byte; an existing one is made 0600. An
    existing EMPTY file is refused: it is a lost database, not a new one, and treating it
    as new would forget every mirror."""
    if path.exists():
        if path.stat().st_size == 0:
            raise StoreError(f"the database {path} is empty (0 bytes): {RESTORE_HINT}")
    else:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)


def open_store(path: Path) -> SqliteDatabase:
    """Open (creating and migrating as needed) the database and bind the models to it.

    Refuses, with StoreError (exit 7): an empty or corrupt file, a home it cannot write."""
    try:
        ensure_private_dir(path.parent)
        _create_private(path)
    except OSError as exc:
        raise StoreError(f"cannot create the database {path}: {exc.strerror or exc}; check "
                         "that the copytrade home is writable") from None
    db = SqliteDatabase(str(path), pragmas=PRAGMAS, check_same_thread=False)
    try:
        db.connect(reuse_if_open=True)
        _check_integrity(db, path)
        for suffix in ("-wal", "-shm"):
            sidecar = Path(f"{path}{suffix}")
            if sidecar.exists():
                os.chmod(sidecar, 0o600)
        database.initialize(db)
        migrate(db)
    except StoreError:
        db.close()
        raise
    except (PeeweeDatabaseError, sqlite3.DatabaseError, OSError) as exc:
        db.close()
        raise StoreError(f"cannot open the database {path}: {exc}; {RESTORE_HINT}") from None
    return db


def _check_integrity(db: SqliteDatabase, path: Path) -> None:
    """SQLite's quick check (structure, not every index entry): a damaged file is found at
    start, not by a catch-up that then fails for ever."""
    rows = db.execute_sql("PRAGMA quick_check").fetchall()
    problems = [str(row[0]) for row in rows if row and row[0] != "ok"]
    if problems:
        raise StoreError(f"the database {path} is damaged ({problems[0][:120]}): "
                         f"{RESTORE_HINT}")
