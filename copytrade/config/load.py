"""load_config(): copytrade.toml read into the model, its structure checked on the way."""

from __future__ import annotations

import re
import tomllib
import types
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from copytrade.config.bus import parse_bus
from copytrade.config.model import (
    BROKERS,
    DEFAULT_API_URL,
    DEFAULT_HTTP_TIMEOUT_SECONDS,
    DEFAULT_INSTRUMENTS_URL,
    DEFAULT_ORDER_WS_URL,
    DEFAULT_RECONCILE_INTERVAL_SECONDS,
    DEFAULT_RENEW_BEFORE_MINUTES,
    FOLLOWER_OPTIONS,
    SIZING_MODES,
    AccountConfig,
    AlertsConfig,
    Config,
    Egress,
    FollowerConfig,
    Option,
    Settings,
    SimConfig,
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
    shown,
)
from copytrade.config.urls import url_problem
from copytrade.errors import ConfigError
from copytrade.home import home_paths

# Names end up in logs, CLI arguments and file names: keep them plain.
FOLLOWER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")

_TOP_LEVEL_KEYS = ("broker", "sim", "leader", "followers", "settings", "alerts", "bus")
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
_SIM_KEYS = tuple(key.name for key in fields(SimConfig))
_ALERTS_KEYS = tuple(key.name for key in fields(AlertsConfig))

# What every alert payload carries itself; [alerts] fields may not replace them.
ALERT_PAYLOAD_KEYS = ("text", "message", "kind", "severity", "at", "follower",
                      "leader_order_id", "source")
MAX_ALERT_FIELDS = 20
MAX_ALERT_FIELD_KEY = 64
MAX_ALERT_FIELD_VALUE = 1000

# The wheel ships no docs/: point at commands, which every install has.
_NO_CONFIG_HINT = (
    "write one with `copytrade config init --sim` (paper trading on the emulator) or "
    "`copytrade config init` (your Dhan accounts); see `copytrade config init --help`, "
    "or pass --config PATH"
)


def load_config(path: Path | None = None) -> Config:
    """Read and structurally check copytrade.toml (the home's, unless `path` is given)."""
    path = Path(path) if path is not None else home_paths().config_file
    data = read_toml(path, missing_hint=_NO_CONFIG_HINT)
    try:
        return _parse_config(data, source=path)
    except Invalid as exc:
        raise ConfigError(f"{path.name}: {exc}") from None


def config_from_text(text: str, source: Path) -> Config:
    """A configuration not yet written (config init checks what it is about to write)."""
    try:
        return _parse_config(tomllib.loads(text), source=source)
    except (Invalid, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{source.name}: {exc}") from None


def _parse_config(data: Mapping[str, Any], *, source: Path | None) -> Config:
    top = Table(data, "", _TOP_LEVEL_KEYS)
    broker = top.choice("broker", BROKERS, "dhan")
    sim = _parse_sim(data.get("sim"), broker)
    if "leader" not in data:
        raise Invalid("leader", "missing; add a [leader] table with client_id")
    leader = _parse_account(Table(data["leader"], "leader", _ACCOUNT_KEYS), sim)
    return Config(
        leader=leader,
        followers=_parse_followers(data.get("followers", []), sim),
        settings=_parse_settings(data.get("settings", {}), sim),
        source=source,
        broker=broker,
        alerts=_parse_alerts(data.get("alerts", {})),
        sim=sim,
        bus=parse_bus(data.get("bus", {}), source),
    )


def _parse_sim(raw: object, broker: str) -> SimConfig | None:
    """The effective [sim] with broker = "sim" (every key defaulted); None with Dhan."""
    if broker != "sim":
        if raw is not None:
            raise Invalid(
                "sim",
                '[sim] is read only with broker = "sim": add broker = "sim" at the top of '
                "the file (before any table) to trade on the emulator, or remove [sim]",
            )
        return None
    table = Table({} if raw is None else raw, "sim", _SIM_KEYS)
    defaults = SimConfig()
    return SimConfig(**{key: table.string(key, getattr(defaults, key)) for key in _SIM_KEYS})


def _parse_followers(raw: object, sim: SimConfig | None) -> tuple[FollowerConfig, ...]:
    if isinstance(raw, dict):
        raise Invalid(
            "followers", "must be an array of tables: write [[followers]], not [followers]"
        )
    if not isinstance(raw, list):
        raise Invalid("followers", "must be an array of tables ([[followers]])")
    return tuple(_parse_follower(index, item, sim) for index, item in enumerate(raw))


def _follower_where(index: int, raw: object) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    if isinstance(name, str) and FOLLOWER_NAME.fullmatch(name):
        return f"followers[{index}] ({name})"
    return f"followers[{index}]"


def _parse_follower(index: int, raw: object, sim: SimConfig | None) -> FollowerConfig:
    table = Table(raw, _follower_where(index, raw), _FOLLOWER_KEYS)
    name = table.string("name")
    if not FOLLOWER_NAME.fullmatch(name):
        raise table.invalid(
            "name", "must be 1-32 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    # Read in this order (the key list's): the first mistake found is the one reported.
    account = _parse_account(table, sim)
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


def _parse_account(table: Table, sim: SimConfig | None) -> AccountConfig:
    """One account; with broker = "sim" its URLs default to [sim]'s."""
    client_id = table.string("client_id")
    if not CLIENT_ID.fullmatch(client_id):
        raise table.invalid(
            "client_id", "must be the Dhan client id: up to 32 letters, digits, '_' or '-'"
        )
    env_var = table.string("access_token_env", f"DHAN_TOKEN_{client_id.replace('-', '_')}")
    if not ENV_VAR_NAME.fullmatch(env_var):
        # Never echo the value: a token pasted here by mistake must not be printed.
        raise table.invalid(
            "access_token_env",
            "must be the NAME of an environment variable "
            "(letters, digits, '_'), not the token itself",
        )
    return AccountConfig(
        client_id=client_id,
        access_token_env=env_var,
        api_url=table.string("api_url", sim.api_url if sim else DEFAULT_API_URL),
        order_ws_url=table.string(
            "order_ws_url", sim.order_ws_url if sim else DEFAULT_ORDER_WS_URL
        ),
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


def _parse_settings(raw: object, sim: SimConfig | None) -> Settings:
    """With broker = "sim" the instrument list is the emulator's and the trading calendar
    is off by default (the emulator trades at any hour); an explicit value still wins."""
    table = Table(raw, "settings", _SETTINGS_KEYS)
    return Settings(
        instruments_url=table.string(
            "instruments_url", sim.instruments_url if sim else DEFAULT_INSTRUMENTS_URL
        ),
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
        market_hours=table.boolean("market_hours", sim is None),
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


def _parse_alerts(raw: object) -> AlertsConfig:
    table = Table(raw, "alerts", _ALERTS_KEYS)
    defaults = AlertsConfig()
    url = table.string("webhook_url", None)
    env_var = table.string("webhook_url_env", None)
    if url is not None and env_var is not None:
        raise table.invalid("webhook_url_env", "set webhook_url or webhook_url_env, not both")
    if url is not None and webhook_url_problem(url):
        raise table.invalid("webhook_url", str(webhook_url_problem(url)))
    if env_var is not None and not ENV_VAR_NAME.fullmatch(env_var):
        # Never echo it: the URL itself (a bot token in it) may have been pasted here.
        raise table.invalid(
            "webhook_url_env",
            "must be the NAME of an environment variable (letters, digits, '_') "
            "holding the webhook URL, not the URL itself",
        )
    retries = table.integer("retries")
    return AlertsConfig(
        webhook_url=url,
        webhook_url_env=env_var,
        fields=_parse_alert_fields(table.get("fields", {})),
        timeout_seconds=table.number("timeout_seconds", defaults.timeout_seconds),
        retries=defaults.retries if retries is None else retries,
    )


def webhook_url_problem(url: str) -> str | None:
    """What makes `url` unusable as a webhook (http(s) with a host), quoting none of it:
    its path or query may hold a bot token. Also for the URL in webhook_url_env."""
    problem = url_problem(url)
    if problem and problem.startswith("contains"):  # a space or control character, by position
        return problem
    if problem or urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).hostname:
        return "must be an https:// (or http://) URL with a host (and a port from 1 to 65535)"
    return None


def _parse_alert_fields(raw: object) -> Mapping[str, str]:
    where = "alerts.fields"
    if not isinstance(raw, dict):
        raise Invalid(where, 'must be a table of strings, e.g. fields = { chat_id = "-100123" }')
    if len(raw) > MAX_ALERT_FIELDS:
        raise Invalid(where, f"has {len(raw)} entries; at most {MAX_ALERT_FIELDS}")
    merged = {}
    for key, value in raw.items():
        at = key_path(where, key)
        if not 1 <= len(key) <= MAX_ALERT_FIELD_KEY:
            raise Invalid(where, f"a key is {len(key)} characters long; 1 to "
                          f"{MAX_ALERT_FIELD_KEY}")
        if key in ALERT_PAYLOAD_KEYS:
            raise Invalid(at, "copytrade sets this key in every alert; choose another name")
        if not isinstance(value, str):
            hint = f' (quote it: "{value}")' if is_int(value) else ""
            raise Invalid(at, f"must be a string{hint}")
        if len(value) > MAX_ALERT_FIELD_VALUE:
            raise Invalid(at, f"is {len(value)} characters long; at most {MAX_ALERT_FIELD_VALUE}")
        merged[key] = value
    return types.MappingProxyType(merged)
