"""The exit legs of BO and CO orders: one mirror per (leader order, follower, leg).

The leader's legs 2 and 3 are recorded as they are reported (`leaderleg`); the
follower's, made by Dhan under its entry's order id, get their own mirror the first time
its stream or book shows them. Whichever side moves, `core.legs.decide_leg` says what the
follower's leg (or, before it exists, its entry) needs, and the intent is committed in the
caller's transaction, then handed to the follower's worker like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from copytrade.core.events import LEG_NAMES, OrderReport
from copytrade.core.ids import correlation_id
from copytrade.core.intents import IntentAction
from copytrade.core.legs import FollowerLegView, LeaderLegView, decide_leg
from copytrade.core.orders import MirrorState, Trigger
from copytrade.engine.mirrors import MirrorUpdater
from copytrade.store.models import LeaderLeg, MirrorOrder
from copytrade.store.repo import Store

MADE_BY_DHAN = "exit leg Dhan made when the follower's entry filled"


class ExitLegs:
    def __init__(self, store: Store, updater: MirrorUpdater,
                 trading_date: Callable[[], date]) -> None:
        self.store = store
        self.updater = updater
        self.trading_date = trading_date

    def decide(self, follower: str, order_id: str, leg: int) -> list[int]:
        """Intents (committed with the caller's transaction) for the follower's side of
        one leader leg, as both sides are recorded now."""
        leader = self.store.leader_leg(order_id, leg)
        entry = self.store.mirror(order_id, follower)
        if leader is None or entry is None or entry.shadow:
            return []
        mirror = self.store.mirror(order_id, follower, leg)
        actions = decide_leg(_leader_view(leader), _follower_view(mirror),
                             MirrorState(entry.state))
        intents = []
        for action in actions:
            if mirror is None:  # the follower's entry is still working: it is cancelled
                self.store.update_mirror(entry, reason=action.reason)
                intents.append(self.store.add_intent(entry, IntentAction.CANCEL,
                                                     {"reason": action.reason}).id)
                continue
            self.store.update_mirror(mirror, price=action.price,
                                     trigger_price=action.trigger_price,
                                     order_type=action.order_type,
                                     modifications=mirror.modifications + 1)
            self.store.audit("leg", f"{action.reason}: {action.order_type} "
                             f"{action.price:g}/{action.trigger_price:g}",
                             leader_order_id=order_id, follower=follower)
            intents.append(self.store.add_intent(mirror, IntentAction.MODIFY, {"modify": {
                "order_type": action.order_type, "quantity": action.quantity,
                "price": action.price, "trigger_price": action.trigger_price,
                "disclosed_quantity": 0, "validity": "DAY",
                "leg_name": LEG_NAMES[leg]}}).id)
        return intents

    def mirror_for(self, entry: MirrorOrder, report: OrderReport) -> tuple[MirrorOrder, bool]:
        """The mirror of the follower's exit leg `report` (of `entry`'s order), made the
        first time the leg is seen; True when made now."""
        found = self.store.mirror(entry.leader_order_id, entry.follower, report.leg)
        if found is not None:
            return found, False
        mirror = self.store.create_mirror(
            leader_order=entry.leader_order_id, follower=entry.follower, leg=report.leg,
            attempt=1, correlation_id=correlation_id(
                self.trading_date(), entry.leader_order_id, entry.follower, report.leg, 1),
            state=MirrorState.SUBMITTED.value, security_id=entry.security_id,
            product_type=entry.product_type, transaction_type=report.transaction_type,
            quantity=report.quantity, price=report.price, trigger_price=report.trigger_price,
            order_type=report.order_type, shadow=entry.shadow)
        self.store.record_event(mirror, MirrorState.PLANNED, MirrorState.SUBMITTED,
                                Trigger.SUBMIT, MADE_BY_DHAN)
        self.updater.adopt_order_ids(mirror.id, [report.order_id])
        return self.store.mirror_by_id(mirror.id), True


def _leader_view(leg: LeaderLeg) -> LeaderLegView:
    return LeaderLegView(leg.leg, leg.status, leg.order_type, leg.quantity,
                         leg.traded_quantity, leg.price, leg.trigger_price, leg.first_price,
                         leg.first_trigger_price)


def _follower_view(mirror: MirrorOrder | None) -> FollowerLegView | None:
    if mirror is None:
        return None
    return FollowerLegView(MirrorState(mirror.state), mirror.quantity, mirror.price,
                           mirror.trigger_price, mirror.order_type)
