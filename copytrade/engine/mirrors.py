"""Applying what a follower's broker reports to its mirror rows: the one place both the
follower's order stream and the worker's replies and lookups go through. Callers hold
`Store.write()`; each method reads the mirror afresh inside it, because the stream and
the worker write the same row from two threads."""

from __future__ import annotations

import json
from collections.abc import Callable

from copytrade.core.events import ENTRY_LEG, OrderReport, OrderStatus, leg_key
from copytrade.core.leader import status_rank
from copytrade.core.orders import InvalidTransition, MirrorState, Trigger, trigger_for_legs
from copytrade.core.reasons import ReasonCode, ioc_unfilled_text
from copytrade.core.report_math import weighted_average
from copytrade.engine.positions import PositionBook
from copytrade.store.models import MirrorOrder
from copytrade.store.repo import Store, legs_of

CANCELLED_OUTSIDE = "cancelled outside copytrade (e.g. in Dhan's app)"
# The broker has the order: the first of these sets the mirror's acked_at.
ACKED_STATES = frozenset({MirrorState.ACCEPTED, MirrorState.PARTIALLY_FILLED,
                          MirrorState.FILLED})


class MirrorUpdater:
    def __init__(self, store: Store, positions: Callable[[str], PositionBook],
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.positions = positions
        self.on_change = on_change
        # (follower, order id) -> traded when positions were read at start.
        self.traded_at_start: dict[tuple[str, str], int] = {}
        # follower -> max_price_drift_percent, to word an IOC chase that ended unfilled
        # (filled in by the replicator, which holds the followers' settings).
        self.ioc_drift: dict[str, float] = {}

    def adopt_order_ids(self, mirror_id: int, order_ids: list[str]) -> None:
        mirror = self.store.mirror_by_id(mirror_id)  # fresh: the stream may have written
        legs = legs_of(mirror)
        for order_id in order_ids:
            legs.setdefault(order_id, [OrderStatus.TRANSIT.value, 0, 0])
        first = mirror.follower_order_id or (order_ids[0] if order_ids else None)
        self.store.update_mirror(mirror, legs=json.dumps(legs), follower_order_id=first)
        self._step(mirror, trigger_for_legs(legs, mirror.quantity), "order accepted")

    def apply_report(self, mirror_id: int, report: OrderReport) -> None:
        mirror = self.store.mirror_by_id(mirror_id)  # fresh: a worker may have written
        legs = legs_of(mirror)
        previous = legs.get(report.order_id, [OrderStatus.TRANSIT.value, 0, report.quantity])
        status = (report.status if status_rank(report.status) >= status_rank(previous[0])
                  else previous[0])
        legs[report.order_id] = [status, max(previous[1], report.traded_quantity),
                                 report.quantity]
        traded = sum(leg[1] for leg in legs.values())
        # Fills already inside the positions read at start are not counted again.
        in_snapshot = sum(self.traded_at_start.get((mirror.follower, leg_key(oid, mirror.leg)), 0)
                          for oid in legs)
        delta = traded - max(mirror.filled_quantity, in_snapshot)
        if delta > 0:
            self.positions(mirror.follower).apply_fill(
                mirror.security_id, mirror.product_type, mirror.transaction_type, delta)
        fields: dict = {"legs": json.dumps(legs), "filled_quantity": max(traded,
                                                                          mirror.filled_quantity)}
        if not mirror.follower_order_id:
            fields["follower_order_id"] = report.order_id
        fields.update(_average_prices(mirror, legs, report, previous[1]))
        # The broker's reason for a rejection or expiry; a cancel keeps the reason we gave
        # it (the decision core reads it: was it ours, and may a larger order re-open it).
        if report.reason and (status in (OrderStatus.REJECTED, OrderStatus.EXPIRED)
                              or (status == OrderStatus.CANCELLED and not mirror.reason)):
            fields["reason"] = report.reason
        if mirror.reason_code == ReasonCode.LATE_MARKET_IOC.value:
            fields.update(self._ioc_end(mirror, status, traded))
        elif (status == OrderStatus.CANCELLED and previous[0] != OrderStatus.CANCELLED
                and mirror.leg == ENTRY_LEG and self._not_ours(mirror)):
            # (an exit leg's cancel is Dhan's: its other leg traded, or the entry ended)
            fields["reason"] = CANCELLED_OUTSIDE
            fields["reason_code"] = ReasonCode.CANCELLED_OUTSIDE.value
            self.store.audit("divergence", f"CANCELLED_OUTSIDE: follower order "
                             f"{report.order_id} was cancelled outside copytrade",
                             follower=mirror.follower, leader_order_id=mirror.leader_order_id)
        self.store.update_mirror(mirror, **fields)
        self._step(mirror, trigger_for_legs(legs, mirror.quantity), report.reason)

    def _ioc_end(self, mirror: MirrorOrder, status: str, traded: int) -> dict:
        """An IOC chase the exchange ended (cancelled or expired) short of its quantity: the
        market had moved past the bound. Expected, so not a cancel from outside."""
        if status not in (OrderStatus.CANCELLED, OrderStatus.EXPIRED) or traded >= mirror.quantity:
            return {}
        drift = self.ioc_drift.get(mirror.follower, 1.0)
        reason = ioc_unfilled_text(mirror.price, drift, traded, mirror.quantity)
        self.store.audit("not_mirrored" if traded == 0 else "partly_mirrored", reason,
                         follower=mirror.follower, leader_order_id=mirror.leader_order_id)
        return {"reason": reason, "reason_code": ReasonCode.IOC_UNFILLED.value}

    def _not_ours(self, mirror: MirrorOrder) -> bool:
        """A cancel nobody here asked for: the mirror was not being cancelled and no cancel
        of ours (follow's or cancel-mirror's) was ever committed for it."""
        if mirror.state == MirrorState.PENDING_CANCEL.value:
            return False
        return not self.store.cancel_asked(mirror.id)

    def new_attempt(self, mirror: MirrorOrder, correlation_id: str, *, quantity: int | None = None,
                    carried: int | None = None) -> MirrorOrder:
        fields = {name: getattr(mirror, name) for name in (
            "follower", "leg", "security_id", "product_type", "transaction_type", "price",
            "trigger_price", "order_type", "disclosed_quantity", "sliced", "shadow",
            # An exit stays an exit: later resizes size it against these positions.
            "leader_position_before", "follower_position_before")}
        return self.store.create_mirror(
            leader_order=mirror.leader_order_id, attempt=mirror.attempt + 1,
            correlation_id=correlation_id, state=MirrorState.SUBMITTED.value,
            quantity=mirror.quantity if quantity is None else quantity,
            carried_quantity=mirror.carried_quantity if carried is None else carried,
            **fields)

    def _step(self, mirror: MirrorOrder, trigger: Trigger, detail: str) -> None:
        try:
            step = self.store.apply_trigger(mirror, trigger, detail or "")
        except InvalidTransition as exc:
            self.store.audit("anomaly", f"{mirror.follower}: {exc}", follower=mirror.follower,
                             leader_order_id=mirror.leader_order_id)
            return
        if step.changed and step.state in ACKED_STATES and mirror.acked_at is None:
            self.store.update_mirror(mirror, acked_at=self.store.now())
        if step.changed and step.state is MirrorState.FILLED and mirror.leg == ENTRY_LEG:
            self._record_fill_lag(mirror)  # measured from the leader's entry: entries only
        if step.changed:
            self.on_change()

    def record_fill_lags(self, leader_order_id: str) -> None:
        """The leader finished after its mirrors did: their lag is negative (the follower
        filled first), measured from each mirror's FILLED event."""
        now = self.store.now()
        for mirror_id, filled in self.store.filled_without_fill_lag(leader_order_id):
            self.store.set_fill_lag(mirror_id, round((filled - now).total_seconds() * 1000, 3))

    def _record_fill_lag(self, mirror: MirrorOrder) -> None:
        traded_at = self.store.leader_traded_at(mirror.leader_order_id)
        if traded_at is not None:
            lag = (self.store.now() - traded_at).total_seconds() * 1000
            self.store.update_mirror(mirror, fill_lag_ms=round(lag, 3))


def _average_prices(mirror: MirrorOrder, legs: dict, report: OrderReport,
                    traded_before: int) -> dict:
    """The report's average fill price for its order, unless an earlier report already
    showed more of it filled; and the mirror's average across its orders, weighted by
    their fills now. Nothing to write when neither changed."""
    if report.average_price <= 0 or report.traded_quantity <= 0 \
            or report.traded_quantity < traded_before:
        return {}
    prices = json.loads(mirror.average_prices or "{}")
    prices[report.order_id] = report.average_price
    average = weighted_average((legs[oid][1], price) for oid, price in prices.items()
                               if oid in legs)
    encoded = json.dumps(prices)
    if encoded == mirror.average_prices and average == mirror.average_price:
        return {}
    return {"average_prices": encoded, "average_price": average}
