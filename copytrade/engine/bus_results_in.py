"""The leader's results consumer ([bus] mode = "nats", role = "leader", with remote
followers; issue 12): what each agent reports of its follower, into the leader's record.

A thread with its own asyncio loop and nats-py connection creates (or binds) the durable
pull consumer `leader-results` on the results stream (every `P.results.>`, explicit acks,
redelivered for ever), pulls a batch at a time, decodes each result without trusting it
(core/bus_results.py: a bad one is recorded as `bus_result_rejected`), stores the batch in
one transaction (store/results_queries.py) and acknowledges each message only after that
commit: a crash in between has the server deliver them again, and a repeat changes nothing.

Every few seconds, on this thread and never on the copy path, it reads each remote
follower's consumer (`agent-<name>` on the events stream): events pending plus delivered
but not acknowledged, that agent's lag (`consumer_lag()`; None while unknown). A server
that is down costs nothing but time: it reconnects for ever; the leader's publisher records
the outage (one record per outage, not one per connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from copytrade.config.bus import BusConfig, connect_options, consumer_name
from copytrade.config.model import Config
from copytrade.config.urls import safe_url
from copytrade.core.bus_decode import Rejected
from copytrade.core.bus_events import MSG_ID_HEADER
from copytrade.core.bus_results import AgentResult, decode_result
from copytrade.engine.bus_publish import (
    ACK_WAIT_SECONDS,
    CONNECT,
    RETRY_INITIAL,
    RETRY_MAX,
    ensure_streams,
)
from copytrade.engine.bus_threads import close_quietly, pause, run_bus_loop
from copytrade.engine.bus_threads import describe as _describe
from copytrade.redact import redact
from copytrade.store import results_queries

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

    from copytrade.store.repo import Store

log = logging.getLogger(__name__)

CONSUMER = "leader-results"
BATCH = 100
FETCH_SECONDS = 1.0  # a pull waits this long for results (it returns as soon as one is there)
LAG_SECONDS = 3.0  # each agent's consumer is read at most this often
STORE_RETRY_SECONDS = 1.0  # a batch the store could not take comes again after this long


class ResultsConsumer:
    def __init__(self, bus: BusConfig, store: Store, followers: Sequence[str], *,
                 options: Mapping[str, Any], batch: int = BATCH,
                 lag_seconds: float = LAG_SECONDS) -> None:
        self.bus = bus
        self.store = store
        self.followers = tuple(followers)
        self.where = safe_url(bus.url or "")
        self._options = {**CONNECT, **options, "name": "copytrade-leader-results"}
        self.batch = batch
        self.lag_seconds = lag_seconds
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bus-results-in", daemon=True)
        self._lags: dict[str, int | None] = dict.fromkeys(self.followers)
        self._lag_read_at = -float("inf")
        self._retry_wait = RETRY_INITIAL
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.stored = 0  # new results recorded this run
        self.repeats = 0  # results already recorded (delivered again)
        self.rejected = 0

    def start(self) -> ResultsConsumer:
        self._thread.start()
        return self

    def consumer_lag(self) -> dict[str, int | None]:
        """Each remote follower's agent: leader events not yet acknowledged (pending plus
        delivered and unacknowledged), as last read; None while unknown. Reads nothing."""
        return dict(self._lags)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop pulling (a pull in progress is cancelled: what it got is not acknowledged,
        and comes again at the next start), close the connection. Never raises."""
        self._halt.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed already
                loop.call_soon_threadsafe(task.cancel)
        if self._thread.is_alive():
            self._thread.join(max(timeout, 0.0))
        return not self._thread.is_alive()

    # ---- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        run_bus_loop(self._main, self.store, "results consumer")

    async def _main(self) -> None:
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        if self._halt.is_set():
            return
        nc: Client | None = None
        try:
            while not self._halt.is_set():
                try:
                    if nc is None or nc.is_closed:
                        nc = await self._connect()
                    await self._consume(nc)
                except Exception as exc:
                    if self._halt.is_set():
                        break
                    self._unknown_lags()
                    log.warning("bus: results from %s not read (%s); retried", self.where,
                                _describe(exc))
                    await self._pause(self._retry_wait)
                    self._retry_wait = min(self._retry_wait * 2, RETRY_MAX)
        finally:
            await close_quietly(nc, "results consumer")

    async def _connect(self) -> Client:
        import nats

        async def quiet(*_args: Any) -> None:  # the publisher records outages
            return None

        return await nats.connect(**self._options, error_cb=quiet, disconnected_cb=quiet)

    async def _consume(self, nc: Client) -> None:
        """Set up, then pull until the connection fails or follow stops."""
        from nats.errors import TimeoutError as NatsTimeout

        js = nc.jetstream(timeout=5.0)
        await ensure_streams(js, self.bus)
        await ensure_results_consumer(js, self.bus)
        sub = await js.pull_subscribe_bind(CONSUMER, self.bus.results_stream)
        try:
            while not self._halt.is_set():
                await self._read_lags(js)
                try:
                    messages = await sub.fetch(self.batch, timeout=FETCH_SECONDS)
                except NatsTimeout:
                    if not nc.is_connected:
                        raise
                    continue
                await self._handle(messages)
                self._retry_wait = RETRY_INITIAL
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _handle(self, messages: list[Msg]) -> None:
        results: list[AgentResult] = []
        rejected: list[tuple[str, str, str]] = []
        for message in messages:
            decoded = decode_result(
                message.data, subject=message.subject,
                msg_id=(message.headers or {}).get(MSG_ID_HEADER),
                prefix=self.bus.subject_prefix, followers=self.followers, redact=redact)
            if isinstance(decoded, Rejected):
                log.warning("bus: a result was rejected: %s", decoded.reason)
                rejected.append((decoded.reason, decoded.excerpt,
                                 redact(message.subject[:120])))
            else:
                results.append(decoded)
        try:  # on this thread: its store connection, a few ms a batch
            new = results_queries.save_results(self.store, results, rejected)
        except Exception:
            log.exception("bus: recording %d result(s) failed; they come again",
                          len(messages))
            for message in messages:
                await message.nak(delay=STORE_RETRY_SECONDS)
            return
        self.stored += new
        self.repeats += len(results) - new
        self.rejected += len(rejected)
        for message in messages:  # only now: the results are committed
            await message.ack()

    async def _read_lags(self, js: JetStreamContext) -> None:
        if time.monotonic() - self._lag_read_at < self.lag_seconds:
            return
        self._lag_read_at = time.monotonic()
        for name in self.followers:
            try:
                info = await js.consumer_info(self.bus.stream, consumer_name(name))
                self._lags[name] = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
            except Exception:  # no consumer yet, or the server went: unknown
                self._lags[name] = None

    def _unknown_lags(self) -> None:
        self._lags = dict.fromkeys(self.followers)
        self._lag_read_at = -float("inf")

    async def _pause(self, seconds: float) -> None:
        await pause(self._halt, seconds)


async def ensure_results_consumer(js: JetStreamContext, bus: BusConfig) -> None:
    """`leader-results`: durable, pull, every result, explicit acks, redelivered for ever."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    wanted: dict[str, Any] = {"filter_subject": bus.results_subjects,
                              "ack_policy": AckPolicy.EXPLICIT, "max_deliver": -1,
                              "ack_wait": ACK_WAIT_SECONDS}
    try:
        info = await js.consumer_info(bus.results_stream, CONSUMER)
    except NotFoundError:
        await js.add_consumer(bus.results_stream, ConsumerConfig(
            name=CONSUMER, durable_name=CONSUMER, deliver_policy=DeliverPolicy.ALL, **wanted))
        log.info("bus: consumer %s created on %s", CONSUMER, bus.results_stream)
        return
    if any(getattr(info.config, key) != value for key, value in wanted.items()):
        await js.add_consumer(bus.results_stream, info.config.evolve(**wanted))


def start_results_consumer(config: Config, store: Store, **options: Any
                           ) -> ResultsConsumer | None:
    """The leader's results consumer for follow, started; None unless [bus] mode = "nats"
    with role = "leader" and at least one enabled remote follower."""
    bus = config.bus
    remote = [follower.name for follower in config.remote_followers]
    if not bus.is_leader or not remote:
        return None
    consumer = ResultsConsumer(bus, store, remote, options=connect_options(bus), **options)
    log.info("bus: reading the agents' results from %s (%s)", consumer.where,
             bus.results_stream)
    return consumer.start()
