"""Reads for the commands and the live table (never writes)."""

from __future__ import annotations

from dataclasses import dataclass

from peewee import fn

from copytrade.store.models import AuditEvent, LeaderOrder, MirrorOrder, StateEvent


@dataclass(frozen=True)
class MirrorRow:
    follower: str
    state: str
    quantity: int
    filled: int
    follower_order_id: str | None
    lag_ms: float | None
    fill_lag_ms: float | None
    reason: str
    attempt: int


@dataclass(frozen=True)
class OrderRow:
    order_id: str
    symbol: str
    security_id: str
    side: str
    quantity: int
    traded: int
    order_type: str
    price: float
    status: str
    placed_in_app: bool
    mirrors: dict[str, MirrorRow]  # follower -> its latest attempt


def recent_orders(limit: int = 30) -> list[OrderRow]:
    leaders = list(LeaderOrder.select().order_by(LeaderOrder.first_seen_at.desc())
                   .limit(limit))
    mirrors: dict[str, dict[str, MirrorRow]] = {}
    rows = (MirrorOrder.select()
            .where(MirrorOrder.leader_order.in_([leader.order_id for leader in leaders]))
            .order_by(MirrorOrder.attempt))
    for mirror in rows:
        mirrors.setdefault(mirror.leader_order_id, {})[mirror.follower] = MirrorRow(
            mirror.follower, mirror.state, mirror.quantity + mirror.carried_quantity,
            mirror.filled_quantity + mirror.carried_quantity, mirror.follower_order_id,
            mirror.lag_ms, mirror.fill_lag_ms, mirror.reason, mirror.attempt)
    return [OrderRow(leader.order_id, leader.symbol or leader.security_id, leader.security_id,
                     leader.transaction_type, leader.quantity, leader.traded_quantity,
                     leader.order_type, leader.price, leader.status, leader.placed_in_app,
                     mirrors.get(leader.order_id, {})) for leader in leaders]


def state_events_after(last_id: int, limit: int = 500) -> list[StateEvent]:
    return list(StateEvent.select(StateEvent, MirrorOrder).join(MirrorOrder)
                .where(StateEvent.id > last_id).order_by(StateEvent.id).limit(limit))


def audit_events_after(last_id: int, limit: int = 500) -> list[AuditEvent]:
    return list(AuditEvent.select().where(AuditEvent.id > last_id).order_by(AuditEvent.id)
                .limit(limit))


def last_event_ids() -> tuple[int, int]:
    """The newest state-event and audit ids: what a run prints starts after them."""
    state = StateEvent.select(fn.MAX(StateEvent.id)).scalar() or 0
    audit = AuditEvent.select(fn.MAX(AuditEvent.id)).scalar() or 0
    return state, audit


def lags_ms() -> list[float]:
    return [m.lag_ms for m in MirrorOrder.select(MirrorOrder.lag_ms)
            .where(MirrorOrder.lag_ms.is_null(False))]
