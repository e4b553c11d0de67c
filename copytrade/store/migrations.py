"""Schema migrations, numbered; `PRAGMA user_version` records how far a database has come.

Each step runs in its own transaction. Later steps use playhouse.migrate's
SqliteMigrator (add_column, add_index, ...) so a user's database is upgraded in place.
"""

from __future__ import annotations

from collections.abc import Callable

from peewee import CharField, SqliteDatabase
from playhouse.migrate import SqliteMigrator
from playhouse.migrate import migrate as migrate_columns

from copytrade.errors import StoreError
from copytrade.store.models import ALL_MODELS, LeaderLeg


def _v1_initial(db: SqliteDatabase) -> None:
    db.create_tables(ALL_MODELS)


def _v2_reason_codes(db: SqliteDatabase) -> None:
    """mirrororder.reason_code, filled in for existing rows from the wording that
    behaviour used to be keyed on."""
    if "reason_code" not in {c.name for c in db.get_columns("mirrororder")}:
        migrate_columns(SqliteMigrator(db).add_column(
            "mirrororder", "reason_code", CharField(default="")))
    for code, state, pattern in (
            ("below_one_lot", "SKIPPED", "%below one lot%"),
            ("reduced_to_filled", "CANCELED",
             "leader reduced the order to what the follower already filled"),
            ("resized_away", "CANCELED", "leader modified: %"),
            ("cancelled_outside", "CANCELED", "cancelled outside copytrade%")):
        db.execute_sql("UPDATE mirrororder SET reason_code = ? WHERE state = ? AND "
                       "reason LIKE ? AND reason_code = ''", (code, state, pattern))


def _v3_leader_legs(db: SqliteDatabase) -> None:
    """leaderleg: the exit legs of the leader's BO/CO orders."""
    db.create_tables([LeaderLeg])


MIGRATIONS: tuple[Callable[[SqliteDatabase], None], ...] = (
    _v1_initial, _v2_reason_codes, _v3_leader_legs)
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
