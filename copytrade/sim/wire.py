"""JSON in and out of the emulator: bounded, strict decoding and standard-only encoding.

Request bodies come from anyone on loopback, hostile test suites included: a huge integer,
`NaN`, or ten thousand nested brackets must be a 400, never a 500, a hang or a crash. And
what the emulator answers must parse with any strict JSON parser, so NaN never leaves.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

MAX_BODY_BYTES = 1_000_000
MAX_DEPTH = 32  # Dhan's bodies are two levels deep; the control plane's three
MAX_INT_DIGITS = 18  # every id, quantity and amount fits; int() of more is never needed
# Brackets and the characters that decide whether a bracket is inside a string.
_STRUCTURE = re.compile(rb'[\[\]{}"\\]')


class BadBody(ValueError):
    """A request body refused before (or while) decoding; the message starts with "body"."""


def _int(text: str) -> int:
    # Called with the literal's text, so a 4,000-digit number is refused before int() runs.
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise BadBody(f"body has a number with more than {MAX_INT_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf
        raise BadBody(f"body has a number out of range: {text[:24]}")
    return value


def _constant(name: str) -> NoReturn:
    raise BadBody(f"body has {name}, which is not JSON")


def _check_depth(raw: bytes) -> None:
    """Refuse nesting deeper than MAX_DEPTH; stops at the first bracket too deep."""
    depth, in_string, skip_to = 0, False, -1
    for found in _STRUCTURE.finditer(raw):
        at = found.start()
        if at < skip_to:
            continue  # the character after a backslash
        char = raw[at]
        if in_string:
            if char == 0x5C:  # backslash
                skip_to = at + 2
            elif char == 0x22:  # quote
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                raise BadBody(f"body is nested deeper than {MAX_DEPTH} levels")
        elif char in (0x5D, 0x7D):  # ] }
            depth -= 1


def decode(raw: bytes) -> Any:
    """Strict JSON: no NaN/Infinity, finite floats, short integers, bounded size and depth."""
    if len(raw) > MAX_BODY_BYTES:
        raise BadBody(f"body is larger than {MAX_BODY_BYTES} bytes")
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:  # else it cannot be too deep
        _check_depth(raw)
    try:
        return json.loads(raw, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except BadBody:
        raise
    except RecursionError:  # not reached after _check_depth; kept as a second guard
        raise BadBody(f"body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise BadBody(f"body is not valid JSON: {exc}") from None


def encode(payload: Any) -> bytes:
    """Standard JSON only: ValueError rather than emit NaN or Infinity."""
    return json.dumps(payload, allow_nan=False).encode()
