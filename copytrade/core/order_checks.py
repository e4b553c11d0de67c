"""What an order report from outside must be, whatever carried it: the value checks of the
one normaliser. dhan/frames.py maps Dhan's wire names onto them (stream frames, REST rows);
core/bus_decode.py applies them to a leader's order snapshot off the bus. One set of rules:
a value the leader would refuse from Dhan, an agent refuses from the bus.

Moved here from dhan/frames.py unchanged (frames re-exports MalformedFrame and the limits),
except that a validity word is now made safe text like every other word we store.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from copytrade.core.events import OrderReport

VALUE_EXCERPT = 24  # characters of an offending value quoted in an error
ID_CHARS = 64  # order and security ids: Dhan's are digits, well under this
TEXT_CHARS = 256  # symbols, reasons: longer is noise, and it lands in the database
MAX_QUANTITY = 10**9  # units; no exchange order comes near it
MAX_PRICE = 10**9  # rupees

# Canonical words (what a report holds); dhan/frames.py maps Dhan's codes onto them.
SIDES = frozenset({"BUY", "SELL"})
PRODUCTS = frozenset({"CNC", "INTRADAY", "MARGIN", "MTF", "CO", "BO"})
ORDER_TYPES = frozenset({"LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_MARKET"})
SEGMENTS = frozenset({"NSE_EQ", "NSE_FNO", "NSE_CURRENCY", "BSE_EQ", "BSE_FNO",
                      "BSE_CURRENCY", "MCX_COMM"})
AMO_TIMES = frozenset({"PRE_OPEN", "OPEN", "OPEN_30", "OPEN_60"})
LEGS = frozenset({1, 2, 3})  # entry, stop-loss, target
# Spellings clients report for Dhan's words ("PartTraded" upper-cased loses its "_"):
# the stream's word for a partial fill is undocumented.
STATUS_ALIASES = {"PARTTRADED": "PART_TRADED", "PARTIALLY_TRADED": "PART_TRADED",
                  "CANCELED": "CANCELLED"}


class MalformedFrame(ValueError):
    """A message (stream frame, REST row, bus event) that cannot be turned into an
    OrderReport; str() says why."""


def quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= VALUE_EXCERPT else text[: VALUE_EXCERPT - 3] + "..."


def blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def safe_text(text: str) -> str:
    """Printable, encodable, bounded: a lone surrogate or a control character would fail
    the database write or garble a terminal (each becomes U+FFFD)."""
    text = text.strip()
    if not (text.isascii() and text.isprintable()):
        text = "".join(c if c.isprintable() else "\ufffd" for c in text)
    return text[:TEXT_CHARS]


def checked_id(text: str, key: str) -> str:
    """An id we send back to the broker or key our rows by: short, visible ASCII only."""
    if not text:
        raise MalformedFrame(f"missing {key}")
    if len(text) > ID_CHARS or not (text.isascii() and text.isprintable()) or " " in text:
        raise MalformedFrame(f"bad {key}: {quote(text)}")
    return text


def number(value: object, key: str) -> float:
    """A finite, non-negative number from a JSON number or a numeric string."""
    if isinstance(value, bool):
        raise MalformedFrame(f"bad {key}: {quote(value)}")
    if isinstance(value, int):
        result = float(value) if value < 2**63 else math.inf
    elif isinstance(value, float):
        result = value
    elif isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            raise MalformedFrame(f"bad {key}: {quote(value)}") from None
    else:
        raise MalformedFrame(f"bad {key}: {quote(value)}")
    if not math.isfinite(result) or result < 0:
        raise MalformedFrame(f"bad {key}: {quote(value)}")
    return result


def whole(value: object, key: str) -> int:
    if type(value) is int and 0 <= value < 2**63:
        return value  # the common case, without a float round trip
    result = number(value, key)
    if not result.is_integer() or result >= 2**63:
        raise MalformedFrame(f"bad {key}: {quote(value)} is not a whole number")
    return int(result)


def status_word(value: object, key: str) -> str:
    """Title case, spaces or hyphens -> Dhan's REST word: "Part_Traded", "PartTraded",
    "Part Traded" -> PART_TRADED. A word outside OrderStatus is kept (treated as open)."""
    if not isinstance(value, str) or not value.strip():
        raise MalformedFrame(f"missing {key}" if blank(value) else f"bad {key}: {quote(value)}")
    status = value.strip().upper()
    if not (status.isascii() and status.isprintable()):  # Dhan's words are plain ASCII
        raise MalformedFrame(f"bad {key}: {quote(value)}")
    if " " in status or "-" in status:
        status = "_".join(status.replace("-", " ").split())
    return STATUS_ALIASES.get(status, status)


def validity_word(value: object, key: str) -> str:
    """DAY when absent (Dhan's default); other words pass through upper-cased, made safe."""
    if blank(value):
        return "DAY"
    if not isinstance(value, str):
        raise MalformedFrame(f"bad {key}: {quote(value)}")
    return safe_text(value.upper()) or "DAY"


def consistent(report: OrderReport) -> OrderReport:
    """Quantities and prices checked against each other and against what any order can be."""
    if not 0 < report.quantity <= MAX_QUANTITY:
        raise MalformedFrame(f"quantity {report.quantity} out of range")
    if report.traded_quantity > report.quantity:
        raise MalformedFrame(f"traded quantity {report.traded_quantity} above the order's "
                             f"quantity {report.quantity}")
    if report.disclosed_quantity > report.quantity:
        raise MalformedFrame(f"disclosed quantity {report.disclosed_quantity} above the "
                             f"order's quantity {report.quantity}")
    if max(report.price, report.trigger_price, report.bo_profit_value,
           report.bo_stop_loss_value) > MAX_PRICE:
        raise MalformedFrame("price out of range")
    changes: dict[str, Any] = {}
    if report.disclosed_quantity == report.quantity:
        # Dhan's stream shows a plain order's DiscQuantity as its whole quantity where REST
        # says 0: disclosing all of an order is disclosing nothing, so both read 0.
        changes["disclosed_quantity"] = 0
    if report.average_price > MAX_PRICE:
        changes["average_price"] = 0.0  # advisory: dropped, not trusted
    return replace(report, **changes) if changes else report
