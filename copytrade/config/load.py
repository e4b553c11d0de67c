"""load_config(): copytrade.toml read into the model, its structure checked on the way."""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from copytrade.config.model import (
    DEFAULT_API_URL,
    DEFAULT_HTTP_TIMEOUT_SECONDS,
    DEFAULT_INSTRUMENTS_URL,
    DEFAULT_ORDER_WS_URL,
    DEFAULT_RECONCILE_INTERVAL_SECONDS,
    DEFAULT_RENEW_BEFORE_MINUTES,
    FOLLOWER_OPTIONS,
    SIZING_MODES,
    AccountConfig,
    Config,
    Egress,
    FollowerConfig,
    Option,
    Settings,
    Sizing,
)
from copytrade.config.table import (
    Invalid,
    Table,
    in_range,
    is_int,
    key_path,
    range_text,
    read_toml,
    reject_unknown_keys,
    shown,
)
from copytrade.errors import ConfigError
from copytrade.home import home_paths

# Names end up in logs, CLI arguments and file names: keep them plain.
_FOLLOWER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")

_TOP_LEVEL_KEYS = ("leader", "followers", "settings")
# AccountConfig with its Egress flattened, as written in [leader] and [[followers]].
_ACCOUNT_KEYS = (
    "client_id",
    "access_token_env",
    "api_url",
    "order_ws_url",
    "proxy",
    "source_address",
)
_FOLLOWER_KEYS = ("name", *_ACCOUNT_KEYS, *SIZING_MODES, *(key for key, _ in FOLLOWER_OPTIONS))
_SETTINGS_KEYS = tuple(setting.name for setting in fields(Settings))

_NO_CONFIG_HINT = (
    "create it with a [leader] table and one [[followers]] table per follower "
    "(see docs/configuration.md for a full example), or pass --config PATH"
)


def load_config(path: Path | None = None) -> Config:
    """Read and structurally check copytrade.toml (the home's, unless `path` is given)."""
    path = Path(path) if path is not None else home_paths().config_file
    data = read_toml(path, missing_hint=_NO_CONFIG_HINT)
    try:
        return _parse_config(data, source=path)
    except Invalid as exc:
        raise ConfigError(f"{path.name}: {exc}") from None


def _parse_config(data: Mapping[str, Any], *, source: Path | None) -> Config:
    reject_unknown_keys(data, _TOP_LEVEL_KEYS, where="")
    if "leader" not in data:
        raise Invalid("leader", "missing; add a [leader] table with client_id")
    leader = _parse_account(Table(data["leader"], "leader", _ACCOUNT_KEYS))
    return Config(
        leader=leader,
        followers=_parse_followers(data.get("followers", [])),
        settings=_parse_settings(data.get("settings", {})),
        source=source,
    )


def _parse_followers(raw: object) -> tuple[FollowerConfig, ...]:
    if isinstance(raw, dict):
        raise Invalid(
            "followers", "must be an array of tables: write [[followers]], not [followers]"
        )
    if not isinstance(raw, list):
        raise Invalid("followers", "must be an array of tables ([[followers]])")
    return tuple(_parse_follower(index, item) for index, item in enumerate(raw))


def _follower_where(index: int, raw: object) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    if isinstance(name, str) and _FOLLOWER_NAME.fullmatch(name):
        return f"followers[{index}] ({name})"
    return f"followers[{index}]"


def _parse_follower(index: int, raw: object) -> FollowerConfig:
    table = Table(raw, _follower_where(index, raw), _FOLLOWER_KEYS)
    name = table.string("name")
    if not _FOLLOWER_NAME.fullmatch(name):
        raise table.invalid(
            "name", "must be 1-32 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    # Read in this order (the key list's): the first mistake found is the one reported.
    account = _parse_account(table)
    sizing = _parse_sizing(table)
    options = {key: _read_option(table, key, option) for key, option in FOLLOWER_OPTIONS}
    return FollowerConfig(name=name, account=account, sizing=sizing, **options)


def _read_option(table: Table, key: str, option: Option) -> Any:
    match option.kind:
        case "boolean":
            return table.boolean(key, option.default)
        case "integer":
            return table.integer(key)
        case "number":
            return table.number(key, option.default)
        case "names":
            return table.string_set(key)
        case "ids":  # security ids: 1333 and "1333" alike
            return table.string_set(key, numbers_too=True)
        case "choice":
            return table.choice(key, option.choices, option.default)
    raise AssertionError(f"no reader for {option.kind!r}")  # pragma: no cover


def _parse_account(table: Table) -> AccountConfig:
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


def _parse_sizing(table: Table) -> Sizing:
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
        raise Invalid(
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
    table = Table(raw, "settings", _SETTINGS_KEYS)
    return Settings(
        instruments_url=table.string("instruments_url", DEFAULT_INSTRUMENTS_URL),
        reconcile_interval_seconds=table.number(
            "reconcile_interval_seconds", DEFAULT_RECONCILE_INTERVAL_SECONDS
        ),
        freeze_limits=_parse_freeze_limits(table.get("freeze_limits", {})),
        http_timeout_seconds=table.number("http_timeout_seconds", DEFAULT_HTTP_TIMEOUT_SECONDS),
        order_rate_scale=table.number("order_rate_scale", 1.0),
        max_orders_per_second=table.integer("max_orders_per_second") or 10,
        renew_tokens=table.boolean("renew_tokens", True),
        renew_before_minutes=table.number("renew_before_minutes",
                                          DEFAULT_RENEW_BEFORE_MINUTES),
        market_hours=table.boolean("market_hours", True),
    )


def _parse_freeze_limits(raw: object) -> Mapping[str, int]:
    where = "settings.freeze_limits"
    if not isinstance(raw, dict):
        raise Invalid(where, "must be a table of security_id = units")
    limits = {}
    for security_id, units in raw.items():
        if not is_int(units) or not in_range("freeze_limits", units):
            raise Invalid(
                key_path(where, security_id),
                f"must be a whole number of units {range_text('freeze_limits')}, "
                f"not {shown(units)}",
            )
        limits[security_id] = units
    return types.MappingProxyType(limits)
