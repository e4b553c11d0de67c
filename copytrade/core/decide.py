"""The decision core (pure): a leader order's merged state + one follower's mirror of it
+ the follower's order as sized -> what to do for that follower. core/plan.py wraps it
with sizing and staleness; follow, the catch-up barrier and the reconciler's replacements
all go through that one planner, so there is one way an order gets mirrored.

It converges on a desired state rather than replaying events: the same inputs give the
same answer however many times, and in whatever order, the reports arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum

from copytrade.core.events import (
    ENDED_WITHOUT_FILL,
    OrderReport,
    OrderStatus,
    ReportSource,
    bracket_values_known,
)
from copytrade.core.orders import TERMINAL_STATES, MirrorState
from copytrade.core.reasons import IOC_CHASES, REOPENABLE_CANCELS, REOPENABLE_SKIPS, ReasonCode
from copytrade.core.sizing import SizedOrder, Skip

MAX_MODIFICATIONS = 25
UNPRICED_TYPES = frozenset({"MARKET", "STOP_LOSS_MARKET"})
UNTRIGGERED_TYPES = frozenset({"LIMIT", "MARKET"})
REDUCED_TO_FILLED = "leader reduced the order to what the follower already filled"
RESIZED_AWAY = "leader modified: "  # prefix of a cancel because the new size is nothing


def is_reopenable(state: MirrorState, code: str, *, shadow: bool = False) -> bool:
    """Whether a mirror that ended should take a top-up when the leader grows its order:
    filled, skipped or cancelled by us for size; never rejected, never cancelled in the
    follower's app (that is a divergence to report, not to undo). Keyed on the reason's
    code, never its wording."""
    if shadow:
        return False
    if state is MirrorState.FILLED:
        return True
    if state is MirrorState.SKIPPED:
        return code in REOPENABLE_SKIPS
    if state is MirrorState.CANCELED:
        return code in REOPENABLE_CANCELS
    return False


def is_chase(code: str) -> bool:
    """Whether a mirror's reason code marks an IOC chase of a late market order."""
    return code in IOC_CHASES


class ActionKind(StrEnum):
    PLACE = "PLACE"
    MODIFY = "MODIFY"
    CANCEL = "CANCEL"
    REPLACE = "REPLACE"  # past Dhan's 25 modifications: cancel, then place anew
    SKIP = "SKIP"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    quantity: int = 0
    price: float = 0.0
    trigger_price: float = 0.0
    order_type: str = ""
    disclosed_quantity: int = 0
    slice: bool = False
    reason: str = ""
    code: ReasonCode = ReasonCode.NONE  # stored beside the reason: what follow acts on
    validity: str = ""  # "" : the leader's
    # What changed the size on the way (sizing's notes), recorded with a place for
    # `explain`; not part of what the action does, so not compared.
    notes: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class MirrorView:
    """What the store knows of a follower's mirror: its state and desired parameters."""

    state: MirrorState
    quantity: int
    filled_quantity: int
    price: float
    trigger_price: float
    order_type: str
    modifications: int
    sliced: bool = False
    # Ended in a way a larger leader order should re-open: filled, skipped for size, or
    # cancelled by us because the leader shrank. Not: rejected, or cancelled in the app.
    reopenable: bool = False
    # An IOC chase of a late market order: decided once; the exchange fills or ends it.
    chase: bool = False


def is_late_market(leader: OrderReport) -> bool:
    """A market (or stop-loss market) order first seen already filled: it cannot be
    mirrored as it was, so it is chased with an IOC limit order (core/plan.py)."""
    return leader.status == OrderStatus.TRADED and leader.order_type in UNPRICED_TYPES


def needs_quote(leader: OrderReport) -> bool:
    """Whether a quote could add to the decision: only for a late market order, and only
    as an extra check (the IOC limit bounds the drift at the exchange without one)."""
    return is_late_market(leader)


def is_pending_amo(leader: OrderReport) -> bool:
    """A leader AMO not yet traded: Dhan holds it until the open, so its age says nothing
    about how far the market has moved since (the follower's joins the same open)."""
    return (leader.after_market_order and leader.traded_quantity == 0
            and leader.status in (OrderStatus.TRANSIT, OrderStatus.PENDING))


def stale_reason(leader: OrderReport, *, now: datetime, max_age_seconds: float) -> str:
    """Why a leader order first seen late is not chased ("" to mirror it): older than the
    follower's max_order_age_seconds. A pending AMO is mirrored whatever its age."""
    if leader.created_at is None or is_pending_amo(leader):
        return ""
    age = (now - leader.created_at).total_seconds()
    if age > max_age_seconds:
        return (f"leader order is {age:.0f} s old, beyond max_order_age_seconds "
                f"{max_age_seconds:g}: not chased")
    return ""


def drift_reason(leader: OrderReport, *, quote: float | None, max_drift_percent: float) -> str:
    """A quote, where one was cheaply at hand, that shows the price already beyond the
    bound: the IOC could not fill, so it is not sent. No quote: "" (the IOC decides)."""
    filled_at = leader.average_price
    if quote is None or quote <= 0 or filled_at <= 0:
        return ""
    drift = abs(quote - filled_at) / filled_at * 100
    if drift <= max_drift_percent:
        return ""
    return (f"price moved {drift:.2f}% since the leader filled at {filled_at:g}, beyond "
            f"max_price_drift_percent {max_drift_percent:g}: not chased")


def ioc_limit_price(side: str, fill_price: float, drift_percent: float, tick: float) -> float:
    """The IOC limit for a late market order: the leader's average fill moved by the drift
    bound against the follower, rounded to the tick toward safety (down for a buy, up for
    a sell) so the bound is never exceeded. Decimal: 0.1 + 0.2 must land on a tick."""
    step = Decimal(str(tick))
    factor = Decimal(str(drift_percent)) / 100
    buying = side == "BUY"
    bound = Decimal(str(fill_price)) * (1 + factor if buying else 1 - factor)
    ticks = (bound / step).to_integral_value(ROUND_FLOOR if buying else ROUND_CEILING)
    return float(max(ticks, Decimal(1)) * step)


def effective_price(order_type: str, price: float) -> float:
    return 0.0 if order_type in UNPRICED_TYPES else price


def effective_trigger(order_type: str, trigger_price: float) -> float:
    return 0.0 if order_type in UNTRIGGERED_TYPES else trigger_price


def leader_trigger(leader: OrderReport) -> float:
    """The trigger the follower's order carries: a CO's is its stop-loss, whatever its
    entry's order type (a LIMIT or MARKET entry)."""
    if leader.product_type == "CO":
        return leader.trigger_price
    return effective_trigger(leader.order_type, leader.trigger_price)


def needs_size(leader: OrderReport, mirror: MirrorView | None, *,
               mirror_on_transit: bool) -> bool:
    """Whether `decide` will use a size for these inputs: callers gather sizing's inputs
    (lot size, positions, the clock) only then, which keeps duplicates and waits cheap."""
    return _unsized(leader, mirror, mirror_on_transit) is None


def decide(leader: OrderReport, mirror: MirrorView | None, *, mirror_on_transit: bool,
           sized: SizedOrder | Skip | None) -> list[Action]:
    """The actions for one follower. `sized` is the follower's order sized for the leader's
    current state (its total, for a mirror that exists); None is accepted only where
    `needs_size` says no size is used."""
    decided = _unsized(leader, mirror, mirror_on_transit)
    if decided is not None:
        return decided
    if sized is None:
        raise ValueError(f"leader order {leader.order_id} {leader.status} needs a size")
    if mirror is None:
        return _first_place(leader, sized)
    if mirror.state in TERMINAL_STATES:
        return _top_up(leader, mirror, sized)
    return _follow_changes(leader, mirror, sized)  # TRADED too: its last change may be news


def _unsized(leader: OrderReport, mirror: MirrorView | None,
             mirror_on_transit: bool) -> list[Action] | None:
    """The decisions that need no size; None where the size decides."""
    if mirror is None:
        return _first_unsized(leader, mirror_on_transit)
    if mirror.state is MirrorState.PENDING_CANCEL or mirror.chase:
        return []
    if mirror.state in TERMINAL_STATES:
        reopen = mirror.reopenable and leader.status not in ENDED_WITHOUT_FILL
        return None if reopen else []
    if leader.status in ENDED_WITHOUT_FILL:
        return [Action(ActionKind.CANCEL, reason=f"leader order {leader.status.lower()}")]
    return None


def _first_unsized(leader: OrderReport, mirror_on_transit: bool) -> list[Action] | None:
    if leader.status == OrderStatus.REJECTED:
        why = f": {leader.reason}" if leader.reason else ""
        return [Action(ActionKind.SKIP, reason=f"leader order rejected{why}")]
    if leader.status in ENDED_WITHOUT_FILL:
        traded = f" after trading {leader.traded_quantity}" if leader.traded_quantity else ""
        return [Action(ActionKind.SKIP, reason=f"leader order {leader.status.lower()}{traded} "
                                                "before it could be mirrored")]
    if not leader.exchange_accepted and not (mirror_on_transit
                                             and leader.status == OrderStatus.TRANSIT):
        return []  # wait: an order in transit can still be rejected by the leader's broker
    if not bracket_values_known(leader):
        if leader.source is ReportSource.STREAM:
            return []  # wait: the stream does not carry a BO's values, its REST row does
        missing = ("profit and stop-loss values" if leader.product_type == "BO"
                   else "stop-loss trigger")
        return [Action(ActionKind.SKIP, reason=f"leader {leader.product_type} order without "
                       f"its {missing}: the follower's cannot be placed")]
    return None


def _first_place(leader: OrderReport, sized: SizedOrder | Skip) -> list[Action]:
    if isinstance(sized, Skip):
        return [Action(ActionKind.SKIP, reason=sized.reason, code=sized.code)]
    return [Action(ActionKind.PLACE, quantity=sized.quantity,
                   price=effective_price(leader.order_type, leader.price),
                   trigger_price=leader_trigger(leader),
                   order_type=leader.order_type, disclosed_quantity=sized.disclosed_quantity,
                   slice=sized.slice, notes=sized.notes)]


def _top_up(leader: OrderReport, mirror: MirrorView, sized: SizedOrder | Skip) -> list[Action]:
    """The leader grew an order whose mirror had ended: place the difference anew."""
    if isinstance(sized, Skip) or sized.quantity <= mirror.filled_quantity:
        return []
    return [Action(ActionKind.PLACE, quantity=sized.quantity - mirror.filled_quantity,
                   price=effective_price(leader.order_type, leader.price),
                   trigger_price=leader_trigger(leader),
                   order_type=leader.order_type, disclosed_quantity=sized.disclosed_quantity,
                   slice=sized.slice, reason="leader grew the order", notes=sized.notes)]


def _follow_changes(leader: OrderReport, mirror: MirrorView,
                    sized: SizedOrder | Skip) -> list[Action]:
    if isinstance(sized, Skip):
        return [Action(ActionKind.CANCEL, reason=f"{RESIZED_AWAY}{sized.reason}",
                       code=ReasonCode.RESIZED_AWAY)]
    quantity = max(sized.quantity, mirror.filled_quantity)
    price = effective_price(leader.order_type, leader.price)
    trigger = leader_trigger(leader)
    unchanged = (quantity == mirror.quantity and price == mirror.price
                 and trigger == mirror.trigger_price and leader.order_type == mirror.order_type)
    if unchanged:
        return []
    if quantity <= mirror.filled_quantity:
        return [Action(ActionKind.CANCEL, reason=REDUCED_TO_FILLED,
                       code=ReasonCode.REDUCED_TO_FILLED)]
    if mirror.modifications >= MAX_MODIFICATIONS:
        kind, reason = ActionKind.REPLACE, f"past {MAX_MODIFICATIONS} modifications"
    elif mirror.sliced or sized.slice:
        kind, reason = ActionKind.REPLACE, "a sliced order is replaced, not modified"
    else:
        kind, reason = ActionKind.MODIFY, ""
    return [Action(kind, quantity=quantity, price=price, trigger_price=trigger,
                   order_type=leader.order_type, disclosed_quantity=sized.disclosed_quantity,
                   slice=sized.slice, reason=reason)]
