"""Periodic reconciliation of the followers' books with the store (the I/O around the
pure kernels of core/reconcile.py).

Every round, per follower: read its order book and index it once; gather what can matter
(the open mirrors, and the book's rows that are new or changed since a round found them
settled, with the mirrors those rows name), leaving out mirrors with a call in flight and
their orders, whose broker state is about to change; diff; apply the store-only fixes at
once; apply order-changing fixes (policy `resync` only) for findings seen two rounds in a
row, so a read racing a send is never "fixed". Each divergence is recorded once in the
audit trail. A round costs O(open mirrors + book rows): the thousands of ended mirrors of a
long day are read once, then skipped while their rows stay the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from typing import Protocol

from copytrade.core.events import OrderReport
from copytrade.core.ids import is_ours
from copytrade.core.reconcile import (
    ORDER_CHANGING,
    BookIndex,
    Divergence,
    DivergenceKind,
    Fix,
    FixKind,
    StoredMirror,
    confirmed,
    diff_follower,
    fingerprint,
    index_book,
    plan_fixes,
    settled_rows,
    stem,
)
from copytrade.engine.broker import Broker
from copytrade.engine.executor import Executor
from copytrade.engine.mirrors import CANCELLED_OUTSIDE, MirrorUpdater
from copytrade.store import reconcile_queries as queries
from copytrade.store.models import Intent, MirrorOrder
from copytrade.store.repo import Store

log = logging.getLogger(__name__)
GRACE_SECONDS = 10.0  # a REST book may not show an order placed moments ago
# Plans and records the replacement of a mirror cancelled outside copytrade, inside the
# caller's write transaction: the new attempt's place intent, or None (nothing to place).
ReplaceFn = Callable[[MirrorOrder], Intent | None]


def _no_replacement(mirror: MirrorOrder) -> Intent | None:
    """Without a planner nothing is placed anew: the divergence stays reported."""
    return None


class MirrorSource(Protocol):
    """Where a round's stored mirrors come from: today's, of one follower, none shadow."""

    def open_mirrors(self) -> list[StoredMirror]: ...

    def in_flight(self) -> list[StoredMirror]: ...

    def by_correlation_ids(self, cids: Collection[str]) -> list[StoredMirror]: ...

    def by_order_ids(self, order_ids: Collection[str]) -> list[StoredMirror]: ...

    def by_stems(self, stems: Collection[str]) -> list[StoredMirror]: ...


@dataclass(frozen=True)
class StoreMirrors:
    """MirrorSource over the store's indexed reads."""

    store: Store
    follower: str
    trading_date: str
    now: datetime

    def _args(self) -> tuple:
        return self.store.db, self.follower, self.trading_date

    def open_mirrors(self) -> list[StoredMirror]:
        return queries.open_mirrors(*self._args(), self.now)

    def in_flight(self) -> list[StoredMirror]:
        return queries.in_flight_mirrors(*self._args(), self.now)

    def by_correlation_ids(self, cids: Collection[str]) -> list[StoredMirror]:
        return queries.mirrors_by_correlation_ids(*self._args(), cids, self.now)

    def by_order_ids(self, order_ids: Collection[str]) -> list[StoredMirror]:
        return queries.mirrors_by_order_ids(*self._args(), order_ids, self.now)

    def by_stems(self, stems: Collection[str]) -> list[StoredMirror]:
        return queries.mirrors_by_stems(*self._args(), stems, self.now)


@dataclass(frozen=True)
class RoundView:
    """What one round hands the kernel, and the fingerprints of every row of the book."""

    stored: list[StoredMirror]
    reported: list[OrderReport]
    marks: set[int]


def gather(source: MirrorSource, book: BookIndex, settled: Collection[int]) -> RoundView:
    """The mirrors and rows of one round: open mirrors, rows not settled (new or changed),
    the mirrors those rows name (by correlation id, order id, and for an order of ours no
    mirror lists, its other attempts), and every row of each mirror taken. A mirror with a
    call in flight is left out with its other attempts and all their orders: their broker
    state is about to change, and half of it would look like news."""
    busy = source.in_flight()
    busy_orders = set(chain.from_iterable(m.legs for m in busy))
    busy_stems = {stem(m.correlation_id) for m in busy}

    def hidden(report: OrderReport) -> bool:
        return report.order_id in busy_orders or (
            bool(busy_stems) and stem(report.correlation_id) in busy_stems)

    mirrors: dict[int, StoredMirror] = {}

    def take(found: Iterable[StoredMirror]) -> None:
        for mirror in found:
            if stem(mirror.correlation_id) not in busy_stems:
                mirrors.setdefault(mirror.mirror_id, mirror)

    take(source.open_mirrors())
    marks, fresh = set(), []
    for report in book.rows.values():
        mark = fingerprint(report)
        marks.add(mark)
        if mark not in settled and not hidden(report):
            fresh.append(report)
    if fresh:  # by correlation id first: it finds nearly all; the rest by order id
        take(source.by_correlation_ids({r.correlation_id for r in fresh
                                        if is_ours(r.correlation_id)}))
        take(source.by_order_ids(_unlisted(fresh, mirrors.values())))
        take(source.by_stems(_stems_needed(fresh, mirrors.values())))
    examined = {r.order_id: r for r in fresh}
    for mirror in mirrors.values():
        for order_id in chain(mirror.legs, book.carrying.get(mirror.correlation_id, ())):
            report = book.rows.get(order_id)
            if report is not None and not hidden(report):
                examined.setdefault(order_id, report)
    return RoundView(list(mirrors.values()), list(examined.values()), marks)


def _unlisted(rows: Iterable[OrderReport], taken: Iterable[StoredMirror]) -> set[str]:
    """The order ids no mirror taken so far lists (an order belongs to one mirror)."""
    listed = set(chain.from_iterable(m.legs for m in taken))
    return {r.order_id for r in rows if r.order_id not in listed}


def _stems_needed(fresh: list[OrderReport], taken: Iterable[StoredMirror]) -> set[str]:
    """Orders of ours that no mirror lists are judged against the other attempts at the
    same leader order (a duplicate or the only one?), unless they ended empty."""
    unlisted = _unlisted(fresh, taken)
    return {stem(r.correlation_id) for r in fresh
            if r.order_id in unlisted and is_ours(r.correlation_id)
            and not (r.is_terminal and r.traded_quantity == 0)}


@dataclass(frozen=True)
class RoundStats:
    book_rows: int
    rows_examined: int
    mirrors_examined: int


@dataclass
class FollowerReconcile:
    name: str
    account: Broker  # only order_book and order_by_correlation are asked of it
    policy: str  # "alert" or "resync"
    submit: Callable[[int], None]
    previous: list[Divergence] = field(default_factory=list)
    reported: set[tuple] = field(default_factory=set)
    # Fingerprints of the rows a round found settled: skipped while they stay the same.
    # Rows that left the book (a new day) are dropped with it.
    settled: set[int] = field(default_factory=set)
    last: RoundStats | None = None
    # Its calls: follow hands in the follower worker's, so a refused token seen here stops
    # that account's calls too; None: one of its own, made on first use.
    executor: Executor | None = None


class Reconciler:
    def __init__(self, store: Store, updater: MirrorUpdater, followers: list[FollowerReconcile],
                 *, trading_date: Callable[[], str], now: Callable[[], datetime],
                 stopped: Callable[[str], bool],
                 replace_cancelled: ReplaceFn = _no_replacement) -> None:
        self.store = store
        self.updater = updater
        self.followers = followers
        self.trading_date = trading_date
        self.now = now
        self.stopped = stopped
        # The replicator's planner: a replacement is sized and priced like every mirror.
        self.replace_cancelled = replace_cancelled
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
        book = index_book(reported)
        view = gather(StoreMirrors(self.store, follower.name, self.trading_date(), self.now()),
                      book, follower.settled)
        current = diff_follower(view.stored, view.reported, follower=follower.name,
                                grace_seconds=GRACE_SECONDS)
        self._settle(follower, book, view, current)
        safe = [f for f in plan_fixes(current, policy="alert") if f.kind not in ORDER_CHANGING]
        changing = [f for f in plan_fixes(confirmed(follower.previous, current),
                                          policy=follower.policy)  # type: ignore[arg-type]
                    if f.kind in ORDER_CHANGING]
        follower.previous = current
        self._record(follower, current)
        for fix in safe:
            self._apply_safe(follower, fix, book.rows)
        for fix in changing:
            if fix.kind is not FixKind.REPLACE:  # replacing goes by the mirror's reason
                self._apply_changing(follower, fix)
        if follower.policy == "resync":
            self._replace_cancelled_outside(follower)

    @staticmethod
    def _settle(follower: FollowerReconcile, book: BookIndex, view: RoundView,
                current: list[Divergence]) -> None:
        """Remember the rows this round found settled; forget the ones it looked at and
        did not, and those no longer in the book."""
        looked = {fingerprint(r) for r in view.reported}
        follower.settled = ((follower.settled & view.marks) - looked) | settled_rows(
            current, view.stored, view.reported)
        follower.last = RoundStats(len(book.rows), len(view.reported), len(view.stored))

    def _replace_cancelled_outside(self, follower: FollowerReconcile) -> None:
        """Resync: a follower order cancelled outside copytrade (seen by its stream or by
        this reconciliation) is placed anew for its remainder while the leader's is open;
        the new attempt becomes the mirror, so this happens once."""
        for mirror_id in queries.cancelled_outside_unreplaced(
                self.store.db, follower.name, self.trading_date(), CANCELLED_OUTSIDE):
            mirror = self.store.mirror_by_id(mirror_id)
            remainder = mirror.quantity - mirror.filled_quantity
            self._apply_changing(follower, Fix(
                FixKind.REPLACE, mirror.id, mirror.follower_order_id,
                f"replace {remainder} cancelled outside copytrade", follower=follower.name,
                leader_order_id=mirror.leader_order_id, quantity=remainder))

    def _record(self, follower: FollowerReconcile, current: list[Divergence]) -> None:
        new = [d for d in current if d.key not in follower.reported]
        if not new:
            return
        with self.store.write():
            for divergence in new:
                follower.reported.add(divergence.key)
                self.divergences += 1
                if divergence.kind is DivergenceKind.CANCELLED_OUTSIDE:
                    continue  # applying the report records it, knowing our cancel intents
                self.store.audit("divergence", f"{divergence.kind}: {divergence.detail}",
                                 follower=follower.name,
                                 leader_order_id=divergence.leader_order_id,
                                 data={"policy": follower.policy,
                                       "follower_order_id": divergence.follower_order_id})

    def _apply_safe(self, follower: FollowerReconcile, fix: Fix,
                    by_id: Mapping[str, OrderReport]) -> None:
        if fix.mirror_id is None:
            return  # an order of ours that no mirror can take: reported, left to a human
        # The follower's executor looks up and adopts (one built here if follow gave none).
        executor = follower.executor = follower.executor or Executor(
            follower.name, follower.account, self.store, self.updater)
        report = by_id.get(fix.follower_order_id or "")
        if fix.kind is FixKind.LOOKUP or report is None:
            mirror = self.store.mirror_by_id(fix.mirror_id)
            executor.lookup(mirror.id, mirror.correlation_id)  # not found: the next round
        else:
            executor.adopt(fix.mirror_id, [report])  # the row this round read

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
                    "validity": self._validity(mirror)}, "order_id": fix.follower_order_id})
            else:  # REPLACE the remainder that was cancelled outside
                intent = self._replace(mirror, fix)
                if intent is None:
                    return
            self.store.audit("resync", f"{fix.kind}: {fix.detail}", follower=follower.name,
                             leader_order_id=mirror.leader_order_id)
        follower.submit(intent.id)

    def _replace(self, mirror: MirrorOrder, fix: Fix) -> Intent | None:
        """The remainder and its parameters come from the planner fed the leader's order as
        known now, not from the last place request: a leader modified since is followed."""
        return self.replace_cancelled(mirror)

    def _validity(self, mirror: MirrorOrder) -> str:
        leader = queries.leader_status_and_validity(self.store.db, mirror.leader_order_id)
        return leader[1] if leader is not None else "DAY"
