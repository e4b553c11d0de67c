"""follow under the faults of DESIGN.md that concern placing: each one is made to happen
on the emulator, then the store (mirrors, intents, state events, audit) and the broker's
truth (the follower's order book on the emulator) are both checked.

The promise under test: at most one live follower order per (leader order, follower,
leg), and every leader order either mirrored or recorded as not mirrored with a reason.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from followtools import LEADER_ID, Follower, FollowRun, follower, running_follow

from copytrade.errors import AuthError
from copytrade.sim.server import Emulator
from copytrade.store.models import MirrorOrder, StateEvent

TERMINAL = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED", "SKIPPED"})
F1 = follower("f1", "1000000002")
F2 = follower("f2", "1000000003", "fixed_lots = 2")


# ---- helpers -------------------------------------------------------------------------------

def body(quantity: int = 10, order_type: str = "MARKET", price: float = 0.0,
         security_id: str = "1333", side: str = "BUY") -> dict:
    """A place body in Dhan's camelCase, for the emulator's app_place (Source "N")."""
    return {"transactionType": side, "exchangeSegment": "NSE_EQ", "productType": "CNC",
            "orderType": order_type, "validity": "DAY", "securityId": security_id,
            "quantity": quantity, "price": price}


def app_place(sim: Emulator, **order: object) -> str:
    [order_id] = sim.app_place(LEADER_ID, body(**order))  # type: ignore[arg-type]
    return order_id


def api_place(run: FollowRun, quantity: int = 10, order_type: str = "MARKET",
              price: float = 0.0) -> str:
    reply = run.leader_api.place_order("1333", "NSE_EQ", "BUY", quantity, order_type, "CNC",
                                       price)
    assert reply["status"] == "success", reply
    return reply["data"]["orderId"]


def mirrors_of(run: FollowRun, name: str, leader_order_id: str) -> list[MirrorOrder]:
    return [m for m in run.mirrors(name) if m.leader_order_id == leader_order_id]


def book_for(run: FollowRun, who: Follower, correlation_ids: set[str]) -> list[dict]:
    return [o for o in run.follower_book(who) if o["correlationId"] in correlation_ids]


def orders_for(run: FollowRun, who: Follower, leader_order_id: str) -> list[dict]:
    """The follower's orders (on the broker, any status) that mirror one leader order,
    under any attempt's correlation id."""
    ids = {m.correlation_id for m in mirrors_of(run, who.name, leader_order_id)}
    return book_for(run, who, ids)


def settled(run: FollowRun) -> bool:
    return all(i.status != "SENDING" for i in run.intents())


def assert_never_backwards(run: FollowRun) -> None:
    """State events chain (each starts where the previous ended) and, once a mirror is in
    a terminal state, it never leaves the terminal states again."""
    for mirror in MirrorOrder.select():
        events = list(StateEvent.select().where(StateEvent.mirror == mirror.id)
                      .order_by(StateEvent.id))
        previous = "PLANNED" if mirror.attempt == 1 else None
        ended = False
        for event in events:
            if previous is not None:
                assert event.from_state == previous, (mirror.id, event.from_state, previous)
            assert not (ended and event.to_state not in TERMINAL), (
                f"mirror {mirror.id} went back from a terminal state to {event.to_state}")
            ended = ended or event.to_state in TERMINAL
            previous = event.to_state
        assert mirror.state == (previous or mirror.state)


def assert_one_filled_mirror(run: FollowRun, who: Follower, leader_order_id: str,
                             quantity: int) -> None:
    """Store and broker agree: one follower order for the leader order, filled."""
    mirrors = mirrors_of(run, who.name, leader_order_id)
    assert [m.state for m in mirrors][-1:] == ["FILLED"], [m.state for m in mirrors]
    orders = orders_for(run, who, leader_order_id)
    assert [(o["quantity"], o["orderStatus"]) for o in orders] == [(quantity, "TRADED")]
    assert orders[0]["orderId"] == mirrors[-1].follower_order_id
    assert orders[0]["correlationId"] == mirrors[-1].correlation_id


# ---- stream faults ------------------------------------------------------------------------

def test_duplicate_frames_never_place_twice(live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        live_sim.duplicate_frames(50)  # every account: the leader's and the followers' frames
        market = api_place(run)
        limit = api_place(run, quantity=5, order_type="LIMIT", price=1600.0)
        run.wait_for(lambda: run.engine.replicator.stats.duplicates >= 4)
        run.wait_for(lambda: [m.state for m in run.mirrors("f1")] == ["FILLED", "ACCEPTED"])
        live_sim.set_price("1333", 1599.0)  # the limit order fills: more duplicated frames
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED", "FILLED"]
                     and run.mirror_states("f2") == ["FILLED", "FILLED"] and settled(run))
        assert live_sim.snapshot()["stream"]["frames_sent"] >= 2 * 5  # doubled
        for leader_order, f1_qty, f2_qty in ((market, 10, 2), (limit, 5, 2)):
            assert_one_filled_mirror(run, F1, leader_order, f1_qty)
            assert_one_filled_mirror(run, F2, leader_order, f2_qty)
        assert len(run.follower_book(F1)) == 2 and len(run.follower_book(F2)) == 2
        assert [i.action for i in run.intents()] == ["PLACE"] * 4
        assert_never_backwards(run)


def test_reordered_frames_traded_before_pending(live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        # The leader's limit order: TRANSIT, PENDING, then (price) TRADED, delivered as
        # TRADED, PENDING, TRANSIT. The followers' own frames are reversed too.
        live_sim.reorder_frames(3, LEADER_ID)
        live_sim.reorder_frames(3, F1.client_id)
        live_sim.reorder_frames(3, F2.client_id)
        leader_order = api_place(run, quantity=4, order_type="LIMIT", price=1600.0)
        live_sim.set_price("1333", 1599.0)
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"]
                     and run.mirror_states("f2") == ["FILLED"] and settled(run))
        # the two stale frames (PENDING, TRANSIT after TRADED) changed nothing
        run.wait_for(lambda: run.engine.replicator.stats.duplicates >= 2)
        assert run.leader_orders()[0].status == "TRADED"
        assert_one_filled_mirror(run, F1, leader_order, 4)
        assert_one_filled_mirror(run, F2, leader_order, 2)
        assert len(run.intents()) == 2
        assert_never_backwards(run)


def test_delayed_frames_old_after_new(live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        # TRANSIT arrives a second late, after PENDING and TRADED overtook it; the
        # followers' first frames are late too.
        live_sim.delay_frames(1, 1.0, LEADER_ID)
        live_sim.delay_frames(2, 0.8, F1.client_id)
        leader_order = api_place(run)
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"]
                     and run.mirror_states("f2") == ["FILLED"] and settled(run))
        run.wait_for(lambda: run.engine.replicator.stats.duplicates >= 1)  # the late TRANSIT
        run.wait_for(lambda: live_sim.snapshot()["stream"]["frames_sent"] >= 3 + 3 + 3)
        assert_one_filled_mirror(run, F1, leader_order, 10)
        assert_one_filled_mirror(run, F2, leader_order, 2)
        assert len(run.intents()) == 2
        assert_never_backwards(run)


def _gap_orders(sim: Emulator) -> dict[str, str]:
    """Leader activity while follow cannot hear it: one order that fills, one that rests,
    one placed and cancelled before anything could be mirrored."""
    filled = app_place(sim, quantity=3)
    resting = app_place(sim, quantity=6, order_type="LIMIT", price=1600.0)
    cancelled = app_place(sim, quantity=7, order_type="LIMIT", price=1590.0)
    assert sim.app_cancel(LEADER_ID, cancelled) == "CANCELLED"
    return {"filled": filled, "resting": resting, "cancelled": cancelled}


def _check_caught_up(run: FollowRun, before: str, gap: dict[str, str]) -> None:
    run.wait_for(lambda: {m.leader_order_id: m.state for m in run.mirrors("f1")} == {
        before: "FILLED", gap["filled"]: "FILLED", gap["resting"]: "ACCEPTED",
        gap["cancelled"]: "SKIPPED"} and len(run.mirrors("f2")) == 4 and settled(run),
        timeout=15)
    for who, sizes in ((F1, {"filled": 3, "resting": 6}), (F2, {"filled": 2, "resting": 2})):
        assert_one_filled_mirror(run, who, gap["filled"], sizes["filled"])
        [resting] = orders_for(run, who, gap["resting"])
        assert (resting["quantity"], resting["orderStatus"]) == (sizes["resting"], "PENDING")
        [skipped] = mirrors_of(run, who.name, gap["cancelled"])
        assert skipped.state == "SKIPPED"
        assert "cancelled" in skipped.reason and "before it could be mirrored" in skipped.reason
        assert skipped.follower_order_id is None
        assert orders_for(run, who, gap["cancelled"]) == []
        # exactly once: one follower order per mirrored leader order, nothing else
        assert len(run.follower_book(who)) == 3
    skips = [a for a in run.audit("skipped") if a.leader_order_id == gap["cancelled"]]
    assert {a.follower for a in skips} == {"f1", "f2"}
    assert len(run.intents()) == 6  # before, filled, resting for two followers
    assert_never_backwards(run)


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "unclean"])
def test_leader_stream_dropped_catch_up_mirrors_the_gap_once(
        live_sim: Emulator, tmp_path: Path, clean: bool) -> None:
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        before = api_place(run, quantity=2)
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"] and settled(run))
        catch_ups = run.engine.status.catch_ups
        dropped_before = live_sim.snapshot()["stream"]["frames_dropped"]
        # Stall first so the frames of the gap's orders queue on the connection, then drop
        # it: those frames are lost for sure, whatever the reconnect timing.
        assert live_sim.stall_stream(LEADER_ID, seconds=30) == 1
        gap = _gap_orders(live_sim)
        assert live_sim.drop_stream(LEADER_ID, clean=clean) == 1
        # 3 + 2 + 3 frames of the gap's orders reached nobody (Dhan has no replay)
        assert live_sim.snapshot()["stream"]["frames_dropped"] - dropped_before >= 8
        run.wait_for(lambda: run.engine.status.catch_ups > catch_ups, timeout=10)
        _check_caught_up(run, before, gap)
        # the leader's book, read again and again, changes nothing more
        live_sim.drop_stream(LEADER_ID, clean=clean)
        run.wait_for(lambda: run.engine.status.catch_ups > catch_ups + 1, timeout=10)
        assert len(run.follower_book(F1)) == 3 and len(run.follower_book(F2)) == 3
        assert len(run.intents()) == 6


def test_leader_stream_dropped_then_orders_placed_before_relogin(
        live_sim: Emulator, tmp_path: Path) -> None:
    """A plain drop: orders placed at once, racing the reconnect; whichever wins (the
    stream or the catch-up), each is mirrored exactly once."""
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        before = api_place(run, quantity=2)
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"] and settled(run))
        catch_ups = run.engine.status.catch_ups
        assert live_sim.drop_stream(LEADER_ID, clean=False) == 1
        gap = _gap_orders(live_sim)
        run.wait_for(lambda: run.engine.status.catch_ups > catch_ups, timeout=10)
        _check_caught_up(run, before, gap)


def test_leader_stream_stalled_is_noticed_and_caught_up(live_sim: Emulator,
                                                         tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        before = api_place(run, quantity=2)
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"] and settled(run))
        catch_ups = run.engine.status.catch_ups
        reconnects = run.engine.status.leader_stream.reconnects
        # Silence, no close: only the missing pongs tell follow the connection is dead.
        assert live_sim.stall_stream(LEADER_ID, seconds=60) == 1
        gap = _gap_orders(live_sim)
        run.wait_for(lambda: run.engine.status.catch_ups > catch_ups, timeout=10)
        assert run.engine.status.leader_stream.reconnects > reconnects
        _check_caught_up(run, before, gap)


def test_a_silent_leader_stream_is_answered_from_the_book_at_dhan_tolerant_pings(
        live_sim: Emulator, tmp_path: Path) -> None:
    """Keepalive as tolerant as real Dhan needs (it alone would take 30 s): the probe finds
    the silence, the book is read every second meanwhile, and the orders the silent stream
    did not bring are mirrored from it and reconnect the stream."""
    with running_follow(live_sim, tmp_path, [F1, F2], stream_options={
            "ping_interval": 30.0, "ping_timeout": 30.0, "probe_every": 0.2,
            "silent_after": 0.5}) as run:
        before = api_place(run, quantity=2)
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"] and settled(run))
        reconnects = run.engine.status.leader_stream.reconnects
        assert live_sim.stall_stream(LEADER_ID, seconds=60) == 1
        run.wait_for(lambda: run.audit("stream_silent"), timeout=10)
        gap = _gap_orders(live_sim)
        run.wait_for(lambda: run.engine.status.leader_stream.reconnects > reconnects,
                     timeout=15)
        _check_caught_up(run, before, gap)
        assert run.audit("stream_stalled")  # the book's news forced the reconnect


# ---- REST faults on the follower's place -----------------------------------------------------

def test_429_on_place_backs_off_and_places_once(live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        live_sim.fail_next("429", "/orders", method="POST", client_id=F1.client_id, count=2)
        leader_order = api_place(run)
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"]
                     and run.mirror_states("f2") == ["FILLED"] and settled(run))
        assert live_sim.snapshot()["faults"]["rest"] == []  # both 429s were answered
        assert run.engine.workers["f1"].sent == 3  # two throttled, then accepted
        assert run.engine.workers["f2"].sent == 1
        assert_one_filled_mirror(run, F1, leader_order, 10)
        [intent] = run.intents("f1")
        assert (intent.action, intent.status) == ("PLACE", "DONE")
        assert [m.attempt for m in run.mirrors("f1")] == [1]  # same request, same id
        assert_never_backwards(run)


def test_a_429_with_an_empty_body_is_slow_down_not_an_unknown_outcome(
        live_sim: Emulator, tmp_path: Path) -> None:
    """Real Dhan can answer 429 with no body at all: still "throttled", so the same
    request goes again after a pause; never looked up as a lost reply."""
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        live_sim.fail_next("429_empty", "/orders", method="POST", client_id=F1.client_id)
        leader_order = api_place(run)
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"]
                     and run.mirror_states("f2") == ["FILLED"] and settled(run))
        assert run.engine.workers["f1"].sent == 2  # throttled once, then accepted
        assert_one_filled_mirror(run, F1, leader_order, 10)
        assert [m.attempt for m in run.mirrors("f1")] == [1]  # no lookup, no new attempt
        [intent] = run.intents("f1")
        assert (intent.action, intent.status) == ("PLACE", "DONE")


def test_a_static_ip_refusal_stops_that_follower_only_and_says_what_to_set(
        live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        live_sim.set_ip_whitelisted(F1.client_id, False)
        first = api_place(run)
        run.wait_for(lambda: "f1" in run.engine.status.stopped_followers
                     and run.mirror_states("f2") == ["FILLED"])
        reason = run.engine.status.stopped_followers["f1"]
        assert "static IP" in reason and "source_address" in reason and "proxy" in reason
        second = api_place(run, quantity=20)  # f2 goes on; nothing more is sent for f1
        run.wait_for(lambda: run.mirror_states("f2") == ["FILLED", "FILLED"])
        assert run.engine.workers["f1"].sent == 1
        assert [m.state for m in run.mirrors("f1")] == ["SUBMITTED"]  # not rejected
        assert [a.message for a in run.audit("account_stopped")] == [reason]
        assert_one_filled_mirror(run, F2, first, 2)
        assert_one_filled_mirror(run, F2, second, 2)


@pytest.mark.parametrize("status", [500, 502], ids=["500-DH-908", "502-not-json"])
def test_5xx_on_place_is_looked_up_then_attempted_again_once(
        live_sim: Emulator, tmp_path: Path, status: int) -> None:
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        live_sim.fail_next("5xx", "/orders", method="POST", client_id=F1.client_id,
                           status=status)
        leader_order = api_place(run)
        run.wait_for(lambda: run.mirror_states("f1")[-1:] == ["FILLED"]
                     and run.mirror_states("f2") == ["FILLED"] and settled(run))
        first, second = run.mirrors("f1")
        assert (first.attempt, second.attempt) == (1, 2)
        assert first.correlation_id != second.correlation_id
        assert first.state in TERMINAL and first.follower_order_id is None
        assert "not found" in first.reason
        unknown, placed = run.intents("f1")
        assert (unknown.status, placed.status) == ("UNKNOWN", "DONE")
        if status == 500:
            assert "DH-908" in unknown.outcome
        # the broker: nothing under the first id, exactly one order under the second
        assert book_for(run, F1, {first.correlation_id}) == []
        assert_one_filled_mirror(run, F1, leader_order, 10)
        assert len(run.follower_book(F1)) == 1
        assert_never_backwards(run)


def test_accept_then_timeout_is_adopted_not_placed_again(live_sim: Emulator,
                                                         tmp_path: Path) -> None:
    live_sim.set_hold(2)
    with running_follow(live_sim, tmp_path, [F1, F2], http_timeout=0.5) as run:
        live_sim.fail_next("accept_then_timeout", "/orders", method="POST",
                           client_id=F1.client_id)
        leader_order = api_place(run)
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"]
                     and run.mirror_states("f2") == ["FILLED"] and settled(run))
        [mirror] = run.mirrors("f1")
        assert mirror.attempt == 1
        [intent] = run.intents("f1")
        assert intent.status == "DONE" and intent.outcome.startswith("adopted after unknown")
        assert_one_filled_mirror(run, F1, leader_order, 10)
        assert len(run.follower_book(F1)) == 1
        assert run.engine.workers["f1"].sent == 1  # never sent again
        assert_never_backwards(run)


def test_timeout_before_create_places_one_new_attempt(live_sim: Emulator,
                                                      tmp_path: Path) -> None:
    live_sim.set_hold(2)
    with running_follow(live_sim, tmp_path, [F1, F2], http_timeout=0.5) as run:
        live_sim.fail_next("timeout", "/orders", method="POST", client_id=F1.client_id)
        leader_order = api_place(run)
        run.wait_for(lambda: run.mirror_states("f1")[-1:] == ["FILLED"]
                     and run.mirror_states("f2") == ["FILLED"] and settled(run))
        first, second = run.mirrors("f1")
        assert (first.attempt, second.attempt) == (1, 2)
        assert [i.status for i in run.intents("f1")] == ["UNKNOWN", "DONE"]
        assert book_for(run, F1, {first.correlation_id}) == []
        assert_one_filled_mirror(run, F1, leader_order, 10)
        assert len(run.follower_book(F1)) == 1
        assert_never_backwards(run)


def test_follower_order_rejected_after_accept_is_not_placed_again(
        live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        leader_order = api_place(run, quantity=5, order_type="LIMIT", price=1600.0)
        run.wait_for(lambda: run.mirror_states("f1") == ["ACCEPTED"]
                     and run.mirror_states("f2") == ["ACCEPTED"] and settled(run))
        [mirror] = run.mirrors("f1")
        live_sim.reject(mirror.follower_order_id, "Exchange says no")
        run.wait_for(lambda: run.mirror_states("f1") == ["REJECTED"])
        assert "Exchange says no" in run.mirrors("f1")[0].reason
        live_sim.set_price("1333", 1599.0)  # the leader's order fills; f1's stays rejected
        run.wait_for(lambda: run.mirror_states("f2") == ["FILLED"]
                     and run.leader_orders()[0].status == "TRADED")
        assert run.mirror_states("f1") == ["REJECTED"]
        assert [(o["orderStatus"], o["correlationId"]) for o in run.follower_book(F1)] == [
            ("REJECTED", mirror.correlation_id)]
        assert_one_filled_mirror(run, F2, leader_order, 2)
        assert len(run.intents("f1")) == 1
        assert_never_backwards(run)


# ---- tokens -------------------------------------------------------------------------------

def test_follower_token_expired_stops_only_that_follower(live_sim: Emulator,
                                                         tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        resting = api_place(run, quantity=5, order_type="LIMIT", price=1600.0)
        run.wait_for(lambda: run.mirror_states("f1") == ["ACCEPTED"]
                     and run.mirror_states("f2") == ["ACCEPTED"] and settled(run))
        assert live_sim.expire_token(F1.client_id) >= 1
        second = api_place(run, quantity=3)
        run.wait_for(lambda: "f1" in run.engine.status.stopped_followers
                     and mirrors_of(run, "f2", second)
                     and mirrors_of(run, "f2", second)[0].state == "FILLED")
        reason = run.engine.status.stopped_followers["f1"]
        assert "refresh" in reason and "token" in reason
        [stopped] = run.audit("account_stopped")
        assert stopped.follower == "f1" and "refresh" in stopped.message
        third = api_place(run, quantity=4)
        run.wait_for(lambda: mirrors_of(run, "f2", third)
                     and mirrors_of(run, "f2", third)[0].state == "FILLED")
        # the other follower keeps mirroring
        assert_one_filled_mirror(run, F2, second, 2)
        assert_one_filled_mirror(run, F2, third, 2)
        # the stopped follower's orders are not marked rejected
        assert "REJECTED" not in run.mirror_states("f1")
        assert mirrors_of(run, "f1", resting)[0].state == "ACCEPTED"
        # Nothing is decided for a stopped follower: a restart with a fresh token catches
        # these orders up (a SKIPPED row would have kept them from it for good).
        assert mirrors_of(run, "f1", third) == []
        assert [o["orderId"] for o in run.follower_book(F1)] == [
            mirrors_of(run, "f1", resting)[0].follower_order_id]
        assert run.failure == []


def test_leader_token_expired_ends_follow_with_auth_error(live_sim: Emulator,
                                                          tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1]) as run:
        live_sim.set_delay(200)  # Dhan's REST answers slower than its stream refuses a login
        started = time.monotonic()
        assert live_sim.expire_token(LEADER_ID) >= 1
        run.thread.join(8)
        assert not run.thread.is_alive(), (
            f"follow still running 8 s after the leader's token expired "
            f"({run.engine.status.leader_stream.reconnects} reconnects: "
            f"{run.engine.status.leader_stream.detail})")
        assert time.monotonic() - started < 8
        [failure] = run.failure
        assert isinstance(failure, AuthError)
        assert "leader" in str(failure) and "refresh" in str(failure)


# ---- dispatch -------------------------------------------------------------------------------

def test_one_slow_follower_does_not_delay_another(live_sim: Emulator, tmp_path: Path) -> None:
    live_sim.set_hold(3)
    with running_follow(live_sim, tmp_path, [F1, F2], http_timeout=2) as run:
        live_sim.fail_next("timeout", "/orders", method="POST", client_id=F1.client_id)
        started = time.monotonic()
        leader_order = api_place(run)
        run.wait_for(lambda: run.mirror_states("f2") in (["ACCEPTED"], ["FILLED"]),
                     timeout=1.8)
        waited = time.monotonic() - started
        # f1's place is still held by the emulator: no reply, no order, intent in flight
        assert [i.status for i in run.intents("f1")] == ["SENDING"]
        assert run.follower_book(F1) == []
        assert waited < 1.8  # f1's call, held, times out only after 2 s
        run.wait_for(lambda: run.mirror_states("f1")[-1:] == ["FILLED"] and settled(run),
                     timeout=10)
        assert_one_filled_mirror(run, F1, leader_order, 10)
        assert_one_filled_mirror(run, F2, leader_order, 2)


def _burst(sim: Emulator, run: FollowRun) -> list[str]:
    """15 leader orders within a few milliseconds, from Dhan's app (the leader's own API
    limit does not apply to them), all mirrored on both followers."""
    burst = [app_place(sim, quantity=1) for _ in range(15)]
    run.wait_for(lambda: len(run.mirror_states("f1")) == 15
                 and len(run.mirror_states("f2")) == 15 and settled(run)
                 and set(run.mirror_states("f1") + run.mirror_states("f2")) == {"FILLED"},
                 timeout=20)
    return burst


def test_burst_is_mirrored_once_within_each_followers_order_rate(
        live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        burst = _burst(live_sim, run)
        for who in (F1, F2):
            intents = run.intents(who.name)
            assert len(intents) == 15 and all(i.status == "DONE" for i in intents)
            assert not any("DH-904" in i.outcome for i in intents)
            book = run.follower_book(who)
            assert sorted(o["correlationId"] for o in book) == sorted(
                m.correlation_id for m in run.mirrors(who.name))
            assert {m.leader_order_id for m in run.mirrors(who.name)} == set(burst)
            # the broker's truth: never more than 10 orders created in one clock second
            per_second = Counter(o["createTime"] for o in book)
            assert max(per_second.values()) <= 10, per_second
            # 15 calls at 10/s: the last went out a second or more after the first
            done = sorted(i.completed_at for i in intents)
            assert (done[-1] - done[0]).total_seconds() >= 0.9


def test_burst_never_draws_a_429_from_the_broker(live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        # The burst's first call meets a slower network than the rest (a cold connection,
        # a busy hop): 50 ms more before it reaches the broker. From then on no delay.
        live_sim.set_delay(100)
        burst = [app_place(live_sim, quantity=1) for _ in range(15)]
        run.wait_for(lambda: run.follower_book(F1) and run.follower_book(F2))
        live_sim.set_delay(0)
        run.wait_for(lambda: len(run.mirror_states("f1")) == 15
                     and len(run.mirror_states("f2")) == 15 and settled(run), timeout=20)
        for who in (F1, F2):
            assert {m.leader_order_id for m in run.mirrors(who.name)} == set(burst)
            # every order call the worker made was one of the 15 places: none throttled
            assert run.engine.workers[who.name].sent == 15
