"""follow end to end: the real SDK places leader orders on the emulator, the engine
mirrors them through its own stream client and the SDK onto the followers."""

from __future__ import annotations

from pathlib import Path

from followtools import LEADER_TOKEN, follower, running_follow, sdk

from copytrade.sim.server import Emulator


def test_market_order_is_mirrored_once_on_each_follower(live_sim: Emulator,
                                                        tmp_path: Path) -> None:
    one, two = follower("f1", "1000000002"), follower("f2", "1000000003", "fixed_lots = 3")
    with running_follow(live_sim, tmp_path, [one, two]) as run:
        reply = run.leader_api.place_order("1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC", 0)
        assert reply["status"] == "success"
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"]
                      and run.mirror_states("f2") == ["FILLED"])
        assert [(o["quantity"], o["orderStatus"]) for o in run.follower_book(one)] == [
            (10, "TRADED")]
        assert [(o["quantity"], o["orderStatus"]) for o in run.follower_book(two)] == [
            (3, "TRADED")]
        # The lag is written when the place's reply is handled, which the fill report on
        # the follower's stream can overtake.
        run.wait_for(lambda: run.mirrors("f1")[0].lag_ms is not None)
        [mirror] = run.mirrors("f1")
        assert mirror.leader_order_id == reply["data"]["orderId"]
        assert mirror.lag_ms >= 0


def test_follower_with_its_own_source_address(live_sim: Emulator, tmp_path: Path) -> None:
    """Dhan wants each account's orders from its own IP: the follower's egress binds it."""
    pinned = follower("pinned", "1000000004", extra='source_address = "127.0.0.1"')
    with running_follow(live_sim, tmp_path, [pinned]) as run:
        run.leader_api.place_order("1333", "NSE_EQ", "BUY", 4, "MARKET", "CNC", 0)
        run.wait_for(lambda: run.mirror_states("pinned") == ["FILLED"])
        assert [o["quantity"] for o in run.follower_book(pinned)] == [4]
        adapter = run.engine.accounts["pinned"]._http.session.get_adapter(live_sim.rest_url)
        assert adapter.poolmanager.connection_pool_kw["source_address"] == ("127.0.0.1", 0)


def test_catch_up_does_not_chase_a_filled_market_order_whose_price_moved(
        live_sim: Emulator, tmp_path: Path) -> None:
    """Orders that filled while follow was down: within the drift they are mirrored;
    beyond it they are recorded as skipped with the reason, and nothing is sent."""
    f1 = follower("f1", "1000000002", extra="max_price_drift_percent = 1.0")
    leader = sdk(live_sim, "1000000001", LEADER_TOKEN)
    near = leader.place_order("1333", "NSE_EQ", "BUY", 5, "MARKET", "CNC", 0)["data"]["orderId"]
    far = leader.place_order("2885", "NSE_EQ", "BUY", 5, "MARKET", "CNC", 0)["data"]["orderId"]
    live_sim.set_price("1333", 1655.0)  # +0.3 %
    live_sim.set_price("2885", 1450.0)  # +3.6 %
    with running_follow(live_sim, tmp_path, [f1]) as run:
        run.wait_for(lambda: len(run.mirrors("f1")) == 2)
        states = {m.leader_order_id: (m.state, m.reason) for m in run.mirrors("f1")}
        run.wait_for(lambda: run.mirror_states("f1").count("FILLED") == 1)
        assert states[far][0] == "SKIPPED" and "price moved" in states[far][1]
        assert [o["securityId"] for o in run.follower_book(f1)] == ["1333"]
        assert near in states
