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

from dataclasses import dataclass
from datetime import datetime

from copytrade.core.decide import Action, MirrorView, decide, needs_size, stale_reason
from copytrade.core.events import OrderReport
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
    quote: float | None = None  # fetched before the transaction, for needs_quote orders
    max_order_age_seconds: float = 300.0
    max_price_drift_percent: float = 1.0


def plan(inputs: PlanInputs) -> list[Action]:
    """The follower's actions for the leader order's current state."""
    sized = (size_for(inputs) if needs_size(inputs.leader, inputs.mirror,
                                            mirror_on_transit=inputs.mirror_on_transit)
             else None)
    return decide(inputs.leader, inputs.mirror, mirror_on_transit=inputs.mirror_on_transit,
                  sized=sized)


def size_for(inputs: PlanInputs) -> SizedOrder | Skip:
    """The follower's order (its total, for a mirror that exists), or why none: a first
    decision on a stale leader order is not chased."""
    leader = inputs.leader
    if inputs.mirror is None:
        if inputs.now is None:
            raise ValueError("a first decision needs `now` for the staleness policy")
        reason = stale_reason(leader, now=inputs.now,
                              max_age_seconds=inputs.max_order_age_seconds,
                              max_drift_percent=inputs.max_price_drift_percent,
                              quote=inputs.quote)
        if reason:
            return Skip(reason)
    order = LeaderOrder.from_report(leader)
    # An unpriced order's value (for max_order_value) is judged at its trigger, if any.
    reference = leader.price or leader.trigger_price or None
    if inputs.mirror is None:
        return size_order(inputs.rule, order, inputs.lot_size, capital=inputs.capital,
                          positions=inputs.positions, caps=inputs.caps,
                          freeze_limit=inputs.freeze_limit, reference_price=reference)
    return resize_total(inputs.rule, order, inputs.lot_size, inputs.mirror.filled_quantity,
                        capital=inputs.capital, positions=inputs.positions, caps=inputs.caps,
                        freeze_limit=inputs.freeze_limit, reference_price=reference)
