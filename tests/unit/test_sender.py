"""The lean order path (dhan/sender.py) sends what the SDK sends and reads replies as the
SDK does; checked side by side against a recording HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dhanhq import DhanContext, dhanhq

from copytrade.dhan.rest import DhanAccount, OutcomeKind, PlaceRequest

TOKEN = "eyJhbGciOiJIUzUxMiJ9.sender-test-token.sig"
CLIENT = "1000000002"


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict] = []
        self.connections = 0
        self.reply: tuple[int, bytes, str] = (200, b'{"orderId": "11", "orderStatus": '
                                                   b'"TRANSIT"}', "application/json")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1  # type: ignore[attr-defined]

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append({  # type: ignore[attr-defined]
            "method": self.command, "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()
                        if k.lower() in ("access-token", "client-id", "content-type",
                                         "accept")},
            "body": json.loads(body) if body else None})
        status, payload, kind = self.server.reply  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_PUT = do_DELETE = _record

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder()
    thread = threading.Thread(target=recorder.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        recorder.shutdown()
        recorder.server_close()


def url(server: Recorder) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v2"


def sdk(server: Recorder) -> dhanhq:
    context = DhanContext(CLIENT, TOKEN)
    context.get_dhan_http().base_url = url(server)
    return dhanhq(context)


REQUESTS = [
    PlaceRequest("1333", "NSE_EQ", "BUY", 10, "LIMIT", "CNC", 1600.5),
    PlaceRequest("52201", "NSE_FNO", "SELL", 130, "STOP_LOSS", "INTRADAY", 99.0,
                 trigger_price=99.5, disclosed_quantity=65, validity="IOC"),
    PlaceRequest("1333", "NSE_EQ", "BUY", 1, "MARKET", "CNC", 0.0, after_market_order=True,
                 amo_time="OPEN_30"),
]


@pytest.mark.parametrize("request_", REQUESTS)
@pytest.mark.parametrize("sliced", [False, True])
def test_a_place_is_the_sdks_place_on_the_wire(server: Recorder, request_: PlaceRequest,
                                               sliced: bool) -> None:
    ours = DhanAccount(CLIENT, TOKEN, api_url=url(server))
    assert ours.place(request_, "ctabc-1", slice_order=sliced).ok
    sdk(server).place_order(
        request_.security_id, request_.exchange_segment, request_.transaction_type,
        request_.quantity, request_.order_type, request_.product_type, request_.price,
        trigger_price=request_.trigger_price, disclosed_quantity=request_.disclosed_quantity,
        after_market_order=request_.after_market_order, validity=request_.validity,
        amo_time=request_.amo_time, tag="ctabc-1", should_slice=sliced)
    lean, reference = server.requests
    assert lean == reference


def test_modify_and_cancel_are_the_sdks_on_the_wire(server: Recorder) -> None:
    ours = DhanAccount(CLIENT, TOKEN, api_url=url(server))
    ours.modify("77", order_type="LIMIT", quantity=20, price=10.5, trigger_price=0.0,
                disclosed_quantity=0, validity="DAY")
    sdk(server).modify_order("77", "LIMIT", "ENTRY_LEG", 20, 10.5, 0.0, 0, "DAY")
    ours.cancel("77")
    sdk(server).cancel_order("77")
    assert server.requests[0] == server.requests[1]
    assert server.requests[2] == server.requests[3]


def test_calls_share_one_kept_alive_connection(server: Recorder) -> None:
    ours = DhanAccount(CLIENT, TOKEN, api_url=url(server))
    for _ in range(5):
        assert ours.cancel("77").ok
    assert server.connections == 1


@pytest.mark.parametrize(("reply", "kind", "code"), [
    ((400, b'{"errorType": "Input_Exception", "errorCode": "DH-905", '
           b'"errorMessage": "bad"}', "application/json"), OutcomeKind.REFUSED, "DH-905"),
    ((401, b'{"errorCode": "DH-901", "errorMessage": "expired"}', "application/json"),
     OutcomeKind.AUTH, "DH-901"),
    ((429, b'{"errorCode": "DH-904"}', "application/json"), OutcomeKind.THROTTLED, "DH-904"),
    ((502, b"<html><body>Bad Gateway</body></html>", "text/html"), OutcomeKind.UNKNOWN, ""),
    ((200, b"", "application/json"), OutcomeKind.UNKNOWN, ""),
])
def test_replies_are_classified_as_the_sdks(server: Recorder, reply, kind, code) -> None:
    server.reply = reply
    ours = DhanAccount(CLIENT, TOKEN, api_url=url(server))
    outcome = ours.cancel("77")
    assert (outcome.kind, outcome.code) == (kind, code)


def test_a_connection_that_fails_is_an_unknown_outcome_and_is_replaced() -> None:
    ours = DhanAccount(CLIENT, TOKEN, api_url="http://127.0.0.1:9/v2", timeout=1)
    outcome = ours.place(REQUESTS[0], "ctabc-1", slice_order=False)
    assert outcome.kind is OutcomeKind.UNKNOWN
    assert TOKEN not in outcome.message
