"""A leader event off the bus -> `LeaderEvent`, or `Rejected` with a one-line reason (issue 12).

The payload crossed a network: nothing in it is trusted. The envelope (core/bus_events.py
wrote it) is checked against itself and against the subject and the Nats-Msg-Id it came
with; the order snapshot is rebuilt into an OrderReport by the same value checks the leader
applied to Dhan's frames (core/order_checks.py), with JSON's own types required (a number
as a string is Dhan's habit, never our encoder's). What fails is returned as Rejected for
the agent to record and skip, never half-applied.

Unknown keys are ignored, at both levels: `v` is what marks an incompatible change, and a
newer leader adding a field must not stop every agent; an ignored key is never read, so
it cannot steer anything. A missing key is refused: our encoder writes every field.
Duplicate keys are refused (two readers could believe different values).

Text in a Rejected is quoted from the payload, so it is bounded, made one line, and has
token-shaped runs masked: an agent does not know the leader's token, so the redaction
filter alone could not catch it. The caller passes the project's filter
(copytrade.redact.redact) as `redact` for the tokens it does know; core imports nothing
outside core.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

from copytrade.core.bus_events import PAYLOAD_VERSION, leader_subject, msg_id
from copytrade.core.events import OrderReport, ReportSource
from copytrade.core.order_checks import (
    AMO_TIMES,
    LEGS,
    ORDER_TYPES,
    PRODUCTS,
    SEGMENTS,
    SIDES,
    MalformedFrame,
    checked_id,
    consistent,
    number,
    quote,
    safe_text,
    status_word,
    validity_word,
    whole,
)

MAX_EVENT_BYTES = 64 * 1024  # a real event is under 1 KiB
MAX_DEPTH = 3  # the envelope, the order, one spare level; ours uses two
EXCERPT_CHARS = 80
_SOURCES = frozenset(s.value for s in ReportSource)
_REPORT_FIELDS = tuple(f.name for f in fields(OrderReport))
# Runs of 16+ base64/base64url characters mixing letters and digits (each part of a JWT,
# an API key); ids made of digits and dotted subjects stay readable.
_TOKEN_SHAPED = re.compile(r"[A-Za-z0-9_\-+/=]{16,}")


@dataclass(frozen=True)
class LeaderEvent:
    trading_date: date
    order_id: str
    seq: int
    source: ReportSource
    report: OrderReport
    position_before: int | None = None  # the leader's, before the order (None: unknown)

    @property
    def identity(self) -> tuple[date, str, int]:
        """The agent's dedupe key: a copy re-published after the server's duplicate window
        arrives twice with the same identity."""
        return self.trading_date, self.order_id, self.seq


@dataclass(frozen=True)
class Rejected:
    reason: str  # one line, masked
    excerpt: str  # the first EXCERPT_CHARS of the payload, one line, masked


def decode_leader_event(data: bytes, *, subject: str, msg_id: str | None,
                        expected_prefix: str,
                        redact: Callable[[str], str] | None = None) -> LeaderEvent | Rejected:
    """One message from the leader's stream, checked whole; never raises on its content."""
    try:
        return _decode(data, subject, msg_id, expected_prefix)
    except ValueError as bad:  # MalformedFrame, or a value no check foresaw
        return _rejected(str(bad), data, redact)


def _decode(data: bytes, subject: str, header_id: str | None, prefix: str) -> LeaderEvent:
    envelope = _parse(data)
    if envelope.get("v") != PAYLOAD_VERSION or type(envelope.get("v")) is not int:
        raise MalformedFrame(f"payload version {quote(envelope.get('v'))}, not "
                             f"{PAYLOAD_VERSION}")
    trading_date = _date(_get(envelope, "trading_date"))
    order_id = checked_id(_str(envelope, "order_id"), "order_id")
    seq = _get(envelope, "seq")
    if type(seq) is not int or not 0 < seq < 2**63:
        raise MalformedFrame(f"bad seq: {quote(seq)}")
    source = _choice(envelope, "source", _SOURCES)
    position_before = _get(envelope, "position_before")
    if position_before is not None and (type(position_before) is not int
                                        or abs(position_before) >= 2**53):
        raise MalformedFrame(f"bad position_before: {quote(position_before)}")
    if header_id is None:
        raise MalformedFrame("no Nats-Msg-Id: not published by a leader")
    expected_id = msg_id(trading_date, order_id, seq)
    if header_id != expected_id:
        raise MalformedFrame(f"Nats-Msg-Id {header_id[:100]!r} is not the payload's "
                             f"{expected_id!r}")
    expected_subject = leader_subject(prefix, trading_date, order_id)
    if subject != expected_subject:
        raise MalformedFrame(f"subject {subject[:100]!r} is not the payload's "
                             f"{expected_subject!r}")
    order = _get(envelope, "order")
    if not isinstance(order, dict):
        raise MalformedFrame("order is not an object")
    report = _report(order)
    if report.order_id != order_id or report.source != source:
        raise MalformedFrame("the order snapshot's id or source differs from the envelope's")
    return LeaderEvent(trading_date, order_id, seq, ReportSource(source), report,
                       position_before)


# ---- JSON -----------------------------------------------------------------------------------


def _parse(data: bytes) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray):
        raise MalformedFrame("payload is not bytes")
    if len(data) > MAX_EVENT_BYTES:
        raise MalformedFrame(f"payload of {len(data)} bytes, above {MAX_EVENT_BYTES}")
    try:
        value = json.loads(bytes(data).decode("utf-8"), object_pairs_hook=_unique_keys,
                           parse_constant=_no_constant)
    except MalformedFrame:
        raise
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, nesting past the C limit
        raise MalformedFrame("not JSON") from None
    if not isinstance(value, dict):
        raise MalformedFrame("not a JSON object")
    if _depth(value) > MAX_DEPTH:
        raise MalformedFrame(f"nested deeper than {MAX_DEPTH} levels")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise MalformedFrame("a key appears twice")
    return result


def _no_constant(word: str) -> Any:
    raise MalformedFrame(f"{word} is not a JSON number")


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:  # bounded: the payload is at most MAX_EVENT_BYTES
        item, level = stack.pop()
        children = (item.values() if isinstance(item, dict)
                    else item if isinstance(item, list) else None)
        if children is not None:
            deepest = max(deepest, level)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((child, level + 1) for child in children)
    return deepest


# ---- fields ---------------------------------------------------------------------------------


def _get(obj: dict[str, Any], key: str) -> Any:
    if key not in obj:
        raise MalformedFrame(f"missing {key}")
    return obj[key]


def _str(obj: dict[str, Any], key: str) -> str:
    value = _get(obj, key)
    if not isinstance(value, str):
        raise MalformedFrame(f"bad {key}: {quote(value)} is not text")
    return value


def _choice(obj: dict[str, Any], key: str, words: frozenset[Any]) -> Any:
    value = _get(obj, key)
    if type(value) not in (str, int) or value not in words:
        raise MalformedFrame(f"unknown {key} {quote(value)}")
    return value


def _int(obj: dict[str, Any], key: str) -> int:
    value = _get(obj, key)
    if type(value) is not int:
        raise MalformedFrame(f"bad {key}: {quote(value)} is not a whole number")
    return whole(value, key)


def _price(obj: dict[str, Any], key: str) -> float:
    value = _get(obj, key)
    if type(value) not in (int, float):
        raise MalformedFrame(f"bad {key}: {quote(value)} is not a number")
    return number(value, key)


def _flag(obj: dict[str, Any], key: str) -> bool:
    value = _get(obj, key)
    if type(value) is not bool:
        raise MalformedFrame(f"bad {key}: {quote(value)} is not true/false")
    return value


def _lot_size(obj: dict[str, Any]) -> int | None:
    if _get(obj, "lot_size") is None:
        return None
    return _int(obj, "lot_size") or None  # 0 reads as unknown, as in a frame


def _date(value: Any) -> date:
    try:
        parsed = date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.isoformat() != value:  # YYYY-MM-DD only
        raise MalformedFrame(f"bad trading_date: {quote(value)}")
    return parsed


def _time(obj: dict[str, Any], key: str) -> datetime | None:
    """ISO 8601 with its offset, or null; a time without an offset is not ours."""
    value = _get(obj, key)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise MalformedFrame(f"bad {key}: {quote(value)}")
    return moment


def _report(o: dict[str, Any]) -> OrderReport:
    missing = [name for name in _REPORT_FIELDS if name not in o]
    if missing:
        raise MalformedFrame(f"the order snapshot lacks {', '.join(missing[:3])}")
    return consistent(OrderReport(
        order_id=checked_id(_str(o, "order_id"), "order_id"),
        status=status_word(o["status"], "status"),
        exchange_segment=_choice(o, "exchange_segment", SEGMENTS),
        security_id=checked_id(_str(o, "security_id"), "security_id"),
        transaction_type=_choice(o, "transaction_type", SIDES),
        product_type=_choice(o, "product_type", PRODUCTS),
        order_type=_choice(o, "order_type", ORDER_TYPES),
        validity=validity_word(_str(o, "validity"), "validity"),
        quantity=_int(o, "quantity"),
        traded_quantity=_int(o, "traded_quantity"),
        price=_price(o, "price"),
        trigger_price=_price(o, "trigger_price"),
        disclosed_quantity=_int(o, "disclosed_quantity"),
        average_price=_price(o, "average_price"),
        after_market_order=_flag(o, "after_market_order"),
        amo_time=_choice(o, "amo_time", AMO_TIMES | {""}),
        correlation_id=safe_text(_str(o, "correlation_id")),
        reason=safe_text(_str(o, "reason")),
        symbol=safe_text(_str(o, "symbol")),
        lot_size=_lot_size(o),
        leg=_choice(o, "leg", LEGS),
        bo_profit_value=_price(o, "bo_profit_value"),
        bo_stop_loss_value=_price(o, "bo_stop_loss_value"),
        placed_in_app=_flag(o, "placed_in_app"),
        updated_at=_time(o, "updated_at"),
        created_at=_time(o, "created_at"),
        source=ReportSource(_choice(o, "source", _SOURCES)),
    ))


# ---- what a rejection shows -----------------------------------------------------------------


def _rejected(reason: str, data: object, redact: Callable[[str], str] | None) -> Rejected:
    raw = bytes(data[:EXCERPT_CHARS * 4]) if isinstance(data, bytes | bytearray) else b""
    excerpt = raw.decode("utf-8", "replace")[:EXCERPT_CHARS]
    return Rejected(_shown(reason, redact), _shown(excerpt, redact))


def _shown(text: str, redact: Callable[[str], str] | None) -> str:
    """One line, printable, token-shaped runs masked, then the caller's redaction."""
    text = _TOKEN_SHAPED.sub(_mask, " ".join(safe_text(text).split()))
    return redact(text) if redact is not None else text


def _mask(run: re.Match[str]) -> str:
    word = run.group()
    mixed = any(c.isalpha() for c in word) and any(c.isdigit() for c in word)
    return "***" if mixed else word
