"""Schema migrations, numbered; `PRAGMA user_version` records how far a database has come.

Each step runs in its own transaction and upgrades a user's database in place: new
tables through peewee's create_tables, new columns through plain `ALTER TABLE ... ADD
COLUMN`. Not playhouse.migrate's add_column: for a NOT NULL column it rebuilds the table,
and dropping the old mirrororder cascades (foreign keys on) to every intent and state
event it owns - the data a restart resumes from.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from peewee import SqliteDatabase

from copytrade.errors import StoreError
from copytrade.store import bus_queries, results_queries, trail
from copytrade.store.models import ALL_MODELS, LeaderLeg


def _v1_initial(db: SqliteDatabase) -> None:
    db.create_tables(ALL_MODELS)


def _v2_reason_codes(db: SqliteDatabase) -> None:
    """mirrororder.reason_code, filled in for existing rows from the wording that
    behaviour used to be keyed on."""
    if "reason_code" not in {c.name for c in db.get_columns("mirrororder")}:
        # A plain ADD COLUMN: the migrator's NOT NULL step rebuilds the table, and
        # dropping the old one would cascade to every intent and state event.
        db.execute_sql('ALTER TABLE mirrororder ADD COLUMN "reason_code" VARCHAR(255) '
                       "NOT NULL DEFAULT ''")
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


def _mirror_fills(db: SqliteDatabase) -> None:
    """mirrororder.average_price, .average_prices and .acked_at (mappings, stats). Plain
    ADD COLUMNs: the migrator's NOT NULL step rebuilds the table, and dropping the old one
    would cascade to its intents and state events. acked_at is filled in for existing
    rows from their state events."""
    have = {column.name for column in db.get_columns("mirrororder")}
    for name, ddl in (("average_price", "REAL NOT NULL DEFAULT 0.0"),
                      ("average_prices", "TEXT NOT NULL DEFAULT '{}'"),
                      ("acked_at", "DATETIME")):
        if name not in have:
            db.execute_sql(f'ALTER TABLE "mirrororder" ADD COLUMN "{name}" {ddl}')
    db.execute_sql(
        "UPDATE mirrororder SET acked_at = (SELECT MIN(e.at) FROM stateevent e WHERE "
        "e.mirror_id = mirrororder.id AND e.to_state IN ('ACCEPTED', 'PARTIALLY_FILLED', "
        "'FILLED')) WHERE acked_at IS NULL")


def _audit_trail(db: SqliteDatabase) -> None:
    """leaderorder.source and .recorded_at, then the hash-chained audit trail
    (store/trail.py): its table, triggers and guards; the rows already in the tables are
    chained oldest first, then a `trail_started` row. A later migration that rebuilds a
    watched table must call trail.install again (a dropped table takes its triggers)."""
    have = {column.name for column in db.get_columns("leaderorder")}
    for name, ddl in (("source", "VARCHAR(255) NOT NULL DEFAULT ''"),
                      ("recorded_at", "DATETIME")):
        if name not in have:  # plain ADD COLUMN: a rebuild would cascade to the mirrors
            db.execute_sql(f'ALTER TABLE "leaderorder" ADD COLUMN "{name}" {ddl}')
    trail.install(db.execute_sql)
    trail.backfill(db.execute_sql, datetime.now(UTC), MIGRATIONS.index(_audit_trail) + 1)


def _bus_outbox(db: SqliteDatabase) -> None:
    """The leader's outbox for the bus (store/bus_queries.py): the order terms its events
    carry that leaderorder did not keep (plain ADD COLUMNs: a rebuild would cascade to
    the mirrors, and drop the trail's triggers), and `buscursor`, how far JetStream has
    acknowledged the trail's leader events, per stream."""
    have = {column.name for column in db.get_columns("leaderorder")}
    for name, ddl in (("leader_created_at", "DATETIME"),
                      ("amo_time", "VARCHAR(255) NOT NULL DEFAULT ''"),
                      ("bo_profit_value", "REAL NOT NULL DEFAULT 0.0"),
                      ("bo_stop_loss_value", "REAL NOT NULL DEFAULT 0.0")):
        if name not in have:
            db.execute_sql(f'ALTER TABLE "leaderorder" ADD COLUMN "{name}" {ddl}')
    db.execute_sql(bus_queries.CURSOR_TABLE_SQL)


def _leader_position(db: SqliteDatabase) -> None:
    """leaderorder.position_before: the leader's position before the order, which its
    events on the bus carry (an agent cannot read the leader's positions). NULL for the
    orders recorded before."""
    have = {column.name for column in db.get_columns("leaderorder")}
    if "position_before" not in have:
        db.execute_sql('ALTER TABLE "leaderorder" ADD COLUMN "position_before" INTEGER')


def _agent_applied(db: SqliteDatabase) -> None:
    """An agent's `busapplied`: the highest sequence number of each leader order's events
    it has applied (store/bus_queries.py), so a repeat is known after a restart."""
    db.execute_sql(bus_queries.APPLIED_TABLE_SQL)


def _remote_outcomes(db: SqliteDatabase) -> None:
    """Results between agents and the leader (store/results_queries.py): this database's
    random store id (an agent's results are named by it), and the leader's record of its
    remote followers' outcomes, `remoteoutcome` and `remoteresult`."""
    for sql in results_queries.MIGRATION_SQL:
        db.execute_sql(sql)
    db.execute_sql(*results_queries.store_id_sql())


MIGRATIONS: tuple[Callable[[SqliteDatabase], None], ...] = (
    _v1_initial, _v2_reason_codes, _v3_leader_legs, _mirror_fills, _audit_trail, _bus_outbox,
    _leader_position, _agent_applied, _remote_outcomes)
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
