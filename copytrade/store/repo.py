"""Every write the engine makes, each in one short transaction under one writer lock.

SQLite allows one writer at a time; serialising our own threads here keeps them from
meeting SQLITE_BUSY, and WAL keeps readers (mappings, audit) unblocked meanwhile.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from peewee import SqliteDatabase

from copytrade.core.events import OrderReport
from copytrade.core.orders import OPEN_STATES, MirrorState, Transition, Trigger, transition
from copytrade.store.models import AuditEvent, Intent, LeaderOrder, MirrorOrder, StateEvent

Legs = dict[str, list[Any]]  # follower order id -> [status, traded, quantity]


class Store:
    def __init__(self, db: SqliteDatabase, now: Callable[[], datetime]) -> None:
        self.db = db
        self.now = now
        self.lock = threading.RLock()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self.lock, self.db.atomic():
            yield

    # ---- leader orders -------------------------------------------------------------------

    def save_leader(self, report: OrderReport, version: tuple, trading_date: str) -> None:
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
            correlation_id=report.correlation_id, reason=report.reason,
            version=json.dumps(version), leader_updated_at=report.updated_at,
        )
        now = self.now()
        if report.status == "TRADED":
            fields["traded_at"] = now
        updated = (LeaderOrder.update(**fields)
                   .where(LeaderOrder.order_id == report.order_id).execute())
        if not updated:
            LeaderOrder.create(order_id=report.order_id, first_seen_at=now, **fields)
        elif report.status == "TRADED":
            # keep the first moment it was seen traded: the fill lag is measured from it
            LeaderOrder.update(traded_at=now).where(
                (LeaderOrder.order_id == report.order_id) & LeaderOrder.traded_at.is_null()
            ).execute()

    # ---- mirrors ---------------------------------------------------------------------------

    def mirror(self, leader_order_id: str, follower: str, leg: int = 1) -> MirrorOrder | None:
        return (MirrorOrder.select()
                .where((MirrorOrder.leader_order == leader_order_id)
                       & (MirrorOrder.follower == follower) & (MirrorOrder.leg == leg))
                .order_by(MirrorOrder.attempt.desc()).first())

    def mirror_by_id(self, mirror_id: int) -> MirrorOrder:
        return MirrorOrder.get_by_id(mirror_id)

    def mirror_for_follower_order(self, follower: str, order_id: str,
                                  correlation_id: str) -> MirrorOrder | None:
        if correlation_id:
            found = MirrorOrder.get_or_none(MirrorOrder.correlation_id == correlation_id)
            if found is not None and found.follower == follower:
                return found
        return (MirrorOrder.select()
                .where((MirrorOrder.follower == follower)
                       & MirrorOrder.legs.contains(f'"{order_id}"')).first())

    def create_mirror(self, **fields: Any) -> MirrorOrder:
        now = self.now()
        return MirrorOrder.create(created_at=now, updated_at=now, **fields)

    def update_mirror(self, mirror: MirrorOrder, **fields: Any) -> None:
        fields["updated_at"] = self.now()
        MirrorOrder.update(**fields).where(MirrorOrder.id == mirror.id).execute()
        for key, value in fields.items():
            setattr(mirror, key, value)

    def apply_trigger(self, mirror: MirrorOrder, trigger: Trigger, detail: str = "") -> Transition:
        """Move a mirror through the state machine and record the event (same transaction
        as the caller's other writes)."""
        # The row, not the object: another thread may have moved it since it was read.
        before = MirrorState(MirrorOrder.select(MirrorOrder.state)
                             .where(MirrorOrder.id == mirror.id).scalar())
        step = transition(before, trigger)
        if step.changed:
            self.update_mirror(mirror, state=step.state.value)
            StateEvent.create(mirror=mirror.id, from_state=before.value,
                              to_state=step.state.value, trigger=trigger.value, at=self.now(),
                              detail=detail[:500])
        return step

    def open_quantity_on_side(self, follower: str, security_id: str, product_type: str,
                              transaction_type: str) -> int:
        """Units still working in open mirrors on one side: exits already on their way."""
        rows = MirrorOrder.select(MirrorOrder.quantity, MirrorOrder.filled_quantity).where(
            (MirrorOrder.follower == follower) & (MirrorOrder.security_id == security_id)
            & (MirrorOrder.product_type == product_type)
            & (MirrorOrder.transaction_type == transaction_type)
            & (MirrorOrder.state.in_([s.value for s in OPEN_STATES])))
        return sum(max(r.quantity - r.filled_quantity, 0) for r in rows)

    # ---- intents and audit -------------------------------------------------------------

    def add_intent(self, mirror: MirrorOrder, action: str, request: dict) -> Intent:
        return Intent.create(mirror=mirror.id, action=action, status="SENDING",
                             request=json.dumps(request, sort_keys=True), created_at=self.now())

    def finish_intent(self, intent: Intent, status: str, outcome: str) -> None:
        Intent.update(status=status, outcome=outcome[:500], completed_at=self.now()).where(
            Intent.id == intent.id).execute()

    def audit(self, kind: str, message: str, *, leader_order_id: str | None = None,
              follower: str | None = None, data: dict | None = None) -> None:
        AuditEvent.create(at=self.now(), kind=kind, leader_order_id=leader_order_id,
                          follower=follower, message=message[:1000],
                          data=json.dumps(data or {}, sort_keys=True, default=str))


def legs_of(mirror: MirrorOrder) -> Legs:
    return json.loads(mirror.legs or "{}")
