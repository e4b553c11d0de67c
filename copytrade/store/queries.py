"""Reads for follow's live view, its plain event lines and its stop summary (never writes).

Each is bounded and indexed, and runs on the CLI's thread, never the engine's: the live
table reads the newest leader orders by rowid (the order they were first seen) with a
LIMIT; the event lines read the audit trail (store/trail.py: every audit event, intent
outcome, mirror state change and leader order change, in one ordered table) after a
cursor, by its primary key, with a LIMIT; the stop summary reads the leader orders of this
run's mirrors, by their id range.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from copytrade.core.events import ENTRY_LEG
from copytrade.core.report_math import LEG_LABELS, MappingRow
from copytrade.store.models import database
from copytrade.store.reports import rows_where


@dataclass(frozen=True)
class EventCursor:
    """Where a follow run starts: what it prints and sums up comes after these ids."""

    trail_id: int = 0
    mirror_id: int = 0


def last_event_ids() -> EventCursor:
    """The newest audit-trail and mirror ids: what a run prints starts after them."""
    row = database.execute_sql(
        "SELECT (SELECT COALESCE(MAX(id), 0) FROM trail), "
        "(SELECT COALESCE(MAX(id), 0) FROM mirrororder)").fetchone()
    return EventCursor(int(row[0]), int(row[1]))


# ---- the plain event lines -------------------------------------------------------------------


@dataclass(frozen=True)
class TrailEvent:
    """One row of the audit trail, with what a line about it needs: the leader order's
    symbol and the mirror's side, quantities and follower order as they are now."""

    id: int
    at: datetime | None
    kind: str
    leader_order_id: str | None
    follower: str | None
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    symbol: str = ""
    side: str = ""
    quantity: int | None = None  # the mirror's (every attempt); None: no mirror
    filled: int = 0
    average_price: float = 0.0
    follower_order_id: str = ""
    reason: str = ""  # the mirror's
    before: dict[str, Any] | None = None  # the leader order's previous row, or the request
    request: dict[str, Any] | None = None  # before a modification, and the modification's


_MODIFY_DONE = ("CASE WHEN t.kind = 'intent_done' THEN CASE WHEN "
                "json_extract(t.data, '$.action') = 'MODIFY' THEN {} END END")
_ASKED = ("(SELECT COALESCE(json_extract(i.request, '$.modify.quantity'), "
          "json_extract(i.request, '$.order.quantity')) + m.carried_quantity FROM trail p "
          "JOIN intent i ON i.id = json_extract(p.data, '$.intent_id') WHERE "
          "p.leader_order_id = t.leader_order_id AND p.mirror_id = t.mirror_id AND "
          "p.kind = 'intent' AND {} AND i.action IN ('PLACE', 'MODIFY') "
          "ORDER BY p.id {} LIMIT 1)")
_EVENTS = (
    "SELECT t.id, t.at, t.kind, t.leader_order_id, t.follower, t.message, t.data, "
    "COALESCE(NULLIF(l.symbol, ''), l.security_id), "
    "COALESCE(NULLIF(m.transaction_type, ''), l.transaction_type), "
    # the quantity as of this event: the last place or modification asked up to it (a
    # line printed after a later modification must not say the later figure), else the
    # first one (the transition to SUBMITTED is written before its place), else the
    # mirror's; through the trail's leader-order index
    "COALESCE(" + _ASKED.format("p.id <= t.id", "DESC") + ", "
    + _ASKED.format("1", "ASC") + ", m.quantity + m.carried_quantity), "
    "m.filled_quantity + m.carried_quantity, "
    "m.average_price, m.follower_order_id, m.reason, "
    # a leader order's change: its previous row on the trail (indexed by leader order)
    "CASE WHEN t.kind = 'leader_order' THEN (SELECT p.data FROM trail p WHERE "
    "p.leader_order_id = t.leader_order_id AND p.kind = 'leader_order' AND p.id < t.id "
    "ORDER BY p.id DESC LIMIT 1) END, "
    # a modification done: what was asked before it (the place, or the last modification)
    + _MODIFY_DONE.format(
        "(SELECT p.request FROM intent p WHERE p.mirror_id = t.mirror_id AND p.id < "
        "json_extract(t.data, '$.intent_id') AND p.action IN ('PLACE', 'MODIFY') AND "
        "p.status = 'DONE' ORDER BY p.id DESC LIMIT 1)") + ", "
    + _MODIFY_DONE.format(
        "(SELECT i.request FROM intent i WHERE i.id = json_extract(t.data, '$.intent_id'))")
    + " FROM trail t LEFT JOIN leaderorder l ON l.order_id = t.leader_order_id "
    "LEFT JOIN mirrororder m ON m.id = t.mirror_id WHERE t.id > ? ORDER BY t.id LIMIT ?")


def events_after(trail_id: int, limit: int = 500) -> list[TrailEvent]:
    """The trail's rows after `trail_id`, oldest first, at most `limit`."""
    rows = database.execute_sql(_EVENTS, (trail_id, limit)).fetchall()
    return [TrailEvent(
        row[0], _moment(row[1]), row[2], row[3], row[4], row[5] or "", _json(row[6]) or {},
        row[7] or "", row[8] or "", row[9], row[10] or 0, row[11] or 0.0, row[12] or "",
        row[13] or "", _json(row[14]) if row[2] == "leader_order" else _request(row[15]),
        _request(row[16])) for row in rows]


def _moment(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def _json(text: object) -> dict[str, Any] | None:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _request(text: object) -> dict[str, Any] | None:
    """An intent's order parameters: a place's `order`, a modification's `modify`."""
    request = _json(text)
    if request is None:
        return None
    inner = request.get("order", request.get("modify"))
    return inner if isinstance(inner, dict) else None


# ---- the live table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveOrder:
    """A leader order (or one exit leg of a BO/CO) and each follower's mirror of it."""

    order_id: str
    leg: int
    symbol: str
    side: str
    quantity: int
    traded: int
    order_type: str
    price: float  # the limit price (0: a market order, or an exit leg's: not known here)
    average_price: float
    status: str
    seen_at: datetime | None
    placed_in_app: bool = False
    mirrors: dict[str, MappingRow] = field(default_factory=dict)  # follower -> its row

    @property
    def leg_label(self) -> str:
        return LEG_LABELS.get(self.leg, str(self.leg))


def recent_orders(limit: int = 25) -> list[LiveOrder]:
    """The newest `limit` leader orders, newest first; each entry before its exit legs."""
    leaders = database.execute_sql(
        "SELECT order_id, price, placed_in_app FROM leaderorder ORDER BY rowid DESC LIMIT ?",
        (limit,)).fetchall()
    if not leaders:
        return []
    details = {row[0]: (row[1] or 0.0, bool(row[2])) for row in leaders}
    marks = ", ".join("?" for _ in leaders)
    orders: dict[tuple[str, int], LiveOrder] = {}
    for row in rows_where(database, f"l.order_id IN ({marks})", tuple(details)):
        key = (row.leader_order_id, row.leg)
        if key not in orders:
            price, in_app = details[row.leader_order_id]
            orders[key] = LiveOrder(
                row.leader_order_id, row.leg, row.symbol, row.side, row.leader_quantity,
                row.leader_filled, row.order_type, price if row.leg == ENTRY_LEG else 0.0,
                row.leader_average, row.leader_status, row.leader_seen_at, in_app)
        if row.follower is not None:
            orders[key].mirrors[row.follower] = row
    rank = {order_id: index for index, order_id in enumerate(details)}  # newest first
    return sorted(orders.values(), key=lambda o: (rank[o.order_id], o.leg))


# ---- the stop summary ----------------------------------------------------------------------


def run_rows(cursor: EventCursor) -> list[MappingRow]:
    """The mapping rows of the leader orders this run made a mirror of (its mirrors come
    after `cursor.mirror_id`)."""
    return rows_where(database, "l.order_id IN (SELECT leader_order_id FROM mirrororder "
                      "WHERE id > ?)", (cursor.mirror_id,))
