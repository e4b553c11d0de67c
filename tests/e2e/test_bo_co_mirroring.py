"""Issue 9 point 4: BO and CO mirrored with their values, their exit legs tracked as legs of
one mirror: a leader's leg moved or exited reaches the follower's same leg. The real dhanhq
SDK and our stream client against the emulator (realistic dialect by default)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from followtools import LEADER_ID, FollowRun, follower, running_follow
from simtools import sim_dialect

from copytrade.sim.server import Emulator

F1 = follower("f1", "1000000002")
NO_BO = follower("no-bo", "1000000003", extra='deny_products = ["BO", "CO"]')
REFUSED = follower("refused", "1000000004")
SECURITY = "1333"  # HDFCBANK at 1650, tick 0.05


@pytest.fixture
def sim() -> Iterator[Emulator]:
    with Emulator(seed=7, dialect=sim_dialect()) as emulator:
        yield emulator


def place_bo(run: FollowRun, *, profit: float = 10.0, stop: float = 5.0) -> str:
    reply = run.leader_api.place_order(
        security_id=SECURITY, exchange_segment="NSE_EQ", transaction_type="BUY", quantity=4,
        order_type="LIMIT", product_type="BO", price=1650.0, bo_profit_value=profit,
        bo_stop_loss_Value=stop)
    assert reply["status"] == "success", reply
    return str(reply["data"]["orderId"])


def legs_by_number(run: FollowRun, name: str) -> dict[int, str]:
    return {m.leg: m.state for m in run.mirrors(name)}


def book_legs(run: FollowRun, name: str = "f1") -> dict[str, dict]:
    account = next(f for f in run.followers if f.name == name)
    return {row["legName"]: row for row in run.follower_book(account)}


def no_trouble(run: FollowRun) -> None:
    assert run.audit("divergence") == [] and run.audit("anomaly") == []
    assert run.failure == []


def test_a_bo_is_mirrored_with_its_values_and_a_moved_stop_reaches_the_followers_leg(
        sim: Emulator, tmp_path: Path) -> None:
    with running_follow(sim, tmp_path, [F1]) as run:
        order_id = place_bo(run)
        run.wait_for(lambda: legs_by_number(run, "f1") == {
            1: "FILLED", 2: "ACCEPTED", 3: "ACCEPTED"})
        legs = book_legs(run)
        assert (legs["ENTRY_LEG"]["boProfitValue"], legs["ENTRY_LEG"]["boStopLossValue"],
                legs["ENTRY_LEG"]["productType"]) == (10.0, 5.0, "BO")
        assert legs["STOP_LOSS_LEG"]["triggerPrice"] == 1645.0
        assert legs["TARGET_LEG"]["price"] == 1660.0
        # the leader moves its stop up: the follower's stop moves to the same level
        reply = run.leader_api.modify_order(order_id, "STOP_LOSS_MARKET", "STOP_LOSS_LEG", 4,
                                            0, 1648.0, 0, "DAY")
        assert reply["status"] == "success", reply
        run.wait_for(lambda: book_legs(run)["STOP_LOSS_LEG"]["triggerPrice"] == 1648.0)
        # the market falls through it: both stops trade, Dhan cancels both targets
        sim.set_price(SECURITY, 1640.0)
        run.wait_for(lambda: legs_by_number(run, "f1") == {
            1: "FILLED", 2: "FILLED", 3: "CANCELED"})
        run.wait_for(lambda: all(i.status != "SENDING" for i in run.intents("f1")))
        modifies = [(i.request, i.status, i.outcome) for i in run.intents("f1")
                    if i.action == "MODIFY"]
        assert '"leg_name": "STOP_LOSS_LEG"' in modifies[0][0]
        assert '"trigger_price": 1648.0' in modifies[0][0]
        # The leader's stop traded too: the follower's is told to exit at market unless
        # its own fill was recorded first (both stops trigger on the same tick). The exit
        # converges whichever way the race goes: sent (DONE), refused for a leg that had
        # ended and read back (CHECKED), or not sent as the worker found it filled
        # (SKIPPED) - never a failure.
        assert all('"order_type": "MARKET"' in request
                   and status in ("DONE", "CHECKED", "SKIPPED")
                   for request, status, _ in modifies[1:]), modifies
        assert run.audit("modify_failed") == []
        no_trouble(run)
    positions = sim.snapshot()["accounts"][F1.client_id]["positions"]
    assert all(p["netQty"] == 0 for p in positions)


def test_a_leader_exit_of_its_bo_exits_the_followers_at_market(
        sim: Emulator, tmp_path: Path) -> None:
    with running_follow(sim, tmp_path, [F1]) as run:
        order_id = place_bo(run)
        run.wait_for(lambda: legs_by_number(run, "f1") == {
            1: "FILLED", 2: "ACCEPTED", 3: "ACCEPTED"})
        sim.app_cancel(LEADER_ID, order_id)  # "exit" in Dhan's app, price unchanged
        run.wait_for(lambda: legs_by_number(run, "f1") == {
            1: "FILLED", 2: "FILLED", 3: "CANCELED"})
        legs = book_legs(run)
        assert (legs["STOP_LOSS_LEG"]["orderStatus"], legs["TARGET_LEG"]["orderStatus"]) == (
            "TRADED", "CANCELLED")
        exits = [i for i in run.intents("f1") if i.action == "MODIFY"]
        assert len(exits) == 1 and '"order_type": "MARKET"' in exits[0].request
        no_trouble(run)


def test_a_co_keeps_its_stop_loss_trigger_and_has_one_exit_leg(
        sim: Emulator, tmp_path: Path) -> None:
    with running_follow(sim, tmp_path, [F1]) as run:
        reply = run.leader_api.place_order(
            security_id=SECURITY, exchange_segment="NSE_EQ", transaction_type="BUY",
            quantity=4, order_type="LIMIT", product_type="CO", price=1650.0,
            trigger_price=1640.0)
        assert reply["status"] == "success", reply
        run.wait_for(lambda: legs_by_number(run, "f1") == {1: "FILLED", 2: "ACCEPTED"})
        legs = book_legs(run)
        assert (legs["ENTRY_LEG"]["productType"], legs["ENTRY_LEG"]["triggerPrice"],
                legs["STOP_LOSS_LEG"]["triggerPrice"]) == ("CO", 1640.0, 1640.0)
        sim.set_price(SECURITY, 1635.0)
        run.wait_for(lambda: legs_by_number(run, "f1") == {1: "FILLED", 2: "FILLED"})
        no_trouble(run)


def test_followers_that_may_not_take_bo_are_skipped_or_refused_with_the_reason(
        sim: Emulator, tmp_path: Path) -> None:
    sim.set_bo_co_allowed(REFUSED.client_id, False)
    with running_follow(sim, tmp_path, [F1, NO_BO, REFUSED]) as run:
        place_bo(run)
        run.wait_for(lambda: (run.mirror_states("no-bo"), run.mirror_states("refused")) == (
            ["SKIPPED"], ["REJECTED"]))
        run.wait_for(lambda: legs_by_number(run, "f1").get(1) == "FILLED")
        [skipped] = run.mirrors("no-bo")
        [refused] = run.mirrors("refused")
        assert "BO" in skipped.reason
        assert "not enabled" in refused.reason
    assert sim.snapshot()["accounts"].get(NO_BO.client_id, {}).get("orders", []) == []
