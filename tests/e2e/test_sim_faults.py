"""Each REST fault the emulator injects, seen through the real dhanhq SDK."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from dhanhq import dhanhq
from simtools import LEADER_ID, eventually

from copytrade.sim.server import Emulator


def place(api: dhanhq, tag: str) -> dict:
    return api.place_order("1333", "NSE_EQ", "BUY", 1, "MARKET", "CNC", 0, tag=tag)


def leader_orders(sim: Emulator) -> list[dict]:
    return sim.snapshot()["accounts"].get(LEADER_ID, {}).get("orders", [])


def test_429_fault_refuses_then_recovers(sim: Emulator, api: dhanhq) -> None:
    sim.fail_next("429", "/orders", method="POST", count=2)
    for _ in range(2):
        reply = place(api, "ct-429")
        assert reply["remarks"]["error_code"] == "DH-904"
    assert leader_orders(sim) == []
    assert place(api, "ct-429")["status"] == "success"


def test_500_fault_answers_dh908(sim: Emulator, api: dhanhq) -> None:
    sim.fail_next("5xx", "/orders", method="POST")
    reply = place(api, "ct-500")
    assert reply["status"] == "failure"
    assert reply["remarks"]["error_code"] == "DH-908"
    assert leader_orders(sim) == []


def test_gateway_fault_is_not_json_so_the_sdk_gives_a_string(sim: Emulator,
                                                             api: dhanhq) -> None:
    sim.fail_next("5xx", "/orders", method="POST", status=502)
    reply = place(api, "ct-502")
    assert reply["status"] == "failure"
    assert isinstance(reply["remarks"], str)  # ambiguous: look the order up before retrying
    raw = requests.Session()
    sim.fail_next("5xx", "/fundlimit", status=503)
    answer = raw.get(f"{sim.rest_url}/fundlimit",
                     headers={"access-token": "t", "client-id": LEADER_ID}, timeout=5)
    assert answer.status_code == 503


def test_timeout_before_create_leaves_no_order(sim: Emulator, make_api) -> None:
    sim.set_hold(5)
    api = make_api(timeout=0.3)
    sim.fail_next("timeout", "/orders", method="POST")
    reply = place(api, "ct-timeout")
    assert reply["status"] == "failure"
    assert "timed out" in reply["remarks"].lower()
    assert leader_orders(sim) == []
    assert place(api, "ct-timeout")["status"] == "success"


def test_accept_then_timeout_creates_the_order_but_loses_the_reply(sim: Emulator,
                                                                   make_api) -> None:
    sim.set_hold(5)
    api = make_api(timeout=0.3)
    sim.fail_next("accept_then_timeout", "/orders", method="POST")
    reply = place(api, "ct-lost-reply")
    assert reply["status"] == "failure"
    assert isinstance(reply["remarks"], str)
    [order] = leader_orders(sim)
    assert order["correlationId"] == "ct-lost-reply"
    found = api.get_order_by_correlationID("ct-lost-reply")
    assert found["data"]["orderId"] == order["orderId"]


def test_lookup_lag_answers_not_found_then_the_order(sim: Emulator, api: dhanhq) -> None:
    order_id = place(api, "ct-lag")["data"]["orderId"]
    sim.fail_next("not_found", "/orders/external/*", count=1)
    assert api.get_order_by_correlationID("ct-lag")["remarks"]["error_code"] == "DH-906"
    assert api.get_order_by_correlationID("ct-lag")["data"]["orderId"] == order_id


def test_fault_for_one_account_spares_the_others(sim: Emulator, make_api) -> None:
    sim.fail_next("429", "*", client_id="1000000002")
    follower = make_api("1000000002", "follower-token")
    assert make_api().get_order_list()["status"] == "success"
    assert follower.get_order_list()["remarks"]["error_code"] == "DH-904"
    assert follower.get_order_list()["status"] == "success"


def test_fixed_delay_applies_to_every_reply(sim: Emulator, api: dhanhq) -> None:
    sim.set_delay(300)
    started = time.monotonic()
    assert api.get_order_list()["status"] == "success"
    assert time.monotonic() - started >= 0.3  # a lower bound, whatever the machine's speed


def test_unknown_fault_kind_is_refused(sim: Emulator) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        sim.fail_next("explode")


def test_clear_faults(sim: Emulator, api: dhanhq) -> None:
    sim.fail_next("429", count=5)
    sim.set_delay(200)
    sim.clear_faults()
    assert sim.snapshot()["faults"]["rest"] == []
    assert api.get_order_list()["status"] == "success"


def test_stop_releases_held_requests() -> None:
    emulator = Emulator().start()
    emulator.set_hold(60)
    emulator.fail_next("timeout")
    outcome: list[object] = []

    def caller() -> None:
        try:
            outcome.append(requests.get(f"{emulator.rest_url}/orders", timeout=30))
        except requests.RequestException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=caller)
    worker.start()
    eventually(lambda: emulator.faults.pending() == [])  # the request is being held
    started = time.monotonic()
    emulator.stop()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert time.monotonic() - started < 10  # released, not held for the full minute
    assert isinstance(outcome[0], requests.RequestException)  # no reply, as a timeout


def test_serves_100_concurrent_connections(sim: Emulator) -> None:
    barrier = threading.Barrier(100, timeout=20)
    statuses: list[int] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        session = requests.Session()
        headers = {"access-token": f"token-{index}", "client-id": f"20000{index:05d}"}
        first = session.get(f"{sim.rest_url}/fundlimit", headers=headers, timeout=20)
        barrier.wait()  # all 100 keep-alive connections are open at once here
        second = session.get(f"{sim.rest_url}/orders", headers=headers, timeout=20)
        with lock:
            statuses.extend([first.status_code, second.status_code])
        session.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200] * 200
