"""Every `/_sim` control route of the emulator, driven over HTTP as a script or the demo would.

Each test asks for a change over HTTP and checks what a client then sees: through the dhanhq
SDK, through `GET /_sim/snapshot`, or through a logged-in order-stream websocket.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from dhanhq import dhanhq
from simtools import (
    LEADER_ID,
    LEADER_TOKEN,
    eventually,
    login,
    next_frames,
    no_more_frames,
    wait_logged_in,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from copytrade.sim.book import token_digest
from copytrade.sim.control import ACTIONS
from copytrade.sim.instruments import DEFAULT_INSTRUMENTS
from copytrade.sim.server import Emulator

# simtools.login sends the login message on a connection opened outside a with-block.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:connect\(\) must be used as a context manager:DeprecationWarning")

DOC = Path(__file__).resolve().parents[2] / "docs" / "sim.md"
OTHER_ID = "1000000002"
OTHER_TOKEN = "other-token-e2e-77c1"
LIMIT_ORDER = {"transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
               "orderType": "LIMIT", "validity": "DAY", "securityId": "1333", "quantity": 10,
               "price": 1600.0}


# ---- helpers ------------------------------------------------------------------------------

def call(sim: Emulator, path: str, body: Any = None, method: str = "POST") -> requests.Response:
    return requests.request(method, f"{sim.control_url}{path}",
                            json={} if body is None else body, timeout=5)


def ok(sim: Emulator, path: str, body: Any = None) -> Any:
    """POST a control call that must succeed; its `result` (None when it has none)."""
    reply = call(sim, path, body)
    assert reply.status_code == 200, reply.text
    payload = reply.json()
    assert payload["ok"] is True, payload
    return payload.get("result")


def refused(reply: requests.Response) -> str:
    """The message of a DH-905 refusal; the body is Dhan's one error object, nothing else."""
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert set(body) == {"errorType", "errorCode", "errorMessage"}, body
    assert (body["errorType"], body["errorCode"]) == ("Input_Exception", "DH-905")
    return body["errorMessage"]


def snapshot(sim: Emulator) -> dict:
    reply = requests.get(f"{sim.control_url}/snapshot", timeout=5)
    assert reply.status_code == 200, reply.text
    return reply.json()


def orders(sim: Emulator, client_id: str = LEADER_ID) -> dict[str, dict]:
    """The account's orders by id, from the snapshot (reads there are not rate-limited)."""
    account = snapshot(sim)["accounts"].get(client_id, {"orders": []})
    return {o["orderId"]: o for o in account["orders"]}


def rest(sim: Emulator, path: str, method: str = "GET", body: Any = None,
         client_id: str = LEADER_ID, token: str = LEADER_TOKEN) -> requests.Response:
    headers = {"access-token": token, "client-id": client_id}
    return requests.request(method, f"{sim.rest_url}{path}", json=body, headers=headers,
                            timeout=5)


def rest_serves(sim: Emulator) -> bool:
    """A plain Dhan read answers 200 (not a dropped connection, not a hang)."""
    try:
        return rest(sim, "/fundlimit").status_code == 200
    except requests.RequestException:
        return False


def place_limit(api: dhanhq, price: float = 1600.0, quantity: int = 10, **extra: Any) -> str:
    reply = api.place_order("1333", "NSE_EQ", "BUY", quantity, "LIMIT", "CNC", price, **extra)
    assert reply["status"] == "success", reply
    return reply["data"]["orderId"]


def place_market(api: dhanhq, quantity: int = 10, **extra: Any) -> str:
    reply = api.place_order("1333", "NSE_EQ", "BUY", quantity, "MARKET", "CNC", 0, **extra)
    assert reply["status"] == "success", reply
    return reply["data"]["orderId"]


@contextmanager
def stream(sim: Emulator, client_id: str = LEADER_ID,
           token: str = LEADER_TOKEN) -> Iterator[ClientConnection]:
    with login(sim.ws_url, client_id, token) as ws:
        wait_logged_in(sim, client_id)
        yield ws


def statuses(frames: list[dict]) -> list[str]:
    return [frame["Data"]["Status"] for frame in frames]


def close_code(ws: ClientConnection) -> int | None:
    """Read until the server ends the connection: its close code, None without a close frame."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=5)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    result = action()
    return result, time.monotonic() - start


# ---- market ---------------------------------------------------------------------------------

def test_snapshot_route_shows_the_whole_state(sim: Emulator, api: dhanhq) -> None:
    order_id = place_market(api, 10)
    state = snapshot(sim)
    assert set(state) == {"session_open", "prices", "fill_size", "accounts", "faults", "stream",
                          "dialect"}
    assert state["dialect"]["name"] == sim.dialect.name
    assert state["session_open"] is True
    assert state["prices"]["1333"] == 1650.0 and len(state["prices"]) == 13
    assert state["fill_size"] == {}
    account = state["accounts"][LEADER_ID]
    assert set(account) == {"orders", "trades", "positions", "funds", "tokens_expired",
                            "dialect", "ip_whitelisted"}
    assert [(o["orderId"], o["orderStatus"]) for o in account["orders"]] == [(order_id, "TRADED")]
    assert [t["tradedQuantity"] for t in account["trades"]] == [10]
    assert [p["netQty"] for p in account["positions"]] == [10]
    assert account["funds"]["utilizedAmount"] == 16_500
    assert account["tokens_expired"] == 0
    assert state["faults"] == {"rest": [], "delay_ms": 0.0, "hold_seconds": 30.0}
    assert set(state["stream"]) == {"connections", "frames_sent", "frames_dropped",
                                    "logins_refused"}
    assert state["stream"]["frames_dropped"] == 3  # TRANSIT, PENDING, TRADED: nobody listened


def test_prices_route_moves_the_price_and_fills_a_crossed_limit(sim: Emulator,
                                                                api: dhanhq) -> None:
    order_id = place_limit(api, 1640.0)
    assert ok(sim, "/prices", {"security_id": "1333", "price": 1645.0}) is None
    assert api.get_order_by_id(order_id)["data"]["orderStatus"] == "PENDING"

    ok(sim, "/prices", {"security_id": 1333, "price": "1639.5"})  # numbers may come as text
    order = api.get_order_by_id(order_id)["data"]
    assert (order["orderStatus"], order["averageTradedPrice"]) == ("TRADED", 1639.5)
    assert snapshot(sim)["prices"]["1333"] == 1639.5

    assert "424242" in refused(call(sim, "/prices", {"security_id": "424242", "price": 10}))
    refused(call(sim, "/prices", {"security_id": "1333", "price": 0}))
    assert snapshot(sim)["prices"]["1333"] == 1639.5


def test_prices_step_route_walks_every_price_by_whole_ticks(sim: Emulator) -> None:
    before = snapshot(sim)["prices"]
    after = ok(sim, "/prices/step", {"steps": 3})
    assert set(after) == set(before)
    assert after != before
    ticks = {i.security_id: i.tick_size for i in DEFAULT_INSTRUMENTS}
    for security_id, price in after.items():
        tick = ticks[security_id]
        moved = round((price - before[security_id]) / tick, 6)
        assert moved == int(moved) and abs(moved) <= 9, (security_id, price)
    assert snapshot(sim)["prices"] == after
    assert set(ok(sim, "/prices/step")) == set(before)  # steps defaults to 1


def test_fill_size_and_match_routes_fill_in_parts(sim: Emulator, api: dhanhq) -> None:
    ok(sim, "/fill-size", {"quantity": 4, "security_id": "1333"})
    ok(sim, "/fill-size", {"quantity": 7})
    assert snapshot(sim)["fill_size"] == {"1333": 4, "*": 7}

    order_id = place_market(api, 10)
    assert (orders(sim)[order_id]["orderStatus"], orders(sim)[order_id]["filledQty"]) == (
        "PART_TRADED", 4)
    assert ok(sim, "/match") is None
    assert orders(sim)[order_id]["filledQty"] == 8
    ok(sim, "/match")
    order = api.get_order_by_id(order_id)["data"]
    assert (order["orderStatus"], order["filledQty"]) == ("TRADED", 10)
    assert len(api.get_trade_book(order_id)["data"]) == 3

    ok(sim, "/fill-size", {"quantity": None, "security_id": "1333"})
    ok(sim, "/fill-size", {})  # no quantity, no security: the global size goes too
    assert snapshot(sim)["fill_size"] == {}
    refused(call(sim, "/fill-size", {"quantity": 0}))


def test_accounts_funds_route_sets_the_start_of_day_limit(sim: Emulator, api: dhanhq) -> None:
    ok(sim, "/accounts/funds", {"client_id": LEADER_ID, "funds": 10_000})
    assert api.get_fund_limits()["data"]["sodLimit"] == 10_000
    order_id = place_market(api, 10)  # 16,500 of HDFCBANK on 10,000
    order = api.get_order_by_id(order_id)["data"]
    assert order["orderStatus"] == "REJECTED"
    assert order["omsErrorDescription"].startswith("RMS:Margin Exceeds")

    ok(sim, "/accounts/funds", {"client_id": OTHER_ID, "funds": 2_500})  # a new account
    assert snapshot(sim)["accounts"][OTHER_ID]["funds"]["sodLimit"] == 2_500


# ---- Dhan's app: orders with Source "N" --------------------------------------------------

def test_app_routes_place_modify_and_cancel_with_source_n(sim: Emulator, api: dhanhq) -> None:
    with stream(sim) as ws:
        [order_id] = ok(sim, "/app/place", {"client_id": LEADER_ID, "order": LIMIT_ORDER})
        frames = next_frames(ws, 2)
        assert statuses(frames) == ["Transit", "Pending"]
        assert {f["Data"]["Source"] for f in frames} == {"N"}
        assert {f["Data"]["OrderNo"] for f in frames} == {order_id}
        assert [o["orderId"] for o in api.get_order_list()["data"]] == [order_id]

        change = {"orderType": "LIMIT", "quantity": 20, "price": 1601.0, "validity": "DAY"}
        assert ok(sim, "/app/modify", {"client_id": LEADER_ID, "order_id": order_id,
                                       "order": change}) == "PENDING"
        [frame] = next_frames(ws, 1)
        assert (frame["Data"]["Status"], frame["Data"]["Quantity"], frame["Data"]["Price"],
                frame["Data"]["Source"]) == ("Pending", 20, 1601.0, "N")

        assert ok(sim, "/app/cancel", {"client_id": LEADER_ID,
                                       "order_id": order_id}) == "CANCELLED"
        [frame] = next_frames(ws, 1)
        assert (frame["Data"]["Status"], frame["Data"]["Source"]) == ("Cancelled", "N")
        assert api.get_order_by_id(order_id)["data"]["orderStatus"] == "CANCELLED"

        api_order = place_limit(api)  # the API's own orders say Source "P"
        assert {(f["Data"]["OrderNo"], f["Data"]["Source"]) for f in next_frames(ws, 2)} == {
            (api_order, "P")}

    refusal = call(sim, "/app/cancel", {"client_id": LEADER_ID, "order_id": order_id})
    assert (refusal.status_code, refusal.json()["errorCode"]) == (400, "DH-906")
    refused(call(sim, "/app/place", {"client_id": LEADER_ID,
                                     "order": {**LIMIT_ORDER, "quantity": 0}}))


def test_app_place_route_slices_above_the_freeze_limit(sim: Emulator) -> None:
    ok(sim, "/accounts/funds", {"client_id": LEADER_ID, "funds": 100_000_000})
    order = {**LIMIT_ORDER, "exchangeSegment": "NSE_FNO", "securityId": "52175",
             "productType": "MARGIN", "orderType": "MARKET", "quantity": 65 * 30,
             "slicing": True}
    ids = ok(sim, "/app/place", {"client_id": LEADER_ID, "order": order})
    book = orders(sim)
    assert [book[i]["quantity"] for i in ids] == [1755, 195]
    assert {book[i]["orderStatus"] for i in ids} == {"TRADED"}


def test_orders_reject_route_rejects_an_open_order(sim: Emulator, api: dhanhq) -> None:
    first, second = place_limit(api), place_limit(api, 1601.0)
    with stream(sim) as ws:
        assert ok(sim, "/orders/reject", {"order_id": first, "reason": "Exchange said no"}) is None
        [frame] = next_frames(ws, 1)
        assert (frame["Data"]["Status"], frame["Data"]["ReasonDescription"]) == (
            "Rejected", "Exchange said no")
    order = api.get_order_by_id(first)["data"]
    assert (order["orderStatus"], order["omsErrorCode"], order["omsErrorDescription"]) == (
        "REJECTED", "EXCH", "Exchange said no")

    ok(sim, "/orders/reject", {"order_id": second})
    assert orders(sim)[second]["omsErrorDescription"] == "Rejected by the exchange"
    again = call(sim, "/orders/reject", {"order_id": first})
    assert (again.status_code, again.json()["errorCode"]) == (404, "DH-906")


# ---- REST faults ----------------------------------------------------------------------------

def test_faults_route_answers_429_and_5xx_for_matching_requests(sim: Emulator,
                                                                api: dhanhq) -> None:
    ok(sim, "/faults", {"kind": "429", "path": "/orders", "method": "get"})
    ok(sim, "/faults", {"kind": "5xx", "path": "/fundlimit"})
    ok(sim, "/faults", {"kind": "5xx", "path": "/positions", "status": 503, "count": 2,
                        "client_id": LEADER_ID})
    pending = snapshot(sim)["faults"]["rest"]
    assert pending[2] == {"kind": "5xx", "path": "/positions", "method": None, "count": 2,
                          "client_id": LEADER_ID, "status": 503}
    assert [(f["kind"], f["status"]) for f in pending] == [("429", 500), ("5xx", 500),
                                                          ("5xx", 503)]

    throttled = rest(sim, "/orders")
    assert (throttled.status_code, throttled.json()["errorCode"]) == (429, "DH-904")
    assert rest(sim, "/orders").status_code == 200  # count 1: used up

    assert api.get_fund_limits()["remarks"]["error_code"] == "DH-908"  # status 500: JSON
    assert api.get_fund_limits()["status"] == "success"

    gateway = rest(sim, "/positions")
    assert gateway.status_code == 503
    assert gateway.headers["Content-Type"] == "text/html"
    assert gateway.text.startswith("<html>")
    assert rest(sim, "/positions", client_id=OTHER_ID, token=OTHER_TOKEN).status_code == 200
    sdk = api.get_positions()  # the SDK cannot parse the page: a plain-text failure
    assert sdk["status"] == "failure" and isinstance(sdk["remarks"], str)
    assert api.get_positions()["status"] == "success"
    assert snapshot(sim)["faults"]["rest"] == []


def test_hold_route_and_timeout_faults_lose_the_reply(sim: Emulator, api: dhanhq) -> None:
    ok(sim, "/hold", {"seconds": 0.2})
    assert snapshot(sim)["faults"]["hold_seconds"] == 0.2
    ok(sim, "/faults", {"kind": "timeout", "path": "/orders", "method": "POST"})
    ok(sim, "/faults", {"kind": "accept_then_timeout", "path": "/orders", "method": "POST"})

    body = {**LIMIT_ORDER, "correlationId": "ct-lost-1"}
    start = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        rest(sim, "/orders", "POST", body)
    assert time.monotonic() - start >= 0.2
    assert orders(sim) == {}  # "timeout": the request never took effect

    reply, held = timed(lambda: api.place_order("1333", "NSE_EQ", "BUY", 10, "LIMIT", "CNC",
                                                1600.0, tag="ct-lost-2"))
    assert held >= 0.2
    assert reply["status"] == "failure" and isinstance(reply["remarks"], str)
    found = api.get_order_by_correlationID("ct-lost-2")["data"]  # yet the order exists
    assert found["orderStatus"] == "PENDING"
    assert list(orders(sim)) == [found["orderId"]]

    refused(call(sim, "/hold", {"seconds": 601}))
    refused(call(sim, "/hold", {"seconds": -1}))


def test_not_found_fault_is_a_lookup_lag(sim: Emulator, api: dhanhq) -> None:
    ok(sim, "/faults", {"kind": "not_found", "path": "/orders/*", "count": 2})
    order_id = place_limit(api, tag="ct-lag-1")  # placing is not a lookup: unaffected
    assert api.get_order_by_id(order_id)["remarks"]["error_code"] == "DH-906"
    assert api.get_order_by_correlationID("ct-lag-1")["remarks"]["error_code"] == "DH-906"
    assert api.get_order_by_id(order_id)["data"]["orderId"] == order_id
    assert api.get_order_by_correlationID("ct-lag-1")["data"]["orderId"] == order_id


def test_delay_route_slows_every_rest_reply(sim: Emulator, api: dhanhq) -> None:
    ok(sim, "/delay", {"ms": 400})
    assert snapshot(sim)["faults"]["delay_ms"] == 400
    reply, took = timed(api.get_fund_limits)
    assert reply["status"] == "success" and took >= 0.4
    _, control_took = timed(lambda: snapshot(sim))
    assert control_took < 0.4  # control calls are not delayed
    refused(call(sim, "/delay", {"ms": -1}))


def test_faults_clear_route_forgets_rest_and_frame_faults(sim: Emulator, api: dhanhq) -> None:
    ok(sim, "/hold", {"seconds": 5})
    ok(sim, "/delay", {"ms": 100})
    ok(sim, "/faults", {"kind": "429", "count": 5})
    with stream(sim) as ws:
        ok(sim, "/stream/frames", {"mode": "duplicate", "count": 5})
        assert ok(sim, "/faults/clear") is None
        assert snapshot(sim)["faults"] == {"rest": [], "delay_ms": 0.0, "hold_seconds": 5.0}
        order_id = place_limit(api)
        assert statuses(next_frames(ws, 2)) == ["Transit", "Pending"]
        assert no_more_frames(ws)
    assert list(orders(sim)) == [order_id]


# ---- stream faults --------------------------------------------------------------------------

def test_stream_drop_route_closes_clean_or_unclean(sim: Emulator) -> None:
    assert ok(sim, "/stream/drop", {}) == 0  # nobody connected
    with stream(sim) as ws:
        assert ok(sim, "/stream/drop", {"client_id": LEADER_ID}) == 1
        assert close_code(ws) == 1001
    with stream(sim) as ws:
        assert ok(sim, "/stream/drop", {"clean": False}) == 1
        assert close_code(ws) is None  # TCP abort: no close frame
    eventually(lambda: snapshot(sim)["stream"]["connections"] == {})


def test_stream_stall_and_unstall_routes(sim: Emulator, api: dhanhq) -> None:
    with stream(sim) as ws, stream(sim, OTHER_ID, OTHER_TOKEN) as other:
        assert ok(sim, "/stream/stall", {"client_id": LEADER_ID, "seconds": 30}) == 1
        place_limit(api)
        assert no_more_frames(ws)
        assert ok(sim, "/stream/unstall", {"client_id": LEADER_ID}) == 1
        assert statuses(next_frames(ws, 2)) == ["Transit", "Pending"]
        assert ok(sim, "/stream/unstall", {}) == 0  # nothing stalled any more

        assert ok(sim, "/stream/stall", {"seconds": 0.3}) == 2  # every connection, briefly
        ok(sim, "/app/place", {"client_id": OTHER_ID, "order": LIMIT_ORDER})
        assert statuses(next_frames(other, 2)) == ["Transit", "Pending"]  # stall ran out
    refused(call(sim, "/stream/stall", {"seconds": 0}))
    refused(call(sim, "/stream/stall", {"seconds": 601}))


def test_stream_frames_route_duplicates_delays_and_reorders(sim: Emulator,
                                                            api: dhanhq) -> None:
    with stream(sim) as ws:
        ok(sim, "/stream/frames", {"mode": "duplicate", "count": 1, "client_id": LEADER_ID})
        place_limit(api)
        assert statuses(next_frames(ws, 3)) == ["Transit", "Transit", "Pending"]

        ok(sim, "/stream/frames", {"mode": "delay", "count": 1, "seconds": 0.2})
        place_limit(api)
        assert statuses(next_frames(ws, 2)) == ["Pending", "Transit"]  # overtaken

        ok(sim, "/stream/frames", {"mode": "reorder", "count": 3, "client_id": LEADER_ID})
        place_market(api)
        assert statuses(next_frames(ws, 3)) == ["Traded", "Pending", "Transit"]
        assert no_more_frames(ws)

    assert "duplicate, delay or reorder" in refused(call(sim, "/stream/frames",
                                                         {"mode": "shuffle", "count": 2}))
    refused(call(sim, "/stream/frames", {"mode": "reorder", "count": 1}))
    refused(call(sim, "/stream/frames", {"mode": "delay", "count": 1, "seconds": 601}))


def test_tokens_expire_route(sim: Emulator, api: dhanhq) -> None:
    assert api.get_fund_limits()["status"] == "success"
    with stream(sim) as ws:
        assert ok(sim, "/tokens/expire", {"client_id": LEADER_ID}) == 1
        assert close_code(ws) == 1008
    assert api.get_fund_limits()["remarks"]["error_code"] == "DH-901"
    assert snapshot(sim)["accounts"][LEADER_ID]["tokens_expired"] == 1
    with login(sim.ws_url) as refused_ws:  # the old token cannot log in again
        assert close_code(refused_ws) == 1008
    assert rest(sim, "/fundlimit", token="a-fresh-token").status_code == 200
    assert ok(sim, "/tokens/expire", {"client_id": "9999999999"}) == 0


def test_session_routes_expire_reject_and_start_a_new_day(sim: Emulator, api: dhanhq) -> None:
    open_id = place_limit(api)
    assert ok(sim, "/session/end") == 1
    assert api.get_order_by_id(open_id)["data"]["orderStatus"] == "EXPIRED"
    assert snapshot(sim)["session_open"] is False
    closed_id = place_market(api, 1)
    assert orders(sim)[closed_id]["omsErrorDescription"].startswith("Market is closed")
    amo_id = place_market(api, 1, after_market_order=True, amo_time="OPEN")
    assert orders(sim)[amo_id]["orderStatus"] == "PENDING"

    assert ok(sim, "/session/start", {"new_day": False}) is None
    assert snapshot(sim)["session_open"] is True
    assert orders(sim)[amo_id]["orderStatus"] == "TRADED"

    ok(sim, "/session/start", {"new_day": True})
    assert api.get_order_list()["data"] == []
    assert api.get_positions()["data"] == []


# ---- refusals and secrets -------------------------------------------------------------------

def test_unknown_control_call_is_refused_with_dh905(sim: Emulator) -> None:
    assert refused(call(sim, "/nowhere", {})) == "No such control call POST /_sim/nowhere"
    assert "GET /_sim/prices" in refused(call(sim, "/prices", method="GET"))
    assert "DELETE /_sim/snapshot" in refused(call(sim, "/snapshot", method="DELETE"))
    assert snapshot(sim)["session_open"] is True


MISSING_KEYS = {
    "/prices": ({"security_id": "1333"}, "price"),
    "/accounts/funds": ({"funds": 1}, "client_id"),
    "/app/place": ({"client_id": LEADER_ID}, "order"),
    "/app/modify": ({"client_id": LEADER_ID, "order_id": "1"}, "order"),
    "/app/cancel": ({"client_id": LEADER_ID}, "order_id"),
    "/orders/reject": ({}, "order_id"),
    "/faults": ({"path": "/orders"}, "kind"),
    "/delay": ({}, "ms"),
    "/hold": ({}, "seconds"),
    "/stream/frames": ({"count": 2}, "mode"),
    "/tokens/expire": ({}, "client_id"),
}


@pytest.mark.parametrize("path", MISSING_KEYS)
def test_body_missing_a_key_is_refused_and_serving_goes_on(sim: Emulator, api: dhanhq,
                                                           path: str) -> None:
    body, key = MISSING_KEYS[path]
    message = refused(call(sim, path, body))
    assert message.startswith(f"control POST {path}:")
    assert repr(key) in message
    assert snapshot(sim)["session_open"] is True
    assert api.get_fund_limits()["status"] == "success"


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"prices"', b"42", b"null", b"{not json"],
                         ids=["list", "string", "number", "null", "not json"])
def test_body_not_an_object_is_refused_and_serving_goes_on(sim: Emulator, api: dhanhq,
                                                           raw: bytes) -> None:
    reply = requests.post(f"{sim.control_url}/prices", data=raw, timeout=5,
                          headers={"Content-Type": "application/json"})
    message = refused(reply)
    assert message.startswith("control POST /prices:")
    if raw != b"{not json":
        assert message.endswith("control body must be a JSON object")
    assert snapshot(sim)["prices"]["1333"] == 1650.0
    assert api.get_fund_limits()["status"] == "success"


BAD_VALUES = {
    "unknown fault kind": ("/faults", {"kind": "gremlin"}),
    "fault count 0": ("/faults", {"kind": "429", "count": 0}),
    "5xx status not 5xx": ("/faults", {"kind": "5xx", "status": 404}),
    "count not a number": ("/faults", {"kind": "429", "count": "many"}),
    "fill size negative": ("/fill-size", {"quantity": -5}),
    "fill size unknown security": ("/fill-size", {"quantity": 5, "security_id": "7"}),
    "price not a number": ("/prices", {"security_id": "1333", "price": "cheap"}),
    "duplicate count negative": ("/stream/frames", {"mode": "duplicate", "count": -1}),
    "delay frames without seconds": ("/stream/frames", {"mode": "delay", "count": 1}),
}


@pytest.mark.parametrize("case", BAD_VALUES.values(), ids=BAD_VALUES)
def test_bad_values_are_refused(sim: Emulator, case: tuple[str, dict]) -> None:
    path, body = case
    refused(call(sim, path, body))
    state = snapshot(sim)
    assert state["faults"]["rest"] == [] and state["fill_size"] == {}


def test_snapshot_never_shows_an_access_token(sim: Emulator,
                                              make_api: Callable[..., dhanhq]) -> None:
    expired_token = "leader-token-old-91d2"
    tokens = [LEADER_TOKEN, OTHER_TOKEN, expired_token, "stream-only-token-5e0b"]
    assert make_api(token=expired_token).get_fund_limits()["status"] == "success"
    ok(sim, "/tokens/expire", {"client_id": LEADER_ID})
    leader, other = make_api(), make_api(OTHER_ID, OTHER_TOKEN)
    place_market(leader, 1, tag="ct-secret-1")
    place_limit(other)
    ok(sim, "/faults", {"kind": "429", "client_id": OTHER_ID, "path": "/positions"})
    with stream(sim, "1000000003", tokens[3]):
        raw = requests.get(f"{sim.control_url}/snapshot", timeout=5).text
    assert set(json.loads(raw)["accounts"]) == {LEADER_ID, OTHER_ID, "1000000003"}
    for token in tokens:
        assert token not in raw
        assert token_digest(token) not in raw


def test_doc_lists_every_control_route() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [f"{method} /_sim{path}" for method, path in ACTIONS
               if not re.search(rf"{method} /_sim{re.escape(path)}(?![\w/-])", text)]
    assert not missing, f"docs/sim.md does not mention {missing}"


# ---- refusals that once slipped through -------------------------------------------------------

@pytest.mark.parametrize("body", [{"kind": "429", "method": 5}, {"kind": "5xx", "path": 5}],
                         ids=["method", "path"])
def test_fault_with_a_non_text_method_or_path_is_refused(sim: Emulator, body: dict) -> None:
    reply = call(sim, "/faults", body)
    assert rest_serves(sim), "REST stopped answering"
    refused(reply)


def test_app_place_with_an_order_that_is_not_an_object_is_refused(sim: Emulator) -> None:
    try:
        reply = call(sim, "/app/place", {"client_id": LEADER_ID,
                                         "order": [["securityId", "1333"]]})
    except requests.ConnectionError:
        pytest.fail("the connection was closed with no reply")
    refused(reply)


def test_delay_is_bounded(sim: Emulator) -> None:
    refused(call(sim, "/delay", {"ms": 1e13}))
    assert rest_serves(sim)


def test_session_start_with_new_day_as_text_false_keeps_the_book(sim: Emulator,
                                                                  api: dhanhq) -> None:
    order_id = place_limit(api)
    call(sim, "/session/start", {"new_day": "false"})
    assert list(orders(sim)) == [order_id]


def test_infinite_price_is_refused(sim: Emulator) -> None:
    reply = requests.post(f"{sim.control_url}/prices", timeout=5,
                          data=b'{"security_id": "1333", "price": Infinity}')
    raw = requests.get(f"{sim.control_url}/snapshot", timeout=5).text
    json.loads(raw, parse_constant=lambda name: pytest.fail(f"snapshot has {name}"))
    refused(reply)
