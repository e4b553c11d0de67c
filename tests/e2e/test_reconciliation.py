"""Periodic reconciliation, end to end: divergences a follower's broker shows are reported,
and with `on_divergence = "resync"` put right; a stalled leader stream is noticed."""

from __future__ import annotations

from pathlib import Path

from followtools import LEADER_ID, follower, running_follow

from copytrade.sim.server import Emulator

FAST = "reconcile_interval_seconds = 0.3"


def leader_limit(run, quantity: int = 10, price: float = 1600.0) -> str:
    reply = run.leader_api.place_order("1333", "NSE_EQ", "BUY", quantity, "LIMIT", "CNC", price)
    return reply["data"]["orderId"]


def live_orders(run, who) -> list[dict]:
    return [o for o in run.follower_book(who) if o["orderStatus"] in ("PENDING", "TRANSIT")]


def test_follower_order_cancelled_in_the_app_is_reported_not_replaced(
        live_sim: Emulator, tmp_path: Path) -> None:
    watched = follower("watched", "1000000002")
    with running_follow(live_sim, tmp_path, [watched], settings=FAST) as run:
        leader_limit(run)
        run.wait_for(lambda: run.mirror_states("watched") == ["ACCEPTED"])
        [order] = run.follower_book(watched)
        live_sim.app_cancel(watched.client_id, order["orderId"])
        run.wait_for(lambda: run.mirror_states("watched") == ["CANCELED"])
        run.wait_for(lambda: run.engine.reconciler.rounds >= 3)
        assert live_orders(run, watched) == []  # alert: reported, nothing sent
        assert ["CANCELLED_OUTSIDE" in a.message for a in run.audit("divergence")] == [True]


def test_resync_puts_back_a_quantity_changed_in_the_app(live_sim: Emulator,
                                                        tmp_path: Path) -> None:
    synced = follower("synced", "1000000003", extra='on_divergence = "resync"')
    with running_follow(live_sim, tmp_path, [synced], settings=FAST) as run:
        leader_limit(run, quantity=10)
        run.wait_for(lambda: run.mirror_states("synced") == ["ACCEPTED"])
        [order] = run.follower_book(synced)
        live_sim.app_modify(synced.client_id, order["orderId"], {
            "orderType": "LIMIT", "quantity": 25, "price": 1600.0, "validity": "DAY"})
        run.wait_for(lambda: [o["quantity"] for o in run.follower_book(synced)] == [10])
        assert [a.kind for a in run.audit("divergence")] == ["divergence"]
        assert "WRONG_QUANTITY" in run.audit("divergence")[0].message
        assert run.audit("resync")


def test_alert_policy_reports_a_changed_quantity_once_and_leaves_it(
        live_sim: Emulator, tmp_path: Path) -> None:
    watched = follower("watched", "1000000002")
    with running_follow(live_sim, tmp_path, [watched], settings=FAST) as run:
        leader_limit(run, quantity=10)
        run.wait_for(lambda: run.mirror_states("watched") == ["ACCEPTED"])
        [order] = run.follower_book(watched)
        live_sim.app_modify(watched.client_id, order["orderId"], {
            "orderType": "LIMIT", "quantity": 25, "price": 1600.0, "validity": "DAY"})
        run.wait_for(lambda: run.audit("divergence"))
        run.wait_for(lambda: run.engine.reconciler.rounds >= 5)
        assert len(run.audit("divergence")) == 1  # reported once, not every round
        assert [o["quantity"] for o in run.follower_book(watched)] == [25]


def test_resync_replaces_an_order_cancelled_in_the_app(live_sim: Emulator,
                                                       tmp_path: Path) -> None:
    synced = follower("synced", "1000000003", extra='on_divergence = "resync"')
    with running_follow(live_sim, tmp_path, [synced], settings=FAST) as run:
        leader_limit(run, quantity=10)
        run.wait_for(lambda: run.mirror_states("synced") == ["ACCEPTED"])
        [order] = run.follower_book(synced)
        # The stream is stalled first, so the cancel reaches us only through the book.
        live_sim.stall_stream(synced.client_id, seconds=30)
        live_sim.app_cancel(synced.client_id, order["orderId"])
        run.wait_for(lambda: [o["quantity"] for o in live_orders(run, synced)] == [10],
                     timeout=15)
        live_sim.unstall_stream(synced.client_id)
        assert len(live_orders(run, synced)) == 1


def test_a_stalled_leader_stream_is_noticed_and_its_orders_mirrored(
        live_sim: Emulator, tmp_path: Path) -> None:
    one = follower("one", "1000000002")
    with running_follow(live_sim, tmp_path, [one], settings=FAST) as run:
        # No pings that could give the stall away: only the book can.
        run.engine.status.stalls = 0
        live_sim.stall_stream(LEADER_ID, seconds=60)
        leader_limit(run)
        run.wait_for(lambda: run.mirror_states("one") == ["ACCEPTED"], timeout=15)
        assert len(run.follower_book(one)) == 1
        live_sim.unstall_stream(LEADER_ID)
