"""An agent's results as the bus carries them (issue 12): subject, Nats-Msg-Id, payload, and
the leader's decoder, which trusts nothing in them.

An agent publishes its record of its one follower: each row of its audit trail about that
follower, with the mirror the row is about as it is when published (its latest state).

    subject   <prefix>.results.<follower>
    msg id    <follower>:<store id>:<trail id>  (no clock: a re-publish is a duplicate)
    payload   {"v": 1, "follower": "B", "store_id": "...", "trail_id": 42, "kind": "transition",
               "at": "2026-11-30T03:50:01.123000+00:00", "leader_order_id": "..." | null,
               "message": "one line", "mirror": null | {MIRROR_FIELDS}}

The store id is a random id made once per database: a new agent database never reuses an
old one's message ids inside the server's duplicate window. No token, no client id: a
ten-digit number in the message is masked before it is sent.

Decoding reuses the leader-event decoder's JSON checks (size, duplicate keys, depth, no
NaN) and its one-line masked Rejected; the follower must be one the leader serves remotely
and the one the subject names (an agent's user may publish only its own subject, and the
payload must agree with it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from copytrade.core.bus_decode import Rejected, _parse, _rejected
from copytrade.core.order_checks import (
    LEGS,
    MAX_PRICE,
    MAX_QUANTITY,
    ORDER_TYPES,
    PRODUCTS,
    SIDES,
    MalformedFrame,
    checked_id,
    quote,
    safe_text,
)
from copytrade.core.orders import MirrorState

PAYLOAD_VERSION = 1
MAX_RESULT_BYTES = 16 * 1024  # a real one is under 2 KiB
MESSAGE_CHARS = 1000  # what the store keeps of an audit message
MAX_ATTEMPT = 1000  # attempts of one leg: a handful in practice
MAX_LAG_MS = 1e12
FOLLOWER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")  # config/bus.py's rule
STORE_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
KIND = re.compile(r"[a-z][a-z0-9_]{0,39}")
REASON_CODE = re.compile(r"[a-z0-9_]{0,40}")
_ACCOUNT_ID = re.compile(r"(?<![0-9])[0-9]{10}(?![0-9])")  # a Dhan client id
_STATES = frozenset(state.value for state in MirrorState)


@dataclass(frozen=True)
class ResultMirror:
    """A mirror order as the agent's store holds it (the contract's fields, in order)."""

    leg: int
    attempt: int
    correlation_id: str
    state: str
    reason: str
    reason_code: str
    quantity: int
    carried_quantity: int
    filled_quantity: int
    average_price: float
    follower_order_id: str | None
    price: float
    trigger_price: float
    order_type: str
    security_id: str
    transaction_type: str
    product_type: str
    lag_ms: float | None
    fill_lag_ms: float | None
    updated_at: datetime | None


MIRROR_FIELDS = tuple(ResultMirror.__dataclass_fields__)


@dataclass(frozen=True)
class AgentResult:
    """One row of an agent's audit trail about its follower."""

    follower: str
    store_id: str
    trail_id: int
    kind: str
    at: datetime
    leader_order_id: str | None
    message: str
    mirror: ResultMirror | None = None


def results_subject(prefix: str, follower: str) -> str:
    return f"{prefix}.results.{follower}"


def result_msg_id(result: AgentResult) -> str:
    return f"{result.follower}:{result.store_id}:{result.trail_id}"


def mask_account_ids(text: str) -> str:
    """Every ten-digit number as 10******02: a client id never leaves the agent's host."""
    return _ACCOUNT_ID.sub(lambda found: f"{found[0][:2]}******{found[0][-2:]}", text)


def result_payload(result: AgentResult) -> dict[str, Any]:
    mirror = None
    if result.mirror is not None:
        mirror = {key: _json_value(value) for key, value in asdict(result.mirror).items()}
        mirror["reason"] = mask_account_ids(mirror["reason"])
    return {"v": PAYLOAD_VERSION, "follower": result.follower, "store_id": result.store_id,
            "trail_id": result.trail_id, "kind": result.kind, "at": _iso(result.at),
            "leader_order_id": result.leader_order_id,
            "message": mask_account_ids(_one_line(result.message))[:MESSAGE_CHARS],
            "mirror": mirror}


def result_bytes(result: AgentResult) -> bytes:
    """Compact JSON, keys sorted: the same row and mirror, the same bytes."""
    return json.dumps(result_payload(result), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8", "replace")


# ---- the leader's decoder --------------------------------------------------------------------


def decode_result(data: bytes, *, subject: str, msg_id: str | None, prefix: str,
                  followers: Collection[str],
                  redact: Callable[[str], str] | None = None) -> AgentResult | Rejected:
    """One message from the results stream, checked whole; never raises on its content.
    `followers`: the names the leader serves remotely (its configuration's)."""
    try:
        if isinstance(data, bytes | bytearray) and len(data) > MAX_RESULT_BYTES:
            raise MalformedFrame(f"payload of {len(data)} bytes, above {MAX_RESULT_BYTES}")
        return _decode(data, subject, msg_id, prefix, followers)
    except (ValueError, TypeError, OverflowError) as bad:
        return _rejected(str(bad), data, redact)


def _decode(data: bytes, subject: str, header_id: str | None, prefix: str,
            followers: Collection[str]) -> AgentResult:
    body = _parse(data)
    if type(body.get("v")) is not int or body.get("v") != PAYLOAD_VERSION:
        raise MalformedFrame(f"payload version {quote(body.get('v'))}, not {PAYLOAD_VERSION}")
    follower = _text(body, "follower")
    if not FOLLOWER_NAME.fullmatch(follower) or follower not in followers:
        raise MalformedFrame(f"follower {quote(follower)} is not one served remotely here")
    expected_subject = results_subject(prefix, follower)
    if subject != expected_subject:
        raise MalformedFrame(f"subject {subject[:100]!r} is not the payload's "
                             f"{expected_subject!r}")
    store_id = _text(body, "store_id")
    if not STORE_ID.fullmatch(store_id):
        raise MalformedFrame(f"bad store_id: {quote(store_id)}")
    trail_id = _whole(body, "trail_id", 1, 2**63 - 1)
    kind = _text(body, "kind")
    if not KIND.fullmatch(kind):
        raise MalformedFrame(f"bad kind: {quote(kind)}")
    leader_order_id = _optional_id(body, "leader_order_id")
    message = _text(body, "message")
    if len(message) > MESSAGE_CHARS:
        raise MalformedFrame(f"message of {len(message)} characters, above {MESSAGE_CHARS}")
    mirror = _mirror(_get(body, "mirror"))
    if mirror is not None and leader_order_id is None:
        raise MalformedFrame("a mirror without its leader order")
    result = AgentResult(follower, store_id, trail_id, kind, _time(body, "at", required=True),
                         leader_order_id, _one_line(message), mirror)
    if header_id != result_msg_id(result):
        raise MalformedFrame(f"Nats-Msg-Id {str(header_id)[:100]!r} is not the payload's "
                             f"{result_msg_id(result)!r}")
    return result


def _mirror(value: Any) -> ResultMirror | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedFrame("mirror is not an object")
    missing = [name for name in MIRROR_FIELDS if name not in value]
    if missing:
        raise MalformedFrame(f"the mirror lacks {', '.join(missing[:3])}")
    state = value["state"]
    if type(state) is not str or state not in _STATES:
        raise MalformedFrame(f"unknown mirror state {quote(state)}")
    leg = value["leg"]
    if type(leg) is not int or leg not in LEGS:
        raise MalformedFrame(f"bad leg: {quote(leg)}")
    reason_code = _text(value, "reason_code")
    if not REASON_CODE.fullmatch(reason_code):
        raise MalformedFrame(f"bad reason_code: {quote(reason_code)}")
    return ResultMirror(
        leg=leg, attempt=_whole(value, "attempt", 1, MAX_ATTEMPT),
        correlation_id=checked_id(_text(value, "correlation_id"), "correlation_id"),
        state=state, reason=safe_text(_one_line(_text(value, "reason"))),
        reason_code=reason_code,
        quantity=_whole(value, "quantity", 0, MAX_QUANTITY),
        carried_quantity=_whole(value, "carried_quantity", 0, MAX_QUANTITY),
        filled_quantity=_whole(value, "filled_quantity", 0, MAX_QUANTITY),
        average_price=_price(value, "average_price"),
        follower_order_id=_optional_id(value, "follower_order_id"),
        price=_price(value, "price"), trigger_price=_price(value, "trigger_price"),
        order_type=_word(value, "order_type", ORDER_TYPES),
        security_id=_optional_id(value, "security_id", blank_ok=True) or "",
        transaction_type=_word(value, "transaction_type", SIDES),
        product_type=_word(value, "product_type", PRODUCTS),
        lag_ms=_lag(value, "lag_ms"), fill_lag_ms=_lag(value, "fill_lag_ms"),
        updated_at=_time(value, "updated_at"))


# ---- fields ----------------------------------------------------------------------------------


def _get(obj: dict[str, Any], key: str) -> Any:
    if key not in obj:
        raise MalformedFrame(f"missing {key}")
    return obj[key]


def _text(obj: dict[str, Any], key: str) -> str:
    value = _get(obj, key)
    if type(value) is not str:
        raise MalformedFrame(f"bad {key}: {quote(value)} is not text")
    return value


def _whole(obj: dict[str, Any], key: str, low: int, high: int) -> int:
    value = _get(obj, key)
    if type(value) is not int or not low <= value <= high:
        raise MalformedFrame(f"bad {key}: {quote(value)}")
    return value


def _price(obj: dict[str, Any], key: str) -> float:
    value = _get(obj, key)
    if type(value) not in (int, float) or not 0 <= value <= MAX_PRICE:
        raise MalformedFrame(f"bad {key}: {quote(value)}")
    return float(value)


def _lag(obj: dict[str, Any], key: str) -> float | None:
    value = _get(obj, key)
    if value is None:
        return None
    if type(value) not in (int, float) or not abs(value) < MAX_LAG_MS:
        raise MalformedFrame(f"bad {key}: {quote(value)}")
    return float(value)


def _word(obj: dict[str, Any], key: str, words: frozenset[str]) -> str:
    value = _get(obj, key)
    if type(value) is not str or (value and value not in words):
        raise MalformedFrame(f"unknown {key} {quote(value)}")
    return value


def _optional_id(obj: dict[str, Any], key: str, *, blank_ok: bool = False) -> str | None:
    value = _get(obj, key)
    if value is None or (blank_ok and value == ""):
        return None
    if type(value) is not str:
        raise MalformedFrame(f"bad {key}: {quote(value)} is not text")
    return checked_id(value, key)


def _time(obj: dict[str, Any], key: str, *, required: bool = False) -> datetime | None:
    value = _get(obj, key)
    if value is None and not required:
        return None
    try:
        moment = datetime.fromisoformat(value) if type(value) is str else None
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise MalformedFrame(f"bad {key}: {quote(value)}")
    return moment


def _one_line(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _iso(moment: datetime) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
