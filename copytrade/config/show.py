"""redacted(): the effective configuration as plain data, safe to print (`config show`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

from copytrade.config.bus import BusConfig
from copytrade.config.model import (
    FOLLOWER_OPTIONS,
    AccountConfig,
    AlertsConfig,
    Config,
    FollowerConfig,
    TokenSource,
    served_elsewhere,
)
from copytrade.config.urls import safe_url

TokensPresent = Mapping[str, bool | TokenSource | None]


def redacted(config: Config, tokens_present: TokensPresent) -> dict[str, Any]:
    """The effective config (defaults filled in) as plain data, with no token in it.

    `tokens_present` maps client_id to where its token comes from, as
    token_sources() returns ("env" / "secrets file" / None), or simply True /
    False. Each account's "token" entry is then "set (env NAME)", "set
    (secrets file)", "set" or "MISSING". Proxy passwords are masked too.
    """
    return {
        "source": str(config.source) if config.source else None,
        "broker": config.broker,
        "sim": (
            {key: safe_url(value) for key, value in asdict(config.sim).items()}
            if config.sim
            else None
        ),
        "leader": _account_data(config.leader, tokens_present,
                                elsewhere=NOT_NEEDED_ON_AGENT if config.bus.is_agent else None),
        "followers": [_follower_data(f, tokens_present, served_elsewhere(config, f))
                      for f in config.followers],
        "settings": {
            "instruments_url": config.settings.instruments_url,
            "reconcile_interval_seconds": config.settings.reconcile_interval_seconds,
            "http_timeout_seconds": config.settings.http_timeout_seconds,
            "order_rate_scale": config.settings.order_rate_scale,
            "max_orders_per_second": config.settings.max_orders_per_second,
            "renew_tokens": config.settings.renew_tokens,
            "renew_before_minutes": config.settings.renew_before_minutes,
            "market_hours": config.settings.market_hours,
            "freeze_limits": dict(config.settings.freeze_limits),
        },
        "alerts": _alerts_data(config.alerts),
        "bus": _bus_data(config.bus),
    }


# What `token` says for an account whose token this host does not use ([bus] nats mode).
NOT_NEEDED_ON_AGENT = "not needed on an agent (its [leader] only names the client id)"
NOT_NEEDED_REMOTE = "not needed here (served by another host)"


def _bus_data(bus: BusConfig) -> dict[str, Any]:
    """[bus]: the files' paths, never what they hold (creds_file has a password)."""
    data = asdict(bus)
    data["url"] = safe_url(bus.url) if bus.url else None
    for key in ("creds_file", "ca_file"):
        data[key] = str(data[key]) if data[key] is not None else None
    return data


def _alerts_data(alerts: AlertsConfig) -> dict[str, Any]:
    return {
        "webhook_url": masked_url(alerts.webhook_url) if alerts.webhook_url else None,
        "webhook_url_env": alerts.webhook_url_env,  # the variable's name, never its value
        "timeout_seconds": alerts.timeout_seconds,
        "retries": alerts.retries,
        "fields": dict(alerts.fields),
    }


HIDDEN = "…"


def masked_url(url: str) -> str:
    """Scheme, host and port only: `https://api.telegram.org/…`. A webhook URL's path or
    query may hold a bot token, its user part a password. Ends with HIDDEN exactly when
    something was left out, so a URL without path or query is shown whole."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"(unparseable URL){HIDDEN}"
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc
    shown_path = f"/{HIDDEN}" if hidden else parts.path
    return f"{parts.scheme}://{netloc}{shown_path}"


def _account_data(account: AccountConfig, tokens_present: TokensPresent,
                  elsewhere: str | None = None) -> dict[str, Any]:
    return {
        "client_id": account.client_id,
        "access_token_env": account.access_token_env,
        "token": elsewhere or _token_status(account, tokens_present.get(account.client_id)),
        "api_url": safe_url(account.api_url),
        "order_ws_url": safe_url(account.order_ws_url),
        "proxy": safe_url(account.egress.proxy) if account.egress.proxy else None,
        "source_address": account.egress.source_address,
    }


def _token_status(account: AccountConfig, source: bool | TokenSource | None) -> str:
    if source == "env":
        return f"set (env {account.access_token_env})"
    if source == "secrets file":
        return "set (secrets file)"
    return "set" if source is True else "MISSING"


def _follower_data(follower: FollowerConfig, tokens_present: TokensPresent,
                   elsewhere: bool = False) -> dict[str, Any]:
    # Each sizing mode as it is written: multiplier = 1.5, fixed_lots = 2, capital_ratio = true.
    sizing_value: float | int | bool = follower.sizing.value
    if follower.sizing.mode == "fixed_lots":
        sizing_value = int(follower.sizing.value)
    elif follower.sizing.mode == "capital_ratio":
        sizing_value = True
    return {
        "name": follower.name,
        **_account_data(follower.account, tokens_present,
                        NOT_NEEDED_REMOTE if elsewhere else None),
        follower.sizing.mode: sizing_value,
        **{key: _plain(getattr(follower, key)) for key, _option in FOLLOWER_OPTIONS},
    }


def _plain(value: object) -> object:
    """Sets (the allow and deny lists) as sorted lists: what TOML and JSON can write."""
    return sorted(value) if isinstance(value, frozenset) else value
