"""`replay-missed`: after an outage, feed the leader orders created in a time window through
the same replicator as follow's catch-up, once, and say per leader order and follower what
was done (or, dry, would be done) and why.

The path is follow's: `FollowEngine.prepare()` (instruments, positions, funds, the
replicator), then every window order's REST report through `Replicator.on_leader_report`
(the same merge, decisions, staleness policy and de-duplication against the mirrors
already in the store), then the followers' workers send the committed intents. Every
decision is made before the first call is sent, so a real run decides exactly what a dry
run on the same books shows. A dry run decides on a copy of the database (sqlite3's
backup API) with nothing handed to the workers: the real database and the brokers are
left alone.

No Typer and no Rich here: the CLI (copytrade/cli/replay_missed.py) renders the rows.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from copytrade.core.events import ENTRY_LEG, OPEN_STATUSES, OrderReport, book_order
from copytrade.core.reasons import ReasonCode
from copytrade.dhan.rest import OutcomeKind
from copytrade.engine.executor import token_refused_text
from copytrade.engine.follow import FollowEngine
from copytrade.engine.limits import no_limit
from copytrade.engine.replicator import FollowerPlan
from copytrade.engine.wiring import Wiring
from copytrade.errors import AuthError, BrokerError
from copytrade.store.models import MirrorOrder
from copytrade.store.reconcile_queries import (
    intents_after,
    mirrors_of_intents,
    sending_intent_ids,
)
from copytrade.store.repo import IntentRow, Store, legs_of

log = logging.getLogger(__name__)

SETTLE_SECONDS = 120.0  # the longest a run waits for its calls to be answered
BUSY_TICK_SECONDS = 0.05  # while calls are queued: how often the queues are looked at
SETTLE_FIRST_SECONDS = 0.005  # once drained: the first look at the store, then doubling
SETTLE_MAX_SECONDS = 0.2  # ... up to this between looks
STOP_SECONDS = 30.0  # per worker: the call in flight finishes and is recorded


class ResultKind(StrEnum):
    PLACED = "placed"
    MODIFIED = "modified"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    NOT_MIRRORED = "not mirrored"  # placed, and ended unfilled by its own terms (an IOC)
    ALREADY = "already mirrored"
    NOT_YET = "not yet"  # the leader order is still in transit: nothing to decide yet
    FAILED = "failed"


WOULD = {ResultKind.PLACED: "would place", ResultKind.MODIFIED: "would modify",
         ResultKind.CANCELLED: "would cancel", ResultKind.SKIPPED: "would skip"}


@dataclass(frozen=True)
class ReplayRow:
    """What happened to one leader order (leg) for one follower."""

    leader_order_id: str
    leg: int
    order: str  # the leader order in a few words: "BUY 10 HDFCBANK LIMIT 1600 pending"
    follower: str
    kind: ResultKind
    detail: str
    dry_run: bool = False
    auth: bool = False  # failed because the follower's token was refused

    @property
    def result(self) -> str:
        return WOULD.get(self.kind, self.kind.value) if self.dry_run else self.kind.value

    @property
    def failed(self) -> bool:
        return self.kind is ResultKind.FAILED


@dataclass(frozen=True)
class ReplayReport:
    since: datetime
    until: datetime
    dry_run: bool
    followers: tuple[str, ...]
    orders_in_book: int  # the leader's whole order book
    orders_in_window: int
    rows: tuple[ReplayRow, ...]

    @property
    def failed(self) -> list[ReplayRow]:
        return [row for row in self.rows if row.failed]

    @property
    def refused(self) -> list[ReplayRow]:
        return [row for row in self.rows if row.failed and row.auth]

    def counts(self) -> dict[str, int]:
        """Rows per result, in ResultKind's order."""
        counts: dict[str, int] = {}
        for kind in ResultKind:
            for row in self.rows:
                if row.kind is kind:
                    counts[row.result] = counts.get(row.result, 0) + 1
        return counts


@dataclass(frozen=True)
class Progress:
    stage: str  # "prepare", "orders" (fed to the replicator), "calls" (answered)
    done: int
    total: int


ProgressFn = Callable[[Progress], None]


def replay_missed(wiring: Wiring, store: Store, *, since: datetime, until: datetime,
                  follower: str | None = None, max_age: float | None = None,
                  dry_run: bool = False, on_progress: ProgressFn = lambda progress: None,
                  settle_seconds: float = SETTLE_SECONDS) -> ReplayReport:
    """Mirror the leader orders created in [since, until] that follow missed.

    `store` is the real store, or for a dry run a scratch copy of it
    (store.db.scratch_copy): a dry run records its decisions there and sends nothing.
    `follower` limits it to one follower (the others are not touched); `max_age`
    overrides every follower's max_order_age_seconds for this run. Raises AuthError when
    the leader's token is refused, BrokerError when the leader's books cannot be read,
    UsageError for an unknown or disabled follower. Failed calls and refused follower
    tokens are rows (`failed`, `auth`), not exceptions: the other followers still go on.
    """
    selected = wiring.select(follower, max_age)
    if dry_run:  # nothing is sent: no slot is taken from the limits follow shares
        selected = replace(selected, limiter_for=no_limit)
    return _Replay(selected, store, since, until, dry_run=dry_run, on_progress=on_progress,
                   settle_seconds=settle_seconds).run()


def _created(report: OrderReport) -> datetime | None:
    return report.created_at or report.updated_at


def in_window(report: OrderReport, since: datetime, until: datetime) -> bool:
    """Created in [since, until], both ends included (Dhan's times have whole seconds)."""
    created = _created(report)
    return created is not None and since <= created <= until


def describe_order(report: OrderReport) -> str:
    price = f" {report.price:g}" if report.price and report.order_type in (
        "LIMIT", "STOP_LOSS") else ""
    trigger = f" trigger {report.trigger_price:g}" if report.trigger_price else ""
    traded = (f" {report.traded_quantity}/{report.quantity}"
              if 0 < report.traded_quantity < report.quantity else "")
    leg = f" leg {report.leg}" if report.leg != 1 else ""
    return (f"{report.transaction_type} {report.quantity} {report.symbol or report.security_id}"
            f" {report.order_type}{price}{trigger}{leg} {report.status.lower()}{traded}")


class Calls:
    """This run's intents (id -> follower) and which are still unanswered, read from the
    store by what changed: intents after the last id seen (a retry a worker added), and
    the ones still SENDING through the status index. Nothing re-reads or decodes the
    whole run while it waits."""

    def __init__(self, store: Store, baseline: int, resumed: dict[int, str],
                 orders: set[tuple[str, int]], followers: set[str]) -> None:
        self.db = store.db
        self.orders = orders
        self.followers = followers
        self.mine: dict[int, str] = dict(resumed)
        self.seen = baseline

    def refresh(self) -> None:
        for intent_id, follower, leader_order_id, leg, _ in intents_after(self.db, self.seen):
            self.seen = intent_id
            if (leader_order_id, leg) in self.orders and follower in self.followers:
                self.mine[intent_id] = follower

    def unanswered(self, halted: Callable[[str], bool]) -> list[int]:
        # SENDING first, new intents after: a retry is committed with the end of the call
        # it retries, so one read or the other sees the run still busy.
        sending = sending_intent_ids(self.db)
        self.refresh()
        return sorted(intent_id for intent_id in sending
                      if intent_id in self.mine and not halted(self.mine[intent_id]))


class Worker(Protocol):
    """What the wait asks of a follower's worker (engine/worker.py FollowerWorker)."""

    halted_reason: str | None

    @property
    def backlog(self) -> int: ...


def wait_for_calls(workers: Sequence[Worker], calls: Calls, halted: Callable[[str], bool],
                   *, settle_seconds: float, on_progress: ProgressFn,
                   sleep: Callable[[float], None] = time.sleep,
                   monotonic: Callable[[], float] = time.monotonic) -> None:
    """Until every call of the run is answered, or `settle_seconds` are up. While the
    workers' queues hold calls, only the queues are looked at; once they are drained,
    the store, for what is still outstanding, less and less often while nothing ends.
    A halted follower's calls stay SENDING: they are not waited for."""
    deadline = monotonic() + settle_seconds
    pause, told = SETTLE_FIRST_SECONDS, (-1, -1)
    while True:
        live = [worker for worker in workers if not worker.halted_reason]
        queued = sum(worker.backlog for worker in live)
        if queued:  # a lower bound: each live worker may have one call in flight
            calls.refresh()
            done, left = max(len(calls.mine) - queued - len(live), told[0], 0), True
        else:
            outstanding = calls.unanswered(halted)
            done, left = len(calls.mine) - len(outstanding), bool(outstanding)
        if (done, len(calls.mine)) != told:
            if done != told[0]:
                pause = SETTLE_FIRST_SECONDS  # something ended: look again soon
            told = done, len(calls.mine)
            on_progress(Progress("calls", *told))
        if not left or monotonic() > deadline:
            return
        sleep(BUSY_TICK_SECONDS if queued else pause)
        if not queued:
            pause = min(pause * 2, SETTLE_MAX_SECONDS)


class _Replay:
    def __init__(self, wiring: Wiring, store: Store, since: datetime, until: datetime, *,
                 dry_run: bool, on_progress: ProgressFn, settle_seconds: float) -> None:
        self.wiring = wiring
        self.store = store
        self.since = since
        self.until = until
        self.dry_run = dry_run
        self.on_progress = on_progress
        self.settle_seconds = settle_seconds
        self.names = tuple(f.name for f in wiring.settings.enabled)

    def run(self) -> ReplayReport:
        self.on_progress(Progress("prepare", 0, 1))
        engine = FollowEngine(self.wiring, self.store)
        engine.prepare()
        replicator = engine.replicator
        assert replicator is not None
        # tokens refused reading positions in prepare()
        refused = {name: _refused(name, "DH-901") for name in engine.status.stopped_followers}
        active = self._refresh_followers(engine, [p for p in replicator.followers
                                                  if p.name not in refused], refused)
        # A follower whose token is refused takes no decision at all: nothing is recorded
        # for it, so a later run (or follow) with a fresh token still mirrors its orders.
        replicator.followers = active
        book = engine.leader.order_book()
        if book.kind is OutcomeKind.AUTH:
            raise AuthError(f"the leader's token was refused reading its order book "
                            f"({book.code})", account="leader")
        if not book.ok:
            raise BrokerError(f"cannot read the leader's order book: {book.describe()}")
        # As follow's catch-up: by last update; ties (Dhan's times have whole seconds) in
        # the order they were placed (the book lists the newest first).
        reports = sorted((r for r in reversed(book.data)
                          if in_window(r, self.since, self.until)), key=book_order)
        self.on_progress(Progress("prepare", 1, 1))

        baseline = self.store.last_ids()  # (intent, mirror): this run's come after
        orders = {(r.order_id, r.leg): r for r in reports}
        active_names = {plan.name for plan in active}
        # Calls an earlier run committed but never finished (it crashed or was stopped):
        # sent again as follow's start sends them, a place only after a lookup.
        resumed = [row for row in self.store.sending_intent_rows()
                   if (row.leader_order_id, row.leg) in orders and row.follower in active_names]
        if self.dry_run:
            for plan in active:  # decide only: nothing reaches a worker
                plan.submit = _discard
        else:
            for row in resumed:  # left SENDING by an earlier run: looked up before resent
                engine.workers[row.follower].submit(row.id, resume=True)
        # Every decision first (the workers are not started yet; submit only queues), so
        # the calls sent are exactly what a dry run on the same books lists.
        self._feed(replicator.on_leader_report, reports)
        if not self.dry_run:
            calls = self._send(engine, active, {row.id: row.follower for row in resumed},
                               baseline[0], set(orders))
            answered = [plan for plan in active if not engine.workers[plan.name].halted_reason]
            self._record_answers(engine, answered, calls)
        rows = self._rows(engine, orders, refused, baseline, {r.id for r in resumed})
        return ReplayReport(self.since, self.until, self.dry_run, self.names, len(book.data),
                            len(orders), tuple(rows))

    # ---- steps ---------------------------------------------------------------------------

    def _refresh_followers(self, engine: FollowEngine, plans: list[FollowerPlan],
                           refused: dict[str, str]) -> list[FollowerPlan]:
        """Apply each follower's order book to its mirrors, as follow does when a follower's
        stream connects: mirrors that filled or ended while nobody watched are decided on
        as they are. The positions are then read again, because applying those fills moved
        the positions read a moment ago, which had them already."""
        replicator = engine.replicator
        assert replicator is not None
        kept = []
        for plan in plans:
            account = engine.accounts[plan.name]
            book = account.order_book()
            if book.kind is OutcomeKind.AUTH:
                refused[plan.name] = _refused(plan.name, book.code)
                continue
            if book.ok:
                for report in book.data:
                    replicator.on_follower_report(plan.name, report)
            else:
                log.warning("follower %s: order book not read: %s", plan.name, book.describe())
            positions = account.positions()
            if positions.ok:
                engine.positions[plan.name].load(positions.data or [])
            kept.append(plan)
        return kept

    def _feed(self, decide: Callable[[OrderReport], None], reports: list[OrderReport]) -> None:
        self.on_progress(Progress("orders", 0, len(reports)))
        for done, report in enumerate(reports, 1):
            decide(report)
            self.on_progress(Progress("orders", done, len(reports)))

    def _send(self, engine: FollowEngine, active: list[FollowerPlan], resumed: dict[int, str],
              baseline: int, orders: set[tuple[str, int]]) -> Calls:
        """Start the workers on the queued intents, wait (bounded) until none of this run's
        intents is still being sent, then stop the workers (a call in flight finishes and
        is recorded first). The run's calls, as the wait last saw them."""
        workers = [engine.workers[plan.name] for plan in active]
        calls = Calls(self.store, baseline, resumed, orders, set(engine.workers))
        for worker in workers:
            worker.start()
        try:
            wait_for_calls(workers, calls, lambda name: bool(engine.workers[name].halted_reason),
                           settle_seconds=self.settle_seconds, on_progress=self.on_progress)
        finally:
            for worker in workers:
                worker.stop(STOP_SECONDS)
        calls.refresh()  # a retry added while the last call finished
        return calls

    def _record_answers(self, engine: FollowEngine, plans: list[FollowerPlan],
                        calls: Calls) -> None:
        """After the calls, each follower's book once more: what this run's orders did
        meanwhile (a fill, a rejection) is recorded, as follow's order stream would have
        told it. Only this run's mirrors are looked at, and only the orders the store does
        not have as the book shows them; one transaction for all."""
        mine = {(follower, cid): (mirror_id, json.loads(legs or "{}"))
                for mirror_id, follower, cid, legs in mirrors_of_intents(self.store.db,
                                                                         calls.mine)}
        if not mine:
            return  # nothing was sent: the books were applied before deciding
        for plan in plans:
            book = engine.accounts[plan.name].order_book()
            if not book.ok:
                if book.kind is not OutcomeKind.AUTH:
                    log.warning("follower %s: order book not read: %s", plan.name,
                                book.describe())
                continue
            news = [(found[0], report) for report in book.data
                    if (found := mine.get((plan.name, report.correlation_id))) is not None
                    and found[1].get(report.order_id) != [
                        report.status, report.traded_quantity, report.quantity]]
            if news:
                with self.store.write():
                    for mirror_id, report in news:
                        engine.updater.apply_report(mirror_id, report)

    # ---- reading what happened -----------------------------------------------------------

    def _rows(self, engine: FollowEngine, orders: dict[tuple[str, int], OrderReport],
              refused: dict[str, str], baseline: tuple[int, int],
              resumed: set[int]) -> list[ReplayRow]:
        mine = self.store.intent_rows(resumed) + self.store.intent_rows_after(baseline[0])
        ran: dict[tuple[str, int, str], list[IntentRow]] = {}
        for row in mine:  # oldest first
            ran.setdefault((row.leader_order_id, row.leg, row.follower), []).append(row)
        ordered = sorted(orders.values(), key=lambda r: (_created(r), r.order_id, r.leg))
        rows = []
        for report in ordered:
            for name in self.names:
                kind, detail, auth = self._outcome(
                    engine, report, name, refused.get(name),
                    ran.get((report.order_id, report.leg, name), []), baseline[1], resumed)
                rows.append(ReplayRow(report.order_id, report.leg, describe_order(report),
                                      name, kind, detail, self.dry_run, auth))
        return rows

    def _outcome(self, engine: FollowEngine, report: OrderReport, name: str,
                 refused: str | None, intents: list[IntentRow], baseline_mirror: int,
                 resumed: set[int]) -> tuple[ResultKind, str, bool]:
        if refused:
            return ResultKind.FAILED, refused, True
        mirror = self.store.mirror(report.order_id, name, report.leg)
        if intents:
            assert mirror is not None
            if self.dry_run:
                return _planned(intents, resumed)
            worker = engine.workers[name]
            return _done(intents, self.store, worker.halted_reason, self.settle_seconds)
        if mirror is None:
            if report.leg != ENTRY_LEG:
                return (ResultKind.NOT_YET, f"exit leg {report.leg} of a {report.product_type}: "
                        "the follower's is made by Dhan when its own entry fills", False)
            if report.status in OPEN_STATUSES and not report.exchange_accepted:
                return (ResultKind.NOT_YET, f"leader order is {report.status.lower()}: "
                        "mirrored once the exchange accepts it", False)
            return ResultKind.NOT_YET, f"leader order is {report.status.lower()}", False
        if mirror.id > baseline_mirror:  # decided now, with nothing to send
            return ResultKind.SKIPPED, mirror.reason, False
        return ResultKind.ALREADY, _mirror_text(mirror), False


def _refused(follower: str, code: str) -> str:
    return token_refused_text(follower, code, then="run again",
                              consequence="nothing was decided or recorded for it")


def _discard(intent_id: int, **_handoff: object) -> None:
    """A dry run's worker: the intent stays in the copy, to be reported."""


def _mirror_text(mirror: MirrorOrder) -> str:
    total = mirror.quantity + mirror.carried_quantity
    filled = mirror.filled_quantity + mirror.carried_quantity
    text = mirror.state.lower()
    if mirror.state != "SKIPPED":
        text += f" {filled}/{total}"
    if mirror.follower_order_id:
        text += f", follower order {', '.join(legs_of(mirror)) or mirror.follower_order_id}"
    if mirror.reason and mirror.state in ("SKIPPED", "REJECTED", "CANCELED", "EXPIRED"):
        text += f": {mirror.reason}"
    return text


def _request_text(request: dict) -> str:
    order = request.get("order") or request.get("modify") or {}
    quantity, order_type = order.get("quantity"), order.get("order_type", "")
    price = order.get("price") or 0
    trigger = order.get("trigger_price") or 0
    text = f"{quantity} {order_type}".strip()
    if price:
        text += f" @ {price:g}"
    if trigger:
        text += f" trigger {trigger:g}"
    if request.get("slice"):
        text += " (sliced)"
    return text


def _planned(intents: Sequence[IntentRow], resumed: set[int]) -> tuple[ResultKind, str, bool]:
    """A dry run: what the committed intents would send."""
    parts, kinds = [], []
    for intent in intents:
        if intent.id in resumed and intent.action == "PLACE":
            kinds.append(ResultKind.PLACED)
            parts.append("resume an unfinished place: looked up first, sent only if the "
                         "broker does not have it")
        elif intent.action == "PLACE":
            kinds.append(ResultKind.PLACED)
            parts.append(_request_text(intent.request))
        elif intent.action == "MODIFY":
            kinds.append(ResultKind.MODIFIED)
            parts.append("to " + _request_text(intent.request))
        else:
            kinds.append(ResultKind.CANCELLED)
            parts.append(f"cancel ({intent.request.get('reason', '')})")
    return _first_of(kinds), "; ".join(parts), False


def _first_of(kinds: Sequence[ResultKind]) -> ResultKind:
    for kind in (ResultKind.FAILED, ResultKind.PLACED, ResultKind.NOT_MIRRORED,
                 ResultKind.MODIFIED, ResultKind.CANCELLED, ResultKind.ALREADY):
        if kind in kinds:
            return kind
    return ResultKind.ALREADY


def _done(intents: Sequence[IntentRow], store: Store, halted: str | None,
          settle_seconds: float) -> tuple[ResultKind, str, bool]:
    """A real run: what the calls came to. Retries (a new attempt after an unknown
    outcome) are intents of the same leader order and follower; the last place counts."""
    kinds: list[ResultKind] = []
    parts: list[str] = []
    auth = False
    last_place = max((i.id for i in intents if i.action == "PLACE"), default=None)
    for intent in intents:
        if intent.action == "PLACE" and intent.id != last_place:
            continue  # an earlier attempt: its outcome led to the last one
        mirror = store.mirror_by_id(intent.mirror_id)
        if intent.status == "SENDING":
            kinds.append(ResultKind.FAILED)
            if halted:
                auth = True
                parts.append(f"not sent: {halted}")
            else:
                parts.append(f"no answer within {settle_seconds:g} s: it stays pending, "
                             "and follow resolves it when it starts")
        elif intent.status == "AUTH":
            kinds.append(ResultKind.FAILED)
            auth = True
            parts.append(halted or f"token refused: {intent.outcome}")
        elif intent.action == "PLACE":
            kinds.append(_place_result(intent, mirror, parts))
        elif intent.action == "MODIFY":
            if intent.status == "DONE":
                kinds.append(ResultKind.MODIFIED)
                parts.append("to " + _request_text(intent.request))
            elif intent.status == "SKIPPED":
                kinds.append(ResultKind.ALREADY)
                parts.append(f"nothing to modify: {intent.outcome}")
            else:
                kinds.append(ResultKind.FAILED)
                parts.append(f"modify failed: {intent.outcome}")
        else:
            kinds.append(_cancel_result(intent, mirror, parts))
    return _first_of(kinds), "; ".join(parts), auth


def _place_result(intent: IntentRow, mirror: MirrorOrder,
                  parts: list[str]) -> ResultKind:
    if intent.status != "DONE":
        why = intent.outcome
        if intent.status == "UNKNOWN":
            why = f"{why}; gave up after {mirror.attempt} attempts"
        parts.append(why)
        return ResultKind.FAILED
    if mirror.state == "REJECTED":
        parts.append(f"{_request_text(intent.request)}, rejected: {mirror.reason}")
        return ResultKind.FAILED
    parts.append(f"{_request_text(intent.request)} -> {_mirror_text(mirror)}")
    if mirror.reason_code == ReasonCode.IOC_UNFILLED and not mirror.filled_quantity:
        return ResultKind.NOT_MIRRORED  # the price ran beyond max_price_drift_percent
    return ResultKind.PLACED


def _cancel_result(intent: IntentRow, mirror: MirrorOrder,
                   parts: list[str]) -> ResultKind:
    reason = intent.request.get("reason", "")
    if intent.status == "DONE":
        parts.append(f"cancel ({reason}) -> {_mirror_text(mirror)}")
        return ResultKind.CANCELLED
    if intent.status == "SKIPPED":
        parts.append(f"cancel ({reason}): never placed")
        return ResultKind.CANCELLED
    still_open = [oid for oid, (status, _, _) in legs_of(mirror).items()
                  if status in OPEN_STATUSES]
    if still_open:
        parts.append(f"cancel ({reason}) failed: {intent.outcome}")
        return ResultKind.FAILED
    parts.append(f"cancel ({reason}): already ended, {_mirror_text(mirror)}")
    return ResultKind.CANCELLED
