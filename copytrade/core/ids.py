"""Correlation ids: the tag every follower order carries, so that after a lost reply or a
crash the order book can be searched for it instead of sending the order again.

Layout, 29 characters at most (Dhan allows 30 of `[A-Za-z0-9_-]`)::

    ct  <20 chars: lower-case base32 of a blake2b hash>  -  <attempt, 1..999999>
    ctf3xtzp2t3m2up3pbuduu-1

The hash covers (trading date, leader order id, follower, leg); the attempt is appended
in the clear rather than hashed. So every attempt at one mirror shares its stem (a search
for the stem finds them all, a human sees the retry count), and two attempts can never
collide. 100 bits of hash: a collision among a billion ids has odds near 4e-13.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import date, datetime

PREFIX = "ct"
MAX_LENGTH = 30
MAX_ATTEMPT = 999_999  # six digits keep the id within 30 characters
_HASH_CHARS = 20  # 100 bits of base32
_PERSON = b"copytrade.cid.v1"  # blake2b personalisation: our ids, layout version 1
_SHAPE = re.compile(rf"{PREFIX}[a-z2-7]{{{_HASH_CHARS}}}-([1-9][0-9]{{0,5}})")


def correlation_id(trading_date: date, leader_order_id: str, follower: str, leg: int,
                   attempt: int) -> str:
    """The id of one attempt at mirroring one leg of a leader order onto one follower."""
    _check_inputs(trading_date, leader_order_id, follower, leg, attempt)
    return f"{PREFIX}{_stem(trading_date, leader_order_id, follower, leg)}-{attempt}"


def is_ours(correlation_id: str) -> bool:
    """True when the tag has exactly the shape `correlation_id` makes (not just the prefix),
    so an order tagged by another tool that happens to start with "ct" is not adopted."""
    return _SHAPE.fullmatch(correlation_id or "") is not None


def attempt_of(correlation_id: str) -> int | None:
    """The attempt number of one of our ids; None for anything else."""
    match = _SHAPE.fullmatch(correlation_id or "")
    return int(match.group(1)) if match else None


def _stem(trading_date: date, leader_order_id: str, follower: str, leg: int) -> str:
    # JSON of a list is an unambiguous encoding: no choice of field values can make two
    # different tuples serialise alike (a plain join on a separator could).
    canonical = json.dumps([trading_date.isoformat(), leader_order_id, follower, leg],
                           ensure_ascii=True, separators=(",", ":"))
    digest = hashlib.blake2b(canonical.encode(), digest_size=16, person=_PERSON).digest()
    return base64.b32encode(digest).decode().lower()[:_HASH_CHARS]


def _check_inputs(trading_date: date, leader_order_id: str, follower: str, leg: int,
                  attempt: int) -> None:
    if isinstance(trading_date, datetime) or not isinstance(trading_date, date):
        # A datetime would hash its time of day too: same trading date, different id.
        raise TypeError(f"trading_date must be a date, not {type(trading_date).__name__}")
    if not leader_order_id or not follower:
        raise ValueError("leader_order_id and follower must be non-empty")
    if isinstance(leg, bool) or not isinstance(leg, int):
        raise TypeError(f"leg must be an int, not {type(leg).__name__}")
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        raise TypeError(f"attempt must be an int, not {type(attempt).__name__}")
    if not 1 <= attempt <= MAX_ATTEMPT:
        raise ValueError(f"attempt must be 1..{MAX_ATTEMPT}, got {attempt}")
