"""Schema migrations, numbered; `PRAGMA user_version` records how far a database has come.

Each step runs in its own transaction. Later steps use playhouse.migrate's
SqliteMigrator (add_column, add_index, ...) so a user's database is upgraded in place.
"""

from __future__ import annotations

from collections.abc import Callable

from peewee import SqliteDatabase

from copytrade.errors import StoreError
from copytrade.store.models import ALL_MODELS


def _v1_initial(db: SqliteDatabase) -> None:
    db.create_tables(ALL_MODELS)


MIGRATIONS: tuple[Callable[[SqliteDatabase], None], ...] = (_v1_initial,)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: SqliteDatabase) -> int:
    return db.execute_sql("PRAGMA user_version").fetchone()[0]


def migrate(db: SqliteDatabase) -> int:
    current = schema_version(db)
    if current > SCHEMA_VERSION:
        raise StoreError(f"the database is from a newer copytrade (schema {current}, this one "
                         f"knows {SCHEMA_VERSION}); upgrade copytrade")
    for version in range(current + 1, SCHEMA_VERSION + 1):
        with db.atomic():
            MIGRATIONS[version - 1](db)
            db.execute_sql(f"PRAGMA user_version = {version}")
    return SCHEMA_VERSION
