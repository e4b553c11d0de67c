"""Opening the store: SQLite in WAL mode (readers never block the writer), private files,
schema migrations applied in order from the first schema on."""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path

from peewee import DatabaseError as PeeweeDatabaseError
from peewee import SqliteDatabase

from copytrade.errors import StoreError
from copytrade.home import ensure_private_dir
from copytrade.store.migrations import SCHEMA_VERSION, migrate, schema_version
from copytrade.store.models import database
from copytrade.store.repo import Store
from copytrade.store.trail import FIELDS as TRAIL_FIELDS
from copytrade.store.trail import HASH_FUNCTION, row_hash

log = logging.getLogger(__name__)

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


def open_store(path: Path, *, background_checkpoints: bool = False) -> SqliteDatabase:
    """Open (creating and migrating as needed) the database and bind the models to it.

    `background_checkpoints`: the caller runs a `WalCheckpointer`, so no commit of ours
    ever pays for a checkpoint and its fsync (follow's hot path).
    Refuses, with StoreError (exit 7): an empty or corrupt file, a home it cannot write."""
    try:
        ensure_private_dir(path.parent)
        _create_private(path)
    except OSError as exc:
        raise StoreError(f"cannot create the database {path}: {exc.strerror or exc}; check "
                         "that the copytrade home is writable") from None
    pragmas = {**PRAGMAS, "wal_autocheckpoint": 0} if background_checkpoints else PRAGMAS
    db = SqliteDatabase(str(path), pragmas=pragmas, check_same_thread=False)
    # On every connection it opens (one per thread): the audit trail's triggers call it.
    db.register_function(row_hash, HASH_FUNCTION, 1 + len(TRAIL_FIELDS), deterministic=True)
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


def open_reader(path: Path) -> SqliteDatabase:
    """The database opened read-only for the commands that only read it (mappings,
    stats): never created, never written, readable while follow writes (WAL). Refuses,
    with StoreError (exit 7): no file, an empty or unreadable one, a newer schema. An
    older schema is first brought up to date, as any command that opens the store does."""
    if not path.exists():
        raise StoreError(f"no database at {path}: nothing is recorded in this copytrade home "
                         "yet (follow records there; COPYTRADE_HOME chooses the home)")
    if path.is_file() and path.stat().st_size == 0:
        raise StoreError(f"the database {path} is empty (0 bytes): {RESTORE_HINT}")
    db = SqliteDatabase(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                        pragmas={"busy_timeout": 5000, "query_only": 1},
                        check_same_thread=False)
    try:
        db.connect()
        version = schema_version(db)
        for suffix in ("-wal", "-shm"):  # a read-only reader may have created them
            sidecar = Path(f"{path}{suffix}")
            if sidecar.exists():
                os.chmod(sidecar, 0o600)
    except (PeeweeDatabaseError, sqlite3.DatabaseError, OSError) as exc:
        db.close()
        raise StoreError(f"cannot read the database {path}: {exc}; {RESTORE_HINT}") from None
    if version == SCHEMA_VERSION:
        return db
    db.close()
    if version == 0:
        raise StoreError(f"{path} is not a copytrade database (no schema recorded)")
    return open_store(path)  # older: migrated (newer: refused there)


@contextmanager
def scratch_copy(source: Path, now: Callable[[], datetime]) -> Iterator[Store]:
    """A Store on a private, temporary copy of the database at `source` (a dry run
    decides on it; the real file is only read, never written or checkpointed). Deleted
    at the end; the models are bound back to the database they were bound to before, so
    a process that has the real store open keeps it."""
    previous = database.obj
    with tempfile.TemporaryDirectory(prefix="copytrade-dry-run-") as scratch:
        copy = Path(scratch) / "copytrade.db"
        copy_database(source, copy)
        db = open_store(copy)
        try:
            yield Store(db, now)
        finally:
            db.close()
            if previous is not None:
                database.initialize(previous)


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of the store (WAL content included) without writing to it: the
    source is opened read-only, so nothing is checkpointed into it."""
    if not source.exists():
        return  # nothing recorded yet: the copy starts empty
    with closing(sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)) as src, \
            closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    for suffix in ("-wal", "-shm"):  # a read-only reader may have created them empty
        sidecar = Path(f"{source}{suffix}")
        if sidecar.exists():
            os.chmod(sidecar, 0o600)


def _check_integrity(db: SqliteDatabase, path: Path) -> None:
    """SQLite's quick check (structure, not every index entry): a damaged file is found at
    start, not by a catch-up that then fails for ever."""
    rows = db.execute_sql("PRAGMA quick_check").fetchall()
    problems = [str(row[0]) for row in rows if row and row[0] != "ok"]
    if problems:
        raise StoreError(f"the database {path} is damaged ({problems[0][:120]}): "
                         f"{RESTORE_HINT}")


class WalCheckpointer:
    """Checkpoints the write-ahead log from its own thread and connection.

    SQLite's automatic checkpoint runs inside whichever commit crosses 1,000 pages, with
    an fsync: every few dozen orders, one hot commit took milliseconds. A PASSIVE
    checkpoint here never blocks a writer; the GIL is released while SQLite works."""

    def __init__(self, path: Path, interval: float = 1.0) -> None:
        self._path = str(path)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, check_same_thread=False, timeout=5)
        try:
            while not self._stop.wait(self._interval):
                self._checkpoint(conn)
            self._checkpoint(conn)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:  # busy or full disk: the WAL just grows until the next one
            self.failures += 1
            log.warning("WAL checkpoint failed", exc_info=True)
