"""One Dhan account over REST through the official SDK, every reply classified.

The SDK throws HTTP statuses away and reports timeouts, connection errors and non-JSON
bodies as a plain-string `remarks`: an order that reached the exchange can look exactly
like one that did not. So every state-changing call ends in one of five outcome kinds,
and UNKNOWN is resolved by a lookup by correlation id, never by sending again.

Real Dhan is messier than its docs (dhan-api.md), so both send paths keep the HTTP status
beside the SDK's reply (`http_status`): a 429 is "slow down" whatever its body (JSON,
HTML or none). A refusal for not sending from the account's whitelisted static IP stops
the account like a refused token (kind AUTH, code STATIC_IP_CODE): Dhan documents no code
for it, so it is recognised by its text. A 2xx place answer without a usable order id is
UNKNOWN (looked up by correlation id), never an order id "None".
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import requests
from dhanhq import DhanContext, dhanhq
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from copytrade.core.events import ENTRY_LEG, OrderReport
from copytrade.dhan.frames import MalformedFrame, report_from_rest
from copytrade.dhan.sender import OrderSender, body_excerpt
from copytrade.redact import redact

log = logging.getLogger(__name__)
EXCERPT_CHARS = 200

REFUSAL_CODES = frozenset({"DH-902", "DH-903", "DH-905", "DH-906", "DH-907"})
THROTTLE_CODES = frozenset({"DH-904"})
AUTH_CODES = frozenset({"DH-901"})
THROTTLE_HTTP_STATUS = 429  # undocumented by Dhan, seen with and without a JSON body
# Ours, not Dhan's: Dhan documents no code for an order from a non-whitelisted IP.
STATIC_IP_CODE = "STATIC-IP"
_STATIC_IP = re.compile(r"\bstatic\s*-?\s*ips?\b", re.IGNORECASE)
_IP = re.compile(r"\bips?\b|\bip\s*address", re.IGNORECASE)
_IP_REFUSED = re.compile(r"white\s*-?\s*list|not\s+(registered|allowed|permitted|"
                         r"authori[sz]ed|mapped)|unregistered|unauthori[sz]ed|mismatch|"
                         r"invalid", re.IGNORECASE)


class OutcomeKind(StrEnum):
    SUCCESS = "success"
    REFUSED = "refused"  # a definitive no: do not retry the same request
    THROTTLED = "throttled"  # not accepted: back off, then retry
    UNKNOWN = "unknown"  # may or may not have happened: look it up
    AUTH = "auth"  # DH-901: the token is invalid or expired; stop this account
    NOT_FOUND = "not_found"  # a lookup that found nothing


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    data: Any = None
    code: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.SUCCESS

    @property
    def static_ip(self) -> bool:
        """Refused for not coming from the account's whitelisted IP (kind AUTH): a new
        token does not cure it, a different egress does."""
        return self.code == STATIC_IP_CODE

    def describe(self) -> str:
        return " ".join(part for part in (self.kind.value, self.code, self.message) if part)


def classify(reply: dict) -> Outcome:
    if reply.get("status") == "success":
        return Outcome(OutcomeKind.SUCCESS, reply.get("data"))
    remarks = reply.get("remarks")
    http_status = reply.get("http_status")  # ours: kept beside the SDK's reply
    code, said, message = _remarks(remarks)
    if http_status == THROTTLE_HTTP_STATUS or code in THROTTLE_CODES:
        return Outcome(OutcomeKind.THROTTLED, code=code, message=message or "HTTP 429")
    # A string remark is a refusal only with a 4xx status (a proxy's or gateway's page);
    # without one it is an exception text, and says nothing about the account.
    answered = isinstance(remarks, dict) or (isinstance(http_status, int)
                                             and 400 <= http_status < 500)
    if answered and says_static_ip(said):
        return Outcome(OutcomeKind.AUTH, code=STATIC_IP_CODE,
                       message=" ".join(part for part in (code, message) if part))
    if not isinstance(remarks, dict):
        return Outcome(OutcomeKind.UNKNOWN, message=message)
    if code in AUTH_CODES:
        kind = OutcomeKind.AUTH
    elif code in REFUSAL_CODES:
        kind = OutcomeKind.REFUSED
    else:  # DH-908/909/910 or no code: the server may have acted
        kind = OutcomeKind.UNKNOWN
    return Outcome(kind, code=code, message=message)


def _remarks(remarks: Any) -> tuple[str, str, str]:
    """(Dhan's error code, every word it said, the message to keep: redacted, bounded)."""
    if isinstance(remarks, dict):
        said = f"{remarks.get('error_type') or ''} {remarks.get('error_message') or ''}"
        return (str(remarks.get("error_code") or ""), said,
                redact(str(remarks.get("error_message") or ""))[:300])
    # Timeout, connection error, non-JSON body. Redact before truncating: a cut token
    # would leave a shorter, harder-to-spot piece.
    return "", str(remarks), redact(str(remarks))[:200]


def says_static_ip(text: str) -> bool:
    """Dhan's refusal of an order from an IP that is not the account's whitelisted static
    IP, by its words ("Static IP not whitelisted", "IP address not registered", ...)."""
    if _STATIC_IP.search(text):
        return True
    return bool(_IP.search(text) and _IP_REFUSED.search(text))


def _keeping_status(parse: Callable[[Any], dict]) -> Callable[[Any], dict]:
    """The SDK's reply parser, plus the HTTP status it throws away (a 429 with no JSON body
    is otherwise indistinguishable from a lost reply)."""
    def parse_keeping_status(response: Any) -> dict:
        reply = parse(response)
        reply["http_status"] = response.status_code
        if reply.get("status") != "success" and not isinstance(reply.get("remarks"), dict):
            reply["remarks"] = body_excerpt(response.status_code, response.content or b"")
        return reply
    return parse_keeping_status


class _SourceAddressAdapter(HTTPAdapter):
    """Sends from a given local address: Dhan wants each account's orders from its own
    whitelisted static IP."""

    def __init__(self, source_address: str, **kwargs: Any) -> None:
        self._source_address = (source_address, 0)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = self._source_address
        super().init_poolmanager(*args, **kwargs)


QUOTES_PER_SECOND = 1  # Dhan's Quote APIs allow 1 request a second (dhan-api.md)
QUOTE_TRIES = 3
THROTTLE_PAUSE_SECONDS = 1.0  # Dhan: after DH-904, wait at least a second


class Pace:
    """At most `per_second` calls a second from this process (a simple spacing)."""

    def __init__(self, per_second: float) -> None:
        self._gap = 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._gap
        if start > now:
            time.sleep(start - now)


# Reads (GET) are retried on gateway errors by urllib3's Retry; writes never are.
READ_RETRY = Retry(total=2, connect=2, read=0, status=2, backoff_factor=0.2,
                   status_forcelist=(502, 503, 504), allowed_methods=frozenset({"GET"}),
                   raise_on_status=False)


@dataclass(frozen=True)
class PlaceRequest:
    security_id: str
    exchange_segment: str
    transaction_type: str
    quantity: int
    order_type: str
    product_type: str
    price: float
    trigger_price: float = 0.0
    disclosed_quantity: int = 0
    validity: str = "DAY"
    after_market_order: bool = False
    amo_time: str = "OPEN"
    bo_profit_value: float | None = None  # BO only: rupees a unit from the entry's fill
    bo_stop_loss_value: float | None = None


class DhanAccount:
    """REST access for one account; one instance per account, used from one thread."""

    def __init__(self, client_id: str, token: str, *, api_url: str, timeout: float = 5.0,
                 proxy: str | None = None, source_address: str | None = None) -> None:
        self.client_id = client_id
        context = DhanContext(client_id, token)
        http = context.get_dhan_http()
        http.base_url = api_url.rstrip("/")
        http.timeout = timeout
        session: requests.Session = http.session
        adapter: HTTPAdapter = (_SourceAddressAdapter(source_address, max_retries=READ_RETRY)
                                if source_address else HTTPAdapter(max_retries=READ_RETRY))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        if proxy:
            session.proxies = {"http": proxy, "https": proxy}
        session.trust_env = False  # a stray HTTPS_PROXY must not reroute a whitelisted account
        # An instance attribute shadowing the SDK's method: this account's replies only.
        http._parse_response = _keeping_status(http._parse_response)
        self._egress = egress_text(source_address, proxy)
        self._api = dhanhq(context)
        self._http = http
        # Order calls take the lean path (dhan/sender.py); through a proxy they stay with
        # the SDK's requests session, which speaks proxies.
        self._sender = None if proxy else OrderSender(
            client_id, token, api_url=api_url, timeout=timeout, source_address=source_address)
        self._quote_pace = Pace(QUOTES_PER_SECOND)
        # Told once per distinct unreadable order-book row: (reason, excerpt of the row).
        self.on_bad_row: Callable[[str, str], None] = _log_bad_row
        self._bad_rows_told: set[tuple[str, str]] = set()

    def __repr__(self) -> str:  # never the token
        return f"DhanAccount({self.client_id})"

    # ---- state-changing calls ------------------------------------------------------------

    def place(self, request: PlaceRequest, correlation_id: str, *, slice_order: bool) -> Outcome:
        endpoint = "/orders/slicing" if slice_order else "/orders"
        outcome = self._order_call("post", endpoint, place_body(request, correlation_id))
        if not outcome.ok:
            return outcome
        # One order, or a list of slices: always a list of order ids. A 2xx without an id
        # for every order may still have placed them: UNKNOWN, looked up by correlation id.
        order_ids = order_ids_of(outcome.data)
        if order_ids is None:
            return Outcome(OutcomeKind.UNKNOWN, message="accepted without an order id: "
                           + redact(_row_excerpt(outcome.data)))
        return Outcome(OutcomeKind.SUCCESS, order_ids)

    def modify(self, order_id: str, *, order_type: str, quantity: int, price: float,
               trigger_price: float, disclosed_quantity: int, validity: str,
               leg_name: str = "ENTRY_LEG") -> Outcome:
        return self._order_call("put", f"/orders/{order_id}", {
            "orderId": str(order_id), "orderType": order_type, "legName": leg_name,
            "quantity": quantity, "price": price, "disclosedQuantity": disclosed_quantity,
            "triggerPrice": trigger_price, "validity": validity})

    def cancel(self, order_id: str) -> Outcome:
        return self._order_call("delete", f"/orders/{order_id}")

    def _order_call(self, method: str, endpoint: str, payload: dict | None = None) -> Outcome:
        """One order call, as the SDK would send it, on the lean path when there is one."""
        call = getattr(self._sender or self._http, method)
        return self._classify(call(endpoint) if payload is None else call(endpoint, payload))

    def _classify(self, reply: dict) -> Outcome:
        """`classify`, and a static-IP refusal says what this account sent from: the
        operator's fix is this account's `source_address` / `proxy`."""
        outcome = classify(reply)
        if outcome.static_ip:
            return replace(outcome, message=f"{outcome.message} (sent with {self._egress})"
                           .strip())
        return outcome

    # ---- reads -----------------------------------------------------------------------------

    def order_by_correlation(self, correlation_id: str) -> Outcome:
        """Every order carrying the correlation id (sliced orders share one), via the order
        book: the lookup endpoint returns one row only."""
        book = self.order_book()
        if not book.ok:
            return book
        # A BO's or CO's exit legs carry the entry's correlation id: the broker made them,
        # we did not place them, so only entries answer a lookup.
        found = [r for r in book.data
                 if r.correlation_id == correlation_id and r.leg == ENTRY_LEG]
        return Outcome(OutcomeKind.SUCCESS, found) if found else Outcome(OutcomeKind.NOT_FOUND)

    def order(self, order_id: str, leg: int = ENTRY_LEG) -> Outcome:
        """One leg of an order (a BO/CO answers a row per leg, a plain order one row)."""
        outcome = self._classify(self._api.get_order_by_id(order_id))
        if outcome.ok:
            rows = outcome.data if isinstance(outcome.data, list) else [outcome.data]
            reports = [r for r in self._readable(rows) if r.leg == leg]
            if not reports:  # the order exists but its row says nothing we can trust
                return Outcome(OutcomeKind.UNKNOWN, message="unreadable order row")
            return Outcome(OutcomeKind.SUCCESS, reports[0])
        if outcome.kind is OutcomeKind.REFUSED:
            return Outcome(OutcomeKind.NOT_FOUND, code=outcome.code, message=outcome.message)
        return outcome

    def order_book(self) -> Outcome:
        outcome = self._classify(self._api.get_order_list())
        if not outcome.ok:
            return outcome
        rows = outcome.data if isinstance(outcome.data, list) else []
        return Outcome(OutcomeKind.SUCCESS, self._readable(rows))

    def _readable(self, rows: list[Any]) -> list[OrderReport]:
        """Every row that parses; one odd row is told once and skipped, never allowed to
        fail the whole book (the catch-up of every other order depends on it)."""
        reports = []
        for row in rows:
            try:
                reports.append(report_from_rest(row))
            except MalformedFrame as bad:
                order_id = row.get("orderId") if isinstance(row, dict) else None
                key = (str(bad), str(order_id)[:64])
                if key not in self._bad_rows_told:
                    self._bad_rows_told.add(key)
                    _call_quietly(self.on_bad_row, str(bad), _row_excerpt(row))
        return reports

    def trade_book(self) -> Outcome:
        return self._classify(self._api.get_trade_book())

    def positions(self) -> Outcome:
        return self._classify(self._api.get_positions())

    def fund_limits(self) -> Outcome:
        return self._classify(self._api.get_fund_limits())

    def last_price(self, exchange_segment: str, security_id: str) -> float | None:
        """The last traded price (Dhan's market quote API), or None if unavailable. Paced
        under Dhan's data-API limit; throttled once, it waits and asks again."""
        try:
            request = {exchange_segment: [int(security_id)]}
        except ValueError:
            return None
        for _ in range(QUOTE_TRIES):
            self._quote_pace.wait()
            outcome = self._classify(self._api.ticker_data(request))
            if outcome.kind is not OutcomeKind.THROTTLED:
                break
            time.sleep(THROTTLE_PAUSE_SECONDS)
        if not outcome.ok or not isinstance(outcome.data, dict):
            return None
        quote = (outcome.data.get("data", {}).get(exchange_segment, {}).get(str(security_id))
                 or {})
        try:
            return float(quote["last_price"])
        except (KeyError, TypeError, ValueError):
            return None

    def available_funds(self) -> float | None:
        outcome = self.fund_limits()
        if not outcome.ok or not isinstance(outcome.data, dict):
            return None
        value = outcome.data.get("availabelBalance", outcome.data.get("availableBalance"))
        try:
            return float(value)
        except (TypeError, ValueError):
            return None


def place_body(request: PlaceRequest, correlation_id: str) -> dict[str, Any]:
    """The SDK's place_order payload (dhanhq 2.3.0 `_order.place_order`), field for field."""
    body: dict[str, Any] = {
        "transactionType": request.transaction_type.upper(),
        "exchangeSegment": request.exchange_segment.upper(),
        "productType": request.product_type.upper(),
        "orderType": request.order_type.upper(),
        "validity": request.validity.upper(),
        "securityId": request.security_id,
        "quantity": int(request.quantity),
        "disclosedQuantity": int(request.disclosed_quantity),
        "price": float(request.price),
        "afterMarketOrder": request.after_market_order,
        "boProfitValue": request.bo_profit_value,
        "boStopLossValue": request.bo_stop_loss_value,
        "triggerPrice": float(request.trigger_price),
    }
    if request.after_market_order:
        body["amoTime"] = request.amo_time
    if correlation_id:
        body["correlationId"] = correlation_id
    return body


def order_ids_of(data: Any) -> list[str] | None:
    """The order ids of a place answer (one row or a list of slices); None unless every
    row has a usable one (missing, null, "None", "" and the like are not ids)."""
    rows = data if isinstance(data, list) else [data]
    ids = [_order_id(row.get("orderId")) if isinstance(row, dict) else None for row in rows]
    if not ids or None in ids:
        return None
    return [order_id for order_id in ids if order_id is not None]


_NOT_IDS = frozenset({"", "0", "NONE", "NULL", "NAN", "NA", "UNDEFINED"})
_ID_CHARS = 64


def _order_id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))  # 1124091136546.0 -> "1124091136546"
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    usable = (text.upper() not in _NOT_IDS and len(text) <= _ID_CHARS and text.isascii()
              and text.isprintable() and " " not in text)
    return text if usable else None


def egress_text(source_address: str | None, proxy: str | None) -> str:
    """Where this account's calls leave from, as its settings say; a proxy's user and
    password are left out (they are secrets)."""
    return f"source_address={source_address or 'unset'}, proxy={_proxy_shown(proxy)}"


def _proxy_shown(proxy: str | None) -> str:
    if not proxy:
        return "unset"
    try:
        parts = urlsplit(proxy)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "set (unreadable)"
    return f"{parts.scheme}://{host}{port}" if parts.scheme else f"{host}{port}"


def _log_bad_row(reason: str, excerpt: str) -> None:
    log.warning("skipped an unreadable order-book row: %s", reason)


def _call_quietly(callback: Callable[[str, str], None], *args: str) -> None:
    try:
        callback(*args)
    except Exception:  # the owner's recording failed: the row is still skipped
        log.exception("recording an unreadable order-book row failed")


def _row_excerpt(row: Any) -> str:
    try:
        text = json.dumps(row, default=str, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        text = type(row).__name__
    return text[:EXCERPT_CHARS]
