"""Request checks as Dhan makes them, each refused with Dhan's error (DH-905)."""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass

from copytrade.sim.errors import bad_input
from copytrade.sim.instruments import Instrument

TRANSACTION_TYPES = ("BUY", "SELL")
TRADABLE_SEGMENTS = ("NSE_EQ", "NSE_FNO", "NSE_CURRENCY", "BSE_EQ", "BSE_FNO", "BSE_CURRENCY",
                     "MCX_COMM")
PRODUCT_TYPES = ("CNC", "INTRADAY", "MARGIN", "MTF", "CO", "BO")
ORDER_TYPES = ("LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_MARKET")
VALIDITIES = ("DAY", "IOC")
AMO_TIMES = ("PRE_OPEN", "OPEN", "OPEN_30", "OPEN_60")
LEG_NAMES = ("ENTRY_LEG", "TARGET_LEG", "STOP_LOSS_LEG")
TRIGGERED_TYPES = ("STOP_LOSS", "STOP_LOSS_MARKET")
PRICED_TYPES = ("LIMIT", "STOP_LOSS")
CORRELATION_ID = re.compile(r"[A-Za-z0-9_-]{1,30}")
MIN_DISCLOSED_SHARE = 0.30
# Bounds that keep every amount finite (price x quantity x orders) and every loop short.
MAX_PRICE = 1_000_000_000.0
MAX_QUANTITY = 10_000_000_000  # the largest freeze limit times MAX_SLICES
MAX_SLICES = 1_000
MAX_NUMBER_TEXT = 32  # numeric text longer than this is refused before float() sees it
MAX_SHOWN = 60  # characters of a refused value quoted back in the error message


def shown(value: object) -> str:
    """repr of a refused value, cut short: a 1 MB value must not come back in the error."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


@dataclass(frozen=True)
class PlaceRequest:
    instrument: Instrument
    transaction_type: str
    product_type: str
    order_type: str
    validity: str
    quantity: int
    disclosed_quantity: int
    price: float
    trigger_price: float
    after_market_order: bool
    amo_time: str
    correlation_id: str
    bo_profit_value: float | None
    bo_stop_loss_value: float | None


@dataclass(frozen=True)
class ModifyRequest:
    order_type: str
    leg_name: str
    quantity: int
    price: float
    trigger_price: float
    disclosed_quantity: int
    validity: str


def _enum(body: dict, key: str, allowed: tuple[str, ...]) -> str:
    value = body.get(key)
    if not isinstance(value, str) or value not in allowed:
        raise bad_input(f"Invalid value for {key}: {shown(value)}; expected one of "
                        f"{', '.join(allowed)}")
    return value


def _number(body: dict, key: str, default: float = 0.0, *, limit: float = MAX_PRICE) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    # Bounded before converting: float() of a 4,000-digit int raises OverflowError, and
    # float() of a megabyte of digits is work for nothing.
    number = float("nan")
    if isinstance(value, int | float | str) and not isinstance(value, bool) and (
            not isinstance(value, int) or 0 <= value <= limit) and (
            not isinstance(value, str) or len(value) <= MAX_NUMBER_TEXT):
        with contextlib.suppress(ValueError):
            number = float(value)
    if not (math.isfinite(number) and 0 <= number <= limit):
        raise bad_input(f"Invalid value for {key}: {shown(value)}; must be a number from 0 "
                        f"to {limit:.0f}")
    return number


def _whole(body: dict, key: str, default: int = 0) -> int:
    number = _number(body, key, default, limit=MAX_QUANTITY)
    if number != int(number):
        raise bad_input(f"Invalid value for {key}: {shown(body.get(key))}; must be a whole "
                        "number")
    return int(number)


def slice_size(instrument: Instrument) -> int:
    """The largest whole-lot quantity within the freeze limit."""
    freeze = instrument.freeze_quantity
    return freeze - freeze % instrument.lot_size


def check_quantity(instrument: Instrument, quantity: int, disclosed: int,
                   *, allow_above_freeze: bool) -> None:
    if quantity <= 0:
        raise bad_input("Invalid quantity: must be more than 0")
    if quantity % instrument.lot_size:
        raise bad_input(f"Invalid quantity {quantity}: must be a multiple of the lot size "
                        f"{instrument.lot_size}")
    if quantity > instrument.freeze_quantity and not allow_above_freeze:
        raise bad_input(f"Quantity {quantity} exceeds the freeze limit "
                        f"{instrument.freeze_quantity}; use the slicing API")
    if quantity > slice_size(instrument) * MAX_SLICES:
        raise bad_input(f"Quantity {quantity} would need more than {MAX_SLICES} slices")
    if disclosed and (disclosed > quantity or disclosed <= MIN_DISCLOSED_SHARE * quantity):
        raise bad_input("Invalid disclosedQuantity: must be more than 30% of quantity "
                        "and at most the quantity")


def check_prices(order_type: str, transaction_type: str | None, price: float,
                 trigger_price: float) -> None:
    if order_type in PRICED_TYPES and price <= 0:
        raise bad_input(f"Price is required for {order_type} orders")
    if order_type in TRIGGERED_TYPES and trigger_price <= 0:
        raise bad_input(f"triggerPrice is required for {order_type} orders")
    if order_type == "STOP_LOSS" and transaction_type is not None:
        if transaction_type == "BUY" and trigger_price > price:
            raise bad_input("Trigger price must be at most the limit price for a BUY stop-loss")
        if transaction_type == "SELL" and trigger_price < price:
            raise bad_input("Trigger price must be at least the limit price for a SELL stop-loss")


def parse_place(body: object, instruments: dict[tuple[str, str], Instrument],
                *, slicing: bool) -> PlaceRequest:
    if not isinstance(body, dict):
        raise bad_input("Request body must be a JSON object")
    transaction_type = _enum(body, "transactionType", TRANSACTION_TYPES)
    segment = _enum(body, "exchangeSegment", TRADABLE_SEGMENTS)
    product_type = _enum(body, "productType", PRODUCT_TYPES)
    order_type = _enum(body, "orderType", ORDER_TYPES)
    validity = _enum(body, "validity", VALIDITIES)
    security_id = str(body.get("securityId") or "")
    instrument = instruments.get((segment, security_id))
    if instrument is None:
        raise bad_input(f"Invalid securityId {shown(security_id)} for {segment}")
    quantity = _whole(body, "quantity")
    disclosed = _whole(body, "disclosedQuantity")
    check_quantity(instrument, quantity, disclosed, allow_above_freeze=slicing)
    price = _number(body, "price")
    trigger_price = _number(body, "triggerPrice")
    check_prices(order_type, transaction_type, price, trigger_price)
    after_market = bool(body.get("afterMarketOrder") or False)
    amo_time = ""
    if after_market:
        amo_time = _enum(body, "amoTime", AMO_TIMES)
    correlation_id = body.get("correlationId") or ""
    if correlation_id and (not isinstance(correlation_id, str)
                           or not CORRELATION_ID.fullmatch(correlation_id)):
        raise bad_input("Invalid correlationId: at most 30 characters of A-Z a-z 0-9 _ -")
    bo_profit = body.get("boProfitValue")
    bo_stop = body.get("boStopLossValue")
    if product_type == "BO":
        _bo_distance(body, "boProfitValue")
        _bo_distance(body, "boStopLossValue")
    if product_type == "CO" and trigger_price <= 0:
        raise bad_input("triggerPrice is required for CO orders: the stop-loss trigger, "
                        "more than 0")
    return PlaceRequest(
        instrument=instrument, transaction_type=transaction_type, product_type=product_type,
        order_type=order_type, validity=validity, quantity=quantity, disclosed_quantity=disclosed,
        price=price if order_type in PRICED_TYPES else 0.0, trigger_price=trigger_price,
        after_market_order=after_market, amo_time=amo_time, correlation_id=correlation_id,
        bo_profit_value=_number(body, "boProfitValue") if bo_profit else None,
        bo_stop_loss_value=_number(body, "boStopLossValue") if bo_stop else None,
    )


def _bo_distance(body: dict, key: str) -> float:
    """A BO's profit or stop-loss value: a price distance per unit, more than 0."""
    value = _number(body, key)
    if value <= 0:
        raise bad_input(f"{key} is required for BO orders: a price distance more than 0")
    return value


def parse_modify(body: object) -> ModifyRequest:
    if not isinstance(body, dict):
        raise bad_input("Request body must be a JSON object")
    order_type = _enum(body, "orderType", ORDER_TYPES)
    leg_name = body.get("legName") or "ENTRY_LEG"
    if leg_name == "NA":  # what real rows say of a plain order's only leg
        leg_name = "ENTRY_LEG"
    if leg_name not in LEG_NAMES:
        raise bad_input(f"Invalid value for legName: {shown(leg_name)}")
    price = _number(body, "price")
    trigger_price = _number(body, "triggerPrice")
    check_prices(order_type, None, price, trigger_price)
    return ModifyRequest(
        order_type=order_type, leg_name=leg_name, quantity=_whole(body, "quantity"),
        price=price if order_type in PRICED_TYPES else 0.0, trigger_price=trigger_price,
        disclosed_quantity=_whole(body, "disclosedQuantity"),
        validity=_enum(body, "validity", VALIDITIES),
    )
