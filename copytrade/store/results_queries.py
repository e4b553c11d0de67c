"""Results between an agent and the leader (issue 12): the agent's outbox and store id, and
the leader's record of what its agents reported.

The agent's outbox is its audit trail (store/trail.py), like the leader's: every row about
its follower (an audit event naming it, an intent, an intent's outcome, a state change of
one of its mirrors), read after a cursor kept in `buscursor` under the results stream's
name, each with its mirror as the mirror row is now.

The leader keeps, per remote follower and mirror (leader order, leg, attempt), the newest
snapshot its agent sent in `remoteoutcome` (a result older than the one stored, a smaller
trail id from the same agent store, never overwrites it), and every result once on its own
audit trail (`remote_<kind>`): `remoteresult` knows which it has, so a result delivered
again after the server's duplicate window changes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from peewee import SqliteDatabase

from copytrade.core.bus_results import MIRROR_FIELDS, AgentResult, ResultMirror
from copytrade.store.repo import Store

STORE_ID_KEY = "store_id"
OUTCOME_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS remoteoutcome (follower TEXT NOT NULL, "
    "leader_order_id TEXT NOT NULL, leg INTEGER NOT NULL, attempt INTEGER NOT NULL, "
    "store_id TEXT NOT NULL, trail_id INTEGER NOT NULL, correlation_id TEXT NOT NULL, "
    "state TEXT NOT NULL, reason TEXT NOT NULL, reason_code TEXT NOT NULL, "
    "quantity INTEGER NOT NULL, carried_quantity INTEGER NOT NULL, "
    "filled_quantity INTEGER NOT NULL, average_price REAL NOT NULL, follower_order_id TEXT, "
    "price REAL NOT NULL, trigger_price REAL NOT NULL, order_type TEXT NOT NULL, "
    "security_id TEXT NOT NULL, transaction_type TEXT NOT NULL, product_type TEXT NOT NULL, "
    "lag_ms REAL, fill_lag_ms REAL, updated_at TEXT, received_at TEXT NOT NULL, "
    "PRIMARY KEY (follower, leader_order_id, leg, attempt))")
OUTCOME_INDEX_SQL = ("CREATE INDEX IF NOT EXISTS remoteoutcome_leader_order "
                     "ON remoteoutcome (leader_order_id)")
SEEN_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS remoteresult (follower TEXT NOT NULL, store_id TEXT NOT NULL, "
    "trail_id INTEGER NOT NULL, PRIMARY KEY (follower, store_id, trail_id)) WITHOUT ROWID")
MIGRATION_SQL = (OUTCOME_TABLE_SQL, OUTCOME_INDEX_SQL, SEEN_TABLE_SQL)


def new_store_id() -> str:
    return secrets.token_hex(8)


def store_id_sql() -> tuple[str, tuple[str, ...]]:
    """The migration's: a random id for this database, made once."""
    return ("INSERT OR IGNORE INTO setting (key, value) VALUES (?, ?)",
            (STORE_ID_KEY, new_store_id()))


def store_id(db: SqliteDatabase) -> str:
    row = db.execute_sql("SELECT value FROM setting WHERE key = ?", (STORE_ID_KEY,)).fetchone()
    if row is None:  # not possible after the migration; said plainly if it happens
        raise LookupError("this database has no store id (schema migration 9 missing)")
    return str(row[0])


# ---- the agent's outbox ------------------------------------------------------------------------

_MIRROR_COLUMNS = ", ".join(f"m.{name}" for name in MIRROR_FIELDS)
_OUTBOX = (
    f"SELECT t.id, t.kind, t.at, t.leader_order_id, t.message, m.id, {_MIRROR_COLUMNS} "
    "FROM trail t LEFT JOIN mirrororder m ON m.id = t.mirror_id "
    "WHERE t.id > ? AND t.id <= ? AND (t.follower = ? OR m.follower = ?) "
    "ORDER BY t.id LIMIT ?")


@dataclass(frozen=True)
class ResultsOutbox:
    head: int  # the trail's head when read: a safe cursor once every row is acknowledged
    results: list[AgentResult]


def results_after(db: SqliteDatabase, follower: str, own_id: str, after: int,
                  limit: int) -> ResultsOutbox:
    """At most `limit` rows about `follower` after trail id `after`, oldest first."""
    head = int(db.execute_sql("SELECT COALESCE(MAX(id), 0) FROM trail").fetchone()[0])
    rows = db.execute_sql(_OUTBOX, (after, head, follower, follower, limit)).fetchall()
    return ResultsOutbox(head, [_result(follower, own_id, row) for row in rows])


def pending_results(db: SqliteDatabase, follower: str, after: int) -> int:
    row = db.execute_sql(
        "SELECT COUNT(*) FROM trail t LEFT JOIN mirrororder m ON m.id = t.mirror_id "
        "WHERE t.id > ? AND (t.follower = ? OR m.follower = ?)",
        (after, follower, follower)).fetchone()
    return int(row[0])


def _result(follower: str, own_id: str, row: tuple) -> AgentResult:
    trail_id, kind, at, leader_order_id, message, mirror_id, *mirror = row
    snapshot = None
    if mirror_id is not None:
        values = dict(zip(MIRROR_FIELDS, mirror, strict=True))
        snapshot = ResultMirror(**{
            **values, "reason": values["reason"] or "", "reason_code": values["reason_code"]
            or "", "follower_order_id": values["follower_order_id"] or None,
            "updated_at": _time(values["updated_at"]),
            **{key: values[key] or "" for key in ("order_type", "security_id",
                                                  "transaction_type", "product_type")}})
    return AgentResult(follower, own_id, int(trail_id), kind,
                       _time(at) or datetime.min.replace(tzinfo=UTC), leader_order_id,
                       message or "", snapshot)


# ---- the leader's record -----------------------------------------------------------------------

_UPSERT = (
    f"INSERT INTO remoteoutcome (follower, leader_order_id, store_id, trail_id, "
    f"{', '.join(MIRROR_FIELDS)}, received_at) VALUES "
    f"({', '.join('?' for _ in range(len(MIRROR_FIELDS) + 5))}) "
    "ON CONFLICT (follower, leader_order_id, leg, attempt) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ("store_id", "trail_id", *MIRROR_FIELDS,
                                                  "received_at"))
    + " WHERE excluded.store_id <> remoteoutcome.store_id "
    "OR excluded.trail_id > remoteoutcome.trail_id")


def save_results(store: Store, results: Iterable[AgentResult],
                 rejected: Iterable[tuple[str, str, str]] = ()) -> int:
    """The results (and the rejected messages: reason, excerpt, subject), in one
    transaction. How many results were new (a repeat is left out)."""
    new = 0
    with store.write():
        for result in results:
            new += _save(store, result)
        for reason, excerpt, subject in rejected:
            store.audit("bus_result_rejected", f"a result from the bus was rejected: {reason}",
                        data={"reason": reason, "excerpt": excerpt, "subject": subject})
    return new


def _save(store: Store, result: AgentResult) -> bool:
    seen = store.db.execute_sql(
        "INSERT OR IGNORE INTO remoteresult (follower, store_id, trail_id) VALUES (?, ?, ?)",
        (result.follower, result.store_id, result.trail_id))
    if seen.rowcount == 0:
        return False
    mirror = result.mirror
    if mirror is not None and result.leader_order_id is not None:
        values = asdict(mirror)
        values["updated_at"] = _text(values["updated_at"])
        store.db.execute_sql(_UPSERT, (result.follower, result.leader_order_id,
                                       result.store_id, result.trail_id,
                                       *(values[name] for name in MIRROR_FIELDS),
                                       str(store.now())))
    data: dict[str, Any] = {"remote": True, "store_id": result.store_id,
                            "trail_id": result.trail_id, "at": _text(result.at),
                            "kind": result.kind}
    if mirror is not None:
        data["mirror"] = {**asdict(mirror), "updated_at": _text(mirror.updated_at)}
    store.audit(f"remote_{result.kind}", result.message,
                leader_order_id=result.leader_order_id, follower=result.follower, data=data)
    return True


def remote_outcomes(db: SqliteDatabase, leader_order_id: str) -> list[dict[str, Any]]:
    """The stored snapshots of one leader order, by follower, leg and attempt."""
    cursor = db.execute_sql("SELECT * FROM remoteoutcome WHERE leader_order_id = ? "
                            "ORDER BY follower, leg, attempt", (leader_order_id,))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _text(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def _time(text: object) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
