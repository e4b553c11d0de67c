"""Reading TOML tables: typed getters whose every mistake names the key, never a secret."""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from copytrade.config.model import RANGES
from copytrade.errors import ConfigError


class Invalid(Exception):
    """A structural mistake at a key path; load_config adds the file name."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def read_toml(path: Path, *, missing_hint: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"no file at {path}; {missing_hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib says what and where ("Invalid value (at line 3, column 9)"), never
        # the text around it; but it quotes an illegal character, which may be one of
        # a token's, so that is dropped.
        message = _TOML_QUOTED_CHARACTER.sub("character", str(exc))
        raise ConfigError(f"{path}: invalid TOML: {message}") from None


# tomllib's "Illegal character '\x07'" / "Found invalid character 'x'".
_TOML_QUOTED_CHARACTER = re.compile(r"""character (?:'[^']*'|"[^"]*")""")


class Table:
    """One TOML table being read: typed getters that raise Invalid naming the key."""

    def __init__(self, data: object, where: str, known_keys: Collection[str]) -> None:
        if not isinstance(data, dict):
            raise Invalid(where, "must be a table")
        # Unknown keys first: a typo'd key would otherwise surface as a
        # confusing "missing" error for the key the user meant to set.
        reject_unknown_keys(data, known_keys, where)
        self.data = data
        self.where = where

    def invalid(self, key: str, message: str) -> Invalid:
        return Invalid(key_path(self.where, key), message)

    def range_key(self, key: str) -> str:
        """The key's RANGES entry: "alerts.retries" for a key of a table whose numbers are
        ranged by table, else the key itself (follower and settings numbers)."""
        dotted = f"{self.where}.{key}"
        return dotted if dotted in RANGES else key

    def get(self, key: str, default: object) -> object:
        return self.data.get(key, default)

    def string(self, key: str, default: Any = ...) -> Any:
        value = self._required(key, default)
        if value is default:
            return value
        if not isinstance(value, str):
            # Client ids look like numbers but are strings (and may keep leading zeros).
            hint = f' (quote it: "{value}")' if key == "client_id" and is_int(value) else ""
            raise self.invalid(key, f"must be a string{hint}")
        if not value.strip():
            raise self.invalid(key, "must not be empty")
        return value.strip()

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.invalid(key, "must be true or false")
        return value

    def number(self, key: str, default: Any) -> Any:
        """A finite int or float within RANGES[key], as a float."""
        value = self.data.get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.invalid(key, "must be a number")
        if not math.isfinite(value):
            raise self.invalid(key, "must be a finite number")
        ranged = self.range_key(key)
        if not in_range(ranged, value):
            raise self.invalid(key, f"must be {range_text(ranged)}, not {shown(value)}")
        return float(value)

    def integer(self, key: str) -> int | None:
        """A whole number (written without a decimal point) within RANGES[key]."""
        value = self.data.get(key)
        if value is None:
            return None
        ranged = self.range_key(key)
        if not is_int(value) or not in_range(ranged, value):
            raise self.invalid(
                key, f"must be a whole number {range_text(ranged)}, not {shown(value)}"
            )
        return value

    def whole_number(self, key: str) -> float | None:
        """A count of lots: 2 or 2.0, never 1.5 (a fraction of a lot cannot be ordered)."""
        value = self.data.get(key)
        if value is None:
            return None
        is_whole = is_int(value) or (isinstance(value, float) and value.is_integer())
        if not is_whole or not in_range(key, value):
            raise self.invalid(
                key, f"must be a whole number of lots {range_text(key)}, not {shown(value)}"
            )
        return float(value)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> Any:
        value = self.data.get(key, default)
        if value not in choices:
            options = " or ".join(repr(choice) for choice in choices)
            shown_value = f"{value!r}" if isinstance(value, str) else "a non-string"
            raise self.invalid(key, f"must be {options}, not {shown_value}")
        return value

    def string_set(self, key: str, *, numbers_too: bool = False) -> frozenset[str]:
        values = self.data.get(key, [])
        wanted = "strings or whole numbers" if numbers_too else "strings"
        if not isinstance(values, list):
            raise self.invalid(key, f'must be a list of {wanted}, e.g. ["A", "B"]')
        items = set()
        for value in values:
            if numbers_too and is_int(value):
                value = str(value)
            if not isinstance(value, str) or not value.strip():
                raise self.invalid(key, f"must be a list of {wanted}")
            items.add(value.strip())
        return frozenset(items)

    def _required(self, key: str, default: object) -> object:
        if key in self.data:
            return self.data[key]
        if default is ...:
            raise self.invalid(key, "missing (required)")
        return default


def reject_unknown_keys(data: Mapping[str, Any], known: Collection[str], where: str) -> None:
    for key in data:
        if key not in known:
            raise Invalid(key_path(where, key), unknown_key_message(key, known))


def unknown_key_message(key: str, known: Collection[str]) -> str:
    if key in {"access_token", "token"}:
        return (
            "tokens do not belong in copytrade.toml; put the token in an environment "
            "variable named by access_token_env, or in secrets.toml"
        )
    if key == "broker":
        # TOML puts a key written after [leader] into [leader]: the usual slip.
        return (
            'unknown key here: write broker = "sim" (or "dhan") at the top of the file, '
            "before the first [table]"
        )
    return f"unknown key{did_you_mean(key, known)}"


def did_you_mean(word: str, known: Iterable[str]) -> str:
    known = list(known)
    by_case = [candidate for candidate in known if candidate.casefold() == word.casefold()]
    close = by_case or difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def key_path(where: str, key: str) -> str:
    shown_key = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)
    return f"{where}.{shown_key}" if where else shown_key


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def in_range(key: str, value: float) -> bool:
    low, high = RANGES[key]
    return low <= value <= high


def range_text(key: str) -> str:
    """'from 0.01 to 100': the same words docs/configuration.md uses for the key."""
    low, high = RANGES[key]
    return f"from {_bound_text(low)} to {_bound_text(high)}"


def _bound_text(bound: float) -> str:
    return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"


def shown(value: object) -> str:
    """A wrong value as the user wrote it, if a number: a string might be a pasted token."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    return {str: "a string", list: "a list", dict: "a table"}.get(type(value), "a date or time")
