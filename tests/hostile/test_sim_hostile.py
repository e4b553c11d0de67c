"""The emulator under hostile control and REST input (issue 7, row 16).

Each case sends something a careless or malicious client could send to a running emulator
on 127.0.0.1: an absurd price walk, NaN funds, 4,000-digit numbers, deeply nested bodies,
broken framing, connections reset mid-request. Each must be a prompt 400 DH-905 in Dhan's
error shape (never a 500, a hang or a traceback), every answer must be standard JSON, and
the emulator must go on answering at once.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from simtools import eventually  # tests/e2e, on the path by conftest
from websockets.sync.client import connect

from copytrade.sim.clock import ManualClock
from copytrade.sim.server import Emulator

CLIENT_ID = "1000000001"
TOKEN = "hostile-token-5d1e"
PROMPT = 2.0  # seconds a follow-up call may take (loopback, two shared cores)
ORDER = {"transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
         "orderType": "LIMIT", "validity": "DAY", "securityId": "1333", "quantity": 10,
         "price": 1600.0}
HUGE = "9" * 4000  # digits of a number no JSON parser should be asked to convert
DEEP = 100_000  # nesting levels of a hostile body


# ---- helpers ------------------------------------------------------------------------------

def strict_json(text: str | bytes) -> Any:
    """json.loads that refuses NaN / Infinity, which no standard parser accepts."""
    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name} in {text[:200]!r}")
    return json.loads(text, parse_constant=refuse)


def refused(reply: requests.Response) -> str:
    """A prompt 400 DH-905 in Dhan's error shape, standard JSON; its message."""
    assert reply.status_code == 400, (reply.status_code, reply.text[:300])
    body = strict_json(reply.content)
    assert set(body) == {"errorType", "errorCode", "errorMessage"}, body
    assert (body["errorType"], body["errorCode"]) == ("Input_Exception", "DH-905"), body
    return body["errorMessage"]


def control(sim: Emulator, path: str, body: Any = None, *, raw: bytes | None = None,
            method: str = "POST") -> requests.Response:
    data = raw if raw is not None else json.dumps({} if body is None else body).encode()
    return requests.request(method, f"{sim.control_url}{path}", data=data, timeout=10,
                            headers={"Content-Type": "application/json"})


def rest(sim: Emulator, clock: ManualClock, path: str, method: str = "GET", *,
         raw: bytes | None = None) -> requests.Response:
    """A /v2 call with credentials; the manual clock leaves the rate window first."""
    clock.advance(1.01)
    headers = {"access-token": TOKEN, "client-id": CLIENT_ID,
               "Content-Type": "application/json"}
    return requests.request(method, f"{sim.rest_url}{path}", data=raw, headers=headers,
                            timeout=10)


def timed(action: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    start = time.monotonic()
    reply = action()
    return reply, time.monotonic() - start


def still_serving(sim: Emulator, clock: ManualClock) -> dict:
    """A Dhan read and a control read both answer 200 with standard JSON, promptly; the
    state (after the read, which creates the account if new)."""
    funds, took = timed(lambda: rest(sim, clock, "/fundlimit"))
    assert funds.status_code == 200 and took < PROMPT, (funds.status_code, took)
    strict_json(funds.content)
    state, took = timed(lambda: requests.get(f"{sim.control_url}/snapshot", timeout=PROMPT))
    assert state.status_code == 200 and took < PROMPT, (state.status_code, took)
    return strict_json(state.content)




def raw_http(sim: Emulator, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are; the status and body of the answer, read until the server
    closes the connection (bounded by the socket timeout)."""
    with socket.create_connection(("127.0.0.1", sim.rest.port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            assert len(received) < 1_000_000
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN, as a crashed client or a dropped NAT entry."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ---- the price walk -------------------------------------------------------------------------

def test_a_price_walk_of_three_million_steps_is_refused_at_once(
        sim: Emulator, clock: ManualClock) -> None:
    before = still_serving(sim, clock)["prices"]
    reply, took = timed(lambda: control(sim, "/prices/step", {"steps": 3_000_000}))
    assert "steps must be a whole number from 1 to 10000" in refused(reply)
    assert took < PROMPT
    assert still_serving(sim, clock)["prices"] == before


@pytest.mark.parametrize("steps", [0, -1, 10_001, 1e308, True, "9" * 40, [3], 2.5],
                         ids=["0", "negative", "10001", "1e308", "true", "long text", "list",
                              "fraction"])
def test_out_of_range_steps_are_refused(sim: Emulator, clock: ManualClock,
                                        steps: object) -> None:
    assert "steps" in refused(control(sim, "/prices/step", {"steps": steps}))
    still_serving(sim, clock)


def test_the_largest_walk_allowed_is_quick(sim: Emulator, clock: ManualClock) -> None:
    reply, took = timed(lambda: control(sim, "/prices/step", {"steps": 10_000}))
    assert reply.status_code == 200, reply.text
    assert took < 10  # about 0.4 s alone; generous for two shared cores
    prices = strict_json(reply.content)["result"]
    assert len(prices) == 13 and all(0 < price <= 1e9 for price in prices.values())
    still_serving(sim, clock)


# ---- funds ----------------------------------------------------------------------------------

@pytest.mark.parametrize("funds", [b"NaN", b"Infinity", b"-Infinity", b"-1e308", b"1e308",
                                   b"1e999", b'"nan"', b'"-1e308"', b"-1", b"true",
                                   HUGE.encode()],
                         ids=["NaN", "Infinity", "-Infinity", "-1e308", "1e308", "1e999",
                              "text nan", "text -1e308", "negative", "true", "4000 digits"])
def test_funds_that_are_not_finite_or_sane_are_refused(sim: Emulator, clock: ManualClock,
                                                       funds: bytes) -> None:
    body = b'{"client_id": "' + CLIENT_ID.encode() + b'", "funds": ' + funds + b"}"
    refused(control(sim, "/accounts/funds", raw=body))
    state = still_serving(sim, clock)  # the account exists through the REST read
    assert state["accounts"][CLIENT_ID]["funds"]["sodLimit"] == 1_000_000


def test_funds_bounds_hold_in_python_too(sim: Emulator) -> None:
    from copytrade.sim.errors import ApiError

    for funds in (float("nan"), float("inf"), -1e308, 1e16):
        with pytest.raises(ApiError):
            sim.set_funds(CLIENT_ID, funds)
    with pytest.raises(ValueError):
        Emulator(funds=float("nan"))
    sim.set_funds(CLIENT_ID, 1e13)  # the soak test's funds stay allowed


# ---- numbers in orders ----------------------------------------------------------------------

def order_with(key: str, literal: str) -> bytes:
    """A place body whose `key` is the JSON literal given (not re-encoded)."""
    body = json.dumps({**ORDER, key: "@"})
    return body.replace('"@"', literal).encode()


NUMBERS = {
    "quantity 4000 digits": ("quantity", HUGE),
    "quantity -4000 digits": ("quantity", "-" + HUGE),
    "quantity 4000 digits as text": ("quantity", f'"{HUGE}"'),
    "quantity 1e999": ("quantity", "1e999"),
    "quantity NaN": ("quantity", "NaN"),
    "quantity 1e300": ("quantity", "1e300"),
    "price 4000 digits": ("price", HUGE),
    "price Infinity": ("price", "Infinity"),
    "price 1e308": ("price", "1e308"),
    "price text inf": ("price", '"inf"'),
    "trigger -NaN": ("triggerPrice", "-NaN"),
    "disclosed 4000 digits": ("disclosedQuantity", HUGE),
}


@pytest.mark.parametrize("case", NUMBERS.values(), ids=NUMBERS)
def test_absurd_numbers_in_a_rest_order_are_refused(sim: Emulator, clock: ManualClock,
                                                    case: tuple[str, str]) -> None:
    key, literal = case
    reply, took = timed(lambda: rest(sim, clock, "/orders", "POST",
                                     raw=order_with(key, literal)))
    refused(reply)
    assert took < PROMPT
    assert still_serving(sim, clock)["accounts"][CLIENT_ID]["orders"] == []


@pytest.mark.parametrize("case", NUMBERS.values(), ids=NUMBERS)
def test_absurd_numbers_in_an_app_order_are_refused(sim: Emulator, clock: ManualClock,
                                                    case: tuple[str, str]) -> None:
    key, literal = case
    order = order_with(key, literal).decode()
    body = f'{{"client_id": "{CLIENT_ID}", "order": {order}}}'.encode()
    refused(control(sim, "/app/place", raw=body))
    assert still_serving(sim, clock)["accounts"][CLIENT_ID]["orders"] == []


def test_slicing_into_millions_of_slices_is_refused_at_once(sim: Emulator,
                                                            clock: ManualClock) -> None:
    sim.set_funds(CLIENT_ID, 1e15)
    body = json.dumps({**ORDER, "securityId": "52175", "exchangeSegment": "NSE_FNO",
                       "productType": "MARGIN", "quantity": 65 * 10**7}).encode()
    reply, took = timed(lambda: rest(sim, clock, "/orders/slicing", "POST", raw=body))
    assert "slices" in refused(reply)
    assert took < PROMPT
    assert still_serving(sim, clock)["accounts"][CLIENT_ID]["orders"] == []


def test_price_and_fill_size_bounds_on_the_control_plane(sim: Emulator,
                                                         clock: ManualClock) -> None:
    for body in ({"security_id": "1333", "price": 1e308},
                 {"security_id": "1333", "price": HUGE},
                 {"security_id": "1" * 10_000, "price": 1600}):
        refused(control(sim, "/prices", body))
    refused(control(sim, "/prices", raw=b'{"security_id": "1333", "price": ' +
                    HUGE.encode() + b"}"))
    for quantity in (1e308, 10**15, 2.5, "5"):
        refused(control(sim, "/fill-size", {"quantity": quantity}))
    state = still_serving(sim, clock)
    assert state["prices"]["1333"] == 1650.0 and state["fill_size"] == {}


def test_hostile_ids_and_texts_on_the_control_plane(sim: Emulator, clock: ManualClock) -> None:
    long_id = "7" * 100_000
    refused(control(sim, "/accounts/funds", {"client_id": long_id, "funds": 5}))
    refused(control(sim, "/accounts/funds", {"client_id": {"a": 1}, "funds": 5}))
    refused(control(sim, "/orders/reject", {"order_id": "1", "reason": ["x"]}))
    refused(control(sim, "/orders/reject", {"order_id": "1", "reason": "x" * 10_000}))
    refused(control(sim, "/faults", {"kind": "429", "count": 10**12}))
    refused(control(sim, "/faults", {"kind": "429", "path": "*" * 10_000}))
    refused(control(sim, "/faults", {"kind": ["429"]}))
    refused(control(sim, "/stream/frames", {"mode": "duplicate", "count": 10**12}))
    refused(control(sim, "/prices", {"security_id": "x" * 5_000, "price": 1}))
    message = refused(rest(sim, clock, "/orders", "POST", raw=json.dumps(
        {**ORDER, "transactionType": "x" * 100_000}).encode()))
    assert len(message) < 300  # a refused value is not echoed back in full
    state = still_serving(sim, clock)
    assert set(state["accounts"]) == {CLIENT_ID}
    assert state["faults"]["rest"] == []


# ---- bodies ---------------------------------------------------------------------------------

DEEP_BODIES = {
    "arrays": b"[" * DEEP + b"]" * DEEP,
    "objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "unclosed": b"[" * DEEP,
    "33 levels in a key": b'{"client_id": "1", "x": ' + b"[" * 33 + b"]" * 33 + b"}",
}


@pytest.mark.parametrize("raw", DEEP_BODIES.values(), ids=DEEP_BODIES)
def test_deeply_nested_bodies_are_refused(sim: Emulator, clock: ManualClock,
                                          raw: bytes) -> None:
    assert "nested deeper than 32 levels" in refused(control(sim, "/accounts/funds", raw=raw))
    assert "nested deeper than 32 levels" in refused(rest(sim, clock, "/orders", "POST",
                                                          raw=raw))
    assert "nested deeper than 32 levels" in refused(rest(sim, clock, "/marketfeed/ltp",
                                                          "POST", raw=raw))
    still_serving(sim, clock)


def test_brackets_inside_strings_do_not_count_as_nesting(sim: Emulator,
                                                         clock: ManualClock) -> None:
    order = {**ORDER, "correlationId": "ok", "note": "[{" * 1000 + '\\"' + "[" * 100}
    reply = control(sim, "/app/place", {"client_id": CLIENT_ID, "order": order,
                                        "x": [[[[[[[[[[]]]]]]]]]]})
    assert reply.status_code == 200, reply.text
    still_serving(sim, clock)


BAD_BODIES = {
    "not json": b"{not json",
    "invalid utf-8": b'{"client_id": "\xff\xfe", "funds": 5}',
    "NaN": b'{"client_id": "1", "funds": NaN}',
    "truncated": b'{"client_id": "1", "funds": ',
    "a lone surrogate escape as a key": b'{"\\ud800": 1}',
}


@pytest.mark.parametrize("raw", BAD_BODIES.values(), ids=BAD_BODIES)
def test_bad_bodies_are_refused_on_both_planes(sim: Emulator, clock: ManualClock,
                                               raw: bytes) -> None:
    for reply in (control(sim, "/accounts/funds", raw=raw),
                  rest(sim, clock, "/orders", "POST", raw=raw)):
        message = refused(reply)
        assert message.startswith(("control POST /accounts/funds:", "Request ", "Invalid"))
    still_serving(sim, clock)


def test_a_body_over_one_megabyte_is_answered_not_reset(sim: Emulator,
                                                        clock: ManualClock) -> None:
    big = b'{"client_id": "1", "pad": "' + b"x" * 2_000_000 + b'"}'
    assert "larger than 1000000 bytes" in refused(control(sim, "/accounts/funds", raw=big))
    assert "larger than 1000000 bytes" in refused(rest(sim, clock, "/orders", "POST",
                                                       raw=big))
    still_serving(sim, clock)


FRAMING = {
    "content-length text": b"Content-Length: abc\r\n\r\n{}",
    "content-length negative": b"Content-Length: -5\r\n\r\n{}",
    "content-length 4000 digits": b"Content-Length: " + HUGE.encode() + b"\r\n\r\n{}",
    "chunked": b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("framing", FRAMING.values(), ids=FRAMING)
@pytest.mark.parametrize("path", ["/_sim/match", "/v2/orders"])
def test_broken_framing_is_refused_and_the_connection_closed(
        sim: Emulator, clock: ManualClock, framing: bytes, path: str) -> None:
    request = f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode() + framing
    started = time.monotonic()
    status, body = raw_http(sim, request)
    assert time.monotonic() - started < PROMPT  # a negative length once read to EOF
    assert status == 400
    assert strict_json(body)["errorCode"] == "DH-905"
    still_serving(sim, clock)


# ---- output ---------------------------------------------------------------------------------

def test_no_answer_is_ever_non_standard_json(sim: Emulator, clock: ManualClock) -> None:
    for raw in (b'{"client_id": "1", "funds": NaN}', b'{"security_id": "1333", "price": NaN}',
                b'{"security_id": "1333", "price": -Infinity}'):
        for path in ("/accounts/funds", "/prices"):
            strict_json(control(sim, path, raw=raw).content)
    sim.app_place(CLIENT_ID, ORDER)
    for path in ("/orders", "/positions", "/fundlimit", "/trades", "/profile"):
        reply = rest(sim, clock, path)
        assert reply.status_code == 200
        strict_json(reply.content)
    strict_json(requests.get(f"{sim.control_url}/snapshot", timeout=5).content)


# ---- connections reset by the client --------------------------------------------------------

def test_connections_reset_mid_request_print_no_traceback(
        sim: Emulator, clock: ManualClock, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="copytrade.sim.rest")
    port = sim.rest.port
    partial_requests = [
        b"GET /v2/fundlimit HTTP/1.1\r\nHost: x\r\n",  # headers cut short
        b"POST /_sim/prices HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"a\"",
        b"POST /v2/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    ]
    for request in partial_requests:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(request)
        reset(sock)
    # A whole request, then a reset before the answer is read.
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /_sim/snapshot HTTP/1.1\r\nHost: x\r\n\r\n")
    reset(sock)
    # An order-stream connection reset after its login.
    with connect(sim.ws_url, open_timeout=5, close_timeout=1) as ws:
        ws.send(json.dumps({"LoginReq": {"MsgCode": 42, "ClientId": CLIENT_ID,
                                         "Token": TOKEN}, "UserType": "SELF"}))
        eventually(lambda: sim.stream.stats()["connections"].get(CLIENT_ID) == 1)
        reset(ws.socket)
        eventually(lambda: not sim.stream.stats()["connections"])

    def quietly_noted() -> bool:
        return sum("went away" in r.getMessage() for r in caplog.records) >= len(
            partial_requests) + 1
    eventually(quietly_noted)
    still_serving(sim, clock)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err
    assert all(r.levelno <= logging.DEBUG for r in caplog.records
               if r.name == "copytrade.sim.rest"), caplog.records
