"""The exit legs of a BO or CO (pure): a leader leg's state + the follower's same leg ->
what to do on the follower's.

Dhan makes the exit legs itself when an entry fills: leg 2 (stop-loss) and, for a BO,
leg 3 (target), under the entry's order id. The follower's legs are made the same way from
its own fill and its BO values, so nothing is placed for them; what the leader does to its
legs afterwards is mirrored:
- it moves a leg (a new trigger or price): the follower's leg moves to the same levels;
- it exits through a leg (the leg trades): the follower's leg exits at market, and Dhan
  cancels its other leg, as it did the leader's. If the follower's entry has not filled
  yet, it is cancelled instead: the leader is out, the follower must not go in.
Converges on state: the same inputs give the same answer however often they are seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from copytrade.core.decide import Action, ActionKind, effective_price, effective_trigger
from copytrade.core.events import OrderStatus
from copytrade.core.orders import MirrorState

LEG_WORDS = {2: "stop-loss", 3: "target"}
# An entry mirror in these states still has (part of) its order working at the broker.
WORKING_ENTRY_STATES = frozenset({MirrorState.SUBMITTED, MirrorState.ACCEPTED,
                                  MirrorState.PARTIALLY_FILLED})
EXIT_ORDER_TYPE = "MARKET"


@dataclass(frozen=True)
class LeaderLegView:
    leg: int
    status: str
    order_type: str
    quantity: int
    traded_quantity: int
    price: float
    trigger_price: float
    first_price: float  # as Dhan set the leg when it made it
    first_trigger_price: float

    @property
    def exited(self) -> bool:
        return self.status == OrderStatus.TRADED or self.traded_quantity >= self.quantity > 0

    @property
    def open(self) -> bool:
        return self.status in (OrderStatus.TRANSIT, OrderStatus.PENDING,
                               OrderStatus.PART_TRADED, OrderStatus.TRIGGERED)

    @property
    def moved(self) -> bool:
        """The leader changed the leg after Dhan made it."""
        return (self.price, self.trigger_price) != (self.first_price, self.first_trigger_price)


@dataclass(frozen=True)
class FollowerLegView:
    state: MirrorState
    quantity: int
    price: float
    trigger_price: float
    order_type: str


def decide_leg(leader: LeaderLegView, follower: FollowerLegView | None,
               entry: MirrorState | None) -> list[Action]:
    """Actions on the follower's leg; with no follower leg yet, on its entry mirror."""
    word = LEG_WORDS.get(leader.leg, f"leg {leader.leg}")
    if follower is None:
        if leader.exited and entry in WORKING_ENTRY_STATES:
            return [Action(ActionKind.CANCEL, reason=f"leader exited through its {word} leg "
                           "before the follower's entry filled")]
        return []
    if follower.state not in (MirrorState.SUBMITTED, MirrorState.ACCEPTED,
                              MirrorState.PARTIALLY_FILLED):
        return []  # ended, or being cancelled: nothing left to move
    if leader.exited:
        if follower.order_type == EXIT_ORDER_TYPE:
            return []  # the exit is asked already
        return [Action(ActionKind.MODIFY, quantity=follower.quantity,
                       order_type=EXIT_ORDER_TYPE,
                       reason=f"leader exited through its {word} leg: the follower's exits "
                              "at market")]
    if not (leader.open and leader.moved):
        return []
    price = effective_price(follower.order_type, leader.price)
    trigger = effective_trigger(follower.order_type, leader.trigger_price)
    if (price, trigger) == (effective_price(follower.order_type, follower.price),
                            effective_trigger(follower.order_type, follower.trigger_price)):
        return []
    return [Action(ActionKind.MODIFY, quantity=follower.quantity, price=price,
                   trigger_price=trigger, order_type=follower.order_type,
                   reason=f"leader moved its {word} leg")]
