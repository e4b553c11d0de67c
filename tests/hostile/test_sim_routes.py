"""The two emulator routes the hostile suite drives: raw stream frames and the echo_token fault.

`send_raw_frame` / `POST /_sim/stream/raw` put any text, verbatim, on an account's order
stream, behind the frames already queued. The `echo_token` fault makes the broker answer
400 DH-905 with the request's own access token in the message, as careless proxies and
brokers do; the client is the one that must redact it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from dhanhq import DhanContext, dhanhq
from simtools import eventually  # tests/e2e, on the path by conftest
from websockets.sync.client import ClientConnection, connect

from copytrade.sim.clock import ManualClock
from copytrade.sim.server import Emulator

LEADER_ID, LEADER_TOKEN = "1000000001", "leader-token-routes-8b2c"
OTHER_ID, OTHER_TOKEN = "1000000002", "other-token-routes-41fe"
ORDER = {"transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
         "orderType": "MARKET", "validity": "DAY", "securityId": "1333", "quantity": 1}
HOSTILE_TEXTS = {
    "not json": "{not json",
    "escaped lone surrogate": '{"Type": "order_alert", "Data": {"OrderNo": "\\ud800"}}',
    "wrong types": '{"Type": 7, "Data": ["Traded", null, true]}',
    "huge number": '{"Type": "order_alert", "Data": {"Quantity": 1' + "0" * 5000 + "}}",
    "empty": "",
    "non-ascii": '{"Symbol": "नमस्ते ✓"}',
}


@pytest.fixture
def sim() -> Iterator[Emulator]:
    with Emulator(clock=ManualClock(), seed=7) as emulator:
        yield emulator


@pytest.fixture
def make_api(sim: Emulator) -> Callable[..., dhanhq]:
    def build(client_id: str = LEADER_ID, token: str = LEADER_TOKEN) -> dhanhq:
        context = DhanContext(client_id, token)
        context.get_dhan_http().base_url = sim.rest_url
        context.get_dhan_http().timeout = 5
        return dhanhq(context)

    return build




@contextmanager
def stream(sim: Emulator, client_id: str = LEADER_ID,
           token: str = LEADER_TOKEN) -> Iterator[ClientConnection]:
    """A logged-in order-stream client; returns once the emulator counts it."""
    before = sim.stream.stats()["connections"].get(client_id, 0)
    with connect(sim.ws_url, open_timeout=5, close_timeout=2) as ws:
        ws.send(json.dumps({"LoginReq": {"MsgCode": 42, "ClientId": client_id,
                                         "Token": token}, "UserType": "SELF"}))
        eventually(lambda: sim.stream.stats()["connections"].get(client_id, 0) > before)
        yield ws


def nothing_more(ws: ClientConnection, within: float = 0.3) -> bool:
    try:
        ws.recv(timeout=within)
    except TimeoutError:
        return True
    return False


def control(sim: Emulator, path: str, body: Any = None, *,
            raw: bytes | None = None) -> requests.Response:
    data = raw if raw is not None else json.dumps(body).encode()
    return requests.post(f"{sim.control_url}{path}", data=data, timeout=5,
                         headers={"Content-Type": "application/json"})


def refused(reply: requests.Response) -> str:
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert (body["errorType"], body["errorCode"]) == ("Input_Exception", "DH-905"), body
    return body["errorMessage"]


# ---- raw frames -----------------------------------------------------------------------------

@pytest.mark.parametrize("text", HOSTILE_TEXTS.values(), ids=HOSTILE_TEXTS)
def test_a_raw_frame_arrives_verbatim_from_python(sim: Emulator, text: str) -> None:
    with stream(sim) as ws:
        assert sim.send_raw_frame(LEADER_ID, text) == 1
        assert ws.recv(timeout=5) == text
        assert nothing_more(ws)


@pytest.mark.parametrize("text", HOSTILE_TEXTS.values(), ids=HOSTILE_TEXTS)
def test_a_raw_frame_arrives_verbatim_over_http(sim: Emulator, text: str) -> None:
    with stream(sim) as ws:
        reply = control(sim, "/stream/raw", {"client_id": LEADER_ID, "text": text})
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"ok": True, "result": 1}
        assert ws.recv(timeout=5) == text
        assert nothing_more(ws)


def test_a_raw_frame_reaches_every_connection_of_the_account_only(sim: Emulator) -> None:
    with stream(sim) as first, stream(sim) as second, stream(sim, OTHER_ID, OTHER_TOKEN) as other:
        assert sim.send_raw_frame(LEADER_ID, "[1, 2") == 2
        assert first.recv(timeout=5) == "[1, 2"
        assert second.recv(timeout=5) == "[1, 2"
        assert nothing_more(other)


def test_a_raw_frame_comes_after_the_frames_published_before_it(sim: Emulator) -> None:
    with stream(sim) as ws:
        sim.app_place(LEADER_ID, ORDER)  # Transit, Pending, Traded
        sent = sim.send_raw_frame(LEADER_ID, "raw after the order")
        sim.app_place(LEADER_ID, ORDER)
        assert sent == 1
        texts = [ws.recv(timeout=5) for _ in range(7)]
    assert texts[3] == "raw after the order"
    statuses = [json.loads(text)["Data"]["Status"] for text in texts[:3] + texts[4:]]
    assert statuses == ["Transit", "Pending", "Traded"] * 2


def test_a_raw_frame_skips_frame_faults(sim: Emulator) -> None:
    sim.duplicate_frames(5, LEADER_ID)
    with stream(sim) as ws:
        assert sim.send_raw_frame(LEADER_ID, "once") == 1
        assert ws.recv(timeout=5) == "once"
        assert nothing_more(ws)


def test_a_raw_frame_with_nobody_connected_reaches_nobody(sim: Emulator) -> None:
    dropped = sim.stream.stats()["frames_dropped"]
    assert sim.send_raw_frame(LEADER_ID, "lost") == 0
    assert control(sim, "/stream/raw", {"client_id": LEADER_ID, "text": "lost"}).json() == {
        "ok": True, "result": 0}
    assert sim.stream.stats()["frames_dropped"] == dropped + 2


def test_a_raw_frame_of_one_mebibyte_arrives_whole(sim: Emulator) -> None:
    text = "x" * (1024 * 1024)
    with stream(sim) as ws:
        assert sim.send_raw_frame(LEADER_ID, text) == 1
        assert ws.recv(timeout=10) == text


def test_bad_raw_frames_are_refused(sim: Emulator) -> None:
    with stream(sim) as ws:
        with pytest.raises(ValueError, match="at most"):
            sim.send_raw_frame(LEADER_ID, "x" * (1024 * 1024 + 1))
        with pytest.raises(ValueError, match="UTF-8"):
            sim.send_raw_frame(LEADER_ID, "\ud800")
        with pytest.raises(ValueError):
            sim.send_raw_frame(LEADER_ID, b"bytes")  # type: ignore[arg-type]
        # Over HTTP, an unescaped lone surrogate in the text cannot go out as a text frame.
        refused(control(sim, "/stream/raw", raw=b'{"client_id": "' + LEADER_ID.encode()
                        + b'", "text": "\\ud800"}'))
        assert "'text'" in refused(control(sim, "/stream/raw", {"client_id": LEADER_ID}))
        refused(control(sim, "/stream/raw", {"client_id": LEADER_ID, "text": 5}))
        refused(control(sim, "/stream/raw", {"client_id": [LEADER_ID], "text": "x"}))
        refused(control(sim, "/stream/raw", {"client_id": LEADER_ID,
                                             "text": "x" * 1_100_000}))
        assert nothing_more(ws)  # nothing was sent, and the connection is still up
        assert sim.send_raw_frame(LEADER_ID, "still here") == 1
        assert ws.recv(timeout=5) == "still here"


# ---- the echo_token fault -------------------------------------------------------------------

def test_echo_token_fault_puts_the_token_in_the_error(sim: Emulator,
                                                      make_api: Callable[..., dhanhq]) -> None:
    api = make_api()
    sim.fail_next("echo_token", "/orders", method="POST")
    reply = api.place_order("1333", "NSE_EQ", "BUY", 1, "MARKET", "CNC", 0)
    assert reply["status"] == "failure", reply
    remarks = reply["remarks"]
    assert remarks["error_code"] == "DH-905" and remarks["error_type"] == "Input_Exception"
    assert remarks["error_message"] == (f"Invalid request header access-token: {LEADER_TOKEN}, "
                                        f"client-id: {LEADER_ID}")
    assert sim.snapshot()["accounts"].get(LEADER_ID, {"orders": []})["orders"] == []  # not run
    assert api.place_order("1333", "NSE_EQ", "BUY", 1, "MARKET", "CNC", 0)["status"] == "success"


def test_echo_token_fault_over_http_matches_like_other_faults(
        sim: Emulator, make_api: Callable[..., dhanhq]) -> None:
    reply = control(sim, "/faults", {"kind": "echo_token", "path": "/fundlimit",
                                     "client_id": LEADER_ID, "count": 2, "status": 503})
    assert reply.json() == {"ok": True}
    leader, other = make_api(), make_api(OTHER_ID, OTHER_TOKEN)
    assert other.get_fund_limits()["status"] == "success"  # another account: not matched
    assert leader.get_positions()["status"] == "success"  # another path: not matched
    for _ in range(2):
        failed = leader.get_fund_limits()
        assert failed["status"] == "failure"
        assert failed["remarks"]["error_code"] == "DH-905"
        assert LEADER_TOKEN in failed["remarks"]["error_message"]
    assert leader.get_fund_limits()["status"] == "success"  # count used up
    assert sim.snapshot()["faults"]["rest"] == []


def test_echo_token_answer_is_400_with_dhans_body_verbatim(sim: Emulator) -> None:
    sim.fail_next("echo_token")
    token = "tok with spaces/+=;\"quotes\""
    reply = requests.get(f"{sim.rest_url}/orders", timeout=5,
                         headers={"access-token": token, "client-id": "c-1"})
    assert reply.status_code == 400
    assert reply.json() == {"errorType": "Input_Exception", "errorCode": "DH-905",
                            "errorMessage": f"Invalid request header access-token: {token}, "
                                            "client-id: c-1"}
    assert "c-1" not in sim.snapshot()["accounts"]  # not executed, not even authenticated
