"""Periodic reconciliation of the followers' books with the store (the I/O around the
pure kernels of core/reconcile.py).

Every round, per follower: read its order book; build the stored view of today's
mirrors (leaving out those with a call in flight, whose broker state is about to
change); diff; apply the store-only fixes at once; apply order-changing fixes (policy
`resync` only) for findings seen two rounds in a row, so a read racing a send is never
"fixed". Each divergence is recorded once in the audit trail.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from copytrade.core.events import OrderReport
from copytrade.core.ids import correlation_id
from copytrade.core.orders import MirrorState
from copytrade.core.reconcile import (
    ORDER_CHANGING,
    Divergence,
    Fix,
    FixKind,
    StoredMirror,
    confirmed,
    diff_follower,
    plan_fixes,
)
from copytrade.dhan.rest import DhanAccount
from copytrade.engine.mirrors import CANCELLED_OUTSIDE, MirrorUpdater
from copytrade.store.models import LeaderOrder, MirrorOrder
from copytrade.store.repo import Store, legs_of

log = logging.getLogger(__name__)
GRACE_SECONDS = 10.0  # a REST book may not show an order placed moments ago


@dataclass
class FollowerReconcile:
    name: str
    account: DhanAccount
    policy: str  # "alert" or "resync"
    submit: Callable[[int], None]
    previous: list[Divergence] = field(default_factory=list)
    reported: set[tuple] = field(default_factory=set)


class Reconciler:
    def __init__(self, store: Store, updater: MirrorUpdater, followers: list[FollowerReconcile],
                 *, trading_date: Callable[[], str], now: Callable[[], datetime],
                 stopped: Callable[[str], bool]) -> None:
        self.store = store
        self.updater = updater
        self.followers = followers
        self.trading_date = trading_date
        self.now = now
        self.stopped = stopped
        self.divergences = 0
        self.rounds = 0

    def run_round(self) -> None:
        """One reconciliation of every follower (blocking I/O: call from a thread)."""
        self.rounds += 1
        for follower in self.followers:
            if self.stopped(follower.name):
                continue
            book = follower.account.order_book()
            if not book.ok:
                continue  # this round is lost; the next one tries again
            self._reconcile(follower, book.data)

    def _reconcile(self, follower: FollowerReconcile, reported: list[OrderReport]) -> None:
        current = diff_follower(self._stored(follower.name), reported,
                                follower=follower.name, grace_seconds=GRACE_SECONDS)
        by_id = {report.order_id: report for report in reported}
        safe = [f for f in plan_fixes(current, policy="alert") if f.kind not in ORDER_CHANGING]
        changing = [f for f in plan_fixes(confirmed(follower.previous, current),
                                          policy=follower.policy)  # type: ignore[arg-type]
                    if f.kind in ORDER_CHANGING]
        follower.previous = current
        self._record(follower, current)
        for fix in safe:
            self._apply_safe(follower, fix, by_id)
        for fix in changing:
            if fix.kind is not FixKind.REPLACE:  # replacing goes by the mirror's reason
                self._apply_changing(follower, fix)
        if follower.policy == "resync":
            self._replace_cancelled_outside(follower)

    def _replace_cancelled_outside(self, follower: FollowerReconcile) -> None:
        """Resync: a follower order cancelled outside copytrade (seen by its stream or by
        this reconciliation) is placed anew for its remainder while the leader's is open;
        the new attempt becomes the mirror, so this happens once."""
        rows = (MirrorOrder.select().join(LeaderOrder)
                .where((MirrorOrder.follower == follower.name)
                       & (LeaderOrder.trading_date == self.trading_date())
                       & (MirrorOrder.reason == CANCELLED_OUTSIDE)
                       & (MirrorOrder.state == MirrorState.CANCELED.value)))
        for mirror in rows:
            latest = self.store.mirror(mirror.leader_order_id, follower.name, mirror.leg)
            if latest is None or latest.id != mirror.id:
                continue  # already replaced
            remainder = mirror.quantity - mirror.filled_quantity
            self._apply_changing(follower, Fix(
                FixKind.REPLACE, mirror.id, mirror.follower_order_id,
                f"replace {remainder} cancelled outside copytrade", follower=follower.name,
                leader_order_id=mirror.leader_order_id, quantity=remainder))

    def _stored(self, follower: str) -> list[StoredMirror]:
        now = self.now()
        in_flight = {row[0] for row in self.store.db.execute_sql(
            "SELECT DISTINCT mirror_id FROM intent WHERE status = 'SENDING'").fetchall()}
        rows = (MirrorOrder.select().join(LeaderOrder)
                .where((MirrorOrder.follower == follower)
                       & (LeaderOrder.trading_date == self.trading_date())))
        stored = []
        for mirror in rows:
            if mirror.id in in_flight or mirror.shadow:
                continue
            since = mirror.submitted_at or mirror.created_at
            stored.append(StoredMirror(
                mirror_id=mirror.id, leader_order_id=mirror.leader_order_id,
                follower=follower, correlation_id=mirror.correlation_id, state=mirror.state,
                quantity=mirror.quantity, filled=mirror.filled_quantity,
                legs={oid: tuple(leg) for oid, leg in legs_of(mirror).items()},
                price=mirror.price, trigger_price=mirror.trigger_price,
                order_type=mirror.order_type,
                submitted_age_seconds=(now - since).total_seconds() if since else None))
        return stored

    def _record(self, follower: FollowerReconcile, current: list[Divergence]) -> None:
        new = [d for d in current if d.key not in follower.reported]
        if not new:
            return
        with self.store.write():
            for divergence in new:
                follower.reported.add(divergence.key)
                self.divergences += 1
                self.store.audit("divergence", f"{divergence.kind}: {divergence.detail}",
                                 follower=follower.name,
                                 leader_order_id=divergence.leader_order_id,
                                 data={"policy": follower.policy,
                                       "follower_order_id": divergence.follower_order_id})

    def _apply_safe(self, follower: FollowerReconcile, fix: Fix,
                    by_id: dict[str, OrderReport]) -> None:
        if fix.mirror_id is None:
            return  # an order of ours that no mirror can take: reported, left to a human
        report = by_id.get(fix.follower_order_id or "")
        if fix.kind is FixKind.LOOKUP or report is None:
            mirror = self.store.mirror_by_id(fix.mirror_id)
            found = follower.account.order_by_correlation(mirror.correlation_id)
            if not found.ok:
                return
            reports = found.data
        else:
            reports = [report]
        with self.store.write():
            self.updater.adopt_order_ids(fix.mirror_id, [r.order_id for r in reports])
            for each in reports:
                self.updater.apply_report(fix.mirror_id, each)

    def _apply_changing(self, follower: FollowerReconcile, fix: Fix) -> None:
        """Resync: put the follower's order back the way the mirror wants it, through a
        committed intent like every other state-changing call."""
        if fix.mirror_id is None:
            return
        with self.store.write():
            mirror = self.store.mirror_by_id(fix.mirror_id)
            if fix.kind is FixKind.CANCEL_ORDER:
                request = {"reason": f"resync: {fix.detail}",
                           "order_ids": [fix.follower_order_id]}
                intent = self.store.add_intent(mirror, "CANCEL", request)
            elif fix.kind is FixKind.MODIFY_ORDER:
                intent = self.store.add_intent(mirror, "MODIFY", {"modify": {
                    "order_type": mirror.order_type,
                    "quantity": fix.quantity or mirror.quantity, "price": mirror.price,
                    "trigger_price": mirror.trigger_price,
                    "disclosed_quantity": mirror.disclosed_quantity,
                    "validity": _validity(mirror)}, "order_id": fix.follower_order_id})
            else:  # REPLACE the remainder that was cancelled outside
                intent = self._replace(mirror, fix)
                if intent is None:
                    return
            self.store.audit("resync", f"{fix.kind}: {fix.detail}", follower=follower.name,
                             leader_order_id=mirror.leader_order_id)
        follower.submit(intent.id)

    def _replace(self, mirror: MirrorOrder, fix: Fix):
        leader = LeaderOrder.get_or_none(LeaderOrder.order_id == mirror.leader_order_id)
        if leader is None or leader.status in ("CANCELLED", "EXPIRED", "REJECTED", "TRADED"):
            return None  # the leader no longer wants it
        remainder = fix.quantity or 0
        if remainder <= 0:
            return None
        previous = next(iter(self.store.db.execute_sql(
            "SELECT request FROM intent WHERE mirror_id = ? AND action = 'PLACE' "
            "ORDER BY id DESC LIMIT 1", (mirror.id,)).fetchall()), None)
        if previous is None:
            return None
        request = json.loads(previous[0])
        request["order"]["quantity"] = remainder
        request["slice"] = False
        retry = self.updater.new_attempt(mirror, correlation_id(
            date.fromisoformat(self.trading_date()), mirror.leader_order_id, mirror.follower,
            mirror.leg, mirror.attempt + 1), quantity=remainder,
            carried=mirror.carried_quantity + mirror.filled_quantity)
        return self.store.add_intent(retry, "PLACE", request)


def _validity(mirror: MirrorOrder) -> str:
    leader = LeaderOrder.get_or_none(LeaderOrder.order_id == mirror.leader_order_id)
    return leader.validity if leader is not None else "DAY"
