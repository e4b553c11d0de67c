"""The planner (pure): everything a follower's decision needs, as plain values -> actions.

`plan` is the one way a mirror is planned: the replicator for every leader report, and the
reconciler's replacement of an order cancelled outside copytrade (as a top-up of the ended
mirror). It sizes (core/sizing.py), applies the staleness policy to a first decision, and
decides (core/decide.py). No I/O and no callbacks: the caller gathers the inputs first (a
quote before its write transaction, never inside it; the lot size from the instrument list
and its mismatch audit), and gathers sizing's inputs only when `needs_size` says they are
used, which keeps duplicates and waits cheap on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from copytrade.core.decide import (
    Action,
    ActionKind,
    MirrorView,
    decide,
    drift_reason,
    ioc_limit_price,
    is_late_market,
    needs_size,
    stale_reason,
)
from copytrade.core.events import OrderReport
from copytrade.core.reasons import ReasonCode, ioc_placed_text
from copytrade.core.sizing import (
    NO_CAPS,
    Capital,
    Caps,
    LeaderOrder,
    NetPositions,
    SizedOrder,
    SizingRule,
    Skip,
    resize_total,
    size_order,
)

__all__ = ["PlanInputs", "needs_size", "plan", "size_for"]


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """One follower's decision on one leader order. The sizing fields (lot size onwards)
    are read only when `needs_size(leader, mirror, ...)` is true; `now` and `quote` only
    for a first decision (no mirror), where the staleness policy applies."""

    leader: OrderReport  # the merged state
    mirror: MirrorView | None  # the latest attempt, None before the first decision
    rule: SizingRule
    caps: Caps = NO_CAPS
    mirror_on_transit: bool = False
    lot_size: int | None = None  # the instrument list's, else the report's; None: unknown
    freeze_limit: int | None = None
    capital: Capital | None = None
    # Signed net positions: the leader's before this order, the follower's with what is on
    # its way counted (first decision), or as the mirror recorded them (later ones).
    positions: NetPositions | None = None
    now: datetime | None = None
    quote: float | None = None  # optional, for needs_quote orders: never required
    tick_size: float | None = None  # the instrument list's: prices a late market order
    max_order_age_seconds: float = 300.0
    max_price_drift_percent: float = 1.0
    # Why the segment takes no orders now (the trading calendar); "" while it does. A
    # leader AMO is still sent (as an AMO, for the next open).
    closed_reason: str = ""


def plan(inputs: PlanInputs) -> list[Action]:
    """The follower's actions for the leader order's current state."""
    sized = (size_for(inputs) if needs_size(inputs.leader, inputs.mirror,
                                            mirror_on_transit=inputs.mirror_on_transit)
             else None)
    actions = decide(inputs.leader, inputs.mirror, mirror_on_transit=inputs.mirror_on_transit,
                     sized=sized)
    if inputs.mirror is None and is_late_market(inputs.leader):
        return [_as_ioc(action, inputs) for action in actions]
    return actions


def chase_price(inputs: PlanInputs) -> float | None:
    """The IOC limit for a late market order; None when it cannot be priced (no fill price
    or no tick size known)."""
    leader = inputs.leader
    if leader.average_price <= 0 or not inputs.tick_size or inputs.tick_size <= 0:
        return None
    return ioc_limit_price(leader.transaction_type, leader.average_price,
                           inputs.max_price_drift_percent, inputs.tick_size)


def _as_ioc(action: Action, inputs: PlanInputs) -> Action:
    price = chase_price(inputs)
    if action.kind is not ActionKind.PLACE or price is None:
        return action  # a skip stays one; an unpriceable chase was skipped by size_for
    return replace(action, order_type="LIMIT", validity="IOC", price=price,
                   trigger_price=0.0, code=ReasonCode.LATE_MARKET_IOC,
                   reason=ioc_placed_text(price, inputs.leader.average_price,
                                          inputs.max_price_drift_percent))


def size_for(inputs: PlanInputs) -> SizedOrder | Skip:
    """The follower's order (its total, for a mirror that exists), or why none: a first
    decision on a stale leader order is not chased."""
    leader = inputs.leader
    # An unpriced order's value (for max_order_value) is judged at its trigger, if any.
    reference = leader.price or leader.trigger_price or None
    if inputs.mirror is None:
        why = _first_decision_skip(inputs)
        if why:
            return Skip(why)
        if is_late_market(leader):
            reference = chase_price(inputs)  # its value is judged at the IOC's limit
    order = LeaderOrder.from_report(leader)
    if inputs.mirror is None:
        return size_order(inputs.rule, order, inputs.lot_size, capital=inputs.capital,
                          positions=inputs.positions, caps=inputs.caps,
                          freeze_limit=inputs.freeze_limit, reference_price=reference)
    return resize_total(inputs.rule, order, inputs.lot_size, inputs.mirror.filled_quantity,
                        capital=inputs.capital, positions=inputs.positions, caps=inputs.caps,
                        freeze_limit=inputs.freeze_limit, reference_price=reference)


def _first_decision_skip(inputs: PlanInputs) -> str:
    """The staleness policy of a first decision: too old, or a late market order that
    cannot be bounded (no fill price, no tick) or a quote shows already beyond the bound."""
    if inputs.now is None:
        raise ValueError("a first decision needs `now` for the staleness policy")
    leader = inputs.leader
    why = stale_reason(leader, now=inputs.now, max_age_seconds=inputs.max_order_age_seconds)
    if why:
        return why
    if inputs.closed_reason and not leader.after_market_order:
        return inputs.closed_reason
    if not is_late_market(leader):
        return ""
    if leader.average_price <= 0:
        return "filled market order caught up late, and its fill price is unknown: not chased"
    if not inputs.tick_size or inputs.tick_size <= 0:
        return ("filled market order caught up late, and the instrument's tick size is "
                "unknown: the IOC limit cannot be priced, not chased")
    return drift_reason(leader, quote=inputs.quote,
                        max_drift_percent=inputs.max_price_drift_percent)
