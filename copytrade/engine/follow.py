"""`follow`: the leader's stream in, every follower's mirrors out, until told to stop.

Start-up reads what it must once (instruments, positions, funds), then on every (re)login
of the leader's stream reads the leader's order book and feeds it through the same
replicator as live frames: orders placed, filled or cancelled while the stream was down
are caught up, and duplicates of what the stream already said end in the merge.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pytz

from copytrade.config.model import FollowerConfig
from copytrade.core.events import ENTRY_LEG, OrderReport, book_order
from copytrade.core.freeze import freeze_limit_for, load_freeze_limits
from copytrade.core.ids import correlation_id, is_ours
from copytrade.core.intents import IntentAction, IntentStatus
from copytrade.core.orders import TERMINAL_STATES, MirrorState, Trigger
from copytrade.core.reconcile import diff_leader
from copytrade.core.sizing import Caps, SizingRule
from copytrade.dhan.instruments import download_scrip_master
from copytrade.dhan.rest import Outcome, OutcomeKind
from copytrade.dhan.stream import LeaderStream, StreamState
from copytrade.engine import faultpoints, status_file
from copytrade.engine.agent import AgentLeader
from copytrade.engine.broker import Broker, SwitchableAccount
from copytrade.engine.bus_consume import BusLeaderFeed
from copytrade.engine.executor import token_refused_text
from copytrade.engine.mirrors import MirrorUpdater
from copytrade.engine.pipeline import ReportPipeline
from copytrade.engine.positions import PositionBook
from copytrade.engine.reconciler import FollowerReconcile, Reconciler
from copytrade.engine.replicator import FollowerPlan, Replicator
from copytrade.engine.supervise import LoopHealth, supervised
from copytrade.engine.tokens import POLL_SECONDS, TokenKeeper
from copytrade.engine.wiring import Wiring
from copytrade.engine.worker import FollowerWorker
from copytrade.errors import AuthError, BrokerError, DegradedError
from copytrade.secret import Secret
from copytrade.store.db import WalCheckpointer
from copytrade.store.instruments import InstrumentCache
from copytrade.store.models import Intent, MirrorOrder
from copytrade.store.repo import Store, legs_of

log = logging.getLogger(__name__)
IST = pytz.timezone("Asia/Kolkata")
GIL_SWITCH_SECONDS = 0.0005
# Keepalive at Dhan-tolerant intervals: real Dhan can take seconds to answer a ping (users of
# the SDK, which pings every 20 s, report 1011 keepalive closes), so only a long silence
# closes the connection. A silent leader stream is noticed much sooner by the stream's probe
# (SILENT_AFTER_SECONDS after an unanswered ping) and answered with order-book reads every
# SILENT_POLL_SECONDS: what the leader does meanwhile is mirrored from REST, and news the
# silent stream did not bring reconnects it at once.
KEEPALIVE_PING_SECONDS = 10.0
KEEPALIVE_TIMEOUT_SECONDS = 20.0
PROBE_SECONDS = 1.0
SILENT_AFTER_SECONDS = 2.0
SILENT_POLL_SECONDS = 1.0
_PROBE_OPTIONS = ("probe_every", "silent_after")


def trading_date_now() -> date:
    return datetime.now(IST).date()


@dataclass
class StreamStatus:
    state: str = "starting"
    detail: str = ""
    reconnects: int = 0
    malformed: int = 0


@dataclass
class FollowStatus:
    """What the live table shows besides the orders; written by the engine's threads."""

    leader_stream: StreamStatus = field(default_factory=StreamStatus)
    follower_streams: dict[str, StreamStatus] = field(default_factory=dict)
    stopped_followers: dict[str, str] = field(default_factory=dict)
    catch_ups: int = 0
    stalls: int = 0
    # Background loops failing again and again: loop name -> its last error.
    degraded: dict[str, str] = field(default_factory=dict)
    loops: dict[str, LoopHealth] = field(default_factory=dict)


def _caps(follower: FollowerConfig) -> Caps:
    return Caps(max_quantity=follower.max_quantity, max_order_value=follower.max_order_value,
                allowed_segments=follower.allow_segments, denied_segments=follower.deny_segments,
                allowed_products=follower.allow_products, denied_products=follower.deny_products,
                allowed_securities=follower.allow_security_ids,
                denied_securities=follower.deny_security_ids)


def _require(outcome: Outcome, what: str, account: str) -> Outcome:
    if outcome.kind is OutcomeKind.AUTH:
        raise AuthError(f"the {account} token was refused reading {what} ({outcome.code}): "
                        "refresh it and start again")
    if not outcome.ok:
        raise BrokerError(f"cannot read {what} of the {account}: {outcome.describe()}")
    return outcome


class FollowEngine:
    """Built from what the composition root (cli/context.py) made: the settings, the
    brokers, the limiters and the clock in `wiring`, and the store."""

    def __init__(self, wiring: Wiring, store: Store, *,
                 on_change: Callable[[], None] = lambda: None,
                 stream_options: dict | None = None,
                 token_options: dict | None = None,
                 leader_feed: BusLeaderFeed | None = None) -> None:
        self.settings = settings = wiring.settings
        self.store = store
        self.status = FollowStatus()
        self.on_change = on_change
        # Called after each leader change is committed (cheap: an Event.set); set it
        # before prepare(). The bus's publisher wakes on it (engine/bus_publish.py).
        self.on_leader_recorded: Callable[[], None] = lambda: None
        # [bus] leader: each remote follower's agent lag, as the results consumer last read
        # it (engine/bus_results_in.py); shown by the live view and `status`.
        self.remote_lag: Callable[[], Mapping[str, int | None]] | None = None
        self.trading_date = wiring.trading_date
        self.stream_options = {"ping_interval": KEEPALIVE_PING_SECONDS,
                               "ping_timeout": KEEPALIVE_TIMEOUT_SECONDS,
                               "probe_every": PROBE_SECONDS,
                               "silent_after": SILENT_AFTER_SECONDS, **(stream_options or {})}
        self._leader_silent = False
        self._silence_polls: set[asyncio.Task[None]] = set()
        self._stop = threading.Event()
        self._fatal: BaseException | None = None
        self.followers = list(settings.enabled)
        # An agent ([bus] role = "agent") has no leader account: its leader is the bus.
        self.leader: Broker | None = wiring.leader
        self.leader_feed = leader_feed
        self.agent = (AgentLeader(store, self.followers[0].name, wiring.trading_date,
                                  stopped=lambda: bool(self.status.stopped_followers))
                      if leader_feed is not None else None)
        self.market = wiring.market  # None: any hour
        self.accounts: dict[str, Broker] = {f.name: wiring.accounts[f.name]
                                            for f in self.followers}
        self.positions = {f.name: PositionBook() for f in self.followers}
        self.leader_positions = PositionBook()
        self.instruments = InstrumentCache(store)
        self.updater = MirrorUpdater(store, lambda name: self.positions[name], on_change)
        self.workers = {f.name: FollowerWorker(
            f.name, self.accounts[f.name], store, self.updater,
            wiring.limiter_for(f.account.client_id, self._stop.wait),
            on_halt=self._follower_halted,
            correlation_id_for=self._correlation_id_for(f.name)) for f in self.followers}
        self.replicator: Replicator | None = None
        self.reconciler: Reconciler | None = None
        self._leader: LeaderStream | None = None
        # Leader reports on one thread, follower reports on another: a burst of follower
        # fills never delays the next leader order's decision.
        self.pipeline = ReportPipeline("leader-reports")
        self.follower_pipeline = ReportPipeline("follower-reports")
        for pipeline in (self.pipeline, self.follower_pipeline):
            pipeline.on_failure = self._report_failed
        for name, account in (("leader", self.leader), *self.accounts.items()):
            if account is not None:
                account.on_bad_row = self._bad_row(name)
        self._rebuild = wiring.rebuild
        self._streams: dict[str, list[LeaderStream]] = {}  # by client id: token switches
        self._halted_at_start: set[str] = set()  # their positions were never read
        self._first_intent_id = 0  # intents of this run come after it
        # Token renewal and reload (engine/tokens.py); options for tests: poll_seconds,
        # now, check_every, retry_every.
        options = dict(token_options or {})
        self._token_poll = float(options.pop("poll_seconds", POLL_SECONDS))
        self.tokens: TokenKeeper | None = None
        if wiring.tokens is not None and wiring.rebuild is not None:
            self.tokens = TokenKeeper(wiring.tokens, on_switch=self._token_switched,
                                      on_notice=self._token_notice, **options)

    # ---- preparation -----------------------------------------------------------------------

    def prepare(self) -> None:
        """Reads that must succeed before following: instruments, positions, funds."""
        self.instruments.ensure_fresh(self.trading_date(), lambda: download_scrip_master(
            self.settings.instruments_url, self.settings.http_timeout_seconds * 6))
        leader = self.leader
        if leader is not None:
            self.leader_positions.load(_require(leader.positions(), "positions",
                                                "leader").data or [])
        # (an agent's configuration refuses capital_ratio: the leader's funds are not its)
        needs_capital = leader is not None and any(
            f.sizing.mode == "capital_ratio" for f in self.followers)
        leader_capital = leader.available_funds() if leader is not None and needs_capital \
            else None
        freeze_table = load_freeze_limits()
        plans = []
        for follower in self.followers:
            account = self.accounts[follower.name]
            outcome = account.positions()
            if outcome.kind is OutcomeKind.AUTH:
                self._halted_at_start.add(follower.name)
                self._follower_halted(follower.name, token_refused_text(
                    follower.name, outcome.code, consequence="at start"))
            elif outcome.ok:
                self.positions[follower.name].load(outcome.data or [])
            plans.append(FollowerPlan(
                name=follower.name,
                rule=SizingRule(follower.sizing.mode, follower.sizing.value),
                caps=_caps(follower), positions=self.positions[follower.name],
                submit=self.workers[follower.name].submit, shadow=follower.shadow,
                mirror_on_transit=follower.mirror_on_transit,
                max_order_age_seconds=follower.max_order_age_seconds,
                max_price_drift_percent=follower.max_price_drift_percent,
                capital=account.available_funds() if needs_capital else None,
                stopped_reason=lambda name=follower.name: self.status.stopped_followers.get(
                    name),
                view_is_current=lambda name=follower.name: self._follower_view_current(name)))
        overrides = self.settings.freeze_limits
        leader_book = (_require(leader.order_book(), "the order book", "leader").data
                       if leader is not None else [])
        self.replicator = Replicator(
            self.store, plans, self.updater, lot_size=self.instruments.lot_size,
            freeze_limit=lambda security_id, symbol: freeze_limit_for(
                security_id, symbol or self.instruments.symbol(security_id), overrides,
                freeze_table),
            trading_date=self.trading_date, leader_positions=self.leader_positions,
            leader_capital=leader_capital, on_change=self.on_change,
            # an agent asks its own account for a quote (Dhan's quotes are any account's)
            last_price=(leader or self.accounts[self.followers[0].name]).last_price,
            tick_size=self.instruments.tick_size,
            leader_order=self._leader_entry if leader is not None else lambda order_id: None,
            market_closed=self.market.closed_reason if self.market else None,
            on_leader_recorded=self.on_leader_recorded,
            leader_position=self.agent.position_before if self.agent is not None else None)
        if self.agent is not None:
            self.agent.replicator = self.replicator
            self.agent.remember_known()
        self.reconciler = Reconciler(
            self.store, self.updater, [FollowerReconcile(
                f.name, self.accounts[f.name], f.on_divergence, self.workers[f.name].submit,
                executor=self.workers[f.name].executor)
                for f in self.followers if not f.shadow],
            trading_date=lambda: self.trading_date().isoformat(),
            now=lambda: datetime.now(UTC),
            stopped=lambda name: name in self.status.stopped_followers,
            replace_cancelled=self.replicator.replace_cancelled)
        # Fills already in the positions just read must not be counted again when the
        # catch-up replays today's orders.
        self.replicator.leader_traded_at_start = {
            r.key: r.traded_quantity for r in leader_book}
        for follower in self.followers:
            book = self.accounts[follower.name].order_book()
            if book.ok:
                traded = {(follower.name, r.key): r.traded_quantity for r in book.data}
                self.replicator.follower_traded.update(traded)
                self.updater.traded_at_start.update(traded)
                self._find_adoptable(follower.name, book.data)
                for report in book.data:
                    if not is_ours(report.correlation_id):
                        self.replicator.note_foreign(follower.name, report)
            elif not self.status.stopped_followers.get(follower.name):
                # Without its book, orders of ours the store does not know could not be
                # found: placing for this follower now could duplicate them.
                raise BrokerError(f"cannot read the order book of follower {follower.name}: "
                                  f"{book.describe()}")

    @property
    def leader_client_id(self) -> str:
        login = self.settings.leader_stream
        return login.client_id if login is not None else self.settings.leader_client_id

    def _follower_view_current(self, name: str) -> bool:
        """The follower's stream is up and every frame it brought is applied: the
        positions we keep for it are the broker's as far as the broker has said."""
        stream = self.status.follower_streams.get(name)
        return (stream is not None and stream.state == StreamState.CONNECTED.value
                and not self.follower_pipeline.busy)

    def _leader_entry(self, order_id: str) -> OrderReport | None:
        """The leader's order row by REST (a BO's values, which the stream lacks)."""
        assert self.leader is not None
        found = self.leader.order(order_id)
        return found.data if found.ok else None

    def _find_adoptable(self, name: str, book: list[OrderReport]) -> None:
        """Orders at the broker carrying our correlation id that the store does not know
        (a lost, emptied or new database): the replicator adopts them instead of placing
        the same mirror again."""
        assert self.replicator is not None
        for report in book:
            if not is_ours(report.correlation_id) or report.leg != ENTRY_LEG:
                continue  # (exit legs are Dhan's, and follow their entry's mirror)
            if self.store.mirror_for_follower_order(name, report.order_id,
                                                    report.correlation_id) is not None:
                continue
            stem = report.correlation_id.rsplit("-", 1)[0]
            self.replicator.adoptable.setdefault((name, stem), []).append(report)
        found = sum(len(v) for (who, _), v in self.replicator.adoptable.items() if who == name)
        if found:
            with self.store.write():
                self.store.audit("unknown_own_orders", f"{found} order(s) of follower {name} "
                                 "carry our correlation id but are not in the store: they "
                                 "will be adopted, never placed again", follower=name)

    # ---- running ---------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Follow until stop(); raises AuthError if the leader's token is refused."""
        if self.replicator is None:
            self.prepare()
        # A woken thread (a report to apply, an intent to send) waits for the GIL up to the
        # switch interval while another runs Python: 5 ms by default, a copy's whole budget.
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        checkpointer = WalCheckpointer(self.store.path)
        checkpointer.start()
        self.pipeline.start()
        self.follower_pipeline.start()
        for worker in self.workers.values():
            worker.start()
        self._first_intent_id = self.store.last_ids()[0]
        self._resume_unfinished()
        streams = [*([self._leader_stream()] if self.leader is not None else []),
                   *(self._follower_stream(f) for f in self.followers)]
        tasks = [asyncio.create_task(stream.run()) for stream in streams]
        if self.leader is not None:
            tasks.append(asyncio.create_task(self._watch_leader()))
        else:  # an agent: the leader's events come off the bus, onto the same pipeline
            self._start_feed()
        tasks.append(asyncio.create_task(self._reconcile_loop()))
        if self.tokens is not None:
            tasks.append(asyncio.create_task(self._token_loop()))
        # `copytrade status` reads it: written now, every few seconds, and at stop
        tasks.append(asyncio.create_task(status_file.keep_written(self, self._stop)))
        try:
            while not self._stop.is_set() and self._fatal is None:
                await asyncio.sleep(0.05)
        finally:
            self._stop.set()  # ends the loops' waits too, whatever ended the run
            if self.leader_feed is not None:  # its event in hand is finished and acked
                await asyncio.to_thread(self.leader_feed.stop)
            for stream in streams:
                stream.stop()
            for poll in list(self._silence_polls):
                poll.cancel()
            await asyncio.wait(tasks, timeout=10)
            await asyncio.to_thread(self.pipeline.stop)
            await asyncio.to_thread(self.follower_pipeline.stop)
            for worker in self.workers.values():
                await asyncio.to_thread(worker.stop)
            await asyncio.to_thread(checkpointer.stop)
        if self._fatal is not None:
            raise self._fatal
        self._raise_if_degraded()

    def _start_feed(self) -> None:
        feed, agent = self.leader_feed, self.agent
        assert feed is not None and agent is not None
        status = self.status.leader_stream

        def on_state(state: str, detail: str) -> None:
            status.state, status.detail = state, detail
            self.on_change()

        feed.start(lambda event: self.pipeline.call(agent.apply, event), on_state=on_state)

    def _raise_if_degraded(self) -> None:
        failed = [h for h in self.status.loops.values() if h.ever_degraded]
        unapplied = self.pipeline.failures + self.follower_pipeline.failures
        if failed or unapplied:
            parts = [f"{h.name} failed {h.failures} time(s) (last: {h.last_error})"
                     for h in failed]
            if unapplied:
                parts.append(f"{unapplied} report(s) could not be applied")
            raise DegradedError("follow ran degraded: " + "; ".join(parts) +
                                "; see the log file for the tracebacks")

    async def _read_leader_book(self, *, periodic: bool = False) -> bool:
        """Feed the leader's order book through the replicator, as the stream's frames are
        (duplicates end in the merge). False when the leader's token is refused.

        Periodic reads feed only the news; news the stream should have brought more than
        one interval ago means the stream is stalled: it is made to reconnect."""
        book = await asyncio.to_thread(self.leader.order_book)
        if book.kind is OutcomeKind.AUTH:
            self._fatal = AuthError("the leader's token was refused (DH-901): refresh it "
                                    "and start follow again")
            return False
        _require(book, "the order book", "leader")
        reports = sorted(book.data, key=book_order)
        # Applied on the report pipeline, behind the frames already queued; the frames the
        # stream holds meanwhile are queued after it.
        news = await asyncio.wrap_future(self.pipeline.call(self._apply_book, reports, periodic))
        if periodic:
            await self._check_stalled(news)
        return True

    def _apply_book(self, reports: list[OrderReport], periodic: bool) -> list[OrderReport]:
        replicator = self.replicator
        assert replicator is not None
        if periodic:
            reports = diff_leader({oid: m.report for oid, m in replicator.leaders.items()},
                                  reports)
        for index, report in enumerate(reports):
            if index == 1:
                faultpoints.reached("in_barrier")
            replicator.on_leader_report(report)
        return reports

    async def _check_stalled(self, news: list[OrderReport]) -> None:
        # A silent stream is not racing the book: news older than the silence threshold is
        # news it missed.
        interval = (self.stream_options["silent_after"] if self._leader_silent
                    else self.settings.reconcile_interval_seconds)
        now = datetime.now(UTC)
        missed = [r for r in news
                  if r.updated_at is not None and (now - r.updated_at).total_seconds() > interval]
        stream = self._leader
        if missed and stream is not None and stream.state is StreamState.CONNECTED:
            self.status.stalls += 1
            with self.store.write():
                self.store.audit("stream_stalled", f"the leader's stream missed {len(missed)} "
                                 "order change(s) the order book shows: reconnecting")
            await stream.force_reconnect("missed changes the order book shows")

    async def _watch_leader(self) -> None:
        """Every reconcile interval, read the leader's book: orders the stream missed are
        caught up, and an expired leader token stops follow even while the stream is only
        retrying refused logins."""
        async def check() -> bool:
            try:
                return await self._read_leader_book(periodic=True)
            except BrokerError as exc:  # transient: the next round tries again
                log.warning("leader book read failed: %s", exc)
                return True

        await self._supervise("leader check", check)

    async def _reconcile_loop(self) -> None:
        async def round_() -> bool:
            if self.reconciler is not None:
                await asyncio.to_thread(self.reconciler.run_round)
            return True

        await self._supervise("reconciliation", round_)

    async def _token_loop(self) -> None:
        """Token validity, renewal and secrets.toml reloads (engine/tokens.py); the first
        round at once, so a token close to its end is renewed at start."""
        keeper = self.tokens
        assert keeper is not None

        async def round_() -> bool:
            await asyncio.to_thread(keeper.round)
            return True

        await self._supervise("token renewal", round_, interval=self._token_poll, first=0.0)

    def reload_tokens(self) -> None:
        """Read secrets.toml again at the token loop's next round (SIGHUP; any thread)."""
        if self.tokens is not None:
            self.tokens.request_reload()

    async def _supervise(self, name: str, round_: Callable[[], Awaitable[bool]], *,
                         interval: float | None = None, first: float | None = None) -> None:
        health = self.status.loops.setdefault(name, LoopHealth(name))

        first_wait = [first]

        async def wait(seconds: float) -> bool:
            if first_wait[0] is not None:  # the first round sooner than the interval
                seconds, first_wait[0] = first_wait[0], None
            return await asyncio.to_thread(self._stop.wait, seconds)

        def changed(health: LoopHealth) -> None:
            was = name in self.status.degraded
            if health.degraded:
                self.status.degraded[name] = health.last_error
            else:
                self.status.degraded.pop(name, None)
            if was != health.degraded:  # on the record (and in plain output), off the loop
                self.pipeline.put(self._audit, "degraded" if health.degraded else "recovered",
                                  f"{name}: {health.consecutive} failures in a row, last: "
                                  f"{health.last_error}" if health.degraded else
                                  f"{name} works again")
            self.on_change()

        await supervised(health, round_, wait=wait,
                         interval=interval or self.settings.reconcile_interval_seconds,
                         on_change=changed)

    def _resume_unfinished(self) -> None:
        """Intents an earlier run committed but never finished (it crashed, or stopped
        with calls queued) go back to their followers' workers, oldest first."""
        for intent_id, follower in self.store.unfinished_intents():
            worker = self.workers.get(follower)
            if worker is None:
                log.warning("intent %s of follower %s left unfinished: no such follower "
                            "enabled now", intent_id, follower)
                continue
            worker.submit(intent_id, resume=True)

    def _leader_stream(self) -> LeaderStream:
        replicator = self.replicator
        assert replicator is not None

        async def catch_up() -> None:
            if await self._read_leader_book():
                self.status.catch_ups += 1

        login = self.settings.leader_stream
        assert login is not None
        self._leader = self._register(login.client_id, LeaderStream(
            login.url, login.client_id, login.token.reveal(),  # revealed only here
            on_report=lambda report: self.pipeline.put(replicator.on_leader_report, report),
            on_connected=catch_up, on_closed=self._closed("leader"),
            on_state=self._stream_state(self.status.leader_stream, "leader"),
            on_malformed=self._malformed(self.status.leader_stream, "leader"),
            on_silence=self._on_leader_silence, **self.stream_options))
        return self._leader

    def _on_leader_silence(self, silent: bool, detail: str) -> None:
        """On the stream's loop: the leader's stream fell silent, or was heard from again."""
        self._leader_silent = silent
        self.status.leader_stream.detail = detail
        self.pipeline.put(self._audit, "stream_silent" if silent else "stream_heard",
                          f"leader stream: {detail}")
        if silent:
            task = asyncio.ensure_future(self._poll_while_silent())
            self._silence_polls.add(task)
            task.add_done_callback(self._silence_polls.discard)
        self.on_change()

    async def _poll_while_silent(self) -> None:
        """Read the leader's book every SILENT_POLL_SECONDS while its stream is silent."""
        while self._leader_silent and not self._stop.is_set() and self._fatal is None:
            try:
                if not await self._read_leader_book(periodic=True):
                    return
            except BrokerError as exc:
                log.warning("leader book read failed while its stream is silent: %s", exc)
            if await asyncio.to_thread(self._stop.wait, SILENT_POLL_SECONDS):
                return

    def _follower_stream(self, follower: FollowerConfig) -> LeaderStream:
        replicator = self.replicator
        assert replicator is not None
        status = self.status.follower_streams.setdefault(follower.name, StreamStatus())
        account = self.accounts[follower.name]

        def apply(reports: list[OrderReport]) -> None:
            for report in reports:
                replicator.on_follower_report(follower.name, report)

        async def catch_up() -> None:
            book = await asyncio.to_thread(account.order_book)
            if book.ok:
                await asyncio.wrap_future(self.follower_pipeline.call(apply, book.data))

        login = self.settings.follower_streams[follower.name]
        return self._register(login.client_id, LeaderStream(
            login.url, login.client_id, login.token.reveal(),  # revealed only here
            on_report=lambda report: self.follower_pipeline.put(
                replicator.on_follower_report, follower.name, report),
            on_connected=catch_up, on_state=self._stream_state(status, follower.name),
            on_closed=self._closed(follower.name),
            on_malformed=self._malformed(status, follower.name),
            **{k: v for k, v in self.stream_options.items() if k not in _PROBE_OPTIONS}))

    def _register(self, client_id: str, stream: LeaderStream) -> LeaderStream:
        self._streams.setdefault(client_id, []).append(stream)
        return stream

    def _stream_state(self, status: StreamStatus,
                      whose: str) -> Callable[[StreamState, str], None]:
        def connected() -> None:  # every (re)connect goes on the record, like every close
            with self.store.write():
                self.store.audit("stream_connected", f"{whose} stream connected "
                                 f"(reconnects so far: {status.reconnects})")

        def update(state: StreamState, detail: str) -> None:
            if state is StreamState.CONNECTED and status.state != StreamState.CONNECTED.value:
                self.pipeline.put(connected)
            status.state, status.detail = state.value, detail
            if state is StreamState.BACKOFF:
                status.reconnects += 1
            self.on_change()
        return update

    def _malformed(self, status: StreamStatus, whose: str) -> Callable[[str, str], None]:
        def write(reason: str, excerpt: str) -> None:
            with self.store.write():
                self.store.audit("malformed_frame", f"{whose} stream: {reason}",
                                 data={"excerpt": excerpt[:200]})

        def record(reason: str, excerpt: str) -> None:  # on the stream's loop: no SQLite
            status.malformed += 1
            self.pipeline.put(write, reason, excerpt)
        return record

    def _closed(self, whose: str) -> Callable[[int | None, str], None]:
        """Every ended connection goes on the record with its close code (1006 lost, 1009
        too big, 1011 keepalive...); the catch-up at the next login finds what it cost."""
        def write(code: int | None, reason: str) -> None:
            if self._stop.is_set() and code == 1000:
                return  # our own stop
            with self.store.write():
                self.store.audit("stream_closed", f"{whose} stream closed "
                                 f"({code if code is not None else 'no connection'}): "
                                 f"{reason}", data={"code": code})

        return lambda code, reason: self.pipeline.put(write, code, reason)

    def _bad_row(self, whose: str) -> Callable[[str, str], None]:
        def record(reason: str, excerpt: str) -> None:
            with self.store.write():
                self.store.audit("unreadable_row", f"{whose} order book: skipped a row: "
                                 f"{reason}", data={"excerpt": excerpt[:200]})
        return record

    def _audit(self, kind: str, message: str) -> None:
        with self.store.write():
            self.store.audit(kind, message)

    def _report_failed(self, exc: BaseException) -> None:
        with self.store.write():
            self.store.audit("report_failed", f"a report could not be applied: "
                             f"{type(exc).__name__}: {exc}")

    def _follower_halted(self, name: str, reason: str) -> None:
        self.status.stopped_followers[name] = reason
        log.error("follower %s stopped: %s", name, reason)
        self.on_change()

    def _correlation_id_for(self, follower: str) -> Callable[[MirrorOrder, int], str]:
        return lambda mirror, attempt: correlation_id(
            self.trading_date(), mirror.leader_order_id, follower, mirror.leg, attempt)

    # ---- tokens renewed or reloaded (engine/tokens.py) ---------------------------------------

    def _token_notice(self, client_id: str, kind: str, message: str) -> None:
        """The token loop's news: on the record (and in plain output), in the log."""
        names = [f.name for f in self.followers if f.account.client_id == client_id]
        level = logging.INFO if kind == "token_renewed" else logging.WARNING
        log.log(level, "%s", message)
        with self.store.write():
            self.store.audit(kind, message, follower=names[0] if len(names) == 1 else None)
        self.on_change()

    def _token_switched(self, client_id: str, token: Secret, why: str) -> None:
        """Every user of the account gets the new token: REST at once (the accounts are
        switched), the streams at their next login; a follower stopped on a refused token
        is resumed."""
        assert self._rebuild is not None
        accounts = [self.leader] if (self.leader is not None
                                     and client_id == self.leader_client_id) else []
        accounts += [self.accounts[f.name] for f in self.followers
                     if f.account.client_id == client_id]
        for account in {id(a): a for a in accounts}.values():
            if isinstance(account, SwitchableAccount):
                account.switch(self._rebuild(client_id, token))
            else:
                log.error("account %s cannot switch tokens; restart follow", client_id)
        for stream in self._streams.get(client_id, []):
            stream.set_token(token)  # revealed only at login: the next (re)login uses it
        log.info("token of client %s switched (%s)", client_id, why)
        for follower in self.followers:
            if follower.account.client_id == client_id:
                self._resume_follower(follower, why)

    def _resume_follower(self, follower: FollowerConfig, why: str) -> None:
        """A follower stopped on a refused token has a new one: every intent the halt left
        (AUTH, or SENDING and skipped) goes through the resume path (lookup by correlation
        id, then send), a place for a leader order older than max_order_age_seconds ends
        with the reason instead; then the leader orders it missed are decided on."""
        name = follower.name
        worker = self.workers[name]
        if worker.executor.refused is None and name not in self.status.stopped_followers:
            return  # not stopped: nothing left behind
        if name in self._halted_at_start:
            positions = self.accounts[name].positions()
            if not positions.ok:
                log.warning("follower %s: positions not read after the new token: %s",
                            name, positions.describe())
                return  # still refused (or no answer): the next switch or check tries again
            self.positions[name].load(positions.data or [])
            self._halted_at_start.discard(name)
        resend = self._left_by_halt(follower)
        worker.resume(resend)
        self.status.stopped_followers.pop(name, None)
        with self.store.write():
            self.store.audit("account_resumed", f"follower {name} resumed ({why}): "
                             f"{len(resend)} call(s) left by the stop go out again",
                             follower=name)
        self.on_change()
        if self.replicator is not None:
            self.pipeline.call(self.replicator.decide_missed, name, lambda order_id, who:
                               self.store.mirror(order_id, who) is not None).result(timeout=60)

    def _left_by_halt(self, follower: FollowerConfig) -> list[int]:
        """The intents to send again, oldest first: SENDING ones as they are, AUTH ones of
        this run as new intents (an intent's outcome is final); stale places ended."""
        name = follower.name
        sending = [r for r in self.store.sending_intent_rows() if r.follower == name]
        busy = {r.mirror_id for r in sending}
        refused = [r for r in self.store.intent_rows_after(self._first_intent_id)
                   if r.follower == name and r.status == IntentStatus.AUTH
                   and r.mirror_id not in busy]
        ids = [r.id for r in sending]
        with self.store.write():
            for row in refused:
                mirror = self.store.mirror_by_id(row.mirror_id)
                if MirrorState(mirror.state) in TERMINAL_STATES or row.mirror_id in busy:
                    continue
                busy.add(row.mirror_id)
                ids.append(self.store.add_intent(mirror, row.action, row.request).id)
        return [i for i in sorted(ids) if not self._ended_stale(follower, i)]

    def _ended_stale(self, follower: FollowerConfig, intent_id: int) -> bool:
        """A place never sent whose leader order is now older than max_order_age_seconds
        is not chased: looked up first (it may exist after all), else ended with the
        reason. True when it is done with."""
        intent = self.store.intent_by_id(intent_id)
        mirror = self.store.mirror_by_id(intent.mirror_id)
        known = self.replicator.leaders.get(mirror.leader_order_id) if self.replicator else None
        created = known.report.created_at if known is not None else None
        if intent.action != IntentAction.PLACE or legs_of(mirror) or created is None:
            return False
        age = (datetime.now(UTC) - created).total_seconds()
        if age <= follower.max_order_age_seconds:
            return False
        found = self.accounts[follower.name].order_by_correlation(mirror.correlation_id)
        if found.ok:
            self.workers[follower.name].executor.adopt(
                mirror.id, found.data, finish=(intent, "adopted after the token was renewed"))
            return True
        if found.kind is not OutcomeKind.NOT_FOUND:
            return False  # unanswered: the resume path looks it up again before any send
        self._end_unsent(follower.name, intent, mirror, f"leader order is {age:.0f} s old, "
                         f"beyond max_order_age_seconds {follower.max_order_age_seconds:g}, "
                         "when the token came back: not chased")
        return True

    def _end_unsent(self, name: str, intent: Intent, mirror: MirrorOrder, reason: str) -> None:
        # SUBMITTED has no SKIP in the state table: a mirror never placed ends CANCELED
        # ("never placed"), as cancel-mirror ends one; the intent ends SKIPPED.
        with self.store.write():
            self.store.finish_intent(intent, IntentStatus.SKIPPED, reason)
            mirror = self.store.mirror_by_id(mirror.id)
            self.store.update_mirror(mirror, reason=reason)
            self.store.apply_trigger(mirror, Trigger.CANCELED, f"never placed: {reason}")
            self.store.audit("skipped", reason, follower=name,
                             leader_order_id=mirror.leader_order_id)

