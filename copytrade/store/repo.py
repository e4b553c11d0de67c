"""Every write the engine makes, each in one short transaction under one writer lock.

SQLite allows one writer at a time; serialising our own threads here keeps them from
meeting SQLITE_BUSY, and WAL keeps readers (mappings, audit) unblocked meanwhile.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from peewee import SqliteDatabase

from copytrade.core.events import OrderReport, OrderStatus
from copytrade.core.intents import IntentAction, IntentStatus, check_move
from copytrade.core.orders import OPEN_STATES, MirrorState, Transition, Trigger, transition
from copytrade.redact import redact, redact_value
from copytrade.store.models import (
    ALL_MODELS,
    Intent,
    LeaderLeg,
    LeaderOrder,
    MirrorOrder,
    StateEvent,
)

Legs = dict[str, list[Any]]  # follower order id -> [status, traded, quantity]
OPEN_STATE_VALUES = tuple(sorted(s.value for s in OPEN_STATES))


@lru_cache(maxsize=256)
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return (f'INSERT INTO "{table}" ({", ".join(columns)}) '
            f'VALUES ({", ".join("?" for _ in columns)})')


@lru_cache(maxsize=256)
def _update_sql(table: str, columns: tuple[str, ...], key: str) -> str:
    return (f'UPDATE "{table}" SET {", ".join(f"{c} = ?" for c in columns)} '
            f'WHERE {key} = ?')


@dataclass(frozen=True)
class IntentRow:
    """One intent with the mirror it is for: what replay-missed reports per call."""

    id: int
    follower: str
    leader_order_id: str
    leg: int
    mirror_id: int
    action: str
    status: str
    request: dict
    outcome: str


_INTENT_ROWS = (
    "SELECT i.id, m.follower, m.leader_order_id, m.leg, m.id, i.action, i.status, i.request, "
    "i.outcome FROM intent i JOIN mirrororder m ON m.id = i.mirror_id WHERE ")


class Store:
    def __init__(self, db: SqliteDatabase, now: Callable[[], datetime]) -> None:
        self.db = db
        self.now = now
        self.lock = threading.RLock()

    @property
    def path(self) -> Path:
        """The database file (the WAL checkpointer opens its own connection to it)."""
        return Path(self.db.database)

    @contextmanager
    def write(self) -> Iterator[None]:
        # IMMEDIATE: take SQLite's write lock at the start. A deferred transaction that
        # reads, then writes after another process committed, fails at once whatever the
        # busy timeout (cancel-mirror and follow share the database).
        with self.lock, self.db.atomic("IMMEDIATE"):
            yield

    # The hot path writes with plain SQL: peewee builds each statement in Python, which
    # costs more than SQLite takes to run it.
    def _insert(self, table: str, fields: dict[str, Any]) -> int:
        fields = {**_column_defaults(table), **fields}
        columns = tuple(fields)
        cursor = self.db.execute_sql(_insert_sql(table, columns), tuple(fields.values()))
        return int(cursor.lastrowid)

    def _select_one(self, model: type, table: str, where: str, params: tuple) -> Any:
        cursor = self.db.execute_sql(f'SELECT * FROM "{table}" WHERE {where} LIMIT 1', params)
        row = cursor.fetchone()
        if row is None:
            return None
        names = [column[0] for column in cursor.description]
        return model(**_from_db(model, dict(zip(names, row, strict=True))))

    def _select_all(self, model: type, table: str, where: str, params: tuple) -> list[Any]:
        cursor = self.db.execute_sql(f'SELECT * FROM "{table}" WHERE {where}', params)
        names = [column[0] for column in cursor.description]
        return [model(**_from_db(model, dict(zip(names, row, strict=True))))
                for row in cursor.fetchall()]

    def _update(self, table: str, key: str, key_value: Any, fields: dict[str, Any]) -> int:
        columns = tuple(fields)
        cursor = self.db.execute_sql(_update_sql(table, columns, key),
                                     (*fields.values(), key_value))
        return cursor.rowcount

    # ---- leader orders -------------------------------------------------------------------

    def save_leader(self, report: OrderReport, version: tuple, trading_date: str, *,
                    position_before: int | None = None) -> None:
        """The order's state as now reported; `position_before` (the leader's position
        before it) is kept from the first save that gives one."""
        now = self.now()
        fields = dict(
            trading_date=trading_date, status=report.status,
            exchange_segment=report.exchange_segment, security_id=report.security_id,
            symbol=report.symbol, transaction_type=report.transaction_type,
            product_type=report.product_type, order_type=report.order_type,
            validity=report.validity, quantity=report.quantity,
            traded_quantity=report.traded_quantity, price=report.price,
            trigger_price=report.trigger_price, disclosed_quantity=report.disclosed_quantity,
            average_price=report.average_price, after_market_order=report.after_market_order,
            lot_size=report.lot_size, placed_in_app=report.placed_in_app,
            correlation_id=report.correlation_id,
            reason=redact(report.reason),  # the broker's own text, e.g. an RMS rejection
            version=json.dumps(version), leader_updated_at=report.updated_at,
            source=str(report.source), recorded_at=now,  # for the audit trail
            # terms the bus's leader events carry (store/bus_queries.py)
            leader_created_at=report.created_at, amo_time=report.amo_time,
            bo_profit_value=report.bo_profit_value,
            bo_stop_loss_value=report.bo_stop_loss_value,
        )
        if not self._update("leaderorder", "order_id", report.order_id, fields):
            self._insert("leaderorder", {"order_id": report.order_id, "first_seen_at": now,
                                         "position_before": position_before, **fields})
        if report.status == OrderStatus.TRADED:
            # the first moment it was seen traded: the fill lag is measured from it
            self.db.execute_sql("UPDATE leaderorder SET traded_at = ? WHERE order_id = ? "
                                "AND traded_at IS NULL", (now, report.order_id))

    def save_leader_leg(self, report: OrderReport) -> LeaderLeg:
        """An exit leg of a leader BO/CO as now reported; the first report's prices stay."""
        fields = dict(status=report.status, order_type=report.order_type,
                      quantity=report.quantity, traded_quantity=report.traded_quantity,
                      price=report.price, trigger_price=report.trigger_price,
                      updated_at=self.now())
        self.db.execute_sql(
            "UPDATE leaderleg SET status = ?, order_type = ?, quantity = ?, "
            "traded_quantity = ?, price = ?, trigger_price = ?, updated_at = ? "
            "WHERE order_id = ? AND leg = ?", (*fields.values(), report.order_id, report.leg))
        found = self.leader_leg(report.order_id, report.leg)
        if found is not None:
            return found
        self._insert("leaderleg", {"order_id": report.order_id, "leg": report.leg,
                                   "first_price": report.price,
                                   "first_trigger_price": report.trigger_price, **fields})
        return self.leader_leg(report.order_id, report.leg)

    def leader_leg(self, order_id: str, leg: int) -> LeaderLeg | None:
        return self._select_one(LeaderLeg, "leaderleg", "order_id = ? AND leg = ?",
                                (order_id, leg))

    # ---- mirrors ---------------------------------------------------------------------------

    def mirror(self, leader_order_id: str, follower: str, leg: int = 1) -> MirrorOrder | None:
        """The latest attempt at this leg for this follower."""
        return self._select_one(
            MirrorOrder, "mirrororder", "leader_order_id = ? AND follower = ? AND leg = ? "
            "ORDER BY attempt DESC", (leader_order_id, follower, leg))

    def mirror_by_id(self, mirror_id: int) -> MirrorOrder:
        return self._select_one(MirrorOrder, "mirrororder", "id = ?", (mirror_id,))

    def intent_by_id(self, intent_id: int) -> Intent:
        return self._select_one(Intent, "intent", "id = ?", (intent_id,))

    def mirror_for_follower_order(self, follower: str, order_id: str,
                                  correlation_id: str) -> MirrorOrder | None:
        """The entry mirror a follower's order belongs to: by correlation id, then by
        order id (both indexed; every follower frame comes here). Only a report without
        any correlation id is looked for among the slices' ids, a scan. A BO's or CO's
        exit legs share the entry's order id and correlation id: they find the entry's
        mirror too (see `mirror` for the leg's own)."""
        if correlation_id:
            found = self._select_one(MirrorOrder, "mirrororder", "correlation_id = ?",
                                     (correlation_id,))
            if found is not None and found.follower == follower:
                return found
        found = self._select_one(MirrorOrder, "mirrororder",
                                 "follower_order_id = ? AND follower = ? AND leg = 1",
                                 (order_id, follower))
        if found is not None or correlation_id:
            return found  # a foreign correlation id: not one of ours
        return self._select_one(MirrorOrder, "mirrororder",
                                "follower = ? AND leg = 1 AND legs LIKE ?",
                                (follower, f'%"{order_id}"%'))

    def create_mirror(self, **fields: Any) -> MirrorOrder:
        now = self.now()
        row = {**_column_defaults("mirrororder"), "created_at": now, "updated_at": now,
               **fields}
        row["leader_order_id"] = row.pop("leader_order")
        row["reason"] = redact(row["reason"])  # may quote a broker message
        mirror_id = self._insert("mirrororder", row)
        return MirrorOrder(id=mirror_id, **row)

    def update_mirror(self, mirror: MirrorOrder, **fields: Any) -> None:
        if "reason" in fields:  # may quote a broker message
            fields["reason"] = redact(fields["reason"])
        fields["updated_at"] = self.now()
        self._update("mirrororder", "id", mirror.id, fields)
        for key, value in fields.items():
            setattr(mirror, key, value)

    def apply_trigger(self, mirror: MirrorOrder, trigger: Trigger, detail: str = "") -> Transition:
        """Move a mirror through the state machine and record the event (same transaction
        as the caller's other writes)."""
        # The row, not the object: another thread may have moved it since it was read.
        before = MirrorState(self.db.execute_sql(
            "SELECT state FROM mirrororder WHERE id = ?", (mirror.id,)).fetchone()[0])
        step = transition(before, trigger)
        if step.changed:
            self.update_mirror(mirror, state=step.state.value)
            self.record_event(mirror, before, step.state, trigger, detail)
        return step

    def mirrors_to_cancel(self, *, follower: str | None, leader_order_ids: Collection[str],
                          states: Collection[str] | None) -> list[MirrorOrder]:
        """cancel-mirror's candidates, oldest first: every attempt of the leader orders
        named, or (`states` given) every mirror in one of `states`; of one follower or all."""
        where, params = ["1"], []
        if follower is not None:
            where.append("follower = ?")
            params.append(follower)
        if states is not None:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            params += sorted(states)
        else:
            where.append(f"leader_order_id IN ({', '.join('?' for _ in leader_order_ids)})")
            params += list(leader_order_ids)
        return self._select_all(MirrorOrder, "mirrororder",
                                " AND ".join(where) + " ORDER BY id", tuple(params))

    def cancel_asked(self, mirror_id: int) -> bool:
        """Whether any cancel of ours (follow's or cancel-mirror's) was ever committed for
        the mirror."""
        return self.db.execute_sql(
            "SELECT 1 FROM intent WHERE mirror_id = ? AND action = 'CANCEL' LIMIT 1",
            (mirror_id,)).fetchone() is not None

    def filled_without_fill_lag(self, leader_order_id: str) -> list[tuple[int, datetime]]:
        """(mirror id, when it went FILLED) of the leader order's filled mirrors that have
        no fill lag recorded yet."""
        rows = self.db.execute_sql(
            "SELECT m.id, MAX(e.at) FROM mirrororder m JOIN stateevent e ON e.mirror_id = m.id "
            "WHERE m.leader_order_id = ? AND m.state = 'FILLED' AND m.fill_lag_ms IS NULL "
            "AND e.to_state = 'FILLED' GROUP BY m.id", (leader_order_id,)).fetchall()
        return [(mirror_id, StateEvent.at.python_value(at)) for mirror_id, at in rows]

    def set_fill_lag(self, mirror_id: int, lag_ms: float) -> None:
        self.db.execute_sql("UPDATE mirrororder SET fill_lag_ms = ? WHERE id = ?",
                            (lag_ms, mirror_id))

    def leader_traded_at(self, order_id: str) -> datetime | None:
        """When the leader order was first seen fully traded (None: not yet, or unknown)."""
        row = self.db.execute_sql("SELECT traded_at FROM leaderorder WHERE order_id = ?",
                                  (order_id,)).fetchone()
        return LeaderOrder.traded_at.python_value(row[0]) if row else None

    def record_event(self, mirror: MirrorOrder, before: MirrorState, after: MirrorState,
                     trigger: Trigger, detail: str = "") -> None:
        """The event of a transition the caller made itself (a mirror created in its
        first state), in the same transaction."""
        self._insert("stateevent", {
            "mirror_id": mirror.id, "from_state": before.value, "to_state": after.value,
            "trigger": trigger.value, "at": self.now(), "detail": redact(detail)[:500]})

    def open_quantity_by_side(self, follower: str, security_id: str,
                              product_type: str) -> dict[str, int]:
        """Units still working in open mirrors, by side (BUY / SELL): orders on their way."""
        placeholders = ", ".join("?" for _ in OPEN_STATE_VALUES)
        rows = self.db.execute_sql(
            "SELECT transaction_type, SUM(MAX(quantity - filled_quantity, 0)) FROM mirrororder "
            "WHERE follower = ? AND security_id = ? AND product_type = ? "
            f"AND state IN ({placeholders}) GROUP BY transaction_type",
            (follower, security_id, product_type, *OPEN_STATE_VALUES),
        ).fetchall()
        return {side: int(units or 0) for side, units in rows}

    # ---- intents and audit -------------------------------------------------------------

    def add_intent(self, mirror: MirrorOrder, action: IntentAction | str,
                   request: dict) -> Intent:
        row = {"mirror_id": mirror.id, "action": IntentAction(action).value,
               "status": IntentStatus.SENDING.value,
               "request": json.dumps(request, sort_keys=True), "outcome": "",
               "created_at": self.now()}
        return Intent(id=self._insert("intent", row), **row)

    def unfinished_intents(self) -> list[tuple[int, str]]:
        """(intent id, follower) of every intent still SENDING, oldest first."""
        return [(row[0], row[1]) for row in self.db.execute_sql(
            "SELECT i.id, m.follower FROM intent i JOIN mirrororder m ON m.id = i.mirror_id "
            "WHERE i.status = 'SENDING' ORDER BY i.id").fetchall()]

    def last_ids(self) -> tuple[int, int]:
        """The newest intent and mirror ids: what a run adds comes after them."""
        row = self.db.execute_sql("SELECT (SELECT COALESCE(MAX(id), 0) FROM intent), "
                                  "(SELECT COALESCE(MAX(id), 0) FROM mirrororder)").fetchone()
        return int(row[0]), int(row[1])

    def intent_rows_after(self, after_id: int) -> list[IntentRow]:
        """Every intent after `after_id`, oldest first (a range on the rowid)."""
        return self._intent_rows("i.id > ? ORDER BY i.id", (after_id,))

    def intent_rows(self, intent_ids: Collection[int]) -> list[IntentRow]:
        """These intents, oldest first."""
        ids = sorted(intent_ids)
        rows: list[IntentRow] = []
        for start in range(0, len(ids), 400):  # well under SQLite's bound on variables
            chunk = ids[start:start + 400]
            rows += self._intent_rows(f"i.id IN ({', '.join('?' for _ in chunk)}) "
                                      "ORDER BY i.id", tuple(chunk))
        return rows

    def sending_intent_rows(self) -> list[IntentRow]:
        """Every intent still SENDING (through the status index), oldest first."""
        return self._intent_rows("i.status = 'SENDING' ORDER BY i.id", ())

    def _intent_rows(self, where: str, params: tuple) -> list[IntentRow]:
        return [IntentRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                          json.loads(row[7] or "{}"), row[8] or "")
                for row in self.db.execute_sql(_INTENT_ROWS + where, params).fetchall()]

    def finish_intent(self, intent: Intent, status: IntentStatus | str, outcome: str) -> None:
        """SENDING -> one outcome, once (core/intents.py); a second finish is a bug and
        raises, and the first outcome stays."""
        after = IntentStatus(status)  # a word outside the vocabulary raises here
        row = self.db.execute_sql("SELECT status FROM intent WHERE id = ?",
                                  (intent.id,)).fetchone()
        check_move(IntentStatus(row[0]), after)
        self.db.execute_sql("UPDATE intent SET status = ?, outcome = ?, completed_at = ? "
                            "WHERE id = ?", (after.value, redact(outcome)[:500], self.now(),
                                             intent.id))
        intent.status = after.value

    def last_audit_data(self, kind: str) -> dict | None:
        """The data of the newest audit event of `kind` (None: there is none)."""
        row = self.db.execute_sql("SELECT data FROM auditevent WHERE kind = ? "
                                  "ORDER BY id DESC LIMIT 1", (kind,)).fetchone()
        return json.loads(row[0] or "{}") if row else None

    def audit(self, kind: str, message: str, *, leader_order_id: str | None = None,
              follower: str | None = None, data: dict | None = None) -> None:
        self._insert("auditevent", {
            "at": self.now(), "kind": kind, "leader_order_id": leader_order_id,
            "follower": follower, "message": redact(message)[:1000],
            "data": json.dumps(redact_value(data or {}), sort_keys=True,
                               default=lambda value: redact(str(value)))})


@lru_cache(maxsize=16)
def _column_defaults(table: str) -> dict[str, Any]:
    """Peewee applies field defaults in Python, so plain INSERTs must too."""
    model = next(m for m in ALL_MODELS if m._meta.table_name == table)
    return {field.column_name: field.default for field in model._meta.sorted_fields
            if field.default is not None and not callable(field.default)}


def _from_db(model: type, row: dict[str, Any]) -> dict[str, Any]:
    """Raw column values -> what the model's fields hold (booleans, datetimes, keys)."""
    fields = model._meta.columns
    return {fields[name].name: fields[name].python_value(value) for name, value in row.items()}


def legs_of(mirror: MirrorOrder) -> Legs:
    return json.loads(mirror.legs or "{}")
