"""One Dhan account over REST through the official SDK, every reply classified.

The SDK throws HTTP statuses away and reports timeouts, connection errors and non-JSON
bodies as a plain-string `remarks`: an order that reached the exchange can look exactly
like one that did not. So every state-changing call ends in one of five outcome kinds,
and UNKNOWN is resolved by a lookup by correlation id, never by sending again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import requests
from dhanhq import DhanContext, dhanhq
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from copytrade.dhan.frames import report_from_rest

REFUSAL_CODES = frozenset({"DH-902", "DH-903", "DH-905", "DH-906", "DH-907"})
THROTTLE_CODES = frozenset({"DH-904"})
AUTH_CODES = frozenset({"DH-901"})


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

    def describe(self) -> str:
        return " ".join(part for part in (self.kind.value, self.code, self.message) if part)


def classify(reply: dict) -> Outcome:
    if reply.get("status") == "success":
        return Outcome(OutcomeKind.SUCCESS, reply.get("data"))
    remarks = reply.get("remarks")
    if not isinstance(remarks, dict):  # timeout, connection error, non-JSON body
        return Outcome(OutcomeKind.UNKNOWN, message=str(remarks)[:200])
    code = str(remarks.get("error_code") or "")
    message = str(remarks.get("error_message") or "")[:300]
    if code in AUTH_CODES:
        kind = OutcomeKind.AUTH
    elif code in THROTTLE_CODES:
        kind = OutcomeKind.THROTTLED
    elif code in REFUSAL_CODES:
        kind = OutcomeKind.REFUSED
    else:  # DH-908/909/910 or no code: the server may have acted
        kind = OutcomeKind.UNKNOWN
    return Outcome(kind, code=code, message=message)


class _SourceAddressAdapter(HTTPAdapter):
    """Sends from a given local address: Dhan wants each account's orders from its own
    whitelisted static IP."""

    def __init__(self, source_address: str, **kwargs: Any) -> None:
        self._source_address = (source_address, 0)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = self._source_address
        super().init_poolmanager(*args, **kwargs)


QUOTES_PER_SECOND = 4  # Dhan's data APIs allow 5/s; one spare for clock skew
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
        self._api = dhanhq(context)
        self._http = http
        self._quote_pace = Pace(QUOTES_PER_SECOND)

    def __repr__(self) -> str:  # never the token
        return f"DhanAccount({self.client_id})"

    # ---- state-changing calls ------------------------------------------------------------

    def place(self, request: PlaceRequest, correlation_id: str, *, slice_order: bool) -> Outcome:
        outcome = classify(self._api.place_order(
            request.security_id, request.exchange_segment, request.transaction_type,
            request.quantity, request.order_type, request.product_type, request.price,
            trigger_price=request.trigger_price, disclosed_quantity=request.disclosed_quantity,
            after_market_order=request.after_market_order, validity=request.validity,
            amo_time=request.amo_time, tag=correlation_id, should_slice=slice_order))
        if outcome.ok:  # one order, or a list of slices: always a list of order ids
            rows = outcome.data if isinstance(outcome.data, list) else [outcome.data]
            order_ids = [str(row.get("orderId")) for row in rows if isinstance(row, dict)]
            return Outcome(OutcomeKind.SUCCESS, order_ids)
        return outcome

    def modify(self, order_id: str, *, order_type: str, quantity: int, price: float,
               trigger_price: float, disclosed_quantity: int, validity: str,
               leg_name: str = "ENTRY_LEG") -> Outcome:
        return classify(self._api.modify_order(order_id, order_type, leg_name, quantity, price,
                                               trigger_price, disclosed_quantity, validity))

    def cancel(self, order_id: str) -> Outcome:
        return classify(self._api.cancel_order(order_id))

    # ---- reads -----------------------------------------------------------------------------

    def order_by_correlation(self, correlation_id: str) -> Outcome:
        """Every order carrying the correlation id (sliced orders share one), via the order
        book: the lookup endpoint returns one row only."""
        book = self.order_book()
        if not book.ok:
            return book
        found = [r for r in book.data if r.correlation_id == correlation_id]
        return Outcome(OutcomeKind.SUCCESS, found) if found else Outcome(OutcomeKind.NOT_FOUND)

    def order(self, order_id: str) -> Outcome:
        outcome = classify(self._api.get_order_by_id(order_id))
        if outcome.ok:
            return Outcome(OutcomeKind.SUCCESS, report_from_rest(_one(outcome.data)))
        if outcome.kind is OutcomeKind.REFUSED:
            return Outcome(OutcomeKind.NOT_FOUND, code=outcome.code, message=outcome.message)
        return outcome

    def order_book(self) -> Outcome:
        outcome = classify(self._api.get_order_list())
        if not outcome.ok:
            return outcome
        rows = outcome.data if isinstance(outcome.data, list) else []
        return Outcome(OutcomeKind.SUCCESS, [report_from_rest(row) for row in rows])

    def trade_book(self) -> Outcome:
        return classify(self._api.get_trade_book())

    def positions(self) -> Outcome:
        return classify(self._api.get_positions())

    def fund_limits(self) -> Outcome:
        return classify(self._api.get_fund_limits())

    def last_price(self, exchange_segment: str, security_id: str) -> float | None:
        """The last traded price (Dhan's market quote API), or None if unavailable. Paced
        under Dhan's data-API limit; throttled once, it waits and asks again."""
        try:
            request = {exchange_segment: [int(security_id)]}
        except ValueError:
            return None
        for _ in range(QUOTE_TRIES):
            self._quote_pace.wait()
            outcome = classify(self._api.ticker_data(request))
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


def _one(data: Any) -> dict:
    if isinstance(data, list):
        return data[0] if data else {}
    return data if isinstance(data, dict) else {}
