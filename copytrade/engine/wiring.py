"""What follow and replay-missed run on, built once by the composition root
(copytrade/cli/context.py) and handed in: the settings they need from the configuration,
each account behind the Broker protocol, a rate limiter per account and the clock. The
engine never reads Config nor resolves a token itself.

Tokens stay Secret: the REST accounts were built with theirs; the order streams reveal
theirs only at the websocket login (StreamLogin.token). A token renewed or reloaded while
follow runs reaches the accounts through `rebuild` and the streams at their next login.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from copytrade.config.model import FollowerConfig
from copytrade.engine.broker import Broker
from copytrade.engine.limits import LimiterFor
from copytrade.engine.market import MarketHours
from copytrade.engine.tokens import TokenWiring
from copytrade.errors import UsageError
from copytrade.secret import Secret


@dataclass(frozen=True)
class StreamLogin:
    """One account's order-update stream."""

    url: str
    client_id: str
    token: Secret = field(repr=False)


@dataclass(frozen=True)
class FollowSettings:
    """The configuration as follow needs it."""

    leader_stream: StreamLogin | None  # None on an agent: its leader is the bus
    followers: tuple[FollowerConfig, ...]  # as configured, disabled ones included
    follower_streams: Mapping[str, StreamLogin]  # by follower name
    reconcile_interval_seconds: float
    http_timeout_seconds: float
    instruments_url: str
    freeze_limits: Mapping[str, int]
    source: Path | None = None  # the configuration file, for messages
    leader_client_id: str = ""

    @property
    def enabled(self) -> tuple[FollowerConfig, ...]:
        return tuple(f for f in self.followers if f.enabled)


@dataclass(frozen=True)
class Wiring:
    """Everything a FollowEngine is built from, besides its store."""

    settings: FollowSettings
    leader: Broker | None  # None on an agent ([bus] role = "agent")
    accounts: Mapping[str, Broker]  # by follower name: every enabled follower
    limiter_for: LimiterFor  # (client id, wait) -> that account's order-rate limiter
    trading_date: Callable[[], date]
    # Renewal and reload of the tokens while follow runs (None: tokens stay as started).
    tokens: TokenWiring | None = None
    # (client id, token) -> a new account with that token, switched in by follow.
    rebuild: Callable[[str, Secret], Broker] | None = None
    # The trading calendar: whether a segment takes orders now (None: any hour).
    market: MarketHours | None = None

    def select(self, name: str | None, max_age: float | None) -> Wiring:
        """Only the follower named (any case), with max_age applied to every follower
        kept; UsageError for an unknown or disabled follower."""
        return replace(self, settings=select_followers(self.settings, name, max_age))


def select_followers(settings: FollowSettings, name: str | None,
                     max_age: float | None) -> FollowSettings:
    followers = settings.followers
    if name is not None:
        match = [f for f in followers if f.name.lower() == name.lower()]
        if not match:
            known = ", ".join(f.name for f in followers) or "none"
            raise UsageError(f"no follower named {name!r} in {settings.source} "
                             f"(followers: {known})")
        if not match[0].enabled:
            raise UsageError(f"follower {match[0].name} is disabled (enabled = false)")
        followers = (match[0],)
    if max_age is not None:
        if max_age <= 0:
            raise UsageError("--max-age must be more than 0 seconds")
        followers = tuple(replace(f, max_order_age_seconds=max_age) for f in followers)
    return replace(settings, followers=followers)
