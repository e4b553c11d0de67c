"""The configuration as data: what copytrade.toml can say, its defaults and ranges."""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from copytrade.config.bus import BusConfig

DEFAULT_API_URL = "https://api.dhan.co/v2"
DEFAULT_ORDER_WS_URL = "wss://api-order-update.dhan.co"
DEFAULT_INSTRUMENTS_URL = "https://images.dhan.co/api-data/api-scrip-master.csv"
DEFAULT_RECONCILE_INTERVAL_SECONDS = 3.0
DEFAULT_HTTP_TIMEOUT_SECONDS = 5.0
DEFAULT_MAX_ORDER_AGE_SECONDS = 300.0
DEFAULT_MAX_PRICE_DRIFT_PERCENT = 1.0
DEFAULT_RENEW_BEFORE_MINUTES = 60.0

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
        # Orders a second per account: up to Dhan's published 25 (docs/dhan.md for why
        # the default is 10).
        "max_orders_per_second": (1, 25),
        "freeze_limits": (1, 10_000_000),  # units per order
        # A token lives 24 hours: renewing more than 23 h before its end would renew it
        # every time it is read; under 5 min leaves no room for a retry.
        "renew_before_minutes": (5.0, 1_380.0),
        # [alerts] numbers, keyed by table: an alert must never hold follow up for long.
        "alerts.timeout_seconds": (0.5, 60.0),
        "alerts.retries": (0, 10),
    }
)


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
class Option:
    """How one follower option is read from its [[followers]] table (see load.py)."""

    kind: Literal["boolean", "integer", "number", "names", "ids", "choice"]
    default: Any = None
    choices: tuple[str, ...] = ()


def _toml(kind: Any, default: Any = None, choices: tuple[str, ...] = ()) -> dict[str, Option]:
    return {"toml": Option(kind, default, choices)}


@dataclass(frozen=True)
class FollowerConfig:
    """One [[followers]] table.

    After name, account and sizing, every field is an option kept under its own key in
    the file; its metadata says how it is read. FOLLOWER_OPTIONS below lists them, so
    parsing, the known keys and `config show` never spell them out again.
    """

    name: str
    account: AccountConfig
    sizing: Sizing
    enabled: bool = field(metadata=_toml("boolean", True))
    shadow: bool = field(metadata=_toml("boolean", False))
    max_quantity: int | None = field(metadata=_toml("integer"))
    max_order_value: float | None = field(metadata=_toml("number"))
    allow_segments: frozenset[str] = field(metadata=_toml("names"))
    deny_segments: frozenset[str] = field(metadata=_toml("names"))
    allow_products: frozenset[str] = field(metadata=_toml("names"))
    deny_products: frozenset[str] = field(metadata=_toml("names"))
    allow_security_ids: frozenset[str] = field(metadata=_toml("ids"))
    deny_security_ids: frozenset[str] = field(metadata=_toml("ids"))
    mirror_on_transit: bool = field(metadata=_toml("boolean", False))
    max_order_age_seconds: float = field(metadata=_toml("number", DEFAULT_MAX_ORDER_AGE_SECONDS))
    max_price_drift_percent: float = field(
        metadata=_toml("number", DEFAULT_MAX_PRICE_DRIFT_PERCENT)
    )
    on_divergence: DivergencePolicy = field(metadata=_toml("choice", "alert", DIVERGENCE_POLICIES))
    # Served by an agent on its own host ([bus] mode = "nats", leader role): the leader
    # publishes its events and does not mirror it itself; its token is not needed here.
    # Last, with a default: code that builds a FollowerConfig by hand need not name it.
    remote: bool = field(default=False, metadata=_toml("boolean", False))


# (key, how it is read) for each follower option, in file order: the one list of them.
FOLLOWER_OPTIONS: tuple[tuple[str, Option], ...] = tuple(
    (f.name, f.metadata["toml"]) for f in fields(FollowerConfig) if "toml" in f.metadata
)


@dataclass(frozen=True)
class Settings:
    instruments_url: str = DEFAULT_INSTRUMENTS_URL
    reconcile_interval_seconds: float = DEFAULT_RECONCILE_INTERVAL_SECONDS
    freeze_limits: Mapping[str, int] = field(default_factory=lambda: types.MappingProxyType({}))
    http_timeout_seconds: float = DEFAULT_HTTP_TIMEOUT_SECONDS
    # Multiplies Dhan's order-rate limits: for an emulator started with the same scale
    # (load and soak runs); Dhan's own limits are fixed, so keep 1.0 with Dhan.
    order_rate_scale: float = 1.0
    # Order requests a second per account: 10 by default, the exchanges' line beyond which
    # a client's orders count as an algorithm to be registered (docs/dhan.md).
    max_orders_per_second: int = 10
    # follow renews each token through Dhan's RenewToken this long before it expires.
    renew_tokens: bool = True
    renew_before_minutes: float = DEFAULT_RENEW_BEFORE_MINUTES
    # A leader order is sent only while the follower's segment takes orders (India's
    # trading calendar); false sends at any hour (paper trading on the emulator).
    market_hours: bool = True


Broker = Literal["dhan", "sim"]
BROKERS: tuple[str, ...] = get_args(Broker)

# Where `broker = "sim"` points every account by default: `copytrade sim`'s default ports.
DEFAULT_SIM_API_URL = "http://127.0.0.1:8181/v2"
DEFAULT_SIM_ORDER_WS_URL = "ws://127.0.0.1:8182"
DEFAULT_SIM_INSTRUMENTS_URL = "http://127.0.0.1:8181/api-data/api-scrip-master.csv"


@dataclass(frozen=True)
class SimConfig:
    """[sim]: the emulator every account talks to unless it sets its own URLs."""

    api_url: str = DEFAULT_SIM_API_URL
    order_ws_url: str = DEFAULT_SIM_ORDER_WS_URL
    instruments_url: str = DEFAULT_SIM_INSTRUMENTS_URL


@dataclass(frozen=True)
class AlertsConfig:
    """[alerts]: where follow tells a person what needs them (a generic JSON POST)."""

    webhook_url: str | None = None  # None: no alerts
    # Name of an environment variable holding the URL instead (Telegram's carries a bot token).
    webhook_url_env: str | None = None
    # Merged into every payload: chat_id for Telegram, topic for ntfy.
    fields: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))
    timeout_seconds: float = 5.0
    retries: int = 3  # further attempts after the first, with backoff

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or self.webhook_url_env)


def _embedded_bus() -> BusConfig:
    # bus.py reads tables with table.py, which imports this module: imported when called.
    from copytrade.config.bus import BusConfig

    return BusConfig()


@dataclass(frozen=True)
class Config:
    leader: AccountConfig
    followers: tuple[FollowerConfig, ...]
    settings: Settings
    source: Path | None
    broker: Broker = "dhan"
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    sim: SimConfig | None = None  # the effective [sim] when broker = "sim", else None
    bus: BusConfig = field(default_factory=_embedded_bus)  # [bus]; issue 12

    @property
    def enabled_followers(self) -> tuple[FollowerConfig, ...]:
        return tuple(follower for follower in self.followers if follower.enabled)

    @property
    def local_followers(self) -> tuple[FollowerConfig, ...]:
        """The enabled followers this host mirrors itself (all of them in embedded mode)."""
        return tuple(f for f in self.enabled_followers if not served_elsewhere(self, f))

    @property
    def remote_followers(self) -> tuple[FollowerConfig, ...]:
        """The enabled followers the leader feeds to agents (nats mode, leader role)."""
        if not self.bus.is_leader:
            return ()
        return tuple(f for f in self.enabled_followers if f.remote)


def served_elsewhere(config: Config, follower: FollowerConfig) -> bool:
    """Mirrored by another host: a remote follower on the leader (its agent serves it),
    or, on an agent, every follower but the agent's own."""
    bus = config.bus
    if not bus.is_nats:
        return False
    if bus.is_agent:
        return follower.name != bus.follower
    return follower.remote


@dataclass(frozen=True)
class Problem:
    level: Literal["error", "warning"]
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


# --- where an account sits in the file, as messages name it ------------------------------


def follower_where(index: int, follower: FollowerConfig) -> str:
    return f"followers[{index}] ({follower.name})"


def accounts(config: Config) -> Iterator[tuple[str, AccountConfig, bool]]:
    """(where, account, token required) for each account whose token this host uses: the
    leader, then each follower. Left out ([bus] mode = "nats"): the leader on an agent (its
    [leader] only names the client id) and the followers served elsewhere (their agents
    hold their tokens)."""
    if not config.bus.is_agent:
        yield "leader", config.leader, True
    for index, follower in enumerate(config.followers):
        if not served_elsewhere(config, follower):
            yield follower_where(index, follower), follower.account, follower.enabled
