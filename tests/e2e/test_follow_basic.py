"""follow end to end: the real SDK places leader orders on the emulator, the engine
mirrors them through its own stream client and the SDK onto the followers."""

from __future__ import annotations

from pathlib import Path

from followtools import follower, running_follow

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


def test_catch_up_chases_a_filled_market_order_only_within_the_drift_bound(
        live_sim: Emulator, tmp_path: Path) -> None:
    """Market orders that filled in Dhan's app while follow was down, and no quote (no
    Data API plan): each is chased by an IOC limit order at the leader's fill price plus
    max_price_drift_percent. Within the drift it fills; beyond it the exchange cancels it,
    and the mirror says why."""
    f1 = follower("f1", "1000000002", extra="max_price_drift_percent = 1.0")
    live_sim.set_dialect("1000000001", flags={"data_plan": False})

    def app_market(security_id: str) -> str:
        [order_id] = live_sim.app_place("1000000001", {
            "transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
            "orderType": "MARKET", "validity": "DAY", "securityId": security_id,
            "quantity": 5})
        return order_id

    near, far = app_market("1333"), app_market("2885")  # filled at 1650 and 1400
    live_sim.set_price("1333", 1655.0)  # +0.3 %
    live_sim.set_price("2885", 1450.0)  # +3.6 %
    with running_follow(live_sim, tmp_path, [f1]) as run:
        run.wait_for(lambda: sorted(run.mirror_states("f1")) == ["CANCELED", "FILLED"])
        states = {m.leader_order_id: (m.state, m.reason) for m in run.mirrors("f1")}
        assert states[near][0] == "FILLED"
        assert states[far][0] == "CANCELED"
        assert states[far][1].startswith("price moved more than 1.0 % since the leader's fill")
        book = sorted((o["securityId"], o["orderType"], o["validity"], o["price"],
                       o["orderStatus"]) for o in run.follower_book(f1))
        assert book == [("1333", "LIMIT", "IOC", 1666.5, "TRADED"),
                        ("2885", "LIMIT", "IOC", 1414.0, "CANCELLED")]
