"""copytrade.toml: the leader, its followers and the settings, read and checked.

Three steps, each usable alone:

- load_config() parses the file and checks its structure (known keys, types,
  every number within its RANGES entry, one sizing mode per follower). The first
  mistake is a ConfigError of one line naming the key, e.g. "copytrade.toml:
  followers[1] (family-2).multipler: unknown key (did you mean 'multiplier'?)".
- validate() finds everything else that can be known before market open (tokens
  and their shape, duplicate accounts, URLs, egress, lists) and returns all of it as
  Problems, so `copytrade config validate` can show every mistake at once.
  require_valid() is the same check for commands that go on to trade.
- resolve_tokens() reads each account's access token from its environment
  variable or the secrets file, wrapped in Secret so it cannot leak into logs.

Tokens never live in copytrade.toml and never appear in an error message.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import tomllib
import types
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit, urlunsplit

from copytrade.errors import ConfigError
from copytrade.home import check_private_file, home_paths
from copytrade.secret import Secret

DEFAULT_API_URL = "https://api.dhan.co/v2"
DEFAULT_ORDER_WS_URL = "wss://api-order-update.dhan.co"
DEFAULT_INSTRUMENTS_URL = "https://images.dhan.co/api-data/api-scrip-master.csv"
DEFAULT_RECONCILE_INTERVAL_SECONDS = 3.0
DEFAULT_HTTP_TIMEOUT_SECONDS = 5.0
DEFAULT_MAX_ORDER_AGE_SECONDS = 300.0
DEFAULT_MAX_PRICE_DRIFT_PERCENT = 1.0

SEGMENTS = frozenset(
    {"NSE_EQ", "NSE_FNO", "NSE_CURRENCY", "BSE_EQ", "BSE_FNO", "BSE_CURRENCY", "MCX_COMM"}
)
PRODUCTS = frozenset({"CNC", "INTRADAY", "MARGIN", "MTF", "CO", "BO"})

SizingMode = Literal["multiplier", "fixed_lots", "capital_ratio"]
DivergencePolicy = Literal["alert", "resync"]
TokenSource = Literal["env", "secrets file"]

SIZING_MODES: tuple[str, ...] = get_args(SizingMode)
DIVERGENCE_POLICIES: tuple[str, ...] = get_args(DivergencePolicy)

# Every number in copytrade.toml, by key: (lowest, highest), both allowed. Bounds a
# careful trader would set, wide enough for any real use, so that a slip (1e9 for 1.9,
# seconds for milliseconds) stops at `config validate` instead of in `follow`.
# docs/configuration.md shows each range next to its key; a test keeps them in step.
RANGES: Mapping[str, tuple[float, float]] = types.MappingProxyType(
    {
        "multiplier": (0.01, 100.0),
        "fixed_lots": (1, 100_000),
        "max_quantity": (1, 10_000_000),
        "max_order_value": (1.0, 1_000_000_000.0),  # rupees: up to 100 crore
        "max_order_age_seconds": (1.0, 86_400.0),
        "max_price_drift_percent": (0.0, 100.0),
        # Floor: tests and the emulator poll fast; each round costs Dhan read requests.
        "reconcile_interval_seconds": (0.25, 3_600.0),
        "http_timeout_seconds": (0.5, 120.0),
        # The emulator's --order-rate-scale accepts 0.001 and up; the two must match.
        "order_rate_scale": (0.001, 1_000.0),
        "freeze_limits": (1, 10_000_000),  # units per order
    }
)

# A Dhan access token is a JWT (a few hundred characters of base64url and dots). The
# floor is low because the emulator takes any token; it still catches a client id or
# a truncated paste. Anything outside printable ASCII would end up in HTTP headers.
TOKEN_LENGTH = (16, 4096)

# Names end up in logs, CLI arguments and file names: keep them plain.
_FOLLOWER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


# --- the configuration, as data -----------------------------------------------------------


@dataclass(frozen=True)
class Sizing:
    mode: SizingMode
    value: float  # lots multiplier, number of lots, or 1.0 for capital_ratio


@dataclass(frozen=True)
class Egress:
    """Where one account's requests leave from: Dhan only accepts its whitelisted IP."""

    proxy: str | None = None  # http:// or https:// proxy URL
    source_address: str | None = None  # a local IPv4/IPv6 address to bind


@dataclass(frozen=True)
class AccountConfig:
    client_id: str
    access_token_env: str
    api_url: str
    order_ws_url: str
    egress: Egress


@dataclass(frozen=True)
class FollowerConfig:
    name: str
    account: AccountConfig
    sizing: Sizing
    enabled: bool
    shadow: bool
    max_quantity: int | None
    max_order_value: float | None
    allow_segments: frozenset[str]
    deny_segments: frozenset[str]
    allow_products: frozenset[str]
    deny_products: frozenset[str]
    allow_security_ids: frozenset[str]
    deny_security_ids: frozenset[str]
    mirror_on_transit: bool
    max_order_age_seconds: float
    max_price_drift_percent: float
    on_divergence: DivergencePolicy


@dataclass(frozen=True)
class Settings:
    instruments_url: str = DEFAULT_INSTRUMENTS_URL
    reconcile_interval_seconds: float = DEFAULT_RECONCILE_INTERVAL_SECONDS
    freeze_limits: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )
    http_timeout_seconds: float = DEFAULT_HTTP_TIMEOUT_SECONDS
    # Multiplies Dhan's order-rate limits: for an emulator started with the same scale
    # (load and soak runs); Dhan's own limits are fixed, so keep 1.0 with Dhan.
    order_rate_scale: float = 1.0


@dataclass(frozen=True)
class Config:
    leader: AccountConfig
    followers: tuple[FollowerConfig, ...]
    settings: Settings
    source: Path | None

    @property
    def enabled_followers(self) -> tuple[FollowerConfig, ...]:
        return tuple(follower for follower in self.followers if follower.enabled)


@dataclass(frozen=True)
class Problem:
    level: Literal["error", "warning"]
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


# --- load_config: parse and check the structure ---------------------------------------------


class _Invalid(Exception):
    """A structural mistake at a key path; load_config adds the file name."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


_TOP_LEVEL_KEYS = ("leader", "followers", "settings")
_ACCOUNT_KEYS = (
    "client_id",
    "access_token_env",
    "api_url",
    "order_ws_url",
    "proxy",
    "source_address",
)
_FOLLOWER_KEYS = (
    "name",
    *_ACCOUNT_KEYS,
    *SIZING_MODES,
    "enabled",
    "shadow",
    "max_quantity",
    "max_order_value",
    "allow_segments",
    "deny_segments",
    "allow_products",
    "deny_products",
    "allow_security_ids",
    "deny_security_ids",
    "mirror_on_transit",
    "max_order_age_seconds",
    "max_price_drift_percent",
    "on_divergence",
)
_SETTINGS_KEYS = (
    "instruments_url",
    "reconcile_interval_seconds",
    "freeze_limits",
    "http_timeout_seconds",
    "order_rate_scale",
)


_NO_CONFIG_HINT = (
    "create it with a [leader] table and one [[followers]] table per follower "
    "(see docs/configuration.md for a full example), or pass --config PATH"
)


def load_config(path: Path | None = None) -> Config:
    """Read and structurally check copytrade.toml (the home's, unless `path` is given)."""
    path = Path(path) if path is not None else home_paths().config_file
    data = _read_toml(path, missing_hint=_NO_CONFIG_HINT)
    try:
        return _parse_config(data, source=path)
    except _Invalid as exc:
        raise ConfigError(f"{path.name}: {exc}") from None


def _read_toml(path: Path, *, missing_hint: str) -> dict[str, Any]:
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


def _parse_config(data: Mapping[str, Any], *, source: Path | None) -> Config:
    _reject_unknown_keys(data, _TOP_LEVEL_KEYS, where="")
    if "leader" not in data:
        raise _Invalid("leader", "missing; add a [leader] table with client_id")
    leader = _parse_account(_Table(data["leader"], "leader", _ACCOUNT_KEYS))
    return Config(
        leader=leader,
        followers=_parse_followers(data.get("followers", [])),
        settings=_parse_settings(data.get("settings", {})),
        source=source,
    )


def _parse_followers(raw: object) -> tuple[FollowerConfig, ...]:
    if isinstance(raw, dict):
        raise _Invalid(
            "followers", "must be an array of tables: write [[followers]], not [followers]"
        )
    if not isinstance(raw, list):
        raise _Invalid("followers", "must be an array of tables ([[followers]])")
    return tuple(_parse_follower(index, item) for index, item in enumerate(raw))


def _follower_where(index: int, raw: object) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    if isinstance(name, str) and _FOLLOWER_NAME.fullmatch(name):
        return f"followers[{index}] ({name})"
    return f"followers[{index}]"


def _parse_follower(index: int, raw: object) -> FollowerConfig:
    table = _Table(raw, _follower_where(index, raw), _FOLLOWER_KEYS)
    name = table.string("name")
    if not _FOLLOWER_NAME.fullmatch(name):
        raise table.invalid(
            "name", "must be 1-32 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return FollowerConfig(
        name=name,
        account=_parse_account(table),
        sizing=_parse_sizing(table),
        enabled=table.boolean("enabled", True),
        shadow=table.boolean("shadow", False),
        max_quantity=table.integer("max_quantity"),
        max_order_value=table.number("max_order_value", None),
        allow_segments=table.string_set("allow_segments"),
        deny_segments=table.string_set("deny_segments"),
        allow_products=table.string_set("allow_products"),
        deny_products=table.string_set("deny_products"),
        allow_security_ids=table.string_set("allow_security_ids", numbers_too=True),
        deny_security_ids=table.string_set("deny_security_ids", numbers_too=True),
        mirror_on_transit=table.boolean("mirror_on_transit", False),
        max_order_age_seconds=table.number("max_order_age_seconds", DEFAULT_MAX_ORDER_AGE_SECONDS),
        max_price_drift_percent=table.number(
            "max_price_drift_percent", DEFAULT_MAX_PRICE_DRIFT_PERCENT
        ),
        on_divergence=table.choice("on_divergence", DIVERGENCE_POLICIES, "alert"),
    )


def _parse_account(table: _Table) -> AccountConfig:
    client_id = table.string("client_id")
    if not _CLIENT_ID.fullmatch(client_id):
        raise table.invalid(
            "client_id", "must be the Dhan client id: up to 32 letters, digits, '_' or '-'"
        )
    env_var = table.string("access_token_env", f"DHAN_TOKEN_{client_id.replace('-', '_')}")
    if not _ENV_VAR_NAME.fullmatch(env_var):
        # Never echo the value: a token pasted here by mistake must not be printed.
        raise table.invalid(
            "access_token_env",
            "must be the NAME of an environment variable "
            "(letters, digits, '_'), not the token itself",
        )
    return AccountConfig(
        client_id=client_id,
        access_token_env=env_var,
        api_url=table.string("api_url", DEFAULT_API_URL),
        order_ws_url=table.string("order_ws_url", DEFAULT_ORDER_WS_URL),
        egress=Egress(
            proxy=table.string("proxy", None),
            source_address=table.string("source_address", None),
        ),
    )


def _parse_sizing(table: _Table) -> Sizing:
    multiplier = table.number("multiplier", None)
    fixed_lots = table.whole_number("fixed_lots")
    capital_ratio = table.boolean("capital_ratio", False)
    chosen = [
        Sizing(mode, value)  # type: ignore[arg-type]  # mode is one of SIZING_MODES
        for mode, value in (
            ("multiplier", multiplier),
            ("fixed_lots", fixed_lots),
            ("capital_ratio", 1.0 if capital_ratio else None),
        )
        if value is not None
    ]
    if not chosen:
        raise _Invalid(
            table.where, "no sizing: set one of multiplier, fixed_lots or capital_ratio = true"
        )
    if len(chosen) > 1:
        first, second = chosen[0].mode, chosen[1].mode
        raise table.invalid(
            second,
            f"conflicts with {first}; set exactly one of "
            "multiplier, fixed_lots or capital_ratio = true",
        )
    return chosen[0]


def _parse_settings(raw: object) -> Settings:
    table = _Table(raw, "settings", _SETTINGS_KEYS)
    return Settings(
        instruments_url=table.string("instruments_url", DEFAULT_INSTRUMENTS_URL),
        reconcile_interval_seconds=table.number(
            "reconcile_interval_seconds", DEFAULT_RECONCILE_INTERVAL_SECONDS
        ),
        freeze_limits=_parse_freeze_limits(table.get("freeze_limits", {})),
        http_timeout_seconds=table.number("http_timeout_seconds", DEFAULT_HTTP_TIMEOUT_SECONDS),
        order_rate_scale=table.number("order_rate_scale", 1.0),
    )


def _parse_freeze_limits(raw: object) -> Mapping[str, int]:
    where = "settings.freeze_limits"
    if not isinstance(raw, dict):
        raise _Invalid(where, "must be a table of security_id = units")
    limits = {}
    for security_id, units in raw.items():
        if not _is_int(units) or not _in_range("freeze_limits", units):
            raise _Invalid(
                _key_path(where, security_id),
                f"must be a whole number of units {_range_text('freeze_limits')}, "
                f"not {_shown(units)}",
            )
        limits[security_id] = units
    return types.MappingProxyType(limits)


class _Table:
    """One TOML table being read: typed getters that raise _Invalid naming the key."""

    def __init__(self, data: object, where: str, known_keys: Collection[str]) -> None:
        if not isinstance(data, dict):
            raise _Invalid(where, "must be a table")
        # Unknown keys first: a typo'd key would otherwise surface as a
        # confusing "missing" error for the key the user meant to set.
        _reject_unknown_keys(data, known_keys, where)
        self.data = data
        self.where = where

    def invalid(self, key: str, message: str) -> _Invalid:
        return _Invalid(_key_path(self.where, key), message)

    def get(self, key: str, default: object) -> object:
        return self.data.get(key, default)

    def string(self, key: str, default: Any = ...) -> Any:
        value = self._required(key, default)
        if value is default:
            return value
        if not isinstance(value, str):
            # Client ids look like numbers but are strings (and may keep leading zeros).
            hint = f' (quote it: "{value}")' if key == "client_id" and _is_int(value) else ""
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
        if not _in_range(key, value):
            raise self.invalid(key, f"must be {_range_text(key)}, not {_shown(value)}")
        return float(value)

    def integer(self, key: str) -> int | None:
        """A whole number (written without a decimal point) within RANGES[key]."""
        value = self.data.get(key)
        if value is None:
            return None
        if not _is_int(value) or not _in_range(key, value):
            raise self.invalid(
                key, f"must be a whole number {_range_text(key)}, not {_shown(value)}"
            )
        return value

    def whole_number(self, key: str) -> float | None:
        """A count of lots: 2 or 2.0, never 1.5 (a fraction of a lot cannot be ordered)."""
        value = self.data.get(key)
        if value is None:
            return None
        is_whole = _is_int(value) or (isinstance(value, float) and value.is_integer())
        if not is_whole or not _in_range(key, value):
            raise self.invalid(
                key, f"must be a whole number of lots {_range_text(key)}, not {_shown(value)}"
            )
        return float(value)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> Any:
        value = self.data.get(key, default)
        if value not in choices:
            options = " or ".join(repr(choice) for choice in choices)
            shown = f"{value!r}" if isinstance(value, str) else "a non-string"
            raise self.invalid(key, f"must be {options}, not {shown}")
        return value

    def string_set(self, key: str, *, numbers_too: bool = False) -> frozenset[str]:
        values = self.data.get(key, [])
        wanted = "strings or whole numbers" if numbers_too else "strings"
        if not isinstance(values, list):
            raise self.invalid(key, f'must be a list of {wanted}, e.g. ["A", "B"]')
        items = set()
        for value in values:
            if numbers_too and _is_int(value):
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


def _reject_unknown_keys(data: Mapping[str, Any], known: Collection[str], where: str) -> None:
    for key in data:
        if key not in known:
            raise _Invalid(_key_path(where, key), _unknown_key_message(key, known))


def _unknown_key_message(key: str, known: Collection[str]) -> str:
    if key in {"access_token", "token"}:
        return (
            "tokens do not belong in copytrade.toml; put the token in an environment "
            "variable named by access_token_env, or in secrets.toml"
        )
    return f"unknown key{_did_you_mean(key, known)}"


def _did_you_mean(word: str, known: Iterable[str]) -> str:
    known = list(known)
    by_case = [candidate for candidate in known if candidate.casefold() == word.casefold()]
    close = by_case or difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _key_path(where: str, key: str) -> str:
    shown = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)
    return f"{where}.{shown}" if where else shown


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_range(key: str, value: float) -> bool:
    low, high = RANGES[key]
    return low <= value <= high


def _range_text(key: str) -> str:
    """'from 0.01 to 100': the same words docs/configuration.md uses for the key."""
    low, high = RANGES[key]
    return f"from {_bound_text(low)} to {_bound_text(high)}"


def _bound_text(bound: float) -> str:
    return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"


def _shown(value: object) -> str:
    """A wrong value as the user wrote it, if a number: a string might be a pasted token."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    return {str: "a string", list: "a list", dict: "a table"}.get(type(value), "a date or time")


# --- tokens -------------------------------------------------------------------------------


def resolve_tokens(
    config: Config,
    environ: Mapping[str, str] | None = None,
    *,
    secrets_file: Path | None = None,
) -> dict[str, Secret]:
    """client_id -> token for the leader and every follower that has one.

    Each token comes from the environment variable named by access_token_env,
    else from the secrets file's [tokens] table. A token missing or malformed
    for the leader or an enabled follower is a ConfigError; a disabled follower
    may lack one (a malformed one is then left out).
    """
    environ = os.environ if environ is None else environ
    secrets_path = secrets_file or home_paths().secrets_file
    file_tokens = read_secrets_file(secrets_path)
    tokens: dict[str, Secret] = {}
    for where, account, required in _accounts(config):
        try:
            token = _token_from(account, environ, file_tokens)[0]
        except ConfigError as exc:
            if required:
                raise ConfigError(f"{where}: {exc.message}") from None
            continue
        if token is not None:
            tokens[account.client_id] = token
        elif required:
            raise ConfigError(f"{where}: {_missing_token_message(account, secrets_path)}")
    return tokens


def token_sources(
    config: Config,
    environ: Mapping[str, str] | None = None,
    *,
    secrets_file: Path | None = None,
) -> dict[str, TokenSource | None]:
    """client_id -> where its token would come from ("env", "secrets file"), or None.

    A malformed token is a ConfigError naming the account, as in resolve_tokens.
    """
    environ = os.environ if environ is None else environ
    file_tokens = read_secrets_file(secrets_file or home_paths().secrets_file)
    sources: dict[str, TokenSource | None] = {}
    for where, account, _required in _accounts(config):
        try:
            sources[account.client_id] = _token_from(account, environ, file_tokens)[1]
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc.message}") from None
    return sources


def read_secrets_file(path: Path) -> dict[str, Secret]:
    """The [tokens] table of secrets.toml; {} if there is no such file.

    A file other users could read is refused: it holds live trading credentials.
    """
    if not path.exists():
        return {}
    check_private_file(path)
    data = _read_toml(path, missing_hint="")
    unknown = [key for key in data if key != "tokens"]
    if unknown:
        raise ConfigError(
            f"{path}: {_key_path('', unknown[0])}: {_unknown_key_message(unknown[0], ['tokens'])}"
        )
    table = data.get("tokens", {})
    if not isinstance(table, dict):
        raise ConfigError(f'{path}: tokens: must be a table ([tokens]) of client_id = "token"')
    tokens = {}
    for client_id, token in table.items():
        if not isinstance(token, str) or not token.strip():
            raise ConfigError(
                f"{path}: {_key_path('tokens', client_id)}: must be a non-empty string"
            )
        tokens[client_id] = Secret(token.strip())
    return tokens


def _token_from(
    account: AccountConfig, environ: Mapping[str, str], file_tokens: Mapping[str, Secret]
) -> tuple[Secret | None, TokenSource | None]:
    """The account's token and its source; a ConfigError (without `where`) if malformed."""
    # An empty variable counts as unset: `export DHAN_F1_TOKEN=` should not hide the file's.
    from_env = environ.get(account.access_token_env, "").strip()
    if from_env:
        # Checked before it becomes a Secret: a Secret registers its value for redaction.
        _check_token(from_env, f"in the environment variable {account.access_token_env}")
        return Secret(from_env), "env"
    if account.client_id in file_tokens:
        token = file_tokens[account.client_id]
        _check_token(token.reveal(), f'in secrets.toml under [tokens] "{account.client_id}"')
        return token, "secrets file"
    return None, None


def _check_token(token: str, source: str) -> None:
    """Refuse a token that cannot be a Dhan token; the message quotes none of it."""
    problem = _token_problem(token)
    if problem:
        low, high = TOKEN_LENGTH
        raise ConfigError(
            f"the access token {source} {problem}; a Dhan access token is {low} to {high} "
            "printable ASCII characters without spaces: copy it again (it is not shown here)"
        )


def _token_problem(token: str) -> str | None:
    """What is wrong with a token's shape, by position and kind, never by character."""
    for position, char in enumerate(token, start=1):
        if not "!" <= char <= "~":
            return f"contains {_char_kind(char)} at position {position}"
    low, high = TOKEN_LENGTH
    if not low <= len(token) <= high:
        return f"is {len(token)} characters long"
    return None


def _char_kind(char: str) -> str:
    if unicodedata.category(char) == "Cc":
        return "a control character"
    if char.isspace():
        return "a space"
    return "a character that is not printable ASCII"


def _missing_token_message(account: AccountConfig, secrets_path: Path) -> str:
    return (
        f"no access token for client {account.client_id}: set the environment variable "
        f'{account.access_token_env}, or add "{account.client_id}" = "<token>" under '
        f"[tokens] in {secrets_path}"
    )


def _accounts(config: Config) -> Iterator[tuple[str, AccountConfig, bool]]:
    """(where, account, token required) for the leader, then each follower."""
    yield "leader", config.leader, True
    for index, follower in enumerate(config.followers):
        yield _where(index, follower), follower.account, follower.enabled


def _where(index: int, follower: FollowerConfig) -> str:
    return f"followers[{index}] ({follower.name})"


# --- validate: everything checkable before market open ------------------------------------


def validate(
    config: Config,
    environ: Mapping[str, str] | None = None,
    *,
    secrets_file: Path | None = None,
) -> list[Problem]:
    """Every problem found, errors and warnings, in file order. Reads no network."""
    problems: list[Problem] = []
    # Checks run one kind at a time; _file_order regroups their findings by table.
    problems += _check_tokens(config, environ, secrets_file)
    problems += _check_accounts_distinct(config)
    problems += _check_names_distinct(config)
    for where, account, _required in _accounts(config):
        problems += _check_account(where, account, config.leader)
    for index, follower in enumerate(config.followers):
        problems += _check_follower_lists(_where(index, follower), follower)
    problems += _check_egress_shared(config)
    problems += _check_settings(config.settings)
    problems += _check_enabled_followers(config)
    return sorted(problems, key=_file_order)


def _file_order(problem: Problem) -> tuple[int, int]:
    """The secrets file, leader, each follower in turn, settings, then the whole list."""
    if problem.where.startswith("leader"):
        return (1, 0)
    follower = re.match(r"followers\[(\d+)\]", problem.where)
    if follower:
        return (2, int(follower.group(1)))
    if problem.where.startswith("settings"):
        return (3, 0)
    return (0, 0) if problem.where.endswith(".toml") else (4, 0)


def require_valid(
    config: Config,
    environ: Mapping[str, str] | None = None,
    *,
    secrets_file: Path | None = None,
) -> dict[str, Secret]:
    """validate(), raising the first error as a ConfigError; then the tokens."""
    errors = [p for p in validate(config, environ, secrets_file=secrets_file) if p.level == "error"]
    if errors:
        more = (
            f" (and {len(errors) - 1} more; run: copytrade config validate)"
            if len(errors) > 1
            else ""
        )
        raise ConfigError(f"{errors[0].where}: {errors[0].message}{more}")
    return resolve_tokens(config, environ, secrets_file=secrets_file)


def _error(where: str, message: str) -> Problem:
    return Problem("error", where, message)


def _warning(where: str, message: str) -> Problem:
    return Problem("warning", where, message)


def _check_tokens(
    config: Config, environ: Mapping[str, str] | None, secrets_file: Path | None
) -> Iterator[Problem]:
    environ = os.environ if environ is None else environ
    secrets_path = secrets_file or home_paths().secrets_file
    try:
        file_tokens = read_secrets_file(secrets_path)
    except ConfigError as exc:
        # Tokens may well be in the unreadable file: one error, not one per account.
        yield _error(secrets_path.name, exc.message)
        return
    seen_env: dict[str, str] = {}
    for where, account, required in _accounts(config):
        # A disabled follower's token is not used: missing or malformed, only a warning.
        level = _error if required else _warning
        try:
            source = _token_from(account, environ, file_tokens)[1]
        except ConfigError as exc:
            yield level(where, exc.message)
        else:
            if source is None:
                yield level(where, _missing_token_message(account, secrets_path))
        other = seen_env.setdefault(account.access_token_env, account.client_id)
        if other != account.client_id:
            yield _error(
                f"{where}.access_token_env",
                f"{account.access_token_env} is also "
                f"the token variable of client {other}; each account has its own token",
            )


def _check_accounts_distinct(config: Config) -> Iterator[Problem]:
    owner = {config.leader.client_id: "the leader"}
    for index, follower in enumerate(config.followers):
        client_id = follower.account.client_id
        if client_id in owner:
            yield _error(
                f"{_where(index, follower)}.client_id",
                f"client {client_id} is already {owner[client_id]}; "
                "each account can appear only once",
            )
        else:
            owner[client_id] = f"follower {follower.name!r}"


def _check_names_distinct(config: Config) -> Iterator[Problem]:
    first_index: dict[str, int] = {}
    for index, follower in enumerate(config.followers):
        key = follower.name.casefold()
        if key in first_index:
            yield _error(
                f"{_where(index, follower)}.name",
                f"duplicate name; followers[{first_index[key]}] is also called {follower.name!r}",
            )
        else:
            first_index[key] = index


def _check_account(where: str, account: AccountConfig, leader: AccountConfig) -> Iterator[Problem]:
    yield from _check_url(f"{where}.api_url", account.api_url, ("https", "http"))
    yield from _check_url(f"{where}.order_ws_url", account.order_ws_url, ("wss", "ws"))
    yield from _check_egress(where, account.egress)
    ours, theirs = _host(account.api_url), _host(leader.api_url)
    if account is not leader and ours and theirs and ours != theirs:
        yield _warning(
            f"{where}.api_url",
            f"talks to {_host(account.api_url)} but the leader "
            f"talks to {_host(leader.api_url)}: mixing paper and live accounts?",
        )


def _check_url(
    where: str, url: str, schemes: tuple[str, str], *, warn_plain: bool = True
) -> Iterator[Problem]:
    """`schemes` is (secure, plain); plain is fine only for this machine (the emulator)."""
    secure, plain = schemes
    problem = _url_problem(url)
    if problem:
        yield _error(where, problem)
        return
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        yield _error(
            where, f"must be a {secure}:// (or {plain}://) URL with a host, not {_safe_url(url)!r}"
        )
    elif warn_plain and parts.scheme == plain and not _is_loopback(parts.hostname):
        yield _warning(
            where,
            f"{plain}:// to {parts.hostname} is unencrypted: the access "
            f"token travels in clear; use {secure}://",
        )


def _url_problem(url: str) -> str | None:
    """What makes `url` unusable whatever its scheme: odd characters, a bad or empty port."""
    for position, char in enumerate(url, start=1):
        # urlsplit silently drops tabs and newlines; requests and websockets may not.
        if char.isspace() or unicodedata.category(char) == "Cc":
            return f"contains a space or control character at position {position}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"not a valid URL: {_safe_url(url)!r}"
    if port is None and parts.netloc.endswith(":"):
        # urlsplit reads "ws://host:" as no port at all; the client would then fail late.
        return f"no port number after ':' in {_safe_url(url)!r}; give a port from 1 to 65535"
    if port == 0:
        return f"port 0 in {_safe_url(url)!r}; give a port from 1 to 65535"
    return None


def _check_egress(where: str, egress: Egress) -> Iterator[Problem]:
    if egress.proxy and egress.source_address:
        yield _error(f"{where}.proxy", "set proxy or source_address, not both")
    if egress.proxy:
        # An http:// proxy is fine: HTTPS to Dhan is tunnelled through it, still encrypted.
        yield from _check_url(f"{where}.proxy", egress.proxy, ("https", "http"), warn_plain=False)
    if egress.source_address:
        try:
            ipaddress.ip_address(egress.source_address)
        except ValueError:
            yield _error(
                f"{where}.source_address",
                f"{egress.source_address!r} is not an IPv4 or IPv6 address",
            )


def _check_egress_shared(config: Config) -> Iterator[Problem]:
    """Dhan refuses orders from an IP that another user's account has whitelisted."""
    sending = [(index, f) for index, f in enumerate(config.followers) if f.enabled and not f.shadow]
    explicit: dict[Egress, str] = {}
    for index, follower in sending:
        egress = follower.account.egress
        if not (egress.proxy or egress.source_address):
            continue
        if egress in explicit:
            yield _error(
                _where(index, follower),
                f"same proxy/source_address as "
                f"{explicit[egress]}; Dhan accepts each IP for one account only",
            )
        else:
            explicit[egress] = _where(index, follower)
    implicit = [
        _where(index, f)
        for index, f in sending
        if not (f.account.egress.proxy or f.account.egress.source_address)
    ]
    if len(implicit) > 1:
        yield _warning(
            "followers",
            f"{len(implicit)} followers send from this host's default "
            "address; Dhan accepts each whitelisted IP for one account only, so "
            "give each a proxy or source_address",
        )


def _check_follower_lists(where: str, follower: FollowerConfig) -> Iterator[Problem]:
    pairs = (
        ("segments", follower.allow_segments, follower.deny_segments, SEGMENTS),
        ("products", follower.allow_products, follower.deny_products, PRODUCTS),
        ("security_ids", follower.allow_security_ids, follower.deny_security_ids, None),
    )
    for kind, allow, deny, known in pairs:
        for key, values in ((f"allow_{kind}", allow), (f"deny_{kind}", deny)):
            yield from _check_names(f"{where}.{key}", values, known)
        for value in sorted(allow & deny):
            yield _error(f"{where}.deny_{kind}", f"{value} is in both allow_{kind} and deny_{kind}")


def _check_names(
    where: str, values: frozenset[str], known: frozenset[str] | None
) -> Iterator[Problem]:
    for value in sorted(values):
        if known is None:
            if not value.isdigit():
                yield _warning(
                    where,
                    f"{value!r} does not look like a Dhan security id "
                    "(digits, from the instrument list)",
                )
        elif value not in known:
            yield _error(where, f"unknown name {value!r}{_did_you_mean(value, sorted(known))}")


def _check_settings(settings: Settings) -> Iterator[Problem]:
    yield from _check_url("settings.instruments_url", settings.instruments_url, ("https", "http"))
    for security_id in settings.freeze_limits:
        if not security_id.isdigit():
            yield _warning(
                _key_path("settings.freeze_limits", security_id),
                "does not look like a Dhan security id (digits)",
            )


def _check_enabled_followers(config: Config) -> Iterator[Problem]:
    enabled = config.enabled_followers
    if not enabled:
        yield _error("followers", "no enabled followers: nothing would be mirrored")
    elif all(follower.shadow for follower in enabled):
        yield _warning(
            "followers",
            "every enabled follower is in shadow mode: orders are "
            "computed and recorded but none is sent",
        )


def _host(url: str) -> str | None:
    """host[:port] of a URL, or None if it has none (validate reports that separately)."""
    if _url_problem(url):  # also any ValueError urlsplit would raise
        return None
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _safe_url(url: str) -> str:
    """The URL with any password in it replaced: proxy URLs often carry credentials."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        # Host and port kept as written: a problem may be about them ("ws://u:p@host:").
        host_and_port = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host_and_port}"))
    except ValueError:
        return "(unparseable URL)" if "@" in url else url


# --- redacted: the effective configuration, safe to print ---------------------------------


def redacted(
    config: Config, tokens_present: Mapping[str, bool | TokenSource | None]
) -> dict[str, Any]:
    """The effective config (defaults filled in) as plain data, with no token in it.

    `tokens_present` maps client_id to where its token comes from, as
    token_sources() returns ("env" / "secrets file" / None), or simply True /
    False. Each account's "token" entry is then "set (env NAME)", "set
    (secrets file)", "set" or "MISSING". Proxy passwords are masked too.
    """
    return {
        "source": str(config.source) if config.source else None,
        "leader": _account_data(config.leader, tokens_present),
        "followers": [_follower_data(f, tokens_present) for f in config.followers],
        "settings": {
            "instruments_url": config.settings.instruments_url,
            "reconcile_interval_seconds": config.settings.reconcile_interval_seconds,
            "http_timeout_seconds": config.settings.http_timeout_seconds,
            "order_rate_scale": config.settings.order_rate_scale,
            "freeze_limits": dict(config.settings.freeze_limits),
        },
    }


def _account_data(
    account: AccountConfig, tokens_present: Mapping[str, bool | TokenSource | None]
) -> dict[str, Any]:
    return {
        "client_id": account.client_id,
        "access_token_env": account.access_token_env,
        "token": _token_status(account, tokens_present.get(account.client_id)),
        "api_url": _safe_url(account.api_url),
        "order_ws_url": _safe_url(account.order_ws_url),
        "proxy": _safe_url(account.egress.proxy) if account.egress.proxy else None,
        "source_address": account.egress.source_address,
    }


def _token_status(account: AccountConfig, source: bool | TokenSource | None) -> str:
    if source == "env":
        return f"set (env {account.access_token_env})"
    if source == "secrets file":
        return "set (secrets file)"
    return "set" if source is True else "MISSING"


def _follower_data(
    follower: FollowerConfig, tokens_present: Mapping[str, bool | TokenSource | None]
) -> dict[str, Any]:
    sizing_value: float | int | bool = follower.sizing.value
    if follower.sizing.mode == "fixed_lots":
        sizing_value = int(follower.sizing.value)
    elif follower.sizing.mode == "capital_ratio":
        sizing_value = True
    return {
        "name": follower.name,
        **_account_data(follower.account, tokens_present),
        follower.sizing.mode: sizing_value,
        "enabled": follower.enabled,
        "shadow": follower.shadow,
        "max_quantity": follower.max_quantity,
        "max_order_value": follower.max_order_value,
        **{
            key: sorted(getattr(follower, key))
            for key in (
                "allow_segments",
                "deny_segments",
                "allow_products",
                "deny_products",
                "allow_security_ids",
                "deny_security_ids",
            )
        },
        "mirror_on_transit": follower.mirror_on_transit,
        "max_order_age_seconds": follower.max_order_age_seconds,
        "max_price_drift_percent": follower.max_price_drift_percent,
        "on_divergence": follower.on_divergence,
    }


def problem_counts(problems: Iterable[Problem]) -> Counter[str]:
    """How many errors and warnings: Counter({'error': 2, 'warning': 1})."""
    return Counter(problem.level for problem in problems)
