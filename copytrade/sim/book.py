"""The emulated exchange: accounts, order book, lifecycle, fills, positions and funds.

Every state change of an order is published once, in order, through `on_update`
(the stream server). One lock guards the book, so frames leave in the order the
changes happened whichever thread made them. Prices move only when told.
"""

from __future__ import annotations

import hashlib
import math
import random
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta

from pyrate_limiter import Duration, InMemoryBucket, Rate

from copytrade.sim import bracket, errors
from copytrade.sim.accounts import TOKEN_LIFETIME, Account, order_margin
from copytrade.sim.clock import IST, Clock, SystemClock
from copytrade.sim.dialects import PRESETS, Dialect
from copytrade.sim.errors import ApiError
from copytrade.sim.instruments import (
    DEFAULT_INSTRUMENTS,
    SEGMENT_CODES,
    Instrument,
    on_tick,
    scrip_master_csv,
)
from copytrade.sim.orders import ENTRY_LEG, LEGGED_PRODUCTS, SimOrder, Trade
from copytrade.sim.validation import (
    MAX_PRICE,
    MAX_QUANTITY,
    PlaceRequest,
    check_prices,
    check_quantity,
    parse_modify,
    parse_place,
    shown,
    slice_size,
)

MAX_MODIFICATIONS = 25
MAX_ACCOUNTS = 10_000
MAX_CLIENT_ID_LENGTH = 64  # Dhan's are 10 digits; a bound keeps 10,000 accounts small
MAX_FUNDS = 1e15
MAX_PRICE_STEPS = 10_000  # ~0.4 s with the book lock held, plus the open orders' matches
UpdateListener = Callable[[str, dict], None]


def token_digest(token: str) -> str:
    """Tokens are kept only as digests, so no snapshot or log can show one."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_funds(funds: object) -> float:
    if (isinstance(funds, bool) or not isinstance(funds, int | float)
            or not (isinstance(funds, int) or math.isfinite(funds))
            or not 0 <= funds <= MAX_FUNDS):
        raise errors.bad_input(f"funds must be a finite number from 0 to {MAX_FUNDS:.0e}")
    return float(funds)


class Book:
    def __init__(self, *, funds: float = 1_000_000.0, clock: Clock | None = None,
                 seed: int | None = None,
                 instruments: Iterable[Instrument] = DEFAULT_INSTRUMENTS,
                 order_rate_scale: float = 1.0, dialect: Dialect = PRESETS["clean"]) -> None:
        try:
            self.default_funds = check_funds(funds)
        except ApiError as refusal:
            raise ValueError(refusal.message) from None
        self.order_rate_scale = order_rate_scale
        self.clock: Clock = clock or SystemClock()
        self.on_update: UpdateListener = lambda client_id, data: None
        self.instruments = {(i.segment, i.security_id): i for i in instruments}
        self._by_security = {i.security_id: i for i in self.instruments.values()}
        self.prices = {i.security_id: i.price for i in self.instruments.values()}
        self.fill_size: dict[str | None, int] = {}
        self.session_open = True
        self.accounts: dict[str, Account] = {}
        self.orders: dict[str, SimOrder] = {}
        self._random = random.Random(seed)
        self._sequence = 0
        self._lock = threading.RLock()
        self.dialect = dialect  # the run's; accounts may have their own
        self._dialects: dict[str, Dialect] = {}
        self._frame_counts: dict[str, int] = {}  # per account, for camelCase frames
        self._quote_windows: dict[str, tuple[int, InMemoryBucket]] = {}
        self.ip_refused: set[str] = set()  # accounts whose order calls come from a wrong IP
        self.bo_co_refused: set[str] = set()  # accounts not enabled for BO/CO orders
        self.brackets = bracket.Brackets(self)

    # ---- dialects ---------------------------------------------------------------------

    def dialect_of(self, client_id: str) -> Dialect:
        return self._dialects.get(client_id, self.dialect)

    def set_dialect(self, client_id: str, dialect: Dialect | None) -> Dialect:
        """The account speaks `dialect` from now on (None: the run's again)."""
        with self._lock:
            self.account(client_id)  # bounds the client id and the number of accounts
            if dialect is None:
                self._dialects.pop(client_id, None)
            else:
                self._dialects[client_id] = dialect
            return self.dialect_of(client_id)

    def set_ip_whitelisted(self, client_id: str, whitelisted: bool) -> None:
        with self._lock:
            self.account(client_id)
            if whitelisted:
                self.ip_refused.discard(client_id)
            else:
                self.ip_refused.add(client_id)

    def set_bo_co_allowed(self, client_id: str, allowed: bool) -> None:
        with self._lock:
            self.account(client_id)
            if allowed:
                self.bo_co_refused.discard(client_id)
            else:
                self.bo_co_refused.add(client_id)

    def _check_static_ip(self, account: Account, source: str) -> None:
        # Only API calls come from the user's IP; Dhan's own app ("N") is never refused.
        if source == "P" and account.client_id in self.ip_refused:
            raise errors.ip_not_whitelisted()

    # ---- accounts ---------------------------------------------------------------

    def authenticate(self, client_id: str, token: str) -> Account:
        """Any (client id, token) pair is an account, created on first use; expired -> DH-901."""
        if not client_id or not token or len(client_id) > MAX_CLIENT_ID_LENGTH:
            raise errors.invalid_token()
        digest = token_digest(token)
        with self._lock:
            account = self.account(client_id)
            if digest in account.expired_digests:
                raise errors.invalid_token()
            if digest not in account.token_digests:
                if any(digest in other.token_digests for other in self.accounts.values()):
                    raise errors.invalid_token()  # another account's token
                # A token first seen is taken as issued now: valid for 24 hours.
                account.remember_token(digest, self.clock.now() + TOKEN_LIFETIME)
            if account.lapse_if_expired(digest, self.clock.now()):
                raise errors.invalid_token()
            return account

    def renew_token(self, account: Account, digest: str) -> dict:
        """Dhan's GET /v2/RenewToken: a new token valid 24 hours from now. Dhan's docs do
        not say what becomes of the token renewed; here it stays valid until its own
        expiry, so calls already on their way with it still succeed."""
        token = secrets.token_urlsafe(48)
        valid_until = self.clock.now() + TOKEN_LIFETIME
        with self._lock:
            account.remember_token(token_digest(token), valid_until)
        return {"dhanClientId": account.client_id, "accessToken": token,
                "expiryTime": valid_until.astimezone(IST).strftime("%Y-%m-%dT%H:%M:%S")}

    def set_token_validity(self, client_id: str, seconds: float) -> int:
        """For tests: every active token of the account expires `seconds` from now (0 or
        less: at once, DH-901 from the next call); the number of tokens changed."""
        with self._lock:
            account = self.account(client_id)
            until = self.clock.now() + timedelta(seconds=seconds)
            for digest in account.token_digests:
                account.token_expiry[digest] = until
            return len(account.token_digests)

    def token_valid_until(self, account: Account, digest: str) -> datetime:
        with self._lock:
            return account.token_expiry.get(digest, self.clock.now() + TOKEN_LIFETIME)

    def stream_login_ok(self, client_id: str, token: str) -> bool:
        try:
            self.authenticate(client_id, token)
        except ApiError:
            return False
        return True

    def account(self, client_id: str) -> Account:
        """The account of a client id, created on first use (the app's control calls use it
        without a token)."""
        if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID_LENGTH:
            raise errors.bad_input(f"client id must be 1 to {MAX_CLIENT_ID_LENGTH} characters")
        with self._lock:
            account = self.accounts.get(client_id)
            if account is None:
                if len(self.accounts) >= MAX_ACCOUNTS:
                    raise errors.account_issue("Too many accounts on this emulator")
                account = self.accounts[client_id] = Account(
                    client_id, self.default_funds, order_rate_scale=self.order_rate_scale)
            return account

    def expire_tokens(self, client_id: str) -> int:
        with self._lock:
            account = self.accounts.get(client_id)
            return account.expire_tokens() if account else 0

    def set_funds(self, client_id: str, funds: float) -> None:
        amount = check_funds(funds)  # NaN or -1e308 would make every later answer NaN
        with self._lock:
            self.account(client_id).start_of_day_funds = amount

    # ---- order entry --------------------------------------------------------------

    def place(self, account: Account, body: object, *, source: str = "P",
              slicing: bool = False) -> list[SimOrder]:
        self._check_static_ip(account, source)
        request = parse_place(body, self.instruments, slicing=slicing)
        with self._lock:
            if request.product_type in LEGGED_PRODUCTS:
                self._check_bracket_place(account, request)
            if not slicing:
                return [self._enter(account, request, source)]
            lots_per_slice = slice_size(request.instrument)
            placed, left = [], request.quantity
            while left > 0:
                size = min(left, lots_per_slice)
                disclosed = request.disclosed_quantity * size // request.quantity
                placed.append(self._enter(account, replace(
                    request, quantity=size, disclosed_quantity=disclosed), source))
                left -= size
            return placed

    def _check_bracket_place(self, account: Account, request: PlaceRequest) -> None:
        if account.client_id in self.bo_co_refused:
            raise errors.order_error("BO/CO orders are not enabled for this account")
        bracket.check_place(request, self.prices[request.instrument.security_id])

    def _enter(self, account: Account, request: PlaceRequest, source: str) -> SimOrder:
        now = self.clock.now()
        self._sequence += 1
        order = SimOrder(
            order_id=str(10**11 + self._sequence),
            exchange_order_id="",
            client_id=account.client_id,
            source=source,
            instrument=request.instrument,
            transaction_type=request.transaction_type,
            product_type=request.product_type,
            order_type=request.order_type,
            validity=request.validity,
            quantity=request.quantity,
            disclosed_quantity=request.disclosed_quantity,
            price=request.price,
            trigger_price=request.trigger_price,
            after_market_order=request.after_market_order,
            amo_time=request.amo_time,
            correlation_id=request.correlation_id,
            created=now,
            updated=now,
            bo_profit_value=request.bo_profit_value,
            bo_stop_loss_value=request.bo_stop_loss_value,
        )
        self._protect_market(order)
        self.orders[order.order_id] = order
        self._publish(order)  # TRANSIT
        refusal = self._rms_refusal(account, order)
        if refusal:
            self._finish(order, "REJECTED", refusal, code="RMS")
            return order
        order.exchange_order_id = str(10**15 + self._sequence)
        self._set_status(order, "PENDING")
        self._match(order)
        return order

    def _protect_market(self, order: SimOrder) -> None:
        """Dhan turns an API MARKET order into a LIMIT one a band beyond the last price, so
        it can rest PENDING once the price runs past the band."""
        band = self.dialect_of(order.client_id).market_protection
        if order.order_type != "MARKET" or order.source != "P" or not band:
            return
        last = self.prices[order.instrument.security_id]
        order.order_type = "LIMIT"
        order.price = self.dialect_of(order.client_id).protected_price(
            order.transaction_type == "BUY", last, order.instrument.tick_size)

    def _rms_refusal(self, account: Account, order: SimOrder) -> str:
        inst = order.instrument
        if not self.session_open and not order.after_market_order:
            return "Market is closed; place an after market order (AMO)"
        if order.price and not on_tick(order.price, inst.tick_size):
            return f"Price {order.price} is not a multiple of the tick size {inst.tick_size}"
        if order.trigger_price and not on_tick(order.trigger_price, inst.tick_size):
            return (f"Trigger price {order.trigger_price} is not a multiple of the tick size "
                    f"{inst.tick_size}")
        others = [o for o in self._open_orders(account) if o is not order]
        available = account.available(others, self.prices)
        required = order_margin(order, self.prices, account)
        if required > available:
            return (f"RMS:Margin Exceeds for order, Available: {available:.2f}, "
                    f"Required: {required:.2f}")
        return ""

    def modify(self, account: Account, order_id: str, body: object, *,
               source: str = "P") -> SimOrder:
        self._check_static_ip(account, source)
        request = parse_modify(body)
        with self._lock:
            entry = self._own_order(account, order_id)
            order = bracket.leg_named(entry, request.leg_name)
            what = f"Order {order_id}" + ("" if order is entry else f" {order.leg_name}")
            if not order.is_open:
                raise errors.order_error(f"{what} is {order.status} and cannot be modified")
            if order.modifications >= MAX_MODIFICATIONS:  # counted per leg
                raise errors.order_error(f"{what} has reached the maximum of "
                                         f"{MAX_MODIFICATIONS} modifications")
            if order is not entry:
                return self.brackets.modify_exit_leg(order, request, source)
            if order.is_legged:
                bracket.check_entry_modify(order, request,
                                           self.prices[order.instrument.security_id])
            check_quantity(order.instrument, request.quantity, request.disclosed_quantity,
                           allow_above_freeze=False)
            check_prices(request.order_type, order.transaction_type, request.price,
                         request.trigger_price)
            if request.quantity <= order.filled_quantity:
                raise errors.bad_input(f"Quantity {request.quantity} must be more than the "
                                       f"traded quantity {order.filled_quantity}")
            for price in (request.price, request.trigger_price):
                if price and not on_tick(price, order.instrument.tick_size):
                    raise errors.bad_input(f"Price {price} is not a multiple of the tick size")
            order.order_type = request.order_type
            order.quantity = request.quantity
            order.price = request.price
            order.trigger_price = request.trigger_price
            order.disclosed_quantity = request.disclosed_quantity
            order.validity = request.validity
            order.modifications += 1
            order.source = source
            self._protect_market(order)  # a modify to MARKET is converted too
            if order.order_type not in ("STOP_LOSS", "STOP_LOSS_MARKET"):
                order.triggered = False
            self._set_status(order, "PART_TRADED" if order.filled_quantity else "PENDING")
            self._match(order)
            return order

    def cancel(self, account: Account, order_id: str, *, source: str = "P") -> SimOrder:
        self._check_static_ip(account, source)
        with self._lock:
            order = self._own_order(account, order_id)
            if not order.is_open and self.brackets.has_open_exit(order):
                return self.brackets.exit(order, source)
            if not order.is_open:
                raise errors.order_error(f"Order {order_id} is {order.status} and cannot be "
                                         "cancelled")
            order.source = source
            self._finish(order, "CANCELLED", "")
            return order

    def reject(self, order_id: str, reason: str) -> SimOrder:
        """Reject an accepted order, as the exchange sometimes does after accepting it."""
        with self._lock:
            order = self.orders.get(order_id)
            if order is None or not order.is_open:
                raise errors.order_error(f"Order {order_id} is not open", http_status=404)
            self._finish(order, "REJECTED", reason, code="EXCH")
            return order

    # ---- reads ------------------------------------------------------------------------

    def order_list(self, account: Account) -> list[dict]:
        dialect = self.dialect_of(account.client_id)
        return [dialect.order_row(row) for row in self._order_rows(account)]

    def _order_rows(self, account: Account) -> list[dict]:
        """The clean rows, whatever the dialect (the snapshot's view)."""
        with self._lock:
            own = [o for o in self.orders.values() if o.client_id == account.client_id]
            # Newest first, like Dhan; a BO/CO's legs follow their entry.
            return [leg.to_rest() for o in reversed(own) for leg in o.legs]

    def order(self, account: Account, order_id: str) -> dict | list[dict]:
        with self._lock:
            return self._lookup_answer(account, self._own_order(account, order_id))

    def order_by_correlation(self, account: Account, correlation_id: str) -> dict | list[dict]:
        with self._lock:
            for order in self.orders.values():
                if order.client_id == account.client_id and order.correlation_id == correlation_id:
                    return self._lookup_answer(account, order)
        raise errors.order_error(f"No order with correlation id {correlation_id}",
                                 http_status=404)

    def _lookup_answer(self, account: Account, order: SimOrder) -> dict | list[dict]:
        """One row for a plain order; for a BO/CO the list of its legs' rows, entry first."""
        dialect = self.dialect_of(account.client_id)
        if not order.is_legged:
            return dialect.order_row(order.to_rest())
        return [dialect.order_row(leg.to_rest()) for leg in order.legs]

    def trade_list(self, account: Account, order_id: str | None = None) -> list[dict]:
        dialect = self.dialect_of(account.client_id)
        return [dialect.trade_row(row) for row in self._trade_rows(account, order_id)]

    def _trade_rows(self, account: Account, order_id: str | None = None) -> list[dict]:
        with self._lock:
            if order_id is not None:
                legs = self._own_order(account, order_id).legs
                return [t.to_rest() for leg in legs for t in leg.trades]
            own = [o for o in self.orders.values() if o.client_id == account.client_id]
            return [t.to_rest() for o in own for leg in o.legs for t in leg.trades]

    def position_list(self, account: Account) -> list[dict]:
        with self._lock:
            return [p.to_rest(account.client_id, self.prices[p.instrument.security_id])
                    for p in account.positions.values()]

    def fund_limits(self, account: Account) -> dict:
        with self._lock:
            return account.fund_limits(self._open_orders(account), self.prices)

    def profile(self, account: Account, digest: str = "") -> dict:
        # Dhan's format: IST `DD/MM/YYYY HH:MM` (dhan-api.md), of the token presented.
        expiry = self.token_valid_until(account, digest) if digest else None
        valid_until = (expiry.astimezone(IST).strftime("%d/%m/%Y %H:%M") if expiry is not None
                       else self.clock.now().strftime("%d/%m/%Y 23:59"))
        return {
            "dhanClientId": account.client_id,
            "tokenValidity": valid_until,
            "activeSegment": "Equity, Derivative, Currency, Commodity",
            "ddpi": "Active",
            "mtf": "Active",
            "dataPlan": "Active",
            "dataValidity": valid_until,
        }

    def last_prices(self, body: object) -> dict:
        """Dhan's LTP quote: {"NSE_EQ": [1333, ...], ...} -> last prices by segment and id
        (other keys, such as the SDK's dhanClientId, are ignored)."""
        if not isinstance(body, dict):
            raise errors.bad_input("Request body must be a JSON object")
        data: dict[str, dict[str, dict[str, float]]] = {}
        with self._lock:
            for segment, ids in body.items():
                if segment not in SEGMENT_CODES:
                    continue
                if not isinstance(ids, list):
                    raise errors.bad_input(f"{segment} must be a list of security ids")
                for security_id in ids:
                    instrument = self.instruments.get((segment, str(security_id)))
                    if instrument is None:
                        continue
                    data.setdefault(segment, {})[str(security_id)] = {
                        "last_price": self.prices[instrument.security_id]}
        return {"data": data, "status": "success"}

    def quote(self, account: Account, body: object) -> dict:
        """A Quote API call: refused without a Data API plan, then held to the dialect's
        per-second quote window, then answered like `last_prices`."""
        dialect = self.dialect_of(account.client_id)
        if not dialect.data_plan:
            raise errors.no_data_plan()
        if dialect.quotes_per_second:
            now_ms = int(self.clock.now().timestamp() * 1000)
            if not account.admit(self._quote_window(account.client_id,
                                                    dialect.quotes_per_second), now_ms):
                raise errors.rate_limited()
        return self.last_prices(body)

    def _quote_window(self, client_id: str, per_second: int) -> InMemoryBucket:
        with self._lock:
            kept = self._quote_windows.get(client_id)
            if kept is None or kept[0] != per_second:  # a new dialect, a new window
                kept = (per_second, InMemoryBucket([Rate(per_second, Duration.SECOND)]))
                self._quote_windows[client_id] = kept
            return kept[1]

    def scrip_master(self) -> str:
        return scrip_master_csv(list(self.instruments.values()))

    # ---- market control --------------------------------------------------------------

    def instrument(self, security_id: str) -> Instrument:
        instrument = self._by_security.get(str(security_id))
        if instrument is None:
            raise errors.bad_input(f"Unknown securityId {shown(security_id)}")
        return instrument

    def set_price(self, security_id: str, price: float) -> None:
        instrument = self.instrument(security_id)
        if (isinstance(price, bool) or not isinstance(price, int | float)
                or not (isinstance(price, int) or math.isfinite(price))
                or not 0 < price <= MAX_PRICE):
            raise errors.bad_input(f"price must be a number more than 0 and at most "
                                   f"{MAX_PRICE:.0f}")
        with self._lock:
            self.prices[instrument.security_id] = float(price)
            self._match_security(instrument.security_id)

    def step_prices(self, steps: int = 1) -> dict[str, float]:
        """Advance the seeded random walk: each step moves each price by -3..+3 ticks."""
        if isinstance(steps, bool) or not isinstance(steps, int) \
                or not 1 <= steps <= MAX_PRICE_STEPS:
            raise errors.bad_input(f"steps must be a whole number from 1 to {MAX_PRICE_STEPS}")
        with self._lock:
            # Only a BO/CO entry ending creates orders during the walk (its exit legs, same
            # security), so the open orders of each security are gathered once instead of
            # scanning the whole book every step.
            resting: dict[str, list[SimOrder]] = {}
            for order in self._every_leg():
                if order.is_open:
                    resting.setdefault(order.instrument.security_id, []).append(order)
            for _ in range(steps):
                for security_id in sorted(self.prices):
                    tick = self._by_security[security_id].tick_size
                    moved = self.prices[security_id] + self._random.randint(-3, 3) * tick
                    self.prices[security_id] = round(min(max(moved, tick), MAX_PRICE), 2)
                    waiting = resting.get(security_id)
                    if waiting:
                        for order in waiting:
                            self._match(order)
                        resting[security_id] = [leg for o in waiting for leg in o.legs
                                                if leg.is_open]
            return dict(self.prices)

    def set_fill_size(self, quantity: int | None, security_id: str | None = None) -> None:
        """Largest quantity one fill takes; None fills whatever is left in one go."""
        key = self.instrument(security_id).security_id if security_id else None
        with self._lock:
            if quantity is None:
                self.fill_size.pop(key, None)
            elif (isinstance(quantity, bool) or not isinstance(quantity, int | float)
                  or not 0 < quantity <= MAX_QUANTITY or quantity != int(quantity)):
                raise errors.bad_input(f"fill size must be a whole number from 1 to "
                                       f"{MAX_QUANTITY}")
            else:
                self.fill_size[key] = int(quantity)

    def match_all(self) -> None:
        """A match opportunity for every open order, without moving prices."""
        with self._lock:
            for security_id in list(self.prices):
                self._match_security(security_id)

    def end_session(self) -> int:
        """The session closes: every open order EXPIRES, new regular orders are refused."""
        with self._lock:
            self.session_open = False
            expired = 0
            # A BO/CO entry expiring part-filled creates exit legs: they expire next round.
            while expiring := [o for o in self._every_leg() if o.is_open]:
                for order in expiring:
                    self._finish(order, "EXPIRED", "Order expired at the end of the session")
                expired += len(expiring)
            return expired

    def start_session(self, *, new_day: bool = False) -> None:
        """Open the market; a new day starts with empty order and trade books."""
        with self._lock:
            self.session_open = True
            if new_day:
                self.orders.clear()
                for account in self.accounts.values():
                    account.positions.clear()
            self.match_all()

    def snapshot(self) -> dict:
        with self._lock:
            accounts = {}
            for client_id, account in self.accounts.items():
                accounts[client_id] = {
                    "orders": self._order_rows(account),
                    "trades": self._trade_rows(account),
                    "positions": self.position_list(account),
                    "funds": self.fund_limits(account),
                    "tokens_expired": len(account.expired_digests),
                    "dialect": self.dialect_of(client_id).name,
                    "ip_whitelisted": client_id not in self.ip_refused,
                }
            return {
                "session_open": self.session_open,
                "prices": dict(self.prices),
                "fill_size": {k or "*": v for k, v in self.fill_size.items()},
                "accounts": accounts,
                "dialect": self.dialect.describe(),
            }

    # ---- internals ------------------------------------------------------------------

    def _own_order(self, account: Account, order_id: str) -> SimOrder:
        order = self.orders.get(str(order_id))
        if order is None or order.client_id != account.client_id:
            raise errors.order_error(f"Order {order_id} not found", http_status=404)
        return order

    def _open_orders(self, account: Account) -> list[SimOrder]:
        return [o for o in self._every_leg()
                if o.client_id == account.client_id and o.is_open]

    def _every_leg(self) -> Iterator[SimOrder]:
        """Every order, each BO/CO entry followed by its exit legs."""
        for order in self.orders.values():
            yield order
            yield from order.exit_legs

    def _new_exchange_order_id(self) -> str:
        self._sequence += 1
        return str(10**15 + self._sequence)

    def _publish(self, order: SimOrder) -> None:
        client_id = order.client_id
        sequence = self._frame_counts.get(client_id, 0) + 1
        self._frame_counts[client_id] = sequence
        self.on_update(client_id, self.dialect_of(client_id).frame(order.to_frame(), sequence))

    def _set_status(self, order: SimOrder, status: str) -> None:
        order.status = status
        order.updated = self.clock.now()
        self._publish(order)
        if order.product_type in LEGGED_PRODUCTS:
            self.brackets.on_status(order)

    def _finish(self, order: SimOrder, status: str, reason: str, code: str = "") -> None:
        order.reason = reason
        order.oms_error_code = code
        self._set_status(order, status)

    def _match_security(self, security_id: str) -> None:
        for order in list(self._every_leg()):
            if order.is_open and order.instrument.security_id == security_id:
                self._match(order)

    def _crosses(self, order: SimOrder, last: float) -> bool:
        buying = order.transaction_type == "BUY"
        if order.order_type in ("STOP_LOSS", "STOP_LOSS_MARKET") and not order.triggered:
            if (last >= order.trigger_price) if buying else (last <= order.trigger_price):
                order.triggered = True
            else:
                return False
        if order.order_type in ("MARKET", "STOP_LOSS_MARKET"):
            return True
        return last <= order.price if buying else last >= order.price

    def _match(self, order: SimOrder) -> None:
        if not order.is_open or order.status == "TRANSIT":
            return
        if not self.session_open:  # only AMO orders (and expiring exit legs) are open then
            return
        last = self.prices[order.instrument.security_id]
        if not self._crosses(order, last):
            if order.validity == "IOC":
                self._finish(order, "CANCELLED", "IOC order not filled")
            return
        size = self.fill_size.get(order.instrument.security_id, self.fill_size.get(None))
        quantity = min(order.remaining, size or order.remaining)
        self._fill(order, quantity, last)
        if order.validity == "IOC" and order.is_open:
            self._finish(order, "CANCELLED", "IOC remainder cancelled")

    def _fill(self, order: SimOrder, quantity: int, price: float) -> None:
        now = self.clock.now()
        self._sequence += 1
        trade = Trade(str(10**13 + self._sequence), order, quantity, price, now)
        order.trades.append(trade)
        value = order.average_price * order.filled_quantity + price * quantity
        order.filled_quantity += quantity
        order.average_price = round(value / order.filled_quantity, 4)
        order.last_fill_price = price
        position = self.accounts[order.client_id].position(order.instrument, order.product_type)
        if order.transaction_type == "BUY":
            position.buy_quantity += quantity
            position.buy_value += price * quantity
        else:
            position.sell_quantity += quantity
            position.sell_value += price * quantity
        self._set_status(order, "TRADED" if order.remaining == 0 else "PART_TRADED")
        if order.leg_name != ENTRY_LEG:
            self.brackets.on_exit_fill(order, quantity)
