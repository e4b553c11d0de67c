"""The leader's outbox for the bus (issue 12): its record of leader order changes, read
after a cursor, and the cursor itself.

The outbox is the audit trail (store/trail.py): every change of a leader order or of one
of its exit legs already has a row there, written by a trigger in the transaction that
records the change, so nothing can be recorded without its event and no event exists
for a change rolled back. The trail is append-only (guarded by triggers) and its ids
follow commit order (one writer at a time), so:
- a change's per-order sequence number is its rank among its order's leader rows
  (`leader_order` and `leader_leg`, by trail id): the same number whenever it is read;
- a cursor (a trail id: every leader event at or before it acknowledged by JetStream)
  never skips a row committed later with a smaller id.
The leaderorder table keeps only an order's latest state, so it cannot number changes;
it supplies the order's fixed terms, which the trail's rows leave out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from peewee import SqliteDatabase

from copytrade.core.bus_events import LeaderChange
from copytrade.core.events import ENTRY_LEG, OrderReport, ReportSource
from copytrade.core.ist import ist_today
from copytrade.store.repo import Store

LEADER_KINDS = ("leader_order", "leader_leg")
_KINDS_SQL = "('leader_order', 'leader_leg')"

CURSOR_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS buscursor (stream TEXT PRIMARY KEY, "
    "trail_id INTEGER NOT NULL, updated_at TEXT NOT NULL)")
# An agent's: the highest seq of each leader order's events it applied (a repeat changes
# nothing, even one the server re-delivers after the agent restarted).
APPLIED_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS busapplied (trading_date TEXT NOT NULL, order_id TEXT NOT NULL, "
    "seq INTEGER NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (trading_date, order_id))")

# Columns of leaderorder the trail's rows do not carry (the order's terms, and what only
# the latest state keeps).
_ORDER_COLUMNS = (
    "trading_date", "exchange_segment", "security_id", "symbol", "transaction_type",
    "product_type", "validity", "disclosed_quantity", "after_market_order", "amo_time",
    "lot_size", "placed_in_app", "correlation_id", "bo_profit_value", "bo_stop_loss_value",
    "leader_created_at", "leader_updated_at", "position_before")
_CHANGES = (
    "SELECT t.id, t.kind, t.leader_order_id, t.at, t.data, "
    f"(SELECT COUNT(*) FROM trail p WHERE p.leader_order_id = t.leader_order_id AND "
    f"p.kind IN {_KINDS_SQL} AND p.id <= t.id), "
    # the order's row is still in the state this change recorded (no later save)
    "l.order_id IS NOT NULL AND CAST(l.recorded_at AS TEXT) = t.at, "
    + ", ".join(f"l.{c}" for c in _ORDER_COLUMNS)
    + " FROM trail t LEFT JOIN leaderorder l ON l.order_id = t.leader_order_id "
    f"WHERE t.id > ? AND t.id <= ? AND t.kind IN {_KINDS_SQL} ORDER BY t.id LIMIT ?")


@dataclass(frozen=True)
class Outbox:
    """Where the outbox stands: the trail's head and the leader events after a cursor."""

    head: int
    changes: list[LeaderChange]


def trail_head(db: SqliteDatabase) -> int:
    row = db.execute_sql("SELECT COALESCE(MAX(id), 0) FROM trail").fetchone()
    return int(row[0])


def leader_changes(db: SqliteDatabase, after: int, limit: int) -> Outbox:
    """At most `limit` leader events after trail id `after`, oldest first, up to the
    trail's head as read first (so `head` is a safe cursor once all of them are acked)."""
    head = trail_head(db)
    rows = db.execute_sql(_CHANGES, (after, head, limit)).fetchall()
    return Outbox(head, [_change(row) for row in rows])


def pending_count(db: SqliteDatabase, after: int) -> int:
    """Leader events recorded after trail id `after` (not yet acknowledged)."""
    row = db.execute_sql(f"SELECT COUNT(*) FROM trail WHERE id > ? AND kind IN {_KINDS_SQL}",
                         (after,)).fetchone()
    return int(row[0])


def read_cursor(db: SqliteDatabase, stream: str) -> int | None:
    row = db.execute_sql("SELECT trail_id FROM buscursor WHERE stream = ?",
                         (stream,)).fetchone()
    return int(row[0]) if row else None


def save_cursor(store: Store, stream: str, trail_id: int) -> None:
    """The cursor, moved forward only (a slower writer never takes it back)."""
    with store.write():
        store.db.execute_sql(
            "INSERT INTO buscursor (stream, trail_id, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (stream) DO UPDATE SET trail_id = excluded.trail_id, "
            "updated_at = excluded.updated_at WHERE excluded.trail_id > buscursor.trail_id",
            (stream, trail_id, str(store.now())))


def first_cursor(db: SqliteDatabase, trading_date: date) -> int:
    """Where a stream never published to starts: just before the first leader event of an
    order of `trading_date` or later (earlier days' orders were never any agent's)."""
    row = db.execute_sql(
        f"SELECT MIN(id) FROM trail WHERE kind IN {_KINDS_SQL} AND leader_order_id IN "
        "(SELECT order_id FROM leaderorder WHERE trading_date >= ?)",
        (trading_date.isoformat(),)).fetchone()
    return int(row[0]) - 1 if row and row[0] is not None else trail_head(db)


def applied_seqs(db: SqliteDatabase) -> dict[tuple[str, str], int]:
    """(trading date, order id) -> the highest seq applied, for an agent's start."""
    rows = db.execute_sql("SELECT trading_date, order_id, seq FROM busapplied").fetchall()
    return {(day, order_id): int(seq) for day, order_id, seq in rows}


def record_applied(store: Store, trading_date: str, order_id: str, seq: int) -> None:
    """This event's seq is applied (kept only if higher than the one recorded)."""
    with store.write():
        store.db.execute_sql(
            "INSERT INTO busapplied (trading_date, order_id, seq, applied_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (trading_date, order_id) DO UPDATE SET "
            "seq = excluded.seq, applied_at = excluded.applied_at "
            "WHERE excluded.seq > busapplied.seq",
            (trading_date, order_id, seq, str(store.now())))


_KNOWN_ORDERS = (
    "SELECT order_id, status, exchange_segment, security_id, transaction_type, product_type, "
    "order_type, validity, quantity, traded_quantity, price, trigger_price, "
    "disclosed_quantity, average_price, after_market_order, amo_time, correlation_id, "
    "reason, symbol, lot_size, bo_profit_value, bo_stop_loss_value, placed_in_app, "
    "leader_updated_at, leader_created_at, source, position_before FROM leaderorder "
    "WHERE trading_date = ? ORDER BY first_seen_at")


def known_leader_orders(db: SqliteDatabase, trading_date: date
                        ) -> list[tuple[OrderReport, int | None]]:
    """An agent's start: the leader orders of the day it has recorded, each in its latest
    recorded state, with the leader's position before it (the replicator knows them again
    without waiting for their next event)."""
    found = []
    for row in db.execute_sql(_KNOWN_ORDERS, (trading_date.isoformat(),)).fetchall():
        (order_id, status, segment, security, side, product, order_type, validity, quantity,
         traded, price, trigger, disclosed, average, amo, amo_time, correlation, reason,
         symbol, lot_size, profit, stop_loss, in_app, updated, created, source,
         position) = row
        found.append((OrderReport(
            order_id=order_id, status=status, exchange_segment=segment, security_id=security,
            transaction_type=side, product_type=product, order_type=order_type,
            validity=validity, quantity=int(quantity), traded_quantity=int(traded),
            price=float(price), trigger_price=float(trigger),
            disclosed_quantity=int(disclosed), average_price=float(average),
            after_market_order=bool(amo), amo_time=amo_time or "",
            correlation_id=correlation or "", reason=reason or "", symbol=symbol or "",
            lot_size=lot_size, bo_profit_value=float(profit),
            bo_stop_loss_value=float(stop_loss), placed_in_app=bool(in_app),
            updated_at=_time(updated), created_at=_time(created), source=_source(source)),
            None if position is None else int(position)))
    return found


def open_outage(db: SqliteDatabase) -> datetime | None:
    """When the outage the record leaves open began (its last `bus_unavailable`, with no
    `bus_recovered` after it); None when there is none."""
    row = db.execute_sql("SELECT kind, at FROM auditevent WHERE kind IN ('bus_unavailable', "
                         "'bus_recovered') ORDER BY id DESC LIMIT 1").fetchone()
    return _time(row[1]) if row and row[0] == "bus_unavailable" else None


def audit(store: Store, kind: str, message: str, data: dict[str, Any]) -> None:
    with store.write():
        store.audit(kind, message, data=data)


# ---- a trail row -> the change as recorded -----------------------------------------------------


def _change(row: tuple) -> LeaderChange:
    trail_id, kind, order_id, at, data_text, seq, current, *order = row
    terms = dict(zip(_ORDER_COLUMNS, order, strict=True))
    data = _json(data_text)
    recorded_at = _time(at)
    trading = (date.fromisoformat(terms["trading_date"]) if terms["trading_date"]
               else ist_today(recorded_at) if recorded_at else date.min)
    if kind == "leader_leg":
        report = _leg_report(order_id, data, terms)
    else:
        report = _entry_report(order_id, data, terms, current=bool(current))
    position = terms["position_before"]
    return LeaderChange(int(trail_id), trading, int(seq), report,
                        int(position) if position is not None else None)


def _entry_report(order_id: str, data: dict, terms: dict, *, current: bool) -> OrderReport:
    """The entry as this change recorded it (the trail's row), with the order's terms from
    its row. The disclosed quantity and the leader's update time are kept only in their
    latest state: both are given only while the row is still at this change (an earlier
    change says 0 disclosed, not today's figure, which may exceed that change's quantity
    and have every agent refuse the event)."""
    return OrderReport(
        order_id=order_id, status=_text(data, "status"),
        exchange_segment=_text(data, "exchange_segment") or terms["exchange_segment"] or "",
        security_id=_text(data, "security_id") or terms["security_id"] or "",
        transaction_type=_text(data, "transaction_type") or terms["transaction_type"] or "",
        product_type=_text(data, "product_type") or terms["product_type"] or "",
        order_type=_text(data, "order_type"), validity=terms["validity"] or "",
        quantity=_int(data.get("quantity")), traded_quantity=_int(data.get("traded_quantity")),
        price=_float(data.get("price")), trigger_price=_float(data.get("trigger_price")),
        average_price=_float(data.get("average_price")), reason=_text(data, "reason"),
        source=_source(data.get("source")),
        updated_at=_time(terms["leader_updated_at"]) if current else None,
        **{**_terms(terms), **({} if current else {"disclosed_quantity": 0})})


def _leg_report(order_id: str, data: dict, terms: dict) -> OrderReport:
    """An exit leg (2 stop-loss, 3 target) as this change recorded it; its side is the
    opposite of its entry's, its other terms the entry's. Its source is not recorded."""
    entry_side = terms["transaction_type"] or ""
    return OrderReport(
        order_id=order_id, status=_text(data, "status"),
        exchange_segment=terms["exchange_segment"] or "",
        security_id=terms["security_id"] or "",
        transaction_type={"BUY": "SELL", "SELL": "BUY"}.get(entry_side, ""),
        product_type=terms["product_type"] or "", order_type=_text(data, "order_type"),
        validity=terms["validity"] or "", quantity=_int(data.get("quantity")),
        traded_quantity=_int(data.get("traded_quantity")), price=_float(data.get("price")),
        trigger_price=_float(data.get("trigger_price")),
        leg=_int(data.get("leg")) or ENTRY_LEG, source=ReportSource.REST,
        **{**_terms(terms), "disclosed_quantity": 0})


def _terms(terms: dict) -> dict[str, Any]:
    return dict(disclosed_quantity=_int(terms["disclosed_quantity"]),
                after_market_order=bool(terms["after_market_order"]),
                amo_time=terms["amo_time"] or "", correlation_id=terms["correlation_id"] or "",
                symbol=terms["symbol"] or "", lot_size=terms["lot_size"],
                bo_profit_value=_float(terms["bo_profit_value"]),
                bo_stop_loss_value=_float(terms["bo_stop_loss_value"]),
                placed_in_app=bool(terms["placed_in_app"]),
                created_at=_time(terms["leader_created_at"]))


def _source(value: object) -> ReportSource:
    """What said it; rows recorded before sources were kept count as a REST read."""
    return ReportSource.STREAM if value == ReportSource.STREAM.value else ReportSource.REST


def _json(text: object) -> dict:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _text(data: dict, key: str) -> str:
    value = data.get(key)
    return "" if value is None else str(value)


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def _time(text: object) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None
