"""The composition root: the one place that builds, from a command's options, what the
commands run on: the home's paths, the configuration, the tokens (Secret, never shown),
the store, an account behind the Broker protocol for the leader and each enabled
follower, each account's order-rate limiter, and the clock.

Imported inside command functions only: `copytrade --help` pays for none of it. Each
part is built when first asked for, so a command builds only what it uses (a dry run
never opens, nor creates, the real database).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from copytrade.config import Config, Secret, load_config, require_valid
from copytrade.home import HomePaths, home_paths

if TYPE_CHECKING:
    from copytrade.engine.broker import Broker
    from copytrade.engine.follow import FollowEngine
    from copytrade.engine.limits import Limiter
    from copytrade.engine.market import MarketHours
    from copytrade.engine.tokens import TokenWiring
    from copytrade.engine.wiring import FollowSettings, Wiring
    from copytrade.store.repo import Store


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Context:
    paths: HomePaths
    config: Config
    tokens: dict[str, Secret] = field(repr=False)  # by client id
    now: Callable[[], datetime] = _utc_now
    now_ms: Callable[[], int] = _wall_ms  # the limiters' clock
    trading_date: Callable[[], date] | None = None  # default: today in IST
    background_checkpoints: bool = False  # follow runs a WalCheckpointer
    # client id -> "env" or "secrets file": where follow writes a renewed token, if at all
    token_sources: Mapping[str, str] = field(default_factory=dict)
    secrets_file: Path | None = None  # default: the home's
    _brokers: dict[str, Broker] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def load(cls, config_path: Path | None = None, *,
             environ: Mapping[str, str] | None = None, secrets_file: Path | None = None,
             paths: HomePaths | None = None, **options: object) -> Context:
        """The configuration read and validated (ConfigError, exit 3, on the first
        error), its tokens resolved; nothing created on disk yet."""
        from copytrade.config import token_sources

        paths = paths or home_paths()
        config = load_config(config_path or paths.config_file)
        secrets_file = secrets_file or paths.secrets_file
        tokens = require_valid(config, environ, secrets_file=secrets_file)
        sources = {cid: source for cid, source in token_sources(
            config, environ, secrets_file=secrets_file).items() if source and cid in tokens}
        return cls(paths, config, tokens, token_sources=sources,  # type: ignore[arg-type]
                   secrets_file=secrets_file, **options)

    # ---- files --------------------------------------------------------------------------

    @property
    def limits_path(self) -> Path:
        return self.paths.data_dir / "limits.db"

    @property
    def lock_path(self) -> Path:
        return self.paths.data_dir / "follow.lock"

    @cached_property
    def store(self) -> Store:
        """The home's database, opened (created, migrated) on first use."""
        from copytrade.store.db import open_store
        from copytrade.store.repo import Store

        return Store(open_store(self.paths.database_file,
                                background_checkpoints=self.background_checkpoints),
                     self.now)

    def run_store(self, *, dry_run: bool) -> AbstractContextManager[Store]:
        """The store a run records in: the real one, or for a dry run a scratch copy of
        it that is thrown away (the real file is only read)."""
        if dry_run:
            from copytrade.store.db import scratch_copy

            return scratch_copy(self.paths.database_file, self.now)
        return _given(self.store)

    # ---- accounts and limits ------------------------------------------------------------

    def broker(self, client_id: str) -> Broker:
        """The account with this client id over REST (Dhan or the emulator), built once:
        its URL, egress and timeout from the configuration, its token from the tokens."""
        if client_id not in self._brokers:
            from copytrade.engine.broker import SwitchableAccount

            # Switchable: follow swaps in an account with a renewed or reloaded token.
            self._brokers[client_id] = SwitchableAccount(
                self.rebuild(client_id, self.tokens[client_id]))
        return self._brokers[client_id]

    def rebuild(self, client_id: str, token: Secret) -> Broker:
        """A new REST account for this client id with `token` (its URL, egress, timeout)."""
        from copytrade.engine.broker import account_for

        return account_for(self._account_config(client_id), token,
                           timeout=self.config.settings.http_timeout_seconds)

    def _account_config(self, client_id: str):  # type: ignore[no-untyped-def]
        config = self.config
        return next(a for a in (config.leader, *(f.account for f in config.followers))
                    if a.client_id == client_id)

    @cached_property
    def token_wiring(self) -> TokenWiring:
        """What follow's token loop needs: where each token came from, the secrets file,
        the token endpoints per account, the renewal settings."""
        from datetime import timedelta

        from copytrade.config.tokens import read_secrets_file, store_token
        from copytrade.engine.broker import token_api_for
        from copytrade.engine.tokens import TokenWiring

        config, settings = self.config, self.config.settings
        roles = {} if config.bus.is_agent else {config.leader.client_id: "the leader"}
        for follower in config.local_followers:  # a remote follower's token is its agent's
            roles.setdefault(follower.account.client_id, f"follower {follower.name}")
        env_names = {a.client_id: a.access_token_env
                     for a in (config.leader, *(f.account for f in config.followers))}
        return TokenWiring(
            tokens={cid: self.tokens[cid] for cid in roles}, sources=dict(self.token_sources),
            env_names=env_names, roles=roles,
            secrets_file=self.secrets_file or self.paths.secrets_file,
            endpoints=lambda cid, token: token_api_for(
                self._account_config(cid), token, timeout=settings.http_timeout_seconds),
            read_file=read_secrets_file, write_file=store_token,
            renew=settings.renew_tokens,
            renew_before=timedelta(minutes=settings.renew_before_minutes))

    @property
    def leader(self) -> Broker:
        return self.broker(self.config.leader.client_id)

    @cached_property
    def accounts(self) -> Mapping[str, Broker]:
        """An account per enabled follower mirrored from this host, by follower name, each
        built when first used: a run for one follower builds no session for the others."""
        return _FollowerAccounts(self, {f.name: f.account.client_id
                                        for f in self.config.local_followers})

    def limiter_for(self, client_id: str, wait: Callable[[float], bool]) -> Limiter:
        """The account's order-rate limiter: max_orders_per_second and Dhan's minute, hour
        and day windows (scaled by order_rate_scale), persisted in the home's limits.db,
        shared by follow and cancel-mirror."""
        from copytrade.engine.limits import AccountLimiter, scaled_rates

        settings = self.config.settings
        return AccountLimiter(self.limits_path, client_id, now_ms=self.now_ms, wait=wait,
                              rates=scaled_rates(settings.order_rate_scale,
                                                 per_second=settings.max_orders_per_second))

    # ---- the engine's inputs ------------------------------------------------------------

    @cached_property
    def settings(self) -> FollowSettings:
        from copytrade.config.model import served_elsewhere
        from copytrade.engine.wiring import FollowSettings, StreamLogin

        config, tokens = self.config, self.tokens

        def login(account) -> StreamLogin:  # type: ignore[no-untyped-def]
            return StreamLogin(account.order_ws_url, account.client_id,
                               tokens[account.client_id])

        # Followers served by agents ([bus] leader role, remote = true) are not mirrored here;
        # an agent has no leader stream (its leader is the bus) nor the leader's token.
        return FollowSettings(
            leader_stream=None if config.bus.is_agent else login(config.leader),
            leader_client_id=config.leader.client_id,
            followers=tuple(f for f in config.followers if not served_elsewhere(config, f)),
            follower_streams={f.name: login(f.account) for f in config.local_followers},
            reconcile_interval_seconds=config.settings.reconcile_interval_seconds,
            http_timeout_seconds=config.settings.http_timeout_seconds,
            instruments_url=config.settings.instruments_url,
            freeze_limits=config.settings.freeze_limits, source=config.source)

    @cached_property
    def wiring(self) -> Wiring:
        from copytrade.engine.follow import trading_date_now
        from copytrade.engine.wiring import Wiring

        leader = None if self.config.bus.is_agent else self.leader
        return Wiring(self.settings, leader, self.accounts, self.limiter_for,
                      self.trading_date or trading_date_now, tokens=self.token_wiring,
                      rebuild=self.rebuild, market=self.market_hours)

    @cached_property
    def market_hours(self) -> MarketHours | None:
        """The trading calendar (CalendarError, exit 13, if unreadable or run out), or
        None with `market_hours = false`."""
        if not self.config.settings.market_hours:
            return None
        from copytrade.core.calendar import load_calendar
        from copytrade.engine.market import check_calendar

        return check_calendar(load_calendar, self.now)

    def follow_engine(self, **options: object) -> FollowEngine:
        """follow's engine on the home's store (options: on_change, stream_options)."""
        from copytrade.engine.follow import FollowEngine

        if self.config.bus.is_agent:  # the leader's events come off the bus
            from copytrade.config.bus import connect_options
            from copytrade.engine.bus_consume import BusLeaderFeed

            options.setdefault("leader_feed", BusLeaderFeed(
                self.config.bus, self.store, options=connect_options(self.config.bus)))
        return FollowEngine(self.wiring, self.store, **options)  # type: ignore[arg-type]


class _FollowerAccounts(Mapping[str, "Broker"]):
    def __init__(self, context: Context, client_ids: dict[str, str]) -> None:
        self._context = context
        self._client_ids = client_ids

    def __getitem__(self, name: str) -> Broker:
        return self._context.broker(self._client_ids[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._client_ids)

    def __len__(self) -> int:
        return len(self._client_ids)


@contextmanager
def _given(store: Store) -> Iterator[Store]:
    yield store
