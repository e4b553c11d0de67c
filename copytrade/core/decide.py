"""The decision core (pure): a leader order's merged state + one follower's mirror of it
-> what to do for that follower. Follow, the catch-up barrier and reconciliation all
call this one function, so there is one way an order gets mirrored.

It converges on a desired state rather than replaying events: the same inputs give the
same answer however many times, and in whatever order, the reports arrived.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from copytrade.core.events import OrderReport
from copytrade.core.orders import TERMINAL_STATES, MirrorState
from copytrade.core.sizing import SizedOrder, Skip

MAX_MODIFICATIONS = 25
UNPRICED_TYPES = frozenset({"MARKET", "STOP_LOSS_MARKET"})
UNTRIGGERED_TYPES = frozenset({"LIMIT", "MARKET"})
ENDED_WITHOUT_FILL = frozenset({"CANCELLED", "EXPIRED", "REJECTED"})


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


SizeFn = Callable[[], SizedOrder | Skip]


def effective_price(order_type: str, price: float) -> float:
    return 0.0 if order_type in UNPRICED_TYPES else price


def effective_trigger(order_type: str, trigger_price: float) -> float:
    return 0.0 if order_type in UNTRIGGERED_TYPES else trigger_price


def decide(leader: OrderReport, mirror: MirrorView | None, *, mirror_on_transit: bool,
           size: SizeFn) -> list[Action]:
    if mirror is None:
        return _first_decision(leader, mirror_on_transit, size)
    if mirror.state in TERMINAL_STATES or mirror.state is MirrorState.PENDING_CANCEL:
        return []
    if leader.status in ENDED_WITHOUT_FILL:
        return [Action(ActionKind.CANCEL, reason=f"leader order {leader.status.lower()}")]
    if leader.is_terminal:  # TRADED: the leader is done; the follower's order stands
        return []
    return _follow_changes(leader, mirror, size)


def _first_decision(leader: OrderReport, mirror_on_transit: bool, size: SizeFn) -> list[Action]:
    if leader.status == "REJECTED":
        why = f": {leader.reason}" if leader.reason else ""
        return [Action(ActionKind.SKIP, reason=f"leader order rejected{why}")]
    if leader.status in ENDED_WITHOUT_FILL:
        traded = f" after trading {leader.traded_quantity}" if leader.traded_quantity else ""
        return [Action(ActionKind.SKIP, reason=f"leader order {leader.status.lower()}{traded} "
                                                "before it could be mirrored")]
    if not leader.exchange_accepted and not (mirror_on_transit and leader.status == "TRANSIT"):
        return []  # wait: an order in transit can still be rejected by the leader's broker
    sized = size()
    if isinstance(sized, Skip):
        return [Action(ActionKind.SKIP, reason=sized.reason)]
    return [Action(ActionKind.PLACE, quantity=sized.quantity,
                   price=effective_price(leader.order_type, leader.price),
                   trigger_price=effective_trigger(leader.order_type, leader.trigger_price),
                   order_type=leader.order_type, disclosed_quantity=sized.disclosed_quantity,
                   slice=sized.slice)]


def _follow_changes(leader: OrderReport, mirror: MirrorView, size: SizeFn) -> list[Action]:
    sized = size()
    if isinstance(sized, Skip):
        return [Action(ActionKind.CANCEL, reason=f"leader modified: {sized.reason}")]
    quantity = max(sized.quantity, mirror.filled_quantity)
    price = effective_price(leader.order_type, leader.price)
    trigger = effective_trigger(leader.order_type, leader.trigger_price)
    unchanged = (quantity == mirror.quantity and price == mirror.price
                 and trigger == mirror.trigger_price and leader.order_type == mirror.order_type)
    if unchanged:
        return []
    if quantity <= mirror.filled_quantity:
        return [Action(ActionKind.CANCEL, reason="leader reduced the order to what the "
                                                 "follower already filled")]
    kind = (ActionKind.REPLACE if mirror.modifications >= MAX_MODIFICATIONS or mirror.sliced
            else ActionKind.MODIFY)
    return [Action(kind, quantity=quantity, price=price, trigger_price=trigger,
                   order_type=leader.order_type, disclosed_quantity=sized.disclosed_quantity,
                   slice=sized.slice,
                   reason="past 25 modifications" if kind is ActionKind.REPLACE else "")]
