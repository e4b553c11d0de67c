"""Dhan's wire shapes of an order -> `OrderReport`.

Two sources: an order-update stream frame (`{"Type": "order_alert", "Data": {...}}`, PascalCase
keys, short codes) and a REST order-book row (camelCase keys, long names). Both are parsed with
the same tolerance: keys case-insensitive (the exact canonical spelling wins when both appear),
numbers given as strings, unknown keys ignored.

Fields that decide what a follower is sent (ids, status, side, segment, product, order type,
quantities, prices, validity, AMO, leg) are strict: garbage raises `MalformedFrame`. Advisory
fields (average price, lot size, update time, symbol, reason, correlation id) fall back to
their defaults instead, so a cosmetic oddity never costs us a frame.

Values are also checked against each other (`_consistent`): a fill above the order's
quantity is a lie about the account's position, so the whole report is refused rather
than half-believed. Text is made safe to store and print: no lone surrogates, no control
characters, bounded length.

This is the hot path: plain dict lookups, no regex, a case-folded copy only when a key is
missing under its canonical spelling.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar

import pytz

from copytrade.core.events import OrderReport, ReportSource

# The value checks live in core (a leader event off the bus is checked by the same rules).
from copytrade.core.order_checks import AMO_TIMES as _AMO_TIMES
from copytrade.core.order_checks import (
    MAX_PRICE,
    MAX_QUANTITY,
    MalformedFrame,
    checked_id,
    status_word,
    validity_word,
)
from copytrade.core.order_checks import SEGMENTS as _SEGMENTS
from copytrade.core.order_checks import blank as _blank
from copytrade.core.order_checks import consistent as _consistent
from copytrade.core.order_checks import number as _number
from copytrade.core.order_checks import quote as _quote
from copytrade.core.order_checks import safe_text as _safe_text
from copytrade.core.order_checks import whole as _whole

__all__ = ["MAX_PRICE", "MAX_QUANTITY", "MalformedFrame", "parse_frame", "report_from_rest"]

IST = pytz.timezone("Asia/Kolkata")
ORDER_ALERT = "order_alert"

_T = TypeVar("_T")


# ----- vocabularies --------------------------------------------------------------------------

_SIDES = {"B": "BUY", "BUY": "BUY", "S": "SELL", "SELL": "SELL"}
_PRODUCTS = {
    "C": "CNC", "CNC": "CNC",
    "I": "INTRADAY", "INTRADAY": "INTRADAY",
    "M": "MARGIN", "MARGIN": "MARGIN",
    "F": "MTF", "MTF": "MTF",
    "V": "CO", "CO": "CO",
    "B": "BO", "BO": "BO",
}
_ORDER_TYPES = {
    "LMT": "LIMIT", "LIMIT": "LIMIT",
    "MKT": "MARKET", "MARKET": "MARKET",
    "SL": "STOP_LOSS", "STOP_LOSS": "STOP_LOSS",
    "SLM": "STOP_LOSS_MARKET", "SL-M": "STOP_LOSS_MARKET", "SL_M": "STOP_LOSS_MARKET",
    "STOP_LOSS_MARKET": "STOP_LOSS_MARKET",
}
_SEGMENTS_BY_CODE = {
    ("NSE", "E"): "NSE_EQ",
    ("NSE", "D"): "NSE_FNO",
    ("NSE", "C"): "NSE_CURRENCY",
    ("BSE", "E"): "BSE_EQ",
    ("BSE", "D"): "BSE_FNO",
    ("BSE", "C"): "BSE_CURRENCY",
    ("MCX", "M"): "MCX_COMM",
}
_LEGS = {"ENTRY_LEG": 1, "STOP_LOSS_LEG": 2, "TARGET_LEG": 3}
_TRUE_FLAGS = frozenset({"1", "Y", "YES", "TRUE"})
_FALSE_FLAGS = frozenset({"", "0", "N", "NO", "FALSE"})


# ----- public API ------------------------------------------------------------------------------

def parse_frame(raw: str | bytes) -> OrderReport | None:
    """One stream message -> OrderReport; None for a well-formed message of another Type."""
    try:
        message = json.loads(raw)
    except (ValueError, TypeError, RecursionError):  # ValueError covers bad UTF-8 too
        raise MalformedFrame("not JSON") from None
    if not isinstance(message, dict):
        raise MalformedFrame("not a JSON object")
    top = _Fields(message)
    kind = top.get("Type")
    if kind is None:
        raise MalformedFrame("no Type")
    if not isinstance(kind, str):
        raise MalformedFrame("Type is not a string")
    if kind.strip().lower() != ORDER_ALERT:
        return None
    data = top.get("Data")
    if data is None:
        raise MalformedFrame("no Data")
    if not isinstance(data, dict):
        raise MalformedFrame("Data is not an object")
    return _report_from_alert(_Fields(data))


def report_from_rest(row: Mapping[str, Any]) -> OrderReport:
    """One REST order-book row (or order lookup) -> OrderReport with source REST."""
    if not isinstance(row, Mapping):
        raise MalformedFrame("order row is not an object")
    f = _Fields(row)
    return _consistent(OrderReport(
        order_id=_required_id(f, "orderId"),
        status=_status(f, "orderStatus"),
        exchange_segment=_segment_name(f, "exchangeSegment"),
        security_id=_required_id(f, "securityId"),
        transaction_type=_choice(f, "transactionType", _SIDES),
        product_type=_choice(f, "productType", _PRODUCTS),
        order_type=_choice(f, "orderType", _ORDER_TYPES),
        validity=_validity(f, "validity"),
        quantity=_required_int(f, "quantity"),
        # Live rows have been seen with `filled_qty` instead of the SDK's `filledQty`.
        traded_quantity=_int(f, "filledQty" if f.get("filledQty") is not None
                             else "filled_qty"),
        price=_float(f, "price"),
        trigger_price=_float(f, "triggerPrice"),
        disclosed_quantity=_int(f, "disclosedQuantity"),
        average_price=_lenient(_float, f, "averageTradedPrice", 0.0),
        after_market_order=_flag(f, "afterMarketOrder"),
        amo_time=_amo_time(f, "amoTime"),
        correlation_id=_text(f, "correlationId"),
        reason=_remark(_text(f, "omsErrorDescription")),
        symbol=_text(f, "tradingSymbol"),
        lot_size=None,
        leg=_leg(f, "legName"),
        bo_profit_value=_float(f, "boProfitValue"),
        bo_stop_loss_value=_float(f, "boStopLossValue"),
        placed_in_app=False,  # the order book does not say where an order came from
        updated_at=_time(f, "updateTime"),
        created_at=_time(f, "createTime"),
        source=ReportSource.REST,
    ))


# ----- the frame's Data ---------------------------------------------------------------------

def _report_from_alert(f: _Fields) -> OrderReport:
    return _consistent(OrderReport(
        order_id=_required_id(f, "OrderNo"),
        status=_status(f, "Status"),
        exchange_segment=_segment_from_codes(f),
        security_id=_required_id(f, "SecurityId"),
        transaction_type=_choice(f, "TxnType", _SIDES),
        product_type=_choice(f, "Product", _PRODUCTS),
        order_type=_choice(f, "OrderType", _ORDER_TYPES),
        validity=_validity(f, "Validity"),
        quantity=_required_int(f, "Quantity"),
        traded_quantity=_int(f, "TradedQty"),
        price=_float(f, "Price"),
        trigger_price=_float(f, "TriggerPrice"),
        disclosed_quantity=_int(f, "DiscQuantity"),
        average_price=_lenient(_float, f, "AvgTradedPrice", 0.0),
        after_market_order=_flag(f, "OffMktFlag"),
        correlation_id=_text(f, "CorrelationId"),
        reason=_remark(_text(f, "ReasonDescription")),
        symbol=_text(f, "Symbol"),
        lot_size=_lot_size(f, "LotSize"),
        leg=_leg(f, "LegNo"),
        # Not in Dhan's documented frame: read if a dialect sends them, else REST supplies
        bo_profit_value=_float(f, "BoProfitValue"),
        bo_stop_loss_value=_float(f, "BoStopLossValue"),
        placed_in_app=_text(f, "Source").upper() == "N",
        updated_at=_time(f, "LastUpdatedTime"),
        created_at=_time(f, "OrderDateTime"),
        source=ReportSource.STREAM,
    ))


def _segment_from_codes(f: _Fields) -> str:
    exchange = f.get("Exchange")
    segment = f.get("Segment")
    if not isinstance(exchange, str) or not isinstance(segment, str):
        raise MalformedFrame("missing Exchange/Segment")
    pair = (exchange.strip().upper(), segment.strip().upper())
    name = _SEGMENTS_BY_CODE.get(pair)
    if name is None:
        name = pair[1] if pair[1] in _SEGMENTS else None  # a long name in Segment: accept it
    if name is None:
        raise MalformedFrame(f"unknown Exchange/Segment {_quote(pair[0])}/{_quote(pair[1])}")
    return name


# ----- key lookup ----------------------------------------------------------------------------

class _Fields:
    """Case-insensitive reads of a JSON object; the canonical spelling is tried first.

    A null value counts as absent, so `"OrderNo": null, "orderNo": "1"` still finds the order.
    """

    __slots__ = ("_data", "_folded")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data
        self._folded: dict[str, Any] | None = None

    def get(self, key: str) -> Any:
        value = self._data.get(key)
        if value is not None:
            return value
        if self._folded is None:
            self._folded = _fold(self._data)
        return self._folded.get(key.lower())


def _fold(data: Mapping[str, Any]) -> dict[str, Any]:
    folded: dict[str, Any] = {}
    for key, value in data.items():
        if value is not None and isinstance(key, str):
            folded.setdefault(key.lower(), value)
    return folded


# ----- field converters ----------------------------------------------------------------------

def _as_text(value: object, key: str) -> str:
    if isinstance(value, str):
        return _safe_text(value)
    # a number's text is bounded like any text (1e256 would be 257 digits)
    if type(value) is int:
        return _safe_text(str(value))
    if type(value) is float and value.is_integer():
        return _safe_text(str(int(value)))  # 1124091136546.0 -> "1124091136546"
    raise MalformedFrame(f"bad {key}: {_quote(value)}")


def _required_text(f: _Fields, key: str) -> str:
    value = f.get(key)
    text = "" if value is None else _as_text(value, key)
    if not text:
        raise MalformedFrame(f"missing {key}")
    return text


def _required_id(f: _Fields, key: str) -> str:
    """An id we send back to the broker or key our rows by: short, visible ASCII only."""
    return checked_id(_required_text(f, key), key)


def _text(f: _Fields, key: str) -> str:
    """An advisory string: absent or not a scalar -> ""."""
    value = f.get(key)
    if value is None:
        return ""
    try:
        return _as_text(value, key)
    except MalformedFrame:
        return ""


def _required_int(f: _Fields, key: str) -> int:
    value = f.get(key)
    if _blank(value):
        raise MalformedFrame(f"missing {key}")
    return _whole(value, key)


def _int(f: _Fields, key: str) -> int:
    value = f.get(key)
    return 0 if _blank(value) else _whole(value, key)


def _float(f: _Fields, key: str) -> float:
    value = f.get(key)
    return 0.0 if _blank(value) else _number(value, key)


def _lenient(convert: Callable[[_Fields, str], _T], f: _Fields, key: str, default: _T) -> _T:
    try:
        return convert(f, key)
    except MalformedFrame:
        return default


def _lot_size(f: _Fields, key: str) -> int | None:
    size = _lenient(_int, f, key, 0)
    return size or None


def _status(f: _Fields, key: str) -> str:
    """Title case, spaces or hyphens -> Dhan's REST word: "Part_Traded", "PartTraded",
    "Part Traded" -> PART_TRADED."""
    return status_word(f.get(key), key)


def _choice(f: _Fields, key: str, names: Mapping[str, str]) -> str:
    value = f.get(key)
    if _blank(value):
        raise MalformedFrame(f"missing {key}")
    name = names.get(value.strip().upper()) if isinstance(value, str) else None
    if name is None:
        raise MalformedFrame(f"unknown {key} {_quote(value)}")
    return name


def _segment_name(f: _Fields, key: str) -> str:
    value = f.get(key)
    if _blank(value):
        raise MalformedFrame(f"missing {key}")
    name = value.strip().upper() if isinstance(value, str) else None
    if name not in _SEGMENTS:
        raise MalformedFrame(f"unknown {key} {_quote(value)}")
    return name


def _validity(f: _Fields, key: str) -> str:
    """DAY when absent (Dhan's default); other words pass through upper-cased."""
    return validity_word(f.get(key), key)


def _amo_time(f: _Fields, key: str) -> str:
    """Advisory (Dhan's order book is not documented to carry it): a known word, else ""."""
    word = _text(f, key).strip().upper()
    return word if word in _AMO_TIMES else ""


def _flag(f: _Fields, key: str) -> bool:
    value = f.get(key)
    if value is None or value is False or value is True:
        return bool(value)
    if type(value) is int and value in (0, 1):
        return value == 1
    word = value.strip().upper() if isinstance(value, str) else None
    if word in _TRUE_FLAGS:
        return True
    if word in _FALSE_FLAGS:
        return False
    raise MalformedFrame(f"bad {key}: {_quote(value)}")


def _leg(f: _Fields, key: str) -> int:
    """LegNo 1/2/3 or legName ENTRY_LEG/STOP_LOSS_LEG/TARGET_LEG; absent or 0 -> entry."""
    value = f.get(key)
    if _blank(value):
        return 1
    if isinstance(value, str) and value.strip().upper() in _LEGS:
        return _LEGS[value.strip().upper()]
    if isinstance(value, str) and value.strip().upper() == "NA":
        return 1  # live rows of plain orders say "NA": not a BO/CO leg
    try:
        leg = _whole(value, key)
    except MalformedFrame:
        raise MalformedFrame(f"unknown {key} {_quote(value)}") from None
    if leg > 3:
        raise MalformedFrame(f"unknown {key} {_quote(value)}")
    return leg or 1


def _time(f: _Fields, key: str) -> datetime | None:
    """IST text `YYYY-MM-DD HH:MM:SS` -> aware datetime; absent or unreadable -> None."""
    value = f.get(key)
    if not isinstance(value, str):
        return None
    return _ist(value.strip())


@lru_cache(maxsize=1024)  # a burst of frames shares a handful of distinct seconds
def _ist(text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            return moment.astimezone(IST)
        return IST.localize(moment)
    except (ValueError, OverflowError):  # garbage, or a date pytz cannot place (year 1)
        return None


# What real Dhan puts in its remark fields when there is nothing to say (captured rows and
# its stream sample): "CONFIRMED" on an accepted order, "NR", "NA". Not a reason.
_NO_REMARK = frozenset({"CONFIRMED", "NR", "NA", "0"})


def _remark(text: str) -> str:
    return "" if text.strip().upper() in _NO_REMARK else text
