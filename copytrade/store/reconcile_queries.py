"""Reads for the periodic reconciler (engine/reconciler.py). Each one goes through an index
(follower, correlation id, follower order id, intent status), so a round costs what its
open mirrors and the book's new rows cost, not what the whole day holds. Plain SQL:
peewee builds a statement with a few hundred ids in Python slower than SQLite runs it."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from datetime import datetime
from typing import TypeVar

from peewee import SqliteDatabase

from copytrade.core.orders import TERMINAL_STATES
from copytrade.core.reconcile import StoredMirror
from copytrade.store.models import MirrorOrder

T = TypeVar("T", str, int)
CHUNK = 400  # values per statement: well under SQLite's bound on variables
_TERMINAL_VALUES = tuple(sorted(state.value for state in TERMINAL_STATES))
_SELECT = (
    "SELECT m.id, m.leader_order_id, m.correlation_id, m.state, m.quantity, "
    "m.filled_quantity, m.legs, m.price, m.trigger_price, m.order_type, m.submitted_at, "
    "m.created_at FROM mirrororder m JOIN leaderorder l ON l.order_id = m.leader_order_id "
    "WHERE m.follower = ? AND l.trading_date = ? AND m.shadow = 0 AND m.leg = 1 AND ")


def _select(db: SqliteDatabase, follower: str, trading_date: str, where: str,
            params: tuple, now: datetime) -> list[StoredMirror]:
    """Today's mirrors of one follower matching `where` (shadow ones never reach a broker).
    Entries only: a BO's or CO's exit legs are Dhan's orders, made when the entry filled,
    not ours to compare or replace (their mirrors follow their reports)."""
    rows = db.execute_sql(_SELECT + where, (follower, trading_date, *params)).fetchall()
    return [_stored(follower, row, now) for row in rows]


def _stored(follower: str, row: tuple, now: datetime) -> StoredMirror:
    (mirror_id, leader, cid, state, quantity, filled, legs, price, trigger, order_type,
     submitted_at, created_at) = row
    since = _when(submitted_at, MirrorOrder.submitted_at) or _when(
        created_at, MirrorOrder.created_at)
    return StoredMirror(
        mirror_id=mirror_id, leader_order_id=leader, follower=follower, correlation_id=cid,
        state=state, quantity=quantity, filled=filled,
        legs={oid: tuple(leg) for oid, leg in json.loads(legs or "{}").items()},
        price=price, trigger_price=trigger, order_type=order_type,
        submitted_age_seconds=(now - since).total_seconds() if since else None)


def _when(value: object, column: object) -> datetime | None:
    """A stored time: ISO text as written (fast), else what the model's field makes of it."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return column.python_value(value)  # type: ignore[attr-defined]


def _chunks(values: Collection[T]) -> Iterator[list[T]]:
    ordered = sorted(values)  # type: ignore[type-var]
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start:start + CHUNK]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def open_mirrors(db: SqliteDatabase, follower: str, trading_date: str,
                 now: datetime) -> list[StoredMirror]:
    """Today's mirrors not ended: the ones every round looks at."""
    return _select(db, follower, trading_date,
                   f"m.state NOT IN ({_marks(len(_TERMINAL_VALUES))})", _TERMINAL_VALUES, now)


def in_flight_mirrors(db: SqliteDatabase, follower: str, trading_date: str,
                      now: datetime) -> list[StoredMirror]:
    """Mirrors with a call committed but not answered (through the intent status index)."""
    return _select(db, follower, trading_date,
                   "m.id IN (SELECT mirror_id FROM intent WHERE status = 'SENDING')", (), now)


def mirrors_by_correlation_ids(db: SqliteDatabase, follower: str, trading_date: str,
                               cids: Collection[str], now: datetime) -> list[StoredMirror]:
    return [m for chunk in _chunks(cids) for m in _select(
        db, follower, trading_date, f"m.correlation_id IN ({_marks(len(chunk))})",
        tuple(chunk), now)]


def mirrors_by_order_ids(db: SqliteDatabase, follower: str, trading_date: str,
                         order_ids: Collection[str], now: datetime) -> list[StoredMirror]:
    """By the first follower order of each mirror (the indexed column). Further slices are
    found by their correlation id, which every slice carries."""
    return [m for chunk in _chunks(order_ids) for m in _select(
        db, follower, trading_date, f"m.follower_order_id IN ({_marks(len(chunk))})",
        tuple(chunk), now)]


def mirrors_by_stems(db: SqliteDatabase, follower: str, trading_date: str,
                     stems: Collection[str], now: datetime) -> list[StoredMirror]:
    """Every attempt whose correlation id is one of `stems` + "-" + its number: a range
    on the unique correlation id index ("." sorts right after "-")."""
    found = []
    for chunk in _chunks(stems):
        ranges = " OR ".join(["(m.correlation_id >= ? AND m.correlation_id < ?)"] * len(chunk))
        params = tuple(bound for stem in chunk for bound in (f"{stem}-", f"{stem}."))
        found += _select(db, follower, trading_date, f"({ranges})", params, now)
    return found


def cancelled_outside_unreplaced(db: SqliteDatabase, follower: str, trading_date: str,
                                 reason: str) -> list[int]:
    """Ids of today's mirrors cancelled outside copytrade that are still their leg's
    latest attempt (a replacement, once placed, is a later attempt)."""
    rows = db.execute_sql(
        "SELECT m.id FROM mirrororder m JOIN leaderorder l ON l.order_id = m.leader_order_id "
        "WHERE m.follower = ? AND l.trading_date = ? AND m.state = 'CANCELED' "
        "AND m.reason = ? AND NOT EXISTS (SELECT 1 FROM mirrororder later "
        "WHERE later.leader_order_id = m.leader_order_id AND later.follower = m.follower "
        "AND later.leg = m.leg AND later.attempt > m.attempt) ORDER BY m.id",
        (follower, trading_date, reason)).fetchall()
    return [row[0] for row in rows]


def leader_status_and_validity(db: SqliteDatabase, order_id: str) -> tuple[str, str] | None:
    row = db.execute_sql("SELECT status, validity FROM leaderorder WHERE order_id = ?",
                         (order_id,)).fetchone()
    return (row[0], row[1]) if row else None


# ---- replay-missed: waiting on its calls ---------------------------------------------------


def intents_after(db: SqliteDatabase, after_id: int,
                  ) -> list[tuple[int, str, str, int, str]]:
    """(intent id, follower, leader order id, leg, status) of every intent after
    `after_id`, oldest first: a range on the rowid, so asking again from the last id seen
    costs only what is new."""
    return db.execute_sql(
        "SELECT i.id, m.follower, m.leader_order_id, m.leg, i.status FROM intent i "
        "JOIN mirrororder m ON m.id = i.mirror_id WHERE i.id > ? ORDER BY i.id",
        (after_id,)).fetchall()


def sending_intent_ids(db: SqliteDatabase) -> set[int]:
    """Every intent still SENDING, through the status index (not a scan of the day)."""
    return {row[0] for row in db.execute_sql(
        "SELECT id FROM intent WHERE status = 'SENDING'").fetchall()}


def mirrors_of_intents(db: SqliteDatabase, intent_ids: Collection[int],
                       ) -> list[tuple[int, str, str, str]]:
    """(mirror id, follower, correlation id, legs JSON) of the mirrors these intents are
    for, each once (intents are found by their rowid)."""
    found: dict[int, tuple[int, str, str, str]] = {}
    for chunk in _chunks(intent_ids):
        for row in db.execute_sql(
                "SELECT m.id, m.follower, m.correlation_id, m.legs FROM intent i "
                "JOIN mirrororder m ON m.id = i.mirror_id "
                f"WHERE i.id IN ({_marks(len(chunk))})", tuple(chunk)).fetchall():
            found[row[0]] = row
    return list(found.values())
