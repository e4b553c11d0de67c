"""The reconciler (engine/reconciler.py) against an in-memory broker (tests/fakes.py) and a
real store on a temporary file: what it records, what it sends, what it leaves alone,
and that a round costs what the open mirrors cost, not what the whole day holds. Then
replay-missed's wait for its calls on the same store: work per answer, not per poll."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fakes import FakeBroker
from hypothesis import given, settings
from test_reconcile import GRACE, messy_world

from copytrade.core.events import OrderReport, ReportSource
from copytrade.core.ids import correlation_id, is_ours
from copytrade.core.leader import merge
from copytrade.core.orders import TERMINAL_STATES, MirrorState, Trigger
from copytrade.core.reconcile import (
    StoredMirror,
    diff_follower,
    index_book,
    settled_rows,
    stem,
)
from copytrade.core.sizing import NO_CAPS, SizingMode, SizingRule
from copytrade.dhan.rest import OutcomeKind, PlaceRequest
from copytrade.engine import reconciler as engine
from copytrade.engine import replay
from copytrade.engine.mirrors import CANCELLED_OUTSIDE, MirrorUpdater
from copytrade.engine.positions import PositionBook
from copytrade.engine.reconciler import FollowerReconcile, Reconciler, gather
from copytrade.engine.replicator import FollowerPlan, Replicator
from copytrade.store.db import open_store
from copytrade.store.models import MirrorOrder
from copytrade.store.repo import Store

DAY = date(2025, 1, 6)
NAME = "f1"


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2025, 1, 6, 4, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class World:
    store: Store
    broker: FakeBroker
    clock: Clock
    updater: MirrorUpdater
    submitted: list[int] = field(default_factory=list)
    freeze_limit: int | None = None
    replicator: Replicator = field(init=False)

    def __post_init__(self) -> None:
        """The replicator follow builds: its planner sizes the reconciler's replacements
        (multiplier 1, lot size 1: a follower mirrors the leader unit for unit)."""
        plan = FollowerPlan(NAME, SizingRule(SizingMode.MULTIPLIER, 1.0), NO_CAPS,
                            PositionBook(), submit=lambda *args, **kwargs: None)
        self.replicator = Replicator(
            self.store, [plan], self.updater, lot_size=lambda segment, security: 1,
            freeze_limit=lambda security, symbol: self.freeze_limit,
            trading_date=lambda: DAY, leader_positions=PositionBook(), wall=lambda: 1e9,
            now=self.clock.now)

    def reconciler(self, policy: str = "alert", *, stopped: bool = False,
                   planned: bool = True) -> Reconciler:
        follower = FollowerReconcile(NAME, self.broker, policy, self.submitted.append)
        extra = {"replace_cancelled": self.replicator.replace_cancelled} if planned else {}
        return Reconciler(self.store, self.updater, [follower],
                          trading_date=DAY.isoformat, now=self.clock.now,
                          stopped=lambda name: stopped, **extra)

    def leader(self, leader_id: str, quantity: int = 10, price: float = 100.0, *,
               status: str = "PENDING", order_type: str = "LIMIT") -> None:
        """The leader's order, stored and known to the replicator (its in-memory state)."""
        report = OrderReport(
            order_id=leader_id, status=status, exchange_segment="NSE_EQ",
            security_id="1333", transaction_type="BUY", product_type="CNC",
            order_type=order_type, validity="DAY", quantity=quantity, traded_quantity=0,
            price=price, source=ReportSource.REST)
        self.store.save_leader(report, (), DAY.isoformat())
        self.replicator.leaders[leader_id] = merge(None, report)

    def mirror(self, leader_id: str, *, attempt: int = 1, quantity: int = 10,
               price: float = 100.0, state: MirrorState = MirrorState.SUBMITTED,
               ) -> MirrorOrder:
        """A mirror row as the replicator writes it (no order at the broker yet)."""
        with self.store.write():
            if attempt == 1:
                self.leader(leader_id, quantity, price)
            return self.store.create_mirror(
                leader_order=leader_id, follower=NAME, attempt=attempt,
                correlation_id=cid(leader_id, attempt), state=state.value,
                quantity=quantity, price=price, order_type="LIMIT", security_id="1333",
                product_type="CNC", transaction_type="BUY",
                submitted_at=self.clock.now())

    def placed(self, leader_id: str, *, quantity: int = 10, price: float = 100.0,
               attempt: int = 1) -> tuple[MirrorOrder, str]:
        """A mirror placed at the broker and recorded, as the worker does it."""
        mirror = self.mirror(leader_id, attempt=attempt, quantity=quantity, price=price)
        order = {"security_id": "1333", "exchange_segment": "NSE_EQ",
                 "transaction_type": "BUY", "quantity": quantity, "order_type": "LIMIT",
                 "product_type": "CNC", "price": price}
        with self.store.write():
            intent = self.store.add_intent(mirror, "PLACE", {"order": order, "slice": False})
        outcome = self.broker.place(PlaceRequest(**order), mirror.correlation_id,
                                    slice_order=False)
        with self.store.write():
            self.store.finish_intent(intent, "DONE", ",".join(outcome.data))
            self.updater.adopt_order_ids(mirror.id, outcome.data)
            self.apply(mirror.id, *outcome.data)
        return self.store.mirror_by_id(mirror.id), outcome.data[0]

    def apply(self, mirror_id: int, *order_ids: str) -> None:
        """What the follower's order stream does with the broker's news."""
        with self.store.write():
            for order_id in order_ids:
                self.updater.apply_report(mirror_id, self.broker.orders[order_id])

    def audits(self, kind: str = "divergence") -> list[str]:
        return [row[0] for row in self.store.db.execute_sql(
            "SELECT message FROM auditevent WHERE kind = ? ORDER BY id", (kind,))]

    def intents(self) -> list[tuple[str, str, int]]:
        """(action, status, mirror id) of every intent, oldest first."""
        return [tuple(row) for row in self.store.db.execute_sql(
            "SELECT action, status, mirror_id FROM intent ORDER BY id")]

    def state(self, mirror_id: int) -> tuple[str, str]:
        mirror = self.store.mirror_by_id(mirror_id)
        return mirror.state, mirror.reason


def cid(leader_id: str, attempt: int = 1) -> str:
    return correlation_id(DAY, leader_id, NAME, 1, attempt)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = Clock()
    db = open_store(tmp_path / "copytrade.db")
    store = Store(db, clock.now)
    positions = PositionBook()
    yield World(store, FakeBroker(), clock, MirrorUpdater(store, lambda name: positions))
    db.close()


def later(world: World, seconds: float = engine.GRACE_SECONDS + 1) -> None:
    world.clock.advance(seconds)


# ---- what a round records and does -------------------------------------------------------


def test_a_book_that_agrees_finds_nothing(world: World) -> None:
    world.placed("L1")
    reconciler = world.reconciler()
    later(world)
    reconciler.run_round()
    assert world.audits() == [] and world.submitted == []
    assert reconciler.rounds == 1 and reconciler.divergences == 0


def test_a_divergence_is_recorded_once_and_alert_changes_nothing(world: World) -> None:
    mirror, order_id = world.placed("L1", quantity=10)
    world.broker.app_modify(order_id, quantity=25)
    reconciler = world.reconciler("alert")
    for _ in range(4):
        reconciler.run_round()
    assert len(world.audits()) == 1 and world.audits()[0].startswith("WRONG_QUANTITY")
    assert world.intents() == [("PLACE", "DONE", mirror.id)]
    assert world.broker.count("modify") == 0 and world.submitted == []


def test_resync_modifies_back_once_two_rounds_agree(world: World) -> None:
    mirror, order_id = world.placed("L1", quantity=10)
    world.broker.app_modify(order_id, quantity=25)
    reconciler = world.reconciler("resync")
    reconciler.run_round()
    assert world.submitted == []  # one read could be racing a send
    reconciler.run_round()
    assert world.intents()[-1] == ("MODIFY", "SENDING", mirror.id)
    assert len(world.submitted) == 1
    request = world.store.intent_by_id(world.submitted[0]).request
    assert '"quantity": 10' in request and f'"order_id": "{order_id}"' in request
    assert [m.split(":")[0] for m in world.audits("resync")] == ["MODIFY_ORDER"]
    reconciler.run_round()  # the modify is in flight: the mirror is left alone
    assert len(world.submitted) == 1 and len(world.audits()) == 1


def test_a_cancel_outside_copytrade_is_recorded_and_alert_replaces_nothing(
        world: World) -> None:
    mirror, order_id = world.placed("L1")
    world.broker.app_cancel(order_id)  # the stream missed it: only the book tells
    reconciler = world.reconciler("alert")
    reconciler.run_round()
    reconciler.run_round()
    assert world.state(mirror.id) == ("CANCELED", CANCELLED_OUTSIDE)
    assert world.audits() == [  # once, as when the follower's stream tells it
        f"CANCELLED_OUTSIDE: follower order {order_id} was cancelled outside copytrade"]
    assert world.submitted == [] and world.broker.count("place") == 1


def test_a_cancel_of_ours_the_stream_missed_is_not_called_outside(world: World) -> None:
    mirror, order_id = world.placed("L1")
    with world.store.write():  # a cancel sent and answered, its report not yet applied
        intent = world.store.add_intent(mirror, "CANCEL", {"reason": "leader cancelled"})
        world.store.finish_intent(intent, "CHECKED", "unknown DH-908")
    world.broker.cancel(order_id)
    world.reconciler("resync").run_round()
    assert world.state(mirror.id)[0] == "CANCELED"
    assert world.audits() == [] and world.submitted == []


def test_resync_replaces_a_cancel_outside_once(world: World) -> None:
    mirror, order_id = world.placed("L1", quantity=10)
    world.broker.fill(order_id, 4)
    world.apply(mirror.id, order_id)
    world.broker.app_cancel(order_id)
    reconciler = world.reconciler("resync")
    reconciler.run_round()
    assert world.state(mirror.id) == ("CANCELED", CANCELLED_OUTSIDE)
    [(action, status, retry_id)] = world.intents()[1:]
    retry = world.store.mirror_by_id(retry_id)
    assert (action, status, retry.attempt, retry.quantity, retry.carried_quantity) == (
        "PLACE", "SENDING", 2, 6, 4)
    for _ in range(3):  # the replacement is the leg's latest attempt now
        reconciler.run_round()
    assert len(world.submitted) == 1 and len(world.intents()) == 2


def test_no_replacement_once_the_leader_order_ended(world: World) -> None:
    mirror, order_id = world.placed("L1")
    with world.store.write():
        world.leader("L1", status="CANCELLED")
    world.broker.app_cancel(order_id)
    reconciler = world.reconciler("resync")
    reconciler.run_round()
    reconciler.run_round()
    assert world.state(mirror.id)[0] == "CANCELED" and world.submitted == []


def replaced(world: World, *, filled: int = 4) -> tuple[MirrorOrder, MirrorOrder, dict]:
    """L1 (10 @ 100) mirrored, `filled` units filled, the rest cancelled in the app, then a
    resync round: (the cancelled mirror, its replacement, the replacement's request)."""
    mirror, order_id = world.placed("L1", quantity=10)
    if filled:
        world.broker.fill(order_id, filled)
        world.apply(mirror.id, order_id)
    world.broker.app_cancel(order_id)
    world.reconciler("resync").run_round()
    [(action, status, retry_id)] = world.intents()[1:]
    assert (action, status) == ("PLACE", "SENDING")
    request = json.loads(world.store.intent_by_id(world.submitted[-1]).request)
    return world.store.mirror_by_id(mirror.id), world.store.mirror_by_id(retry_id), request


def test_a_replacement_is_planned_from_the_leader_as_known_now(world: World) -> None:
    """Not a resend of the last place request: the leader modified its order to 12 @ 101
    since, so the remainder is 12 - 4 filled at 101, as a top-up would be."""
    mirror, order_id = world.placed("L1", quantity=10)
    world.broker.fill(order_id, 4)
    world.apply(mirror.id, order_id)
    world.broker.app_cancel(order_id)
    with world.store.write():
        world.leader("L1", quantity=12, price=101.0)
    world.reconciler("resync").run_round()
    retry = world.store.mirror_by_id(world.intents()[-1][2])
    request = json.loads(world.store.intent_by_id(world.submitted[-1]).request)
    assert (retry.attempt, retry.quantity, retry.carried_quantity, retry.price) == (
        2, 8, 4, 101.0)
    assert request["order"] | {"quantity": 8, "price": 101.0} == request["order"]
    assert (request["order"]["validity"], request["slice"]) == ("DAY", False)
    assert retry.correlation_id == cid("L1", 2)


def test_a_replacement_above_the_freeze_limit_is_sliced_by_the_planner(world: World) -> None:
    world.freeze_limit = 5
    _, retry, request = replaced(world, filled=0)
    assert (retry.quantity, retry.sliced, request["slice"]) == (10, True, True)


def test_a_replacement_keeps_the_positions_the_mirror_was_sized_with(world: World) -> None:
    mirror, order_id = world.placed("L1", quantity=10)
    with world.store.write():
        world.store.update_mirror(mirror, leader_position_before=-20,
                                  follower_position_before=-10)
    world.broker.app_cancel(order_id)
    world.reconciler("resync").run_round()
    retry = world.store.mirror_by_id(world.intents()[-1][2])
    # The leader's BUY of 10 covers half its short of 20: the follower covers 5 of its 10.
    assert (retry.quantity, retry.leader_position_before, retry.follower_position_before) == (
        5, -20, -10)


def test_without_a_planner_resync_replaces_nothing(world: World) -> None:
    mirror, order_id = world.placed("L1")
    world.broker.app_cancel(order_id)
    reconciler = world.reconciler("resync", planned=False)
    reconciler.run_round()
    reconciler.run_round()
    assert world.state(mirror.id) == ("CANCELED", CANCELLED_OUTSIDE)
    assert world.submitted == [] and world.audits("resync") == []


def test_no_replacement_for_a_leader_order_the_replicator_does_not_know(world: World) -> None:
    mirror, order_id = world.placed("L1")
    world.replicator.leaders.clear()
    world.broker.app_cancel(order_id)
    world.reconciler("resync").run_round()
    assert world.state(mirror.id)[0] == "CANCELED" and world.submitted == []


def test_an_unknown_order_of_ours_is_reported_once_and_left_alone(world: World) -> None:
    world.placed("L1")
    orphan = world.broker.add(order("X1", cid("L-elsewhere", 2)))
    reconciler = world.reconciler("resync")
    for _ in range(3):
        reconciler.run_round()
    [message] = world.audits()
    assert message.startswith("UNKNOWN_OURS") and orphan in message
    assert world.submitted == [] and world.broker.orders[orphan].status == "PENDING"


def test_a_duplicate_of_a_live_attempt_is_cancelled_with_resync(world: World) -> None:
    given_up = world.mirror("L1", state=MirrorState.REJECTED)
    world.placed("L1", attempt=2)
    duplicate = world.broker.add(order("X1", given_up.correlation_id))
    reconciler = world.reconciler("resync")
    reconciler.run_round()
    assert world.submitted == []
    reconciler.run_round()
    [intent_id] = world.submitted
    intent = world.store.intent_by_id(intent_id)
    assert (intent.action, intent.mirror_id) == ("CANCEL", given_up.id)
    assert f'"order_ids": ["{duplicate}"]' in intent.request


def test_a_given_up_attempt_found_alone_is_adopted(world: World) -> None:
    given_up = world.mirror("L1", state=MirrorState.REJECTED)
    found = world.broker.add(order("X1", given_up.correlation_id, status="TRADED", traded=10))
    world.reconciler().run_round()
    assert found in world.store.mirror_by_id(given_up.id).legs


def test_a_submitted_mirror_without_an_order_is_looked_up_then_adopted(world: World) -> None:
    mirror = world.mirror("L1")
    reconciler = world.reconciler()
    later(world)
    reconciler.run_round()
    assert world.audits()[0].startswith("STUCK_SUBMITTED")
    assert world.broker.count("order_book") == 2  # the round's read, then the lookup
    # The order shows up (a book lagging the place): it is taken as the mirror's.
    found = world.broker.add(order("X1", mirror.correlation_id))
    reconciler.run_round()
    assert world.store.mirror_by_id(mirror.id).follower_order_id == found
    assert world.state(mirror.id)[0] == "ACCEPTED"


def test_a_failed_book_read_loses_the_round_only(world: World) -> None:
    mirror, order_id = world.placed("L1")
    world.broker.app_cancel(order_id)
    world.broker.fail("order_book", OutcomeKind.UNKNOWN, message="timeout")
    reconciler = world.reconciler()
    reconciler.run_round()
    assert world.state(mirror.id)[0] == "ACCEPTED" and world.audits() == []
    reconciler.run_round()
    assert world.state(mirror.id)[0] == "CANCELED"


def test_a_stopped_follower_is_not_read(world: World) -> None:
    world.placed("L1")
    world.reconciler(stopped=True).run_round()
    assert world.broker.count("order_book") == 0


def test_a_mirror_with_a_call_in_flight_is_left_out_with_its_orders(world: World) -> None:
    mirror, order_id = world.placed("L1", quantity=10)
    with world.store.write():
        intent = world.store.add_intent(mirror, "MODIFY", {"modify": {"quantity": 25}})
    world.broker.app_modify(order_id, quantity=25)  # the modify, sent, not yet recorded
    reconciler = world.reconciler("resync")
    later(world)
    reconciler.run_round()
    reconciler.run_round()
    assert world.audits() == []  # neither WRONG_QUANTITY nor "an order no mirror tracks"
    with world.store.write():
        world.store.finish_intent(intent, "DONE", "")
    reconciler.run_round()
    assert [m.split(":")[0] for m in world.audits()] == ["WRONG_QUANTITY"]


# ---- a round's cost ------------------------------------------------------------------------


def test_a_round_costs_the_open_mirrors_not_the_ended_ones(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    ended, open_ = 5_000, 50
    day_of_fills(world, ended)
    opened = [world.placed(f"O{n}")[0].id for n in range(open_)]
    kernel_input: list[tuple[int, int]] = []

    def counting(stored, reported, **options):
        kernel_input.append((len(stored), len(reported)))
        return diff_follower(stored, reported, **options)

    monkeypatch.setattr(engine, "diff_follower", counting)
    reconciler = world.reconciler()
    reconciler.run_round()  # the first round reads the day once
    follower = reconciler.followers[0]
    assert follower.last is not None and follower.last.rows_examined == ended + open_
    reconciler.run_round()
    reconciler.run_round()
    assert kernel_input[1:] == [(open_, open_), (open_, open_)]
    assert follower.last.book_rows == ended + open_
    assert {m.mirror_id for m in gather_now(world, follower.settled).stored} == set(opened)
    assert world.audits() == []


def test_an_ended_mirror_whose_order_changes_is_looked_at_again(world: World) -> None:
    mirror, order_id = world.placed("L1")
    with world.store.write():
        world.store.apply_trigger(world.store.mirror_by_id(mirror.id), Trigger.REQUEST_CANCEL)
    world.broker.app_cancel(order_id)
    world.apply(mirror.id, order_id)
    assert world.state(mirror.id)[0] == "CANCELED"
    reconciler = world.reconciler()
    reconciler.run_round()
    reconciler.run_round()
    assert reconciler.followers[0].last.mirrors_examined == 0  # settled
    world.broker.fill(order_id)  # the exchange's late fill; the stream missed it
    reconciler.run_round()
    assert world.state(mirror.id)[0] == "FILLED"
    assert [m.split(":")[0] for m in world.audits()] == ["STATE_BEHIND"]


def day_of_fills(world: World, count: int) -> None:
    """`count` mirrors filled and recorded, written in bulk (the slow way takes a while)."""
    rows = [(f"E{n}", world.broker.add(order(f"E{n:05d}", cid(f"E{n}"), status="TRADED",
                                             traded=10))) for n in range(count)]
    with world.store.write():
        for leader_id, order_id in rows:
            world.leader(leader_id)
            world.store.create_mirror(
                leader_order=leader_id, follower=NAME, correlation_id=cid(leader_id),
                state="FILLED", quantity=10, filled_quantity=10, price=100.0,
                order_type="LIMIT", follower_order_id=order_id,
                legs=f'{{"{order_id}": ["TRADED", 10, 10]}}', submitted_at=world.clock.now())


def gather_now(world: World, settled: set[int]) -> engine.RoundView:
    book = index_book(world.broker.order_book().data)
    return gather(engine.StoreMirrors(world.store, NAME, DAY.isoformat(), world.clock.now()),
                  book, settled)


def order(order_id: str, corr: str, *, status: str = "PENDING", traded: int = 0,
          quantity: int = 10) -> OrderReport:
    return OrderReport(
        order_id=order_id, status=status, exchange_segment="NSE_EQ", security_id="1333",
        transaction_type="BUY", product_type="CNC", order_type="LIMIT", validity="DAY",
        quantity=quantity, traded_quantity=traded, price=100.0, correlation_id=corr,
        source=ReportSource.REST)


# ---- the incremental view finds what the whole day would -----------------------------------


@dataclass
class ListMirrors:
    """MirrorSource over a list (the store's reads, without the store)."""

    mirrors: list[StoredMirror]
    busy: frozenset[int] = frozenset()

    def open_mirrors(self) -> list[StoredMirror]:
        return [m for m in self.mirrors if m.state not in TERMINAL_STATES]

    def in_flight(self) -> list[StoredMirror]:
        return [m for m in self.mirrors if m.mirror_id in self.busy]

    def by_correlation_ids(self, cids: Collection[str]) -> list[StoredMirror]:
        return [m for m in self.mirrors if m.correlation_id in cids]

    def by_order_ids(self, order_ids: Collection[str]) -> list[StoredMirror]:
        return [m for m in self.mirrors if set(m.legs) & set(order_ids)]

    def by_stems(self, stems: Collection[str]) -> list[StoredMirror]:
        return [m for m in self.mirrors if stem(m.correlation_id) in stems]


def full_and_incremental(stored: list[StoredMirror], book: list[OrderReport],
                         settled: set[int]) -> tuple[list, list, engine.RoundView]:
    follower = stored[0].follower if stored else "f1"
    full = diff_follower(stored, book, follower=follower, grace_seconds=GRACE)
    view = gather(ListMirrors(stored), index_book(book), settled)
    return full, diff_follower(view.stored, view.reported, follower=follower,
                               grace_seconds=GRACE), view


@settings(max_examples=200, deadline=None)
@given(messy_world())
def test_the_incremental_view_finds_what_the_whole_day_would(world) -> None:
    stored, book = real_store(*world)
    full, first, view = full_and_incremental(stored, book, set())
    assert first == full
    settled = settled_rows(first, view.stored, view.reported)
    full, second, _ = full_and_incremental(stored, book, settled)
    assert second == full  # nothing changed: what was settled is still settled


def real_store(stored: list[StoredMirror], book: list[OrderReport],
               ) -> tuple[list[StoredMirror], list[OrderReport]]:
    """A messy world, but with what the store guarantees: an order is listed by one mirror
    only, and only by the mirror whose correlation id it carries, when it carries one of
    ours (orders are adopted by their correlation id)."""
    owner: dict[str, StoredMirror] = {}
    kept = []
    for mirror in sorted(stored, key=lambda m: m.mirror_id):
        legs = {oid: leg for oid, leg in mirror.legs.items() if oid not in owner}
        kept.append(replace(mirror, legs=legs))
        owner.update(dict.fromkeys(legs, kept[-1]))
    fixed = [replace(r, correlation_id=owner[r.order_id].correlation_id)
             if r.order_id in owner and is_ours(r.correlation_id) else r for r in book]
    return kept, fixed


def test_only_an_in_flight_mirror_and_its_attempts_are_hidden() -> None:
    busy = StoredMirror(1, "L1", "f1", cid_for("L1", 2), "ACCEPTED", 10, 0,
                        {"F1": ("PENDING", 0, 10)}, 100.0, 0.0, "LIMIT", 60.0)
    other = StoredMirror(2, "L2", "f1", cid_for("L2"), "ACCEPTED", 10, 0,
                         {"F2": ("PENDING", 0, 10)}, 100.0, 0.0, "LIMIT", 60.0)
    book = [order("F1", busy.correlation_id, quantity=25), order("F0", cid_for("L1")),
            order("F2", other.correlation_id, quantity=25)]
    view = gather(ListMirrors([busy, other], frozenset({1})), index_book(book), set())
    assert [m.mirror_id for m in view.stored] == [2]
    assert [r.order_id for r in view.reported] == ["F2"]


def cid_for(leader_id: str, attempt: int = 1) -> str:
    return correlation_id(DAY, leader_id, "f1", 1, attempt)


def test_the_book_rows_of_the_followers_own_orders_are_looked_up_once() -> None:
    own = [replace(order(f"U{n}", ""), correlation_id="manual") for n in range(3)]
    source = ListMirrors([])
    view = gather(source, index_book(own), set())
    assert len(view.reported) == 3 and not any(is_ours(r.correlation_id) for r in own)
    settled = settled_rows([], view.stored, view.reported)
    assert gather(source, index_book(own), settled).reported == []


# ---- replay-missed's wait for its calls (engine/replay.py), on the same store ---------------


class FakeWorker:
    def __init__(self, backlog: int) -> None:
        self.backlog = backlog
        self.halted_reason: str | None = None


@dataclass
class Run:
    """A replay's calls, committed SENDING, answered `per_tick` at a time as time passes."""

    world: World
    intents: list[int]
    worker: FakeWorker
    per_tick: int = 5
    at: float = 0.0
    pauses: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.at += seconds
        answered, self.intents = self.intents[:self.per_tick], self.intents[self.per_tick:]
        with self.world.store.write():
            for intent_id in answered:
                self.world.store.finish_intent(self.world.store.intent_by_id(intent_id),
                                               "DONE", "")
        self.worker.backlog = max(self.worker.backlog - len(answered), 0)


def replay_run(world: World, count: int) -> tuple[Run, replay.Calls]:
    ids = []
    for n in range(count):
        mirror = world.mirror(f"R{n}")
        with world.store.write():
            ids.append(world.store.add_intent(mirror, "PLACE", {"order": {}}).id)
    calls = replay.Calls(world.store, 0, {}, {(f"R{n}", 1) for n in range(count)}, {NAME})
    return Run(world, ids, FakeWorker(count)), calls


def counting_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    reads = {"sending": 0, "intent rows": 0}
    sending, after = replay.sending_intent_ids, replay.intents_after

    def counted_sending(db):
        reads["sending"] += 1
        return sending(db)

    def counted_after(db, after_id):
        rows = after(db, after_id)
        reads["intent rows"] += len(rows)
        return rows

    monkeypatch.setattr(replay, "sending_intent_ids", counted_sending)
    monkeypatch.setattr(replay, "intents_after", counted_after)
    return reads


def test_replay_waits_on_the_queues_and_reads_each_intent_once(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    run, calls = replay_run(world, 40)
    reads = counting_reads(monkeypatch)
    told: list[replay.Progress] = []
    replay.wait_for_calls([run.worker], calls, lambda name: False, settle_seconds=60,
                          on_progress=told.append, sleep=run.sleep, monotonic=lambda: run.at)
    assert run.intents == [] and len(run.pauses) == 8  # 40 calls, 5 a tick
    assert reads == {"sending": 1, "intent rows": 40}  # the store: once per intent, once
    assert told[-1] == replay.Progress("calls", 40, 40)
    assert [p.done for p in told] == sorted(p.done for p in told)


def test_replay_stops_waiting_for_an_unanswered_call_at_the_settle_time(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    run, calls = replay_run(world, 3)
    run.per_tick, run.worker.backlog = 0, 0  # the queue drained; one call never answered
    reads = counting_reads(monkeypatch)
    replay.wait_for_calls([run.worker], calls, lambda name: False, settle_seconds=10,
                          on_progress=lambda progress: None, sleep=run.sleep,
                          monotonic=lambda: run.at)
    assert 10 < run.at < 10.5
    assert run.pauses == sorted(run.pauses) and max(run.pauses) == replay.SETTLE_MAX_SECONDS
    assert reads["sending"] == len(run.pauses) + 1 < 60  # fewer looks as nothing ends


def test_replay_does_not_wait_for_a_halted_followers_calls(world: World) -> None:
    run, calls = replay_run(world, 3)
    run.worker.halted_reason = "token refused"
    replay.wait_for_calls([run.worker], calls, lambda name: True, settle_seconds=60,
                          on_progress=lambda progress: None, sleep=run.sleep,
                          monotonic=lambda: run.at)
    assert run.pauses == []


# ---- the fake broker answers as DhanAccount does -----------------------------------------


def test_the_fake_broker_answers_like_the_real_account() -> None:
    broker = FakeBroker(slice_limit=40)
    request = PlaceRequest("1333", "NSE_EQ", "BUY", 100, "LIMIT", "CNC", 100.0)
    sliced = broker.place(request, cid("L1"), slice_order=True)
    assert sliced.ok and len(sliced.data) == 3  # 40 + 40 + 20, one correlation id
    found = broker.order_by_correlation(cid("L1"))
    assert sorted(r.quantity for r in found.data) == [20, 40, 40]
    broker.fail("place", OutcomeKind.UNKNOWN, message="timeout", applied=True)
    lost = broker.place(request, cid("L2"), slice_order=False)
    assert lost.kind is OutcomeKind.UNKNOWN and broker.order_by_correlation(cid("L2")).ok
    first = sliced.data[0]
    assert broker.cancel(first).ok and not broker.cancel(first).ok  # an ended order: refused
    assert broker.order(first).data.status == "CANCELLED"
    assert broker.order("nope").kind is OutcomeKind.NOT_FOUND
    broker.fill(sliced.data[1])
    assert broker.positions().data == [{"securityId": "1333", "productType": "CNC",
                                        "exchangeSegment": "NSE_EQ", "netQty": 40}]
    broker.fail("order_book", OutcomeKind.THROTTLED, code="DH-904")
    assert broker.order_by_correlation(cid("L1")).kind is OutcomeKind.THROTTLED
