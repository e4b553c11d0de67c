"""Exchange freeze limits: the most units one order may carry before it must be sliced.

Dhan's scrip master has no freeze column, so we ship a small table (`copytrade/data/
freeze_limits.csv`) keyed by security id or by underlying symbol, and let the config
override any entry.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib.resources import files

_DATA_FILE = "freeze_limits.csv"
_SYMBOL_SEPARATORS = re.compile(r"[-\s]")


def load_freeze_limits() -> dict[str, int]:
    """The shipped table: security id or underlying symbol -> freeze quantity in units."""
    return dict(_shipped_table())


def freeze_limit_for(security_id: str, symbol: str | None, overrides: Mapping[str, int],
                     table: Mapping[str, int]) -> int | None:
    """The freeze limit for a security, or None when neither source knows it.

    Any config override (by security id, symbol or underlying) beats the shipped table;
    within each source the most specific key wins: security id, then the symbol as
    given, then its underlying ("NIFTY-Dec2026-FUT" -> "NIFTY"). Symbols match
    case-insensitively.
    """
    keys = _lookup_keys(security_id, symbol)
    config_keys = {str(key).strip().upper(): limit for key, limit in overrides.items()}
    for source in (config_keys, table):
        for key in keys:
            if key in source:
                return source[key]
    return None


def underlying_of(symbol: str) -> str:
    """The leading word of a trading or display symbol, upper-cased: its underlying."""
    return _SYMBOL_SEPARATORS.split(symbol.strip(), maxsplit=1)[0].upper()


def _lookup_keys(security_id: str, symbol: str | None) -> list[str]:
    keys = [str(security_id)]
    if symbol and symbol.strip():
        keys += [symbol.strip().upper(), underlying_of(symbol)]
    return keys


@cache
def _shipped_table() -> tuple[tuple[str, int], ...]:
    text = (files("copytrade") / "data" / _DATA_FILE).read_text(encoding="utf-8")
    return tuple(parse_freeze_rows(text.splitlines()).items())


def parse_freeze_rows(lines: Iterable[str]) -> dict[str, int]:
    """Parse the CSV (header + rows; `#` lines are comments). A key listed twice with
    different limits is an error in the data, not something to resolve silently."""
    rows = csv.DictReader(line for line in lines if line.strip() and not line.startswith("#"))
    limits: dict[str, int] = {}
    for row in rows:
        key = row["underlying_or_security_id"].strip().upper()
        limit = int(row["freeze_quantity"])
        if limit <= 0:
            raise ValueError(f"freeze quantity for {key} must be positive, got {limit}")
        if limits.get(key, limit) != limit:
            raise ValueError(f"freeze quantity for {key} listed twice: {limits[key]}, {limit}")
        limits[key] = limit
    return limits
