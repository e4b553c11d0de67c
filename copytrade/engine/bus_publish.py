"""The leader's publisher ([bus] mode = "nats", role = "leader"; issue 12): every leader
order event to a JetStream stream, for the agents that serve remote followers.

The outbox is the store itself: the audit trail already holds every recorded change of a
leader order, written in the transaction that records it (store/bus_queries.py). This
thread, with its own asyncio loop and nats-py connection, reads the changes after its
cursor, a batch at a time, and publishes the batch together, except that an event goes only
once the one before it of the same order has its PubAck (one order's events are stored in
order, whatever fails). The cursor (a trail id) moves only past
acknowledged events and is saved in the store every few seconds: after a crash, a lost
connection or a failed publish the same events are published again under the same
Nats-Msg-Id, and JetStream's duplicate window drops the copies. No event waits in memory.

It is woken by the replicator after each leader change it commits (`wake`: an Event.set,
nothing more on the copy path), lingers a few milliseconds so the local followers'
requests leave first, and reads the store every second as a backstop. A server that
is down costs follow nothing: local followers are mirrored as ever, events wait in the
store, nats-py reconnects on its own (fixed wait, no limit), and the store records
`bus_unavailable` once per outage and `bus_recovered` after it. A server that comes back
with fewer events than it acknowledged (a crash before its write reached the disk) is
sent the missing ones again. At start it creates or updates the stream and a durable
pull consumer `agent-<follower>` per remote follower (idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from copytrade.config.bus import BusConfig, connect_options, consumer_name
from copytrade.config.model import Config
from copytrade.config.urls import safe_url
from copytrade.core.bus_events import (
    MSG_ID_HEADER,
    LeaderChange,
    change_msg_id,
    change_subject,
    event_bytes,
    leader_filter,
)
from copytrade.engine.bus_threads import close_quietly, run_bus_loop
from copytrade.engine.bus_threads import describe as _describe
from copytrade.store import bus_queries

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from copytrade.store.repo import Store

log = logging.getLogger(__name__)

BATCH = 100  # events read from the store at a time
BACKSTOP_SECONDS = 1.0  # the store is read at least this often, woken or not
# Woken by a leader change, the publisher lingers this long before it reads: the local
# followers' requests for that change leave first (its ~0.5-1 ms of work an event competes
# with their workers for the CPU and the interpreter: measured, local P1 +1-3 ms at p50
# without it, within noise with it), and the rest of a burst joins the batch.
LINGER_SECONDS = 0.005
PUBLISH_TIMEOUT = 5.0  # seconds for a PubAck
RETRY_INITIAL, RETRY_MAX = 0.25, 5.0  # after a failed publish or setup, doubling
# The cursor's write takes the store's writer lock: rarely (a crash sends again at most
# this much, which the duplicate window drops).
CURSOR_SAVE_SECONDS = 5.0
STOP_SECONDS = 5.0  # at stop, what waits gets this long to be sent
RECENT_ACKS = 10_000  # acknowledged events remembered to resend what a server lost
# nats-py's own reconnection: a fixed wait between attempts, never giving up.
CONNECT = {"connect_timeout": 2, "reconnect_time_wait": 1, "max_reconnect_attempts": -1,
           "allow_reconnect": True, "ping_interval": 10, "max_outstanding_pings": 2,
           "name": "copytrade-leader"}
# The stream and consumers per the issue 12 contracts.
DUPLICATE_WINDOW_SECONDS = 600.0
MAX_AGE_SECONDS = 7 * 24 * 3600.0
# An agent that dies holding an event has it back after this long, and only then takes the
# ones behind it (one out at a time): short, so a crash stalls its follower briefly; an
# agent still at work on an event says so every IN_PROGRESS_SECONDS (engine/bus_consume.py).
ACK_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Acked:
    """One acknowledged event: where the cursor was before it, and its stream sequence."""

    before: int
    trail_id: int
    stream_seq: int


class BusUnavailable(Exception):
    """The server cannot take events now (not connected, or a publish failed)."""


class BusPublisher:
    def __init__(self, bus: BusConfig, store: Store, remote_followers: Sequence[str], *,
                 options: Mapping[str, Any], trading_date: Callable[[], date],
                 batch: int = BATCH, backstop_seconds: float = BACKSTOP_SECONDS,
                 linger_seconds: float = LINGER_SECONDS,
                 on_acked: Callable[[LeaderChange], None] | None = None) -> None:
        self.bus = bus
        self.store = store
        self.remote_followers = tuple(remote_followers)
        self.where = safe_url(bus.url or "")
        self._options = {**CONNECT, **options}
        self._trading_date = trading_date
        self.batch = batch
        self.backstop_seconds = backstop_seconds
        self.linger_seconds = linger_seconds
        self._on_acked = on_acked or (lambda change: None)
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._deadline = float("inf")  # when stopping: the drain ends by then
        self._thread = threading.Thread(target=self._run, name="bus-publish", daemon=True)
        self._nc: Client | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._js: JetStreamContext | None = None
        self._needs_setup = True
        self._acked: int | None = None  # trail id: every leader event up to it acknowledged
        self._saved: int | None = None
        self._saved_at = 0.0
        self._recent: deque[Acked] = deque(maxlen=RECENT_ACKS)
        self._retry_at = 0.0
        self._retry_wait = RETRY_INITIAL
        self._outage_since: datetime | None = None  # the store's clock
        self._outages = 0
        self._store_failing = False
        self.published = 0  # acknowledged by JetStream this run (duplicates included)
        self.duplicates = 0  # of which it already held (sent again after a restart)

    # ---- what follow uses -------------------------------------------------------------------

    def start(self) -> BusPublisher:
        self._thread.start()
        return self

    def wake(self) -> None:
        """A leader change was committed: publish it now. Safe from any thread; while a
        wake is pending, a read of a flag and nothing more."""
        if not self._wake.is_set():
            self._wake.set()

    @property
    def available(self) -> bool:
        return self._outage_since is None and self._nc is not None and self._nc.is_connected

    def lag(self) -> int:
        """Leader events recorded but not yet acknowledged by JetStream."""
        acked = self._acked
        if acked is None:
            acked = bus_queries.read_cursor(self.store.db, self.bus.stream) or 0
        return bus_queries.pending_count(self.store.db, acked)

    def stop(self, timeout: float = STOP_SECONDS) -> bool:
        """Publish what is waiting (within about `timeout` seconds), save the cursor, close
        the connection. True when the thread ended in time. Never raises."""
        self._deadline = time.monotonic() + max(timeout - 0.5, 0.0)
        self._halt.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(max(timeout, 0.0))
        return not self._thread.is_alive()

    # ---- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        run_bus_loop(self._main, self.store, "publisher")

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1, thread_name_prefix="bus-wake") as waiter:
            try:
                while not self._halt.is_set():
                    self._wake.clear()
                    delay = await self._step()
                    if not self._halt.is_set():
                        # the Event is waited for on a thread of its own: this loop keeps
                        # running nats-py's reader, pings and reconnects meanwhile
                        woken = await loop.run_in_executor(waiter, self._wake.wait, delay)
                        if woken and self.linger_seconds > 0:
                            await asyncio.sleep(self.linger_seconds)
                await self._drain()
            finally:
                self._wake.set()  # the waiter thread returns
                if self._connecting is not None:
                    self._connecting.cancel()
                await self._close()

    async def _connect(self) -> None:
        import nats

        nc = await nats.connect(**self._options, **self._callbacks())
        self._nc, self._js = nc, nc.jetstream(timeout=PUBLISH_TIMEOUT)
        self._needs_setup = True
        self._wake.set()

    def _connection_ready(self) -> bool:
        """Whether events can be sent now. Starts a connection if there is none (nats-py
        retries a first connection and every reconnection itself); raises what ended a
        connection attempt for good (say, refused credentials), to be retried later."""
        if self._nc is not None and self._nc.is_closed:
            self._nc = self._js = None
        if self._nc is not None:
            return self._nc.is_connected
        task = self._connecting
        if task is not None and task.done():
            self._connecting = None
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        return False

    def _callbacks(self) -> dict[str, Any]:
        async def error(exc: Exception) -> None:
            if not self._halt.is_set():
                self._unavailable(exc)

        async def disconnected() -> None:
            if not self._halt.is_set():  # not our own close at stop
                self._unavailable(BusUnavailable("disconnected"))

        async def reconnected() -> None:
            self._needs_setup = True
            self._wake.set()

        return {"error_cb": error, "disconnected_cb": disconnected,
                "reconnected_cb": reconnected}

    async def _step(self) -> float:
        """One pass: set up, publish what waits. How long to wait before the next pass."""
        if time.monotonic() < self._retry_at:
            return self._retry_at - time.monotonic()
        outages = self._outages  # an outage noticed during this pass is not over after it
        try:
            if self._acked is None:
                self._acked = self._start_cursor()
            if not self._connection_ready():
                return self.backstop_seconds  # nats-py is (re)connecting; it wakes us
            if self._needs_setup:
                await self._setup()
            sent = await self._publish_pending()
        except Exception as exc:
            self._failed(exc)
            return self._retry_at - time.monotonic()
        self._retry_wait = RETRY_INITIAL
        if outages == self._outages:
            self._recovered(sent)
        self._save_cursor()
        return self.backstop_seconds

    async def _drain(self) -> None:
        """At stop: what is still waiting, if the server takes it before the deadline."""
        remaining = self._deadline - time.monotonic()
        if self._nc is not None and self._nc.is_connected and remaining > 0:
            try:
                if self._acked is None:
                    self._acked = self._start_cursor()
                if self._needs_setup:
                    await asyncio.wait_for(self._setup(), remaining)
                await asyncio.wait_for(self._publish_pending(),
                                       self._deadline - time.monotonic())
            except Exception as exc:  # left in the store: the next run sends it
                log.warning("bus: %d leader event(s) not sent at stop (%s): sent at the "
                            "next start", self._lag_or_unknown(), _describe(exc))
        self._save_cursor(force=True)
        log.info("bus: %d leader event(s) acknowledged this run, %d of them already in the "
                 "stream (sent again after a restart)", self.published, self.duplicates)

    async def _close(self) -> None:
        await close_quietly(self._nc, "publisher")

    # ---- publishing ------------------------------------------------------------------------

    def _start_cursor(self) -> int:
        db = self.store.db
        # an outage the last run recorded and never saw end is this run's too
        self._outage_since = self._outage_since or bus_queries.open_outage(db)
        cursor = bus_queries.read_cursor(db, self.bus.stream)
        if cursor is None:
            cursor = bus_queries.first_cursor(db, self._trading_date())
            bus_queries.save_cursor(self.store, self.bus.stream, cursor)
            log.info("bus: first start on stream %s: leader events after trail row %d are "
                     "published", self.bus.stream, cursor)
        self._saved = cursor
        return cursor

    async def _publish_pending(self) -> int:
        """Every leader event after the cursor, a batch at a time. How many were sent."""
        assert self._acked is not None
        sent = 0
        while True:
            outbox = bus_queries.leader_changes(self.store.db, self._acked, self.batch)
            sent += await self._publish_batch(outbox.changes)
            if len(outbox.changes) < self.batch:
                self._acked = max(self._acked, outbox.head)  # nothing else up to the head
                return sent

    async def _publish_batch(self, changes: list[LeaderChange]) -> int:
        """The batch in flight together, except that an event is sent only once the one
        before it of the same order is acknowledged: one order's events are stored in
        order even when a publish fails (the rest of that order waits for the retry).
        The cursor moves over the acknowledged events in trail order up to the first
        failure, which is raised; what was in flight after it is sent again next time
        (the copies of those the server stored are dropped)."""
        last_of_order: dict[str, asyncio.Task[Any]] = {}
        sending: list[tuple[LeaderChange, asyncio.Task[Any]]] = []
        for change in changes:
            task = asyncio.ensure_future(self._publish_after(
                last_of_order.get(change.order_id), change))
            last_of_order[change.order_id] = task
            sending.append((change, task))
        sent = 0
        try:
            for change, task in sending:
                ack = await task
                self._recent.append(Acked(self._acked or 0, change.trail_id, ack.seq))
                self._acked = change.trail_id
                self.published += 1
                self.duplicates += bool(ack.duplicate)
                sent += 1
                self._on_acked(change)
        finally:  # after a failure (or at a stop's deadline) the rest is not waited for
            for _change, task in sending:
                task.cancel()
            await asyncio.gather(*(task for _change, task in sending), return_exceptions=True)
        return sent

    async def _publish_after(self, before: asyncio.Task[Any] | None,
                             change: LeaderChange) -> Any:
        if before is not None:
            await before  # its failure is this one's: not sent
        if self._js is None or self._nc is None or not self._nc.is_connected:
            raise BusUnavailable("disconnected")
        return await self._js.publish(
            change_subject(self.bus.subject_prefix, change), event_bytes(change),
            timeout=PUBLISH_TIMEOUT, stream=self.bus.stream,
            headers={MSG_ID_HEADER: change_msg_id(change)})

    async def _setup(self) -> None:
        """The streams and the consumers, created or brought in line (idempotent); then
        what the server lost of what it acknowledged is sent again."""
        assert self._js is not None
        await ensure_streams(self._js, self.bus)
        for name in self.remote_followers:
            await ensure_consumer(self._js, self.bus, name)
        await self._resend_lost()
        self._needs_setup = False

    async def _resend_lost(self) -> None:
        """A server that restarted with fewer events than it acknowledged (killed before
        its write reached the disk, or its store lost): the cursor goes back to the first
        event it no longer holds."""
        if not self._recent:
            return
        assert self._js is not None
        info = await self._js.stream_info(self.bus.stream)
        last = info.state.last_seq
        lost = [acked for acked in self._recent if acked.stream_seq > last]
        if lost:
            log.warning("bus: the server holds stream %s up to %d but acknowledged up to %d: "
                        "%d event(s) sent again", self.bus.stream, last,
                        self._recent[-1].stream_seq, len(lost))
            self._acked = min(self._acked or 0, lost[0].before)
            self._recent.clear()

    def _save_cursor(self, *, force: bool = False) -> None:
        """The cursor in the store every CURSOR_SAVE_SECONDS (events sent twice after a
        crash cost nothing: their copies are dropped by the duplicate window)."""
        now = time.monotonic()
        if self._acked is None or self._acked == self._saved:
            return
        if not force and now - self._saved_at < CURSOR_SAVE_SECONDS:
            return
        try:
            bus_queries.save_cursor(self.store, self.bus.stream, self._acked)
        except Exception:
            log.warning("bus: saving the cursor failed; retried", exc_info=True)
            return
        self._saved, self._saved_at = self._acked, now

    # ---- outages ----------------------------------------------------------------------------

    def _failed(self, exc: Exception) -> None:
        self._retry_at = time.monotonic() + self._retry_wait
        self._retry_wait = min(self._retry_wait * 2, RETRY_MAX)
        if _is_bus_error(exc):
            self._needs_setup = True  # a restarted server may have lost its stream
            self._unavailable(exc)
        elif not self._store_failing:
            self._store_failing = True
            log.exception("bus: reading the leader's events from the store failed; retrying")

    # What it publishes, and what follow does meanwhile, in the words of an outage's record
    # (an agent's results publisher says its own).
    ITEMS = "leader event"

    def _meanwhile(self) -> str:
        return ("follow goes on mirroring its own followers; leader events wait in the store "
                "and are sent when it is back")

    def _unavailable(self, exc: BaseException) -> None:
        if self._outage_since is not None:
            return
        self._outage_since = self.store.now()
        self._outages += 1
        reason = _describe(exc)
        log.warning("bus: %s unavailable (%s); %ss wait in the store", self.where, reason,
                    self.ITEMS)
        self._record_outage("bus_unavailable", f"the bus at {self.where} is unavailable "
                            f"({reason}): {self._meanwhile()}",
                            {"url": self.where, "error": reason})

    def _recovered(self, sent: int) -> None:
        self._store_failing = False
        if self._outage_since is None:
            return
        seconds = max((self.store.now() - _aware(self._outage_since)).total_seconds(), 0.0)
        self._outage_since = None
        log.info("bus: %s available again after %.1f s; %d %s(s) sent", self.where,
                 seconds, sent, self.ITEMS)
        self._record_outage("bus_recovered", f"the bus at {self.where} is available again "
                            f"after {seconds:.0f} s: {sent} {self.ITEMS}(s) recorded "
                            "meanwhile sent",
                            {"url": self.where, "outage_seconds": round(seconds, 1),
                             "sent": sent})

    def _record_outage(self, kind: str, message: str, data: dict[str, Any]) -> None:
        self._audit(kind, message, data)

    def _audit(self, kind: str, message: str, data: dict[str, Any]) -> None:
        try:
            bus_queries.audit(self.store, kind, message, data)
        except Exception:
            log.warning("bus: recording %s failed", kind, exc_info=True)

    def _lag_or_unknown(self) -> int:
        try:
            return self.lag()
        except Exception:
            return -1


# ---- the stream and the consumers -----------------------------------------------------------


async def ensure_streams(js: JetStreamContext, bus: BusConfig) -> None:
    """The leader events' stream and the agents' results stream, per the contracts."""
    await _ensure_stream(js, bus.stream, leader_filter(bus.subject_prefix))
    await _ensure_stream(js, bus.results_stream, bus.results_subjects)


async def _ensure_stream(js: JetStreamContext, name: str, subjects: str) -> None:
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    wanted: dict[str, Any] = {"subjects": [subjects], "max_age": MAX_AGE_SECONDS,
                              "duplicate_window": DUPLICATE_WINDOW_SECONDS,
                              "discard": DiscardPolicy.OLD}
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(StreamConfig(name=name, storage=StorageType.FILE,
                                         retention=RetentionPolicy.LIMITS, **wanted))
        log.info("bus: stream %s created (%s)", name, subjects)
        return
    current = info.config
    if any(getattr(current, key) != value for key, value in wanted.items()):
        await js.update_stream(current.evolve(**wanted))
        log.info("bus: stream %s updated to the contract's settings", name)


async def ensure_consumer(js: JetStreamContext, bus: BusConfig, follower: str) -> None:
    """`agent-<follower>`: durable, pull, every leader event, explicit acks, redelivered
    for ever (max_deliver -1), one event out at a time (max_ack_pending 1: an event an
    agent died holding comes back before any behind it, so an exit is never decided
    before its entry; the cost is up to the ack wait before events flow after a crash).
    A new one starts at the next event: what was published before the follower was
    remote was the leader's to mirror."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    name = consumer_name(follower)
    wanted: dict[str, Any] = {"filter_subject": leader_filter(bus.subject_prefix),
                              "ack_policy": AckPolicy.EXPLICIT, "max_deliver": -1,
                              "ack_wait": ACK_WAIT_SECONDS, "max_ack_pending": 1}
    try:
        info = await js.consumer_info(bus.stream, name)
    except NotFoundError:
        await js.add_consumer(bus.stream, ConsumerConfig(
            name=name, durable_name=name, deliver_policy=DeliverPolicy.NEW, **wanted))
        log.info("bus: consumer %s created on %s", name, bus.stream)
        return
    current = info.config
    if any(getattr(current, key) != value for key, value in wanted.items()):
        await js.add_consumer(bus.stream, current.evolve(**wanted))  # updates in place
        log.info("bus: consumer %s updated to the contract's settings", name)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _is_bus_error(exc: BaseException) -> bool:
    from nats.errors import Error as NatsError

    return isinstance(exc, NatsError | BusUnavailable | TimeoutError | OSError)


# ---- wiring ---------------------------------------------------------------------------------


def start_bus_publisher(config: Config, store: Store, **options: Any) -> BusPublisher | None:
    """The leader's publisher for follow, started; None in embedded mode (and for an
    agent, which publishes no leader events). ConfigError (exit 3) when the credentials
    file cannot be read. A server that is down is not an error: the thread retries."""
    bus = config.bus
    if not bus.is_leader:
        return None
    from copytrade.engine.follow import trading_date_now

    options.setdefault("trading_date", trading_date_now)
    remote = [follower.name for follower in config.remote_followers]
    publisher = BusPublisher(bus, store, remote, options=connect_options(bus), **options)
    log.info("bus: publishing leader events to %s (stream %s; agents: %s)", publisher.where,
             bus.stream, ", ".join(remote) or "none")
    return publisher.start()
