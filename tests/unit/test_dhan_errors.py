"""Real Dhan's error dialects at the HTTP level (issue 9): a tiny server on 127.0.0.1
answers the exact bytes, and DhanAccount reads them on each path it has: order calls on
the lean sender, order calls on the SDK (a `proxy` account: the test server is the
proxy), and reads on the SDK.

- a 429 is THROTTLED whatever its body (Dhan's JSON, other JSON, HTML, none);
- a refusal for not sending from the account's whitelisted static IP is AUTH with code
  STATIC_IP_CODE, naming the account's `source_address` / `proxy` (never a proxy's
  password); the worker stops that account with its own message, recorded once in the
  audit trail, and the other followers go on;
- a 2xx place answer without a usable order id is UNKNOWN (looked up by correlation id),
  never an order id "None".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from copytrade.core.events import OrderReport, ReportSource
from copytrade.core.ids import correlation_id
from copytrade.core.orders import MirrorState
from copytrade.dhan.rest import (
    STATIC_IP_CODE,
    DhanAccount,
    Outcome,
    OutcomeKind,
    PlaceRequest,
    classify,
    order_ids_of,
    says_static_ip,
)
from copytrade.dhan.sender import OrderSender
from copytrade.engine.executor import token_refused_text
from copytrade.engine.mirrors import MirrorUpdater
from copytrade.engine.positions import PositionBook
from copytrade.engine.worker import FollowerWorker
from copytrade.store.db import open_store
from copytrade.store.models import MirrorOrder
from copytrade.store.repo import Store

TOKEN = "eyJhbGciOiJIUzUxMiJ9.errors-test-token.sig"
CLIENT = "1000000003"
JSON = "application/json"
Reply = tuple[int, bytes, str]

# Dhan's sim guess (copytrade/sim/errors.py): dhan-api.md gives no code or text for it.
STATIC_IP_JSON = (b'{"errorType": "Input_Exception", "errorCode": "DH-905", "errorMessage": '
                  b'"Order requests are accepted only from the static IP whitelisted for this '
                  b'account; this request came from another IP."}')


class Dhan(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.replies: dict[str, Reply] = {}  # method -> its answer
        self.requests: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v2"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        server: Dhan = self.server  # type: ignore[assignment]
        server.requests.append((self.command, self.path))
        status, body, kind = server.replies.get(self.command, (200, b"[]", JSON))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        return None


def _serve() -> Iterator[Dhan]:
    server = Dhan()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dhan() -> Iterator[Dhan]:
    yield from _serve()


@pytest.fixture
def other_dhan() -> Iterator[Dhan]:
    yield from _serve()


ORDER = PlaceRequest("1333", "NSE_EQ", "BUY", 10, "LIMIT", "CNC", 1600.5)

# Each way DhanAccount can make a call; the server is Dhan, or the account's proxy.
Path_ = Callable[[Dhan], Outcome]


def lean_place(server: Dhan) -> Outcome:
    account = DhanAccount(CLIENT, TOKEN, api_url=server.url, timeout=2,
                          source_address="127.0.0.1")
    return account.place(ORDER, "ctabc-1", slice_order=False)


def sdk_place(server: Dhan) -> Outcome:  # through a proxy, order calls stay on the SDK
    account = DhanAccount(CLIENT, TOKEN, api_url="http://api.dhan.invalid/v2", timeout=2,
                          proxy=f"http://user:proxy-pass-word@127.0.0.1:{server.server_address[1]}")
    return account.place(ORDER, "ctabc-1", slice_order=False)


def lean_cancel(server: Dhan) -> Outcome:
    return DhanAccount(CLIENT, TOKEN, api_url=server.url, timeout=2).cancel("77")


def sdk_book(server: Dhan) -> Outcome:
    return DhanAccount(CLIENT, TOKEN, api_url=server.url, timeout=2).order_book()


def sdk_positions(server: Dhan) -> Outcome:
    return DhanAccount(CLIENT, TOKEN, api_url=server.url, timeout=2).positions()


EVERY_PATH = [lean_place, sdk_place, lean_cancel, sdk_book, sdk_positions]


def answer(server: Dhan, reply: Reply) -> None:
    for method in ("GET", "POST", "PUT", "DELETE"):
        server.replies[method] = reply


# ---- 429: slow down, whatever the body -------------------------------------------------

TOO_MANY = [
    (429, b'{"errorType": "Rate_Limit", "errorCode": "DH-904", "errorMessage": '
          b'"Too many requests on server from single user breaching rate limits."}', JSON),
    (429, b'{"message": "Too Many Requests"}', JSON),  # JSON, but not Dhan's shape
    (429, b"<html><body><h1>429 Too Many Requests</h1></body></html>", "text/html"),
    (429, b"", "text/plain"),  # no body at all
]


@pytest.mark.parametrize("call", EVERY_PATH, ids=lambda c: c.__name__)
@pytest.mark.parametrize("reply", TOO_MANY, ids=["dhan-json", "other-json", "html", "empty"])
def test_a_429_is_throttled_whatever_its_body(dhan: Dhan, call: Path_, reply: Reply) -> None:
    answer(dhan, reply)
    outcome = call(dhan)
    assert outcome.kind is OutcomeKind.THROTTLED, outcome
    assert TOKEN not in outcome.describe()


def test_dh904_without_a_429_is_still_throttled(dhan: Dhan) -> None:
    answer(dhan, (400, b'{"errorCode": "DH-904", "errorMessage": "slow down"}', JSON))
    assert lean_place(dhan).kind is OutcomeKind.THROTTLED


@pytest.mark.parametrize("reply", [
    (502, b"<html><body>Bad Gateway</body></html>", "text/html"),
    (200, b"", JSON),  # a 2xx we cannot read: the order may exist
    (500, b'{"errorCode": "DH-908", "errorMessage": "server error"}', JSON),
])
@pytest.mark.parametrize("call", [lean_place, sdk_place], ids=lambda c: c.__name__)
def test_other_unreadable_answers_stay_unknown(dhan: Dhan, call: Path_, reply: Reply) -> None:
    answer(dhan, reply)
    assert call(dhan).kind is OutcomeKind.UNKNOWN


# ---- static IP: the account stops, saying which settings to change ------------------------

STATIC_IP_REPLIES = [
    (400, STATIC_IP_JSON, JSON),
    (403, b'{"errorType": "Invalid_Access", "errorCode": "DH-902", "errorMessage": '
          b'"IP address not registered for this client. Please whitelist your static IP."}',
     JSON),
    (403, b"<html><body>Access denied: your IP is not whitelisted</body></html>",
     "text/html"),  # a gateway's page, no JSON
]


@pytest.mark.parametrize("reply", STATIC_IP_REPLIES, ids=["dh905", "dh902", "html-403"])
def test_a_static_ip_refusal_on_the_lean_path_names_its_source_address(
        dhan: Dhan, reply: Reply) -> None:
    answer(dhan, reply)
    outcome = lean_place(dhan)
    assert (outcome.kind, outcome.code, outcome.static_ip) == (
        OutcomeKind.AUTH, STATIC_IP_CODE, True)
    assert "source_address=127.0.0.1, proxy=unset" in outcome.message


@pytest.mark.parametrize("reply", STATIC_IP_REPLIES, ids=["dh905", "dh902", "html-403"])
def test_a_static_ip_refusal_through_a_proxy_names_it_without_its_password(
        dhan: Dhan, reply: Reply) -> None:
    answer(dhan, reply)
    outcome = sdk_place(dhan)
    assert outcome.static_ip and outcome.kind is OutcomeKind.AUTH
    assert f"proxy=http://127.0.0.1:{dhan.server_address[1]}" in outcome.message
    assert "source_address=unset" in outcome.message
    assert "proxy-pass-word" not in outcome.describe() and "user" not in outcome.message


def test_dhans_own_words_are_kept_with_its_code() -> None:
    outcome = classify({"status": "failure", "data": "", "http_status": 400,
                        "remarks": json.loads(STATIC_IP_JSON.replace(b"errorCode", b"error_code")
                                              .replace(b"errorMessage", b"error_message"))})
    assert outcome.message.startswith("DH-905 Order requests are accepted only from the static")


@pytest.mark.parametrize(("text", "static"), [
    ("Static IP not whitelisted", True),
    ("Order requests are accepted only from the static IP whitelisted for this account", True),
    ("IP address not registered for this client", True),
    ("Your IP is not whitelisted", True),
    ("Request from unregistered IP", True),
    ("Invalid IP: 203.0.113.7", True),
    ("Missing required fields, bad values for parameters etc.", False),
    ("Invalid quantity: not a multiple of the lot size", False),
    ("Security not allowed for IPO", False),  # 'IPO' is not 'IP'
    ("Client ID or user generated access token is invalid or expired.", False),
])
def test_the_static_ip_refusal_is_recognised_by_its_words(text: str, static: bool) -> None:
    assert says_static_ip(text) is static


def test_an_exception_text_is_never_a_static_ip_refusal() -> None:
    # No HTTP status: a library's exception text, not an answer from the account's broker.
    outcome = classify({"status": "failure", "data": "",
                        "remarks": "ProxyError: proxy IP not whitelisted"})
    assert outcome.kind is OutcomeKind.UNKNOWN


def test_an_ordinary_refusal_is_not_a_static_ip_refusal(dhan: Dhan) -> None:
    answer(dhan, (400, b'{"errorType": "Input_Exception", "errorCode": "DH-905", '
                       b'"errorMessage": "Missing required fields, bad values for '
                       b'parameters etc."}', JSON))
    outcome = lean_place(dhan)
    assert (outcome.kind, outcome.code, outcome.static_ip) == (
        OutcomeKind.REFUSED, "DH-905", False)


def test_the_static_ip_wording_names_the_rule_and_the_settings() -> None:
    text = token_refused_text("f2", STATIC_IP_CODE, then="run again",
                              detail="DH-905 from another IP (sent with source_address=unset, "
                                     "proxy=unset)")
    assert text.startswith("follower f2 was stopped: Dhan refused its order because it did "
                           "not come from the account's whitelisted static IP (DH-905")
    assert "no two users may share one" in text
    assert "`source_address`" in text and "`proxy`" in text and "copytrade.toml" in text
    assert text.endswith("and run again") and "token" not in text


# ---- a 2xx without an order id is an unknown outcome ---------------------------------------

NO_ORDER_ID = [
    b'{"orderStatus": "TRANSIT"}',
    b'{"orderId": null, "orderStatus": "TRANSIT"}',
    b'{"orderId": "None", "orderStatus": "TRANSIT"}',
    b'{"orderId": "", "orderStatus": "TRANSIT"}',
    b'{"orderId": "null"}',
    b'[]',
    b'[{"orderId": "11", "orderStatus": "TRANSIT"}, {"orderStatus": "TRANSIT"}]',
    b'{}',
    b'"ok"',
]


@pytest.mark.parametrize("call", [lean_place, sdk_place], ids=lambda c: c.__name__)
@pytest.mark.parametrize("body", NO_ORDER_ID)
def test_a_2xx_place_without_an_order_id_is_unknown(dhan: Dhan, call: Path_,
                                                    body: bytes) -> None:
    answer(dhan, (200, body, JSON))
    outcome = call(dhan)
    assert outcome.kind is OutcomeKind.UNKNOWN
    assert outcome.data is None and "without an order id" in outcome.message


@pytest.mark.parametrize(("data", "ids"), [
    ({"orderId": "112233", "orderStatus": "TRANSIT"}, ["112233"]),
    ({"orderId": 112233}, ["112233"]),
    ({"orderId": 1124091136546.0}, ["1124091136546"]),
    ([{"orderId": "1"}, {"orderId": "2"}], ["1", "2"]),
    ({"orderId": None}, None),
    ({"orderId": True}, None),
    ({"orderId": "0"}, None),
    ({"orderId": "12 34"}, None),
])
def test_order_ids_of_a_place_answer(data: object, ids: list[str] | None) -> None:
    assert order_ids_of(data) == ids


def test_the_sender_keeps_the_http_status_beside_the_sdks_reply(dhan: Dhan) -> None:
    answer(dhan, (429, b"", "text/plain"))
    sender = OrderSender(CLIENT, TOKEN, api_url=dhan.url, timeout=2)
    reply = sender.delete("/orders/1")
    assert reply == {"status": "failure", "data": "", "http_status": 429,
                     "remarks": "HTTP 429, not JSON (empty body)"}


# ---- the worker: a static-IP refusal stops that account only --------------------------------

DAY = date(2025, 1, 6)
T0 = datetime(2025, 1, 6, 4, 0, tzinfo=UTC)
ORDER_FIELDS = {"security_id": "1333", "exchange_segment": "NSE_EQ",
                "transaction_type": "BUY", "quantity": 10, "order_type": "LIMIT",
                "product_type": "CNC", "price": 100.0}


class _Limiter:
    def acquire(self) -> bool:
        return True

    def close(self) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = open_store(tmp_path / "copytrade.db")
    yield Store(db, lambda: T0)
    db.close()


def _mirror(store: Store, follower: str, leader_id: str) -> MirrorOrder:
    with store.write():
        store.save_leader(OrderReport(
            order_id=leader_id, status="PENDING", exchange_segment="NSE_EQ",
            security_id="1333", transaction_type="BUY", product_type="CNC",
            order_type="LIMIT", validity="DAY", quantity=10, traded_quantity=0,
            price=100.0, source=ReportSource.REST), (), DAY.isoformat())
        return store.create_mirror(
            leader_order=leader_id, follower=follower, attempt=1,
            correlation_id=correlation_id(DAY, leader_id, follower, 1, 1),
            state=MirrorState.SUBMITTED.value, quantity=10, price=100.0,
            order_type="LIMIT", security_id="1333", product_type="CNC",
            transaction_type="BUY", submitted_at=T0)


def _worker(store: Store, name: str, server: Dhan,
            halts: list[tuple[str, str]]) -> FollowerWorker:
    account = DhanAccount(name, TOKEN, api_url=server.url, timeout=2,
                          source_address="127.0.0.1")
    updater = MirrorUpdater(store, lambda follower: PositionBook())
    worker = FollowerWorker(
        name, account, store, updater, _Limiter(),  # type: ignore[arg-type]
        on_halt=lambda follower, reason: halts.append((follower, reason)),
        correlation_id_for=lambda mirror, attempt: correlation_id(
            DAY, mirror.leader_order_id, name, 1, attempt))
    worker.executor.wait = lambda seconds: False  # never slept: no call here waits
    return worker


def _audits(store: Store, kind: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in store.db.execute_sql(
        "SELECT follower, message FROM auditevent WHERE kind = ? ORDER BY id", (kind,))]


def test_a_static_ip_refusal_stops_that_follower_and_the_others_go_on(
        store: Store, dhan: Dhan, other_dhan: Dhan) -> None:
    answer(dhan, (400, STATIC_IP_JSON, JSON))
    answer(other_dhan, (200, b'{"orderId": "5501", "orderStatus": "TRANSIT"}', JSON))
    halts: list[tuple[str, str]] = []
    blocked, working = (_worker(store, "f1", dhan, halts),
                        _worker(store, "f2", other_dhan, halts))
    intents = []
    for leader_id in ("L1", "L2"):
        for worker in (blocked, working):
            mirror = _mirror(store, worker.name, leader_id)
            with store.write():
                intents.append(store.add_intent(mirror, "PLACE", {"order": dict(ORDER_FIELDS)}))
            worker._execute(intents[-1].id)

    assert len(dhan.requests) == 1  # the first refusal stopped the account: no more calls
    reason = blocked.halted_reason
    assert reason is not None and reason.startswith("follower f1 was stopped: Dhan refused")
    assert "source_address=127.0.0.1, proxy=unset" in reason and "DH-905" in reason
    assert halts == [("f1", reason)]
    assert _audits(store, "account_stopped") == [("f1", reason)]
    statuses = [store.intent_by_id(intent.id).status for intent in intents]
    assert statuses == ["AUTH", "DONE", "AUTH", "DONE"]
    # not rejected: the orders were never refused on their merits
    states = {(m.follower, m.state) for m in MirrorOrder.select()}
    assert ("f1", "SUBMITTED") in states and ("f1", "REJECTED") not in states
    assert working.halted_reason is None and len(other_dhan.requests) == 2
    assert TOKEN not in reason
    blocked.executor.resume()  # a renewed token does not change where orders come from
    assert blocked.halted_reason == reason and blocked.executor.refused is not None
