"""A follow engine running against the emulator, for end-to-end tests.

    with running_follow(sim, tmp_path, followers=[follower("f1", multiplier=1.0)]) as run:
        run.leader_api.place_order(...)
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"])
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dhanhq import DhanContext, dhanhq
from simtools import eventually

from copytrade.cli.context import Context
from copytrade.engine.follow import FollowEngine
from copytrade.engine.worker import Backoff
from copytrade.home import HomePaths
from copytrade.sim.server import Emulator
from copytrade.store.models import AuditEvent, Intent, LeaderOrder, MirrorOrder
from copytrade.store.repo import Store

LEADER_ID = "1000000001"
LEADER_TOKEN = "leader-token-follow-9d2c"
# Short, bounded stream timings so stalls and drops are noticed quickly in tests.
TEST_STREAM_OPTIONS = {"backoff_initial": 0.05, "backoff_max": 0.5, "ping_interval": 0.5,
                       "ping_timeout": 0.5, "open_timeout": 2.0}


@dataclass(frozen=True)
class Follower:
    name: str
    client_id: str
    token: str
    sizing: str  # a TOML line, e.g. "multiplier = 1.0"
    extra: str = ""  # more TOML lines for this follower


def follower(name: str, client_id: str, sizing: str = "multiplier = 1.0",
             extra: str = "") -> Follower:
    return Follower(name, client_id, f"token-{name}-{client_id}-7f1e", sizing, extra)


def config_text(sim: Emulator, followers: list[Follower], settings: str = "") -> str:
    """The emulator trades at any hour: the trading calendar is off unless a test sets
    `market_hours` itself."""
    if "market_hours" not in settings:
        settings += "\nmarket_hours = false"
    blocks = [f'''[leader]
client_id = "{LEADER_ID}"
access_token_env = "LEADER_TOKEN"
api_url = "{sim.rest_url}"
order_ws_url = "{sim.ws_url}"

[settings]
instruments_url = "{sim.scrip_master_url}"
{settings}
''']
    for f in followers:
        blocks.append(f'''[[followers]]
name = "{f.name}"
client_id = "{f.client_id}"
access_token_env = "TOKEN_{f.name.upper().replace('-', '_')}"
{f.sizing}
api_url = "{sim.rest_url}"
order_ws_url = "{sim.ws_url}"
{f.extra}
''')
    return "\n".join(blocks)


@dataclass
class FollowRun:
    sim: Emulator
    engine: FollowEngine
    store: Store
    leader_api: dhanhq
    followers: list[Follower]
    thread: threading.Thread
    failure: list[BaseException] = field(default_factory=list)

    def wait_for(self, predicate: Callable[[], object], timeout: float = 10.0) -> object:
        return eventually(predicate, timeout=timeout, interval=0.02)

    def mirrors(self, follower: str) -> list[MirrorOrder]:
        return list(MirrorOrder.select().where(MirrorOrder.follower == follower)
                    .order_by(MirrorOrder.id))

    def mirror_states(self, follower: str) -> list[str]:
        return [m.state for m in self.mirrors(follower)]

    def intents(self, follower: str | None = None) -> list[Intent]:
        query = Intent.select(Intent, MirrorOrder).join(MirrorOrder)
        if follower is not None:
            query = query.where(MirrorOrder.follower == follower)
        return list(query.order_by(Intent.id))

    def audit(self, kind: str | None = None) -> list[AuditEvent]:
        query = AuditEvent.select()
        if kind is not None:
            query = query.where(AuditEvent.kind == kind)
        return list(query.order_by(AuditEvent.id))

    def leader_orders(self) -> list[LeaderOrder]:
        return list(LeaderOrder.select())

    def follower_book(self, follower: Follower) -> list[dict]:
        """The follower's orders as the emulator holds them (the broker's truth)."""
        account = self.sim.snapshot()["accounts"].get(follower.client_id, {})
        return account.get("orders", [])

    def connected(self) -> bool:
        status = self.engine.status
        return status.leader_stream.state == "connected" and all(
            s.state == "connected" for s in status.follower_streams.values())


def sdk(sim: Emulator, client_id: str, token: str, timeout: float = 5.0) -> dhanhq:
    context = DhanContext(client_id, token)
    context.get_dhan_http().base_url = sim.rest_url
    context.get_dhan_http().timeout = timeout
    return dhanhq(context)


@contextmanager
def running_follow(sim: Emulator, home: Path, followers: list[Follower], *, settings: str = "",
                   start: bool = True, fast_backoff: bool = True,
                   http_timeout: float | None = None,
                   stream_options: dict | None = None,
                   context_options: dict | None = None) -> Iterator[FollowRun]:
    """Config, store and engine in `home`; the engine runs in a thread until the block
    ends (then stops, bounded). The streams are connected when the block starts."""
    home.mkdir(parents=True, exist_ok=True)
    config_path = home / "copytrade.toml"
    timeout_line = f"http_timeout_seconds = {http_timeout}" if http_timeout else ""
    config_path.write_text(config_text(sim, followers, settings + "\n" + timeout_line))
    environ = {"LEADER_TOKEN": LEADER_TOKEN}
    environ.update({f"TOKEN_{f.name.upper().replace('-', '_')}": f.token for f in followers})
    # The CLI's composition root, on this home: the same accounts, limiters and store.
    context = Context.load(config_path, environ=environ,
                           paths=HomePaths.from_dirs(home, home, home / "logs"),
                           background_checkpoints=True,
                           trading_date=lambda: (datetime.now(UTC) + timedelta(
                               hours=5, minutes=30)).date(), **(context_options or {}))
    store = context.store
    engine = context.follow_engine(stream_options={**TEST_STREAM_OPTIONS,
                                                   **(stream_options or {})})
    if fast_backoff:
        for worker in engine.workers.values():
            worker.backoff = Backoff(initial=0.05, maximum=0.2)
            worker.lookup_backoff = Backoff(initial=0.05, maximum=0.2)
    run = FollowRun(sim, engine, store, sdk(sim, LEADER_ID, LEADER_TOKEN), followers,
                    threading.Thread(target=lambda: None))

    def target() -> None:
        try:
            asyncio.run(engine.run())
        except BaseException as exc:  # surfaced to the test
            run.failure.append(exc)

    run.thread = threading.Thread(target=target, name="follow-under-test", daemon=True)
    if start:
        engine.prepare()
        run.thread.start()
        eventually(run.connected, timeout=10)
    try:
        yield run
    finally:
        engine.stop()
        run.thread.join(30)
        assert not run.thread.is_alive(), "follow did not stop within 30 s"
