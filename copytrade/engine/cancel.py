"""`cancel-mirror`: cancel the follower orders that mirror given leader orders (or every
open mirror), converging on "nothing of it left open" however often it is run.

It may run while `follow` runs in another process on the same home: it writes through
the same Store (short IMMEDIATE transactions, the busy timeout) and never takes follow's
lock file. For every mirror it cancels it commits a CANCEL intent and the mirror's
reason ("cancelled by cancel-mirror": the decision core never re-opens such a mirror)
BEFORE the first call, completes the intent after, moves the mirror to PENDING_CANCEL
when the broker took a cancel, then reads each order back (bounded) and applies what it
reads through MirrorUpdater, so the mirror's state is the broker's whether or not a
follower stream is listening. An order the broker refuses to cancel is read, and its
real state (filled, already cancelled) is reported rather than treated as an error.

Every call goes through one Executor per follower (engine/executor.py): the cancel
converging, the lookup by correlation id then adoption, the rate-limit slot, throttling,
and a refused token (no more calls to that account in this run).

Pure of the CLI: selection in, results out (CancelResult rows, one per follower order).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from copytrade.core.events import OPEN_STATUSES, OrderReport, OrderStatus
from copytrade.core.intents import IntentAction, IntentStatus
from copytrade.core.orders import OPEN_STATES, InvalidTransition, MirrorState, Trigger
from copytrade.dhan.rest import OutcomeKind
from copytrade.engine.executor import (
    Backoff,
    CancelOutcome,
    Executor,
    LookupKind,
    intent_status,
    token_refused_text,
)
from copytrade.engine.mirrors import MirrorUpdater
from copytrade.engine.positions import PositionBook
from copytrade.errors import StoreError
from copytrade.store.models import MirrorOrder
from copytrade.store.repo import Store, legs_of

if TYPE_CHECKING:
    from copytrade.engine.broker import Broker

CANCEL_REASON = "cancelled by cancel-mirror"
INTENT_REQUEST = {"reason": "cancel-mirror"}
AUDIT_KIND = "cancel_mirror"
RUN_AGAIN = "run cancel-mirror again"  # what a refused token's text asks for after refreshing
CONFIRM_SECONDS = 5.0  # reading cancelled orders back until the broker says CANCELLED
SETTLE_SECONDS = 3.0  # a mirror whose place is in flight: waiting for its order id
_TARGET_STATES = frozenset({*OPEN_STATES, MirrorState.PLANNED})


class ResultKind(StrEnum):
    CANCELLED = "cancelled"
    REQUESTED = "cancel requested"  # the broker took it; not yet seen CANCELLED
    ALREADY_CANCELLED = "already cancelled"
    ALREADY_FILLED = "already filled"
    ALREADY_REJECTED = "already rejected"
    ALREADY_EXPIRED = "already expired"
    NEVER_PLACED = "never placed"
    NO_MIRROR = "no mirror of this leader order"
    FAILED = "failed"


@dataclass(frozen=True)
class Selection:
    leader_order_ids: tuple[str, ...] = ()
    all_open: bool = False
    follower: str | None = None  # only this follower's mirrors


@dataclass(frozen=True)
class CancelResult:
    leader_order_id: str
    follower: str | None
    follower_order_id: str | None
    kind: ResultKind
    detail: str = ""
    auth: bool = False  # failed because the account's token was refused (DH-901)

    @property
    def failed(self) -> bool:
        return self.kind is ResultKind.FAILED

    @property
    def text(self) -> str:
        return f"{self.kind.value}: {self.detail}" if self.detail else self.kind.value


@dataclass(frozen=True)
class Target:
    """A mirror with something to cancel, as the store knew it when planned."""

    mirror_id: int
    leader_order_id: str
    follower: str
    leg: int
    state: str
    order_ids: tuple[str, ...]  # its open follower orders; empty: not placed yet


@dataclass(frozen=True)
class CancelPlan:
    targets: tuple[Target, ...]
    ended: tuple[CancelResult, ...]  # already terminal: reported as they are
    unmatched: tuple[str, ...]  # leader order ids with no mirror (for the follower)
    follower: str | None = None
    leader_order_ids: tuple[str, ...] = ()  # as asked for: the results' order

    @property
    def order_count(self) -> int:
        """Follower orders to cancel (a mirror not placed yet counts as one)."""
        return sum(max(len(t.order_ids), 1) for t in self.targets)


# ---- planning (reads only) ------------------------------------------------------------------

def plan_cancel(selection: Selection, store: Store) -> CancelPlan:
    wanted = [] if selection.all_open else list(dict.fromkeys(selection.leader_order_ids))
    mirrors = store.mirrors_to_cancel(
        follower=selection.follower, leader_order_ids=wanted,
        states={s.value for s in _TARGET_STATES} if selection.all_open else None)
    groups: dict[tuple[str, str, int], list[MirrorOrder]] = defaultdict(list)
    for mirror in mirrors:
        groups[(mirror.leader_order_id, mirror.follower, mirror.leg)].append(mirror)
    rank = {order_id: index for index, order_id in enumerate(wanted)}
    targets: list[Target] = []
    ended: list[CancelResult] = []
    for key in sorted(groups, key=lambda k: (rank.get(k[0], 0), groups[k][0].id, k[1], k[2])):
        attempts = sorted(groups[key], key=lambda m: m.attempt)
        live = [m for m in attempts if _has_something_open(m)]
        if live:
            targets += [_target(m) for m in live]
        else:
            ended += _ended_results(attempts[-1])
    matched = {key[0] for key in groups}
    unmatched = tuple(order_id for order_id in wanted if order_id not in matched)
    return CancelPlan(tuple(targets), tuple(ended), unmatched, selection.follower,
                      tuple(wanted))


def _open_leg_ids(mirror: MirrorOrder) -> tuple[str, ...]:
    return tuple(order_id for order_id, (status, _traded, _qty) in legs_of(mirror).items()
                 if status in OPEN_STATUSES)


def _has_something_open(mirror: MirrorOrder) -> bool:
    if mirror.shadow:
        return False  # a shadow mirror never reached the broker
    return MirrorState(mirror.state) in _TARGET_STATES or bool(_open_leg_ids(mirror))


def _target(mirror: MirrorOrder) -> Target:
    return Target(mirror.id, mirror.leader_order_id, mirror.follower, mirror.leg, mirror.state,
                  _open_leg_ids(mirror))


_ENDED_BY_STATE = {
    MirrorState.CANCELED: ResultKind.ALREADY_CANCELLED,
    MirrorState.FILLED: ResultKind.ALREADY_FILLED,
    MirrorState.REJECTED: ResultKind.ALREADY_REJECTED,
    MirrorState.EXPIRED: ResultKind.ALREADY_EXPIRED,
    MirrorState.SKIPPED: ResultKind.NEVER_PLACED,
}


def _ended_results(mirror: MirrorOrder) -> list[CancelResult]:
    legs = legs_of(mirror)
    by_state = _ENDED_BY_STATE.get(MirrorState(mirror.state), ResultKind.ALREADY_CANCELLED)
    if not legs:
        detail = mirror.reason if by_state is not ResultKind.ALREADY_CANCELLED else ""
        return [CancelResult(mirror.leader_order_id, mirror.follower, None, by_state,
                             detail[:120])]
    results = []
    for order_id, (status, traded, quantity) in legs.items():
        kind = _kind_for_status(status, traded, quantity) or by_state
        results.append(CancelResult(mirror.leader_order_id, mirror.follower, order_id, kind,
                                    _filled_detail(kind, traded, quantity)))
    return results


def _kind_for_status(status: str, traded: int, quantity: int) -> ResultKind | None:
    """A terminal broker status as a result; None while the order is open."""
    if status == OrderStatus.CANCELLED:
        return ResultKind.ALREADY_CANCELLED
    if status == "TRADED" or (status == "CLOSED" and quantity and traded >= quantity):
        return ResultKind.ALREADY_FILLED
    if status == "CLOSED":
        return ResultKind.ALREADY_CANCELLED
    if status == "REJECTED":
        return ResultKind.ALREADY_REJECTED
    if status == "EXPIRED":
        return ResultKind.ALREADY_EXPIRED
    return None


def _filled_detail(kind: ResultKind, traded: int, quantity: int) -> str:
    if kind in (ResultKind.CANCELLED, ResultKind.ALREADY_CANCELLED, ResultKind.REQUESTED) \
            and traded:
        return f"{traded} of {quantity} filled before"
    return ""


# ---- cancelling -------------------------------------------------------------------------------

LegOutcome = CancelOutcome  # one follower order's cancel, as the executor converged it


@dataclass
class _Work:
    target: Target
    mirror_id: int
    intent_id: int | None = None
    previous_reason: str = ""
    legs: list[LegOutcome] = field(default_factory=list)
    results: list[CancelResult] = field(default_factory=list)  # settled without a call


def cancel_mirrors(store: Store, accounts: Mapping[str, Broker],
                   selection: Selection | CancelPlan, *,
                   acquire: Mapping[str, Callable[[], bool]] | None = None,
                   sleep: Callable[[float], None] = time.sleep,
                   confirm_seconds: float = CONFIRM_SECONDS,
                   settle_seconds: float = SETTLE_SECONDS) -> list[CancelResult]:
    """Cancel every open follower order of the selected mirrors; one result per follower
    order (or per mirror never placed, or per leader order with no mirror).

    `accounts` maps follower name -> its account; `acquire` (optional) follower name ->
    a rate-limiter slot taker shared with follow. A plan from plan_cancel() cancels what
    was confirmed; a Selection plans afresh."""
    plan = selection if isinstance(selection, CancelPlan) else plan_cancel(selection, store)
    return _Canceller(store, accounts, acquire or {}, sleep).run(
        plan, confirm_seconds, settle_seconds)


class _Canceller:
    def __init__(self, store: Store, accounts: Mapping[str, Broker],
                 acquire: Mapping[str, Callable[[], bool]],
                 sleep: Callable[[float], None]) -> None:
        self.store = store
        self.accounts = accounts
        self.acquire = acquire
        self.sleep = sleep
        books: dict[str, PositionBook] = defaultdict(PositionBook)
        # follow keeps positions in memory; here they are only a sink for the updater
        self.updater = MirrorUpdater(store, books.__getitem__)
        self.executors: dict[str, Executor] = {}

    def _executor(self, follower: str, account: Broker) -> Executor:
        """The follower's calls in this run: shared by its mirrors, so a refused token
        stops calls to that account for the rest of the run."""
        if follower not in self.executors:
            self.executors[follower] = Executor(
                follower, account, self.store, self.updater,
                acquire=self.acquire.get(follower, lambda: True), wait=self._pause,
                # short: an operator is waiting; throttling still backs off >= 1 s (Dhan)
                backoff=Backoff(initial=1.0, maximum=4.0),
                lookup_backoff=Backoff(initial=0.25, maximum=2.0),
                write=lambda: _write(self.store), then=RUN_AGAIN)
        return self.executors[follower]

    def _pause(self, seconds: float) -> bool:
        self.sleep(seconds)
        return False  # cancel-mirror is never told to stop half-way

    def run(self, plan: CancelPlan, confirm_seconds: float,
            settle_seconds: float) -> list[CancelResult]:
        works = [self._send(target, settle_seconds) for target in plan.targets]
        confirmed = self._confirm(works, confirm_seconds)
        results: list[CancelResult] = []
        for work in works:
            results += work.results or self._finish(work, confirmed)
        results += plan.ended
        results += [CancelResult(order_id, plan.follower, None, ResultKind.NO_MIRROR)
                    for order_id in plan.unmatched]
        rank = {order_id: index for index, order_id in enumerate(plan.leader_order_ids)}
        return sorted(results, key=lambda r: rank.get(r.leader_order_id, 0))  # stable

    # -- one mirror: intent, calls, outcome ---------------------------------------------------

    def _send(self, target: Target, settle_seconds: float) -> _Work:
        work = _Work(target, target.mirror_id)
        account = self.accounts.get(target.follower)
        if account is None:
            work.results = [self._failed(target, None, f"follower {target.follower} is not "
                                         "enabled in the configuration: its account is unknown")]
            return work
        executor = self._executor(target.follower, account)
        mirror = self.store.mirror_by_id(target.mirror_id)
        if not legs_of(mirror) and MirrorState(mirror.state) in _TARGET_STATES:
            unplaced = self._find_unplaced(target, executor, settle_seconds)
            if unplaced is not None:
                work.results = [unplaced]
                return work
            mirror = self.store.mirror_by_id(target.mirror_id)
        open_ids = _open_leg_ids(mirror)
        if not open_ids:  # it ended since it was planned (follow saw it fill, say)
            work.results = _ended_results(mirror)
            return work
        if executor.refused is not None:  # its token was refused on an earlier mirror
            text = executor.refused_text()
            work.results = [self._failed(target, order_id, text, auth=True)
                            for order_id in open_ids]
            return work
        with _write(self.store):  # durable before anything is sent
            mirror = self.store.mirror_by_id(target.mirror_id)
            work.previous_reason = mirror.reason
            self.store.update_mirror(mirror, reason=CANCEL_REASON)
            work.intent_id = self.store.add_intent(mirror, IntentAction.CANCEL, INTENT_REQUEST).id
        for order_id in open_ids:
            leg = executor.cancel(order_id, target.leg)
            work.legs.append(leg)
            if leg.refused_token:
                break  # this account takes no more calls
        self._record_calls(work, mirror.id)
        return work

    def _find_unplaced(self, target: Target, executor: Executor,
                       settle_seconds: float) -> CancelResult | None:
        """A mirror with no follower order yet: its place may be in flight in follow.
        Wait (bounded) for its order id, then look it up by correlation id; None once
        the mirror has orders to cancel."""
        deadline = time.monotonic() + settle_seconds
        delay = 0.05
        while True:
            mirror = self.store.mirror_by_id(target.mirror_id)
            if legs_of(mirror):
                return None
            if MirrorState(mirror.state) not in _TARGET_STATES:
                return _ended_results(mirror)[0]
            if time.monotonic() >= deadline:
                break
            self.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
            delay = min(delay * 2, 0.5)
        found = executor.lookup(mirror.id, mirror.correlation_id)  # adopts what it finds
        if found.kind is LookupKind.AUTH:
            return self._failed(target, None, executor.refused_text(), auth=True)
        if found.kind is not LookupKind.FOUND:
            return self._failed(target, None, "no follower order yet (its place request may "
                                "still be in flight): nothing cancelled, run again")
        return None

    def _record_calls(self, work: _Work, mirror_id: int) -> None:
        sent = [leg for leg in work.legs if leg.sent]
        unsettled = [leg for leg in work.legs
                     if not leg.sent and (leg.report is None or leg.report.status in OPEN_STATUSES)]
        if not unsettled:
            status = IntentStatus.DONE if len(sent) == len(work.legs) else IntentStatus.CHECKED
        else:
            status = intent_status(unsettled[0].outcome)
        with _write(self.store):
            for leg in work.legs:
                if leg.report is not None:
                    self.updater.apply_report(mirror_id, leg.report)
            assert work.intent_id is not None
            self.store.finish_intent(self.store.intent_by_id(work.intent_id), status,
                                     "; ".join(_leg_text(leg) for leg in work.legs))
            mirror = self.store.mirror_by_id(mirror_id)
            if sent:
                self._step(mirror, Trigger.REQUEST_CANCEL)
            elif mirror.reason == CANCEL_REASON:  # nothing was cancelled by us after all
                self.store.update_mirror(mirror, reason=work.previous_reason)

    def _step(self, mirror: MirrorOrder, trigger: Trigger) -> None:
        try:
            self.store.apply_trigger(mirror, trigger, "cancel-mirror")
        except InvalidTransition as exc:
            self.store.audit("anomaly", f"{mirror.follower}: {exc}", follower=mirror.follower,
                             leader_order_id=mirror.leader_order_id)

    # -- confirmation: read the cancelled orders back -----------------------------------------

    def _confirm(self, works: Sequence[_Work],
                 seconds: float) -> dict[tuple[str, int], OrderReport]:
        """The broker's word on every order it took a cancel for, read until it is no
        longer open or `seconds` have passed (follow's stream may have said it already,
        but follow may not be running)."""
        # (order id, leg): a BO's or CO's exit legs share their entry's order id
        pending = {(leg.order_id, work.target.leg): self.executors[work.target.follower]
                   for work in works for leg in work.legs if leg.sent}
        reports: dict[tuple[str, int], OrderReport] = {}
        deadline = time.monotonic() + seconds
        delay = 0.05
        while pending:
            for key, executor in list(pending.items()):
                found = executor.order(*key)
                if found.ok:
                    reports[key] = found.data
                    if found.data.status not in OPEN_STATUSES:
                        del pending[key]
                elif found.kind is OutcomeKind.AUTH:
                    del pending[key]
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                break
            self.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.5)
        return reports

    def _finish(self, work: _Work,
                confirmed: Mapping[tuple[str, int], OrderReport]) -> list[CancelResult]:
        target = work.target
        with _write(self.store):
            for leg in work.legs:
                if (leg.order_id, target.leg) in confirmed:
                    self.updater.apply_report(work.mirror_id,
                                              confirmed[(leg.order_id, target.leg)])
            mirror = self.store.mirror_by_id(work.mirror_id)
            legs = legs_of(mirror)
            results = [self._leg_result(target, leg, legs.get(leg.order_id)) for leg in work.legs]
            # legs that were not open when the calls started: reported as they are
            called = {leg.order_id for leg in work.legs}
            for order_id, (status, traded, quantity) in legs.items():
                if order_id not in called:
                    kind = _kind_for_status(status, traded, quantity)
                    results.append(CancelResult(
                        target.leader_order_id, target.follower, order_id,
                        kind or ResultKind.FAILED,
                        _filled_detail(kind, traded, quantity) if kind else
                        f"still {status}: not cancelled (it was not open when planned)"))
            failed = [r for r in results if r.failed]
            summary = ", ".join(f"{r.follower_order_id} {r.text}" for r in results)
            self.store.audit(
                AUDIT_KIND, f"{target.follower}: {summary}"[:1000],
                leader_order_id=target.leader_order_id, follower=target.follower,
                data={"mirror_id": work.mirror_id, "intent_id": work.intent_id,
                      "state": mirror.state, "failed": len(failed),
                      "orders": {r.follower_order_id: r.text for r in results}})
        return results

    def _leg_result(self, target: Target, leg: LegOutcome,
                    stored: list | None) -> CancelResult:
        status, traded, quantity = stored if stored else ("", 0, 0)
        if leg.report is not None and not stored:
            status, traded, quantity = (leg.report.status, leg.report.traded_quantity,
                                        leg.report.quantity)
        if leg.refused_token:
            return self._failed(target, leg.order_id, token_refused_text(
                target.follower, leg.outcome.code, then=RUN_AGAIN), auth=True)
        ended = _kind_for_status(status, traded, quantity)
        if leg.sent:
            if ended is ResultKind.ALREADY_CANCELLED:
                kind = ResultKind.CANCELLED
            elif ended is not None:
                return CancelResult(target.leader_order_id, target.follower, leg.order_id,
                                    ended, "before the cancel took effect")
            else:
                return CancelResult(target.leader_order_id, target.follower, leg.order_id,
                                    ResultKind.REQUESTED, f"the broker still shows {status}")
        elif ended is not None:
            kind = ended
        else:
            still = f"; the order is still {status}" if status else ""
            return self._failed(target, leg.order_id, f"{leg.outcome.describe()}{still}")
        return CancelResult(target.leader_order_id, target.follower, leg.order_id, kind,
                            _filled_detail(kind, traded, quantity))

    @staticmethod
    def _failed(target: Target, order_id: str | None, detail: str, *,
                auth: bool = False) -> CancelResult:
        return CancelResult(target.leader_order_id, target.follower, order_id,
                            ResultKind.FAILED, detail, auth=auth)


def _leg_text(leg: LegOutcome) -> str:
    return leg.describe()


@contextmanager
def _write(store: Store) -> Iterator[None]:
    """Store.write(), but BEGIN IMMEDIATE: another process (follow) writes the same file,
    and a deferred transaction that reads before it writes fails at once with "database
    is locked" (SQLITE_BUSY_SNAPSHOT) when that process commits in between, whatever the
    busy timeout. IMMEDIATE takes the write lock first, waiting up to the busy timeout."""
    try:
        with store.lock, store.db.atomic("IMMEDIATE"):
            yield
    except Exception as exc:
        if type(exc).__name__ == "OperationalError" and "locked" in str(exc):
            raise StoreError(f"the database stayed busy (another copytrade is writing it): "
                             f"{exc}") from exc
        raise

