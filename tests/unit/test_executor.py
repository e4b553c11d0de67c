"""The executor (engine/executor.py), the one owner of a follower's broker calls, against
the in-memory broker (tests/fakes.py) and a real store on a temporary file: what it sends,
how often, what it adopts and records, and that a refused token ends every call. Waits are
recorded, never slept; then the follower worker's use of it (a place not found after an
unknown outcome goes again under a new correlation id, exactly once each)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fakes import FakeBroker
from waiting import eventually

from copytrade.core.events import OrderReport, ReportSource
from copytrade.core.ids import correlation_id
from copytrade.core.orders import MirrorState
from copytrade.dhan.rest import Outcome, OutcomeKind, PlaceRequest
from copytrade.engine.executor import (
    CONVERGE_ATTEMPTS,
    MAX_PLACE_ATTEMPTS,
    RESUME_READS,
    THROTTLE_RETRIES,
    UNKNOWN_LOOKUPS,
    Backoff,
    Executor,
    LookupKind,
    PlaceKind,
    ResumeKind,
    token_refused_text,
)
from copytrade.engine.mirrors import MirrorUpdater
from copytrade.engine.positions import PositionBook
from copytrade.engine.reconciler import FollowerReconcile, Reconciler
from copytrade.engine.worker import FollowerWorker
from copytrade.store.db import open_store
from copytrade.store.models import Intent, MirrorOrder
from copytrade.store.repo import Store, legs_of

DAY = date(2025, 1, 6)
T0 = datetime(2025, 1, 6, 4, 0, tzinfo=UTC)
NAME = "f1"
ORDER = {"security_id": "1333", "exchange_segment": "NSE_EQ", "transaction_type": "BUY",
         "quantity": 10, "order_type": "LIMIT", "product_type": "CNC", "price": 100.0}
MODIFY = {"order_type": "LIMIT", "quantity": 10, "price": 101.0, "trigger_price": 0.0,
          "disclosed_quantity": 0, "validity": "DAY"}


@dataclass
class Waits:
    """The executor's wait: records each delay; `stop_after` waits answer "stop"."""

    delays: list[float] = field(default_factory=list)
    stop_after: int | None = None

    def __call__(self, seconds: float) -> bool:
        self.delays.append(seconds)
        return self.stop_after is not None and len(self.delays) > self.stop_after


@dataclass
class World:
    store: Store
    broker: FakeBroker
    updater: MirrorUpdater
    waits: Waits = field(default_factory=Waits)
    halts: list[tuple[str, str]] = field(default_factory=list)

    def executor(self) -> Executor:
        return Executor(NAME, self.broker, self.store, self.updater, wait=self.waits,
                        backoff=Backoff(), lookup_backoff=Backoff(initial=0.5, maximum=2.0),
                        on_halt=lambda name, reason: self.halts.append((name, reason)))

    def mirror(self, leader_id: str = "L1", attempt: int = 1) -> MirrorOrder:
        with self.store.write():
            if attempt == 1:
                self.store.save_leader(OrderReport(
                    order_id=leader_id, status="PENDING", exchange_segment="NSE_EQ",
                    security_id="1333", transaction_type="BUY", product_type="CNC",
                    order_type="LIMIT", validity="DAY", quantity=10, traded_quantity=0,
                    price=100.0, source=ReportSource.REST), (), DAY.isoformat())
            return self.store.create_mirror(
                leader_order=leader_id, follower=NAME, attempt=attempt,
                correlation_id=cid(leader_id, attempt), state=MirrorState.SUBMITTED.value,
                quantity=10, price=100.0, order_type="LIMIT", security_id="1333",
                product_type="CNC", transaction_type="BUY", submitted_at=T0)

    def intent(self, mirror: MirrorOrder, action: str = "PLACE",
               request: dict | None = None) -> Intent:
        with self.store.write():
            return self.store.add_intent(mirror, action, request or {"order": dict(ORDER)})

    def placed(self, leader_id: str = "L1") -> tuple[MirrorOrder, str]:
        """A mirror whose order is at the broker and recorded."""
        mirror = self.mirror(leader_id)
        [order_id] = self.broker.place(PlaceRequest(**ORDER), mirror.correlation_id,
                                       slice_order=False).data
        with self.store.write():
            self.updater.adopt_order_ids(mirror.id, [order_id])
        self.broker.calls.clear()
        return self.store.mirror_by_id(mirror.id), order_id

    def status(self, intent: Intent) -> tuple[str, str]:
        row = self.store.intent_by_id(intent.id)
        return row.status, row.outcome

    def audits(self, kind: str) -> list[str]:
        return [row[0] for row in self.store.db.execute_sql(
            "SELECT message FROM auditevent WHERE kind = ? ORDER BY id", (kind,))]


def cid(leader_id: str, attempt: int = 1) -> str:
    return correlation_id(DAY, leader_id, NAME, 1, attempt)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    db = open_store(tmp_path / "copytrade.db")
    store = Store(db, lambda: T0)
    positions = PositionBook()
    yield World(store, FakeBroker(), MirrorUpdater(store, lambda name: positions))
    db.close()


# ---- place ----------------------------------------------------------------------------------

def test_a_place_accepted_answers_its_order_ids_once(world: World) -> None:
    executor, mirror = world.executor(), world.mirror()
    result = executor.place(world.intent(mirror), mirror, {"order": dict(ORDER)})
    assert result.kind is PlaceKind.ACCEPTED and result.outcome is not None
    assert result.outcome.data == list(world.broker.orders)
    assert (world.broker.count("place"), executor.sent, world.waits.delays) == (1, 1, [])


def test_a_definitive_refusal_is_not_looked_up_or_sent_again(world: World) -> None:
    world.broker.fail("place", OutcomeKind.REFUSED, code="DH-905", message="bad input")
    executor, mirror = world.executor(), world.mirror()
    result = executor.place(world.intent(mirror), mirror, {"order": dict(ORDER)})
    assert result.kind is PlaceKind.REFUSED and "DH-905" in result.outcome.describe()
    assert world.broker.count("place") == 1
    assert world.broker.count("order_by_correlation") == 0


def test_a_throttled_place_backs_off_at_least_a_second_then_goes(world: World) -> None:
    world.broker.fail("place", OutcomeKind.THROTTLED, code="DH-904", times=2)
    executor, mirror = world.executor(), world.mirror()
    result = executor.place(world.intent(mirror), mirror, {"order": dict(ORDER)})
    assert result.kind is PlaceKind.ACCEPTED
    assert world.broker.count("place") == executor.sent == 3
    assert len(world.waits.delays) == 2 and min(world.waits.delays) >= 1.0
    assert len(world.broker.orders) == 1


def test_a_throttle_that_outlasts_every_retry_is_a_refusal(world: World) -> None:
    world.broker.fail("place", OutcomeKind.THROTTLED, code="DH-904", times=THROTTLE_RETRIES)
    executor, mirror = world.executor(), world.mirror()
    result = executor.place(world.intent(mirror), mirror, {"order": dict(ORDER)})
    assert result.kind is PlaceKind.REFUSED
    assert result.outcome.kind is OutcomeKind.THROTTLED
    assert world.broker.count("place") == THROTTLE_RETRIES and world.broker.orders == {}


def test_an_unknown_place_that_exists_is_adopted_never_resent(world: World) -> None:
    """Accept-then-timeout, and a book that lags the new order by one read."""
    world.broker.fail("place", OutcomeKind.UNKNOWN, message="read timed out", applied=True)
    world.broker.fail("order_by_correlation", OutcomeKind.NOT_FOUND)
    executor, mirror = world.executor(), world.mirror()
    intent = world.intent(mirror)
    result = executor.place(intent, mirror, {"order": dict(ORDER)})
    assert result.kind is PlaceKind.ADOPTED
    assert world.broker.count("place") == 1
    assert world.broker.count("order_by_correlation") == 2
    [order_id] = world.broker.orders
    stored = world.store.mirror_by_id(mirror.id)
    assert list(legs_of(stored)) == [order_id] and stored.follower_order_id == order_id
    assert stored.state == MirrorState.ACCEPTED.value
    status, outcome = world.status(intent)
    assert status == "DONE" and outcome == "adopted after unknown read timed out"


def test_an_unknown_place_not_found_is_left_to_the_caller_after_every_lookup(
        world: World) -> None:
    world.broker.fail("place", OutcomeKind.UNKNOWN, code="DH-908")
    executor, mirror = world.executor(), world.mirror()
    intent = world.intent(mirror)
    result = executor.place(intent, mirror, {"order": dict(ORDER)})
    assert result.kind is PlaceKind.NOT_FOUND and result.outcome.code == "DH-908"
    assert world.broker.count("place") == 1  # never blind-resent
    assert world.broker.count("order_by_correlation") == UNKNOWN_LOOKUPS
    assert len(world.waits.delays) == UNKNOWN_LOOKUPS  # a grace before each read
    assert world.status(intent)[0] == "SENDING"  # the worker decides what comes next


def test_told_to_stop_while_resolving_an_unknown_place_leaves_the_intent_sending(
        world: World) -> None:
    world.broker.fail("place", OutcomeKind.UNKNOWN)
    world.waits.stop_after = 0
    executor, mirror = world.executor(), world.mirror()
    intent = world.intent(mirror)
    assert executor.place(intent, mirror, {"order": dict(ORDER)}).kind is PlaceKind.STOPPED
    assert world.broker.count("order_by_correlation") == 0
    assert world.status(intent)[0] == "SENDING"


# ---- modify ---------------------------------------------------------------------------------

def test_a_modify_whose_outcome_is_unknown_is_sent_again(world: World) -> None:
    _, order_id = world.placed()
    world.broker.fail("modify", OutcomeKind.UNKNOWN, message="timed out")
    result = world.executor().modify(order_id, dict(MODIFY))
    assert result.outcome is not None and result.outcome.ok
    assert world.broker.count("modify") == 2
    assert world.broker.orders[order_id].price == 101.0


def test_a_modify_unknown_every_time_is_bounded(world: World) -> None:
    _, order_id = world.placed()
    world.broker.fail("modify", OutcomeKind.UNKNOWN, times=10)
    result = world.executor().modify(order_id, dict(MODIFY))
    assert result.outcome.kind is OutcomeKind.UNKNOWN
    assert world.broker.count("modify") == CONVERGE_ATTEMPTS


# ---- cancel ---------------------------------------------------------------------------------

def test_a_cancel_whose_reply_was_lost_is_read_back_not_resent(world: World) -> None:
    _, order_id = world.placed()
    world.broker.fail("cancel", OutcomeKind.UNKNOWN, message="timed out", applied=True)
    leg = world.executor().cancel(order_id)
    assert leg.sent and leg.report is not None and leg.report.status == "CANCELLED"
    assert world.broker.count("cancel") == 1
    assert leg.describe() == f"{order_id}: unknown timed out -> CANCELLED"


def test_a_cancel_that_did_not_get_through_is_sent_again_until_it_converges(
        world: World) -> None:
    _, order_id = world.placed()
    world.broker.fail("cancel", OutcomeKind.UNKNOWN, code="DH-908")
    leg = world.executor().cancel(order_id)
    assert leg.sent and leg.outcome.ok
    assert world.broker.count("cancel") == 2
    assert world.broker.orders[order_id].status == "CANCELLED"
    assert leg.earlier == ("unknown DH-908 -> PENDING",)


def test_a_cancel_of_an_order_already_filled_reports_what_it_is(world: World) -> None:
    _, order_id = world.placed()
    world.broker.fill(order_id)
    leg = world.executor().cancel(order_id)
    assert not leg.sent and leg.outcome.kind is OutcomeKind.REFUSED
    assert leg.report is not None and leg.report.status == "TRADED"
    assert world.broker.count("cancel") == 1  # a definitive no is not sent again


def test_an_unknown_cancel_of_an_order_that_filled_meanwhile_is_not_a_cancel(
        world: World) -> None:
    _, order_id = world.placed()
    world.broker.fail("cancel", OutcomeKind.UNKNOWN)
    world.broker.fill(order_id)
    leg = world.executor().cancel(order_id)
    assert not leg.sent and leg.report is not None and leg.report.status == "TRADED"
    assert world.broker.count("cancel") == 1


def test_a_cancel_unknown_every_time_is_bounded(world: World) -> None:
    _, order_id = world.placed()
    world.broker.fail("cancel", OutcomeKind.UNKNOWN, times=10)
    leg = world.executor().cancel(order_id)
    assert not leg.sent and leg.outcome.kind is OutcomeKind.UNKNOWN
    assert world.broker.count("cancel") == CONVERGE_ATTEMPTS
    assert leg.report is not None and leg.report.status == "PENDING"


# ---- token refusal --------------------------------------------------------------------------

def test_a_refused_token_halts_once_with_the_one_wording_and_nothing_more_is_called(
        world: World) -> None:
    mirror, order_id = world.placed()
    world.broker.fail("cancel", OutcomeKind.AUTH, code="DH-901", message="token expired")
    executor = world.executor()
    cancel = world.intent(mirror, "CANCEL", {"reason": "test"})
    leg = executor.cancel(order_id)
    assert leg.refused_token and not leg.sent
    reason = executor.halt(cancel)
    assert reason == token_refused_text(NAME, "DH-901") == (
        "token of follower f1 was refused (DH-901): refresh it (web.dhan.co > My Profile > "
        "Access DhanHQ APIs) and restart")
    assert world.status(cancel) == ("AUTH", "auth DH-901 token expired")
    assert world.halts == [(NAME, reason)] and executor.halted_reason == reason
    assert world.audits("account_stopped") == [reason]
    calls = list(world.broker.calls)
    other = world.mirror("L2")
    assert executor.place(world.intent(other), other,
                          {"order": dict(ORDER)}).kind is PlaceKind.AUTH
    assert executor.modify(order_id, dict(MODIFY)).outcome.kind is OutcomeKind.AUTH
    assert executor.cancel(order_id).refused_token
    assert executor.lookup(other.id, other.correlation_id).kind is LookupKind.AUTH
    assert executor.positions().kind is OutcomeKind.AUTH
    assert world.broker.calls == calls  # not one more call reached the broker
    executor.halt()
    assert world.halts == [(NAME, reason)]  # recorded once
    assert world.audits("account_stopped") == [reason]


def test_the_wording_says_what_to_do_after_refreshing() -> None:
    assert token_refused_text("f2", then="run again").endswith("and run again")
    assert "(DH-901)" in token_refused_text("f2")  # no code given: Dhan's
    assert token_refused_text("f2", "DH-901", then="run again",
                              consequence="nothing was decided or recorded for it") == (
        "token of follower f2 was refused (DH-901): nothing was decided or recorded for it; "
        "refresh it (web.dhan.co > My Profile > Access DhanHQ APIs) and run again")


# ---- resume and lookup ----------------------------------------------------------------------

def test_a_resumed_place_the_broker_has_is_adopted_not_sent(world: World) -> None:
    mirror = world.mirror()
    intent = world.intent(mirror)
    world.broker.place(PlaceRequest(**ORDER), mirror.correlation_id, slice_order=False)
    executor = world.executor()
    result = executor.resume_place(intent, mirror)
    assert result.kind is ResumeKind.ADOPTED
    assert world.broker.count("place") == 1  # the last run's, nothing more
    assert world.status(intent) == ("DONE", "adopted on restart")
    assert list(legs_of(world.store.mirror_by_id(mirror.id))) == list(world.broker.orders)


def test_a_resumed_place_not_in_two_book_reads_is_to_be_sent(world: World) -> None:
    mirror = world.mirror()
    intent = world.intent(mirror)
    executor = world.executor()
    assert executor.resume_place(intent, mirror).kind is ResumeKind.SEND
    assert world.broker.count("order_book") == 2 and world.status(intent)[0] == "SENDING"
    assert world.audits("resumed") and world.broker.count("place") == 0
    # the reads are shared by every place resumed in this run
    second = world.mirror("L2")
    assert executor.resume_place(world.intent(second), second).kind is ResumeKind.SEND
    assert world.broker.count("order_book") == 2


def test_a_resumed_place_the_broker_cannot_be_asked_about_stays_pending(
        world: World) -> None:
    world.broker.fail("order_book", OutcomeKind.UNKNOWN, times=RESUME_READS)
    mirror = world.mirror()
    intent = world.intent(mirror)
    assert world.executor().resume_place(intent, mirror).kind is ResumeKind.UNRESOLVED
    assert world.status(intent)[0] == "SENDING" and world.audits("unresolved")


def test_a_resumed_place_whose_token_is_refused_stays_pending(world: World) -> None:
    world.broker.fail("order_book", OutcomeKind.AUTH, code="DH-901")
    mirror = world.mirror()
    intent = world.intent(mirror)
    executor = world.executor()
    assert executor.resume_place(intent, mirror).kind is ResumeKind.AUTH
    assert world.broker.count("order_book") == 1 and world.status(intent)[0] == "SENDING"


def test_a_lookup_that_finds_nothing_adopts_nothing(world: World) -> None:
    mirror = world.mirror()
    found = world.executor().lookup(mirror.id, mirror.correlation_id)
    assert found.kind is LookupKind.NOT_FOUND and world.waits.delays == []
    assert legs_of(world.store.mirror_by_id(mirror.id)) == {}


# ---- the follower worker over its executor ------------------------------------------------

class _Limiter:
    def acquire(self) -> bool:
        return True

    def close(self) -> None:
        pass


def _worker(world: World) -> FollowerWorker:
    worker = FollowerWorker(
        NAME, world.broker, world.store, world.updater, _Limiter(),  # type: ignore[arg-type]
        on_halt=lambda name, reason: world.halts.append((name, reason)),
        correlation_id_for=lambda mirror, attempt: cid(mirror.leader_order_id, attempt))
    worker.executor.wait = world.waits
    return worker


def test_the_worker_places_each_attempt_once_under_its_own_correlation_id(
        world: World) -> None:
    """Not found after an unknown outcome, every time: one place per correlation id, then
    the mirror is abandoned and reported."""
    world.broker.fail("place", OutcomeKind.UNKNOWN, times=MAX_PLACE_ATTEMPTS)
    worker = _worker(world)
    mirror = world.mirror()
    worker._execute(world.intent(mirror).id)
    sent = [call[2] for call in world.broker.calls if call[0] == "place"]
    assert sent == [cid("L1", attempt) for attempt in range(1, MAX_PLACE_ATTEMPTS + 1)]
    assert worker.sent == MAX_PLACE_ATTEMPTS
    states = [m.state for m in MirrorOrder.select().order_by(MirrorOrder.attempt)]
    assert states == [MirrorState.REJECTED.value] * MAX_PLACE_ATTEMPTS
    assert world.audits("mirror_abandoned")


def test_the_worker_stops_the_account_on_a_refused_token_and_sends_no_more(
        world: World) -> None:
    world.broker.fail("place", OutcomeKind.AUTH, code="DH-901")
    worker = _worker(world)
    first, second = world.mirror("L1"), world.mirror("L2")
    first_intent, second_intent = world.intent(first), world.intent(second)
    worker._execute(first_intent.id)
    worker._execute(second_intent.id)  # the queue skips it; called directly: no call
    assert worker.halted_reason == token_refused_text(NAME, "DH-901")
    assert world.status(first_intent)[0] == "AUTH"
    assert world.status(second_intent)[0] == "AUTH"
    assert world.broker.count("place") == 1
    assert [m.state for m in MirrorOrder.select()] == ["SUBMITTED", "SUBMITTED"]
    assert len(world.halts) == 1


def test_the_worker_records_a_cancel_of_a_filled_order_as_checked(world: World) -> None:
    mirror, order_id = world.placed()
    world.broker.fill(order_id)
    worker = _worker(world)
    intent = world.intent(mirror, "CANCEL", {"reason": "leader cancelled"})
    worker._execute(intent.id)
    status, outcome = world.status(intent)
    assert status == "CHECKED" and "DH-906" in outcome
    stored = world.store.mirror_by_id(mirror.id)
    assert stored.state == MirrorState.FILLED.value  # the read, applied
    assert json.loads(stored.legs)[order_id][0] == "TRADED"


class _Raises(FakeBroker):
    """A broker whose first `times` cancels raise (a bug, a driver error): no outcome."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    def cancel(self, order_id: str) -> Outcome:
        if self.times:
            self.times -= 1
            raise RuntimeError("database is locked")
        return super().cancel(order_id)


def _run_cancel(world: World, mirror: MirrorOrder, until: Callable[[], object]) -> Intent:
    """A cancel intent through a started worker, until `until` holds (bounded)."""
    worker = _worker(world)
    worker.backoff = Backoff(initial=0.01, maximum=0.01)
    intent = world.intent(mirror, "CANCEL", {"reason": "leader cancelled"})
    worker.start()
    try:
        worker.submit(intent.id)
        eventually(lambda: until(intent), timeout=10)
    finally:
        worker.stop(timeout=10)
    return intent


def test_an_intent_whose_run_raises_is_recorded_and_tried_once_more(world: World) -> None:
    world.broker = _Raises(times=1)
    mirror, order_id = world.placed()
    intent = _run_cancel(world, mirror, lambda intent: world.status(intent)[0] != "SENDING")
    assert world.status(intent)[0] == "DONE"
    assert world.broker.orders[order_id].status == "CANCELLED"
    [failed] = world.audits("intent_failed")
    assert "RuntimeError: database is locked" in failed and "once more" in failed


def test_an_intent_that_fails_twice_stays_pending_and_says_so(world: World) -> None:
    world.broker = _Raises(times=2)
    mirror, _ = world.placed()
    intent = _run_cancel(world, mirror, lambda intent: len(world.audits("intent_failed")) == 2)
    assert world.status(intent)[0] == "SENDING"  # the next start resolves it
    assert "stays pending for the next start" in world.audits("intent_failed")[1]


def test_backoffs_set_on_the_worker_reach_its_executor(world: World) -> None:
    worker = _worker(world)
    fast = Backoff(initial=0.05, maximum=0.2)
    worker.backoff = fast
    worker.lookup_backoff = fast
    assert worker.executor.backoff is fast and worker.executor.lookup_backoff is fast


# ---- the reconciler's lookups go through the executor ---------------------------------------

def _reconcile(world: World, executor: Executor | None) -> FollowerReconcile:
    follower = FollowerReconcile(NAME, world.broker, "alert", lambda intent_id: None,
                                 executor=executor)
    Reconciler(world.store, world.updater, [follower], trading_date=DAY.isoformat,
               now=lambda: T0 + timedelta(minutes=5), stopped=lambda name: False).run_round()
    return follower


def test_the_reconciler_looks_a_stuck_mirror_up_through_an_executor(world: World) -> None:
    mirror = world.mirror()
    follower = _reconcile(world, None)
    assert isinstance(follower.executor, Executor)  # one of its own: follow gave none
    assert world.broker.count("order_by_correlation") == 1
    found = world.broker.add(OrderReport(
        order_id="X1", status="PENDING", exchange_segment="NSE_EQ", security_id="1333",
        transaction_type="BUY", product_type="CNC", order_type="LIMIT", validity="DAY",
        quantity=10, traded_quantity=0, price=100.0, correlation_id=mirror.correlation_id,
        source=ReportSource.REST))
    _reconcile(world, follower.executor)
    assert world.store.mirror_by_id(mirror.id).follower_order_id == found


def test_the_reconciler_asks_nothing_of_an_account_whose_token_was_refused(
        world: World) -> None:
    world.mirror()
    executor = world.executor()
    world.broker.fail("cancel", OutcomeKind.AUTH, code="DH-901")
    executor.cancel("nothing")  # the worker met the refused token
    _reconcile(world, executor)
    assert world.broker.count("order_by_correlation") == 0
