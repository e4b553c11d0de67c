"""Emulated accounts: funds, margin, positions and per-account rate limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pyrate_limiter import Duration, InMemoryBucket, Rate, RateItem

from copytrade.sim.instruments import Instrument
from copytrade.sim.orders import SimOrder

# Dhan's order-API limits per account, and the non-trading APIs' per-second limit.
ORDER_RATES = (
    Rate(10, Duration.SECOND),
    Rate(250, Duration.MINUTE),
    Rate(1000, Duration.HOUR),
    Rate(7000, Duration.DAY),
)
READ_RATES = (Rate(20, Duration.SECOND),)
DATA_RATES = (Rate(5, Duration.SECOND),)  # market quotes
MAX_TOKENS_PER_ACCOUNT = 16
MAX_EXPIRED_TOKENS = 64
# Dhan's access tokens live at most 24 hours from issue (dhan-api.md); so do ours, on the
# emulator's clock. A renewed token (RenewToken) gets another 24 hours from its renewal.
TOKEN_LIFETIME = timedelta(hours=24)


def _keep_newest(ordered: dict[str, None], limit: int) -> None:
    while len(ordered) > limit:
        del ordered[next(iter(ordered))]


def margin_rate(instrument: Instrument, product_type: str, transaction_type: str) -> float:
    """Share of notional blocked as margin: a simple, documented model, not SPAN."""
    if instrument.segment == "MCX_COMM":
        return 0.10
    if instrument.is_option:
        return 1.0 if transaction_type == "BUY" else 0.15
    if instrument.is_derivative:
        return 0.12
    return {"CNC": 1.0, "MTF": 0.5}.get(product_type, 0.2)


@dataclass
class Position:
    instrument: Instrument
    product_type: str
    buy_quantity: int = 0
    sell_quantity: int = 0
    buy_value: float = 0.0
    sell_value: float = 0.0

    @property
    def net_quantity(self) -> int:
        return self.buy_quantity - self.sell_quantity

    @property
    def buy_average(self) -> float:
        return self.buy_value / self.buy_quantity if self.buy_quantity else 0.0

    @property
    def sell_average(self) -> float:
        return self.sell_value / self.sell_quantity if self.sell_quantity else 0.0

    def realized_profit(self) -> float:
        closed = min(self.buy_quantity, self.sell_quantity)
        return round(closed * (self.sell_average - self.buy_average), 2) + 0.0  # never -0.0

    def unrealized_profit(self, last_price: float) -> float:
        net = self.net_quantity
        if net > 0:
            return round(net * (last_price - self.buy_average), 2)
        if net < 0:
            return round(-net * (self.sell_average - last_price), 2)
        return 0.0

    def open_margin(self) -> float:
        net = self.net_quantity
        if not net:
            return 0.0
        side = "BUY" if net > 0 else "SELL"
        average = self.buy_average if net > 0 else self.sell_average
        return abs(net) * average * margin_rate(self.instrument, self.product_type, side)

    def to_rest(self, client_id: str, last_price: float) -> dict:
        inst = self.instrument
        net = self.net_quantity
        return {
            "dhanClientId": client_id,
            "tradingSymbol": inst.symbol,
            "securityId": inst.security_id,
            "positionType": "LONG" if net > 0 else "SHORT" if net < 0 else "CLOSED",
            "exchangeSegment": inst.segment,
            "productType": self.product_type,
            "buyAvg": round(self.buy_average, 2),
            "buyQty": self.buy_quantity,
            "costPrice": round(self.buy_average if net >= 0 else self.sell_average, 2),
            "sellAvg": round(self.sell_average, 2),
            "sellQty": self.sell_quantity,
            "netQty": net,
            "realizedProfit": self.realized_profit(),
            "unrealizedProfit": self.unrealized_profit(last_price),
            "rbiReferenceRate": 1.0,
            "multiplier": 1,
            "carryForwardBuyQty": 0,
            "carryForwardSellQty": 0,
            "carryForwardBuyValue": 0.0,
            "carryForwardSellValue": 0.0,
            "dayBuyQty": self.buy_quantity,
            "daySellQty": self.sell_quantity,
            "dayBuyValue": round(self.buy_value, 2),
            "daySellValue": round(self.sell_value, 2),
            "drvExpiryDate": inst.expiry or "NA",
            "drvOptionType": inst.option_type or "NA",
            "drvStrikePrice": inst.strike,
            "crossCurrency": False,
        }


@dataclass
class Account:
    client_id: str
    start_of_day_funds: float
    # Insertion-ordered (dicts as sets), so the oldest can be forgotten to bound memory.
    token_digests: dict[str, None] = field(default_factory=dict)
    expired_digests: dict[str, None] = field(default_factory=dict)
    # digest -> when that token stops working (emulator clock); bounded like the digests.
    token_expiry: dict[str, datetime] = field(default_factory=dict)
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    order_rate_scale: float = 1.0
    order_bucket: InMemoryBucket = field(init=False)
    read_bucket: InMemoryBucket = field(default_factory=lambda: InMemoryBucket(list(READ_RATES)))
    data_bucket: InMemoryBucket = field(default_factory=lambda: InMemoryBucket(list(DATA_RATES)))

    def __post_init__(self) -> None:
        rates = [Rate(max(1, int(r.limit * self.order_rate_scale)), r.interval)
                 for r in ORDER_RATES]
        self.order_bucket = InMemoryBucket(rates)

    def remember_token(self, digest: str, valid_until: datetime | None = None) -> None:
        self.token_digests[digest] = None
        _keep_newest(self.token_digests, MAX_TOKENS_PER_ACCOUNT)
        if valid_until is not None:
            self.token_expiry[digest] = valid_until
        for forgotten in set(self.token_expiry) - set(self.token_digests):
            del self.token_expiry[forgotten]

    def expire_tokens(self) -> int:
        count = len(self.token_digests)
        self.expired_digests.update(self.token_digests)
        _keep_newest(self.expired_digests, MAX_EXPIRED_TOKENS)
        self.token_digests.clear()
        self.token_expiry.clear()
        return count

    def lapse_if_expired(self, digest: str, now: datetime) -> bool:
        """True (and the token moved to the expired ones) once its validity has passed."""
        until = self.token_expiry.get(digest)
        if until is None or now < until:
            return False
        self.token_digests.pop(digest, None)
        self.token_expiry.pop(digest, None)
        self.expired_digests[digest] = None
        _keep_newest(self.expired_digests, MAX_EXPIRED_TOKENS)
        return True

    def admit(self, bucket: InMemoryBucket, now_ms: int) -> bool:
        """One request against the bucket's windows; old entries are leaked to bound memory."""
        bucket.leak(now_ms)
        return bool(bucket.put(RateItem("request", now_ms)))

    def position(self, instrument: Instrument, product_type: str) -> Position:
        key = (instrument.security_id, product_type)
        if key not in self.positions:
            self.positions[key] = Position(instrument, product_type)
        return self.positions[key]

    def realized(self) -> float:
        return sum(p.realized_profit() for p in self.positions.values())

    def utilized(self, open_orders: list[SimOrder], last_prices: dict[str, float]) -> float:
        blocked = sum(p.open_margin() for p in self.positions.values())
        for order in open_orders:
            blocked += order_margin(order, last_prices, self)
        return round(blocked, 2)

    def available(self, open_orders: list[SimOrder], last_prices: dict[str, float]) -> float:
        return round(self.start_of_day_funds + self.realized()
                     - self.utilized(open_orders, last_prices), 2)

    def fund_limits(self, open_orders: list[SimOrder], last_prices: dict[str, float]) -> dict:
        available = self.available(open_orders, last_prices)
        return {
            "dhanClientId": self.client_id,
            "availabelBalance": available,  # sic: Dhan's spelling
            "sodLimit": self.start_of_day_funds,
            "collateralAmount": 0.0,
            "receiveableAmount": 0.0,  # sic
            "utilizedAmount": self.utilized(open_orders, last_prices),
            "blockedPayoutAmount": 0.0,
            "withdrawableBalance": max(available, 0.0),
        }


def order_margin(order: SimOrder, last_prices: dict[str, float], account: Account) -> float:
    """Margin an open order blocks; the part that closes an existing position blocks none."""
    inst = order.instrument
    position = account.positions.get((inst.security_id, order.product_type))
    net = position.net_quantity if position else 0
    closing = min(order.remaining, -net if order.transaction_type == "BUY" else net)
    opening = order.remaining - max(closing, 0)
    if opening <= 0:
        return 0.0
    price = order.price or last_prices.get(inst.security_id, inst.price)
    return opening * price * margin_rate(inst, order.product_type, order.transaction_type)
