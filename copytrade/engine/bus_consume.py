"""An agent's leader feed ([bus] mode = "nats", role = "agent"; issue 12): the leader's
events, pulled from the agent's durable consumer, into the same replicator as a local
follower's leader reports.

A thread with its own asyncio loop and nats-py connection binds `agent-<follower>` (the
leader creates it; the agent's user may only pull and ack it), fetches one event at a
time (a fetch returns as soon as one is there), and hands each to `apply` on follow's
leader-report pipeline, where the decision is committed. Only then is the event
acknowledged: a crash before the ack has the server deliver it again, and a repeat
changes nothing (the applied seq per order in the store, and the replicator's merge and
the mirrors' state below it). The bus is never the truth: the agent's store is.

What the feed cannot use is recorded and acknowledged, never retried forever nor
dropped silently: a malformed event (`bus_event_rejected`). An event the store could not
record (or one for a stopped follower) is not acknowledged: it is kept in hand and applied
again after a short delay, and no event behind it is taken first, however long it takes.
A server that is down or unreachable costs nothing but time: nats-py reconnects on its
own (fixed wait, no limit), the store records `bus_unavailable` once per outage and
`bus_recovered` after it, and the consumer's events wait on the server meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any

from copytrade.config.bus import BusConfig, consumer_name
from copytrade.config.urls import safe_url
from copytrade.core.bus_decode import LeaderEvent, Rejected, decode_leader_event
from copytrade.core.bus_events import MSG_ID_HEADER
from copytrade.engine.bus_threads import close_quietly, describe, pause, run_bus_loop
from copytrade.redact import redact
from copytrade.store import bus_queries

if TYPE_CHECKING:
    from concurrent.futures import Future

    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

    from copytrade.store.repo import Store

log = logging.getLogger(__name__)

FETCH_SECONDS = 5.0  # a pull waits this long for the next event (a fetch of one returns at once)
RETRY_INITIAL, RETRY_MAX = 0.25, 5.0  # after a failed bind or fetch, doubling
REDELIVER_SECONDS = 1.0  # an event not recorded is applied again after this long
APPLY_SECONDS = 60.0  # the pipeline still busy after this long is logged, and waited for
IN_PROGRESS_SECONDS = 3.0  # an event at work is renewed this often (the ack wait is 10 s)
CONNECT = {"connect_timeout": 2, "reconnect_time_wait": 1, "max_reconnect_attempts": -1,
           "allow_reconnect": True, "ping_interval": 5, "max_outstanding_pings": 2}


class Verdict(Enum):
    """What becomes of an event once the pipeline has seen it."""

    APPLIED = "applied"  # acknowledged
    DONE = "done"  # a repeat, stale or refused event: recorded, acknowledged
    RETRY = "retry"  # not recorded (or the follower is stopped): delivered again later


Apply = Callable[[LeaderEvent | Rejected], "Future[Verdict]"]


class BusLeaderFeed:
    def __init__(self, bus: BusConfig, store: Store, *, options: Mapping[str, Any]) -> None:
        assert bus.follower is not None
        self.bus = bus
        self.store = store
        self.consumer = consumer_name(bus.follower)
        self.where = safe_url(bus.url or "")
        self._options = {**CONNECT, "name": f"copytrade-{self.consumer}", **options}
        self._on_state: Callable[[str, str], None] = lambda state, detail: None
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bus-feed", daemon=True)
        self._apply: Apply | None = None
        self._outage_since: float | None = None
        self._connected = False
        self._retry_wait = RETRY_INITIAL
        self._apply_failed = False  # the pipeline raised on the event in hand (retried)

    # ---- what follow uses -------------------------------------------------------------------

    def start(self, apply: Apply, *,
              on_state: Callable[[str, str], None] | None = None) -> BusLeaderFeed:
        """Pull events and hand each to `apply` (on follow's pipeline), until stop();
        `on_state(state, detail)` hears of each connection change."""
        self._apply = apply
        if on_state is not None:
            self._on_state = on_state
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop pulling (an event in hand is finished and acknowledged first)."""
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(max(timeout, 0.0))
        return not self._thread.is_alive()

    # ---- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        if not run_bus_loop(self._main, self.store, "leader feed"):
            self._set_state("stopped", "the leader feed stopped on an unexpected error: "
                            "see the log file; restart follow")

    async def _main(self) -> None:
        nc: Client | None = None
        try:
            while not self._halt.is_set():
                try:
                    if nc is None or nc.is_closed:
                        nc = await self._connect()
                    await self._pull(nc.jetstream(timeout=FETCH_SECONDS))
                except Exception as exc:
                    if not self._is_bus_error(exc):
                        raise
                    self._unavailable(exc)
                    await self._pause(self._retry_wait)
                    self._retry_wait = min(self._retry_wait * 2, RETRY_MAX)
        finally:
            await close_quietly(nc, "leader feed")

    async def _connect(self) -> Client:
        import nats

        async def error(exc: Exception) -> None:
            if not self._halt.is_set():
                self._unavailable(exc)

        async def disconnected() -> None:
            if not self._halt.is_set():
                self._unavailable(ConnectionError("disconnected"))

        async def reconnected() -> None:  # nats-py's own reconnect: the fetches go on
            self._recovered()

        self._set_state("connecting", f"NATS {self.where}")
        return await nats.connect(**self._options, error_cb=error,
                                  disconnected_cb=disconnected, reconnected_cb=reconnected)

    async def _pull(self, js: JetStreamContext) -> None:
        """Bind the consumer and take its events one at a time until stopped; raises what
        ends the connection or the consumer (retried by the caller)."""
        from nats.errors import TimeoutError as NatsTimeout

        subscription = await js.pull_subscribe_bind(self.consumer, stream=self.bus.stream)
        try:
            await js.consumer_info(self.bus.stream, self.consumer)  # exists, and we may read it
            self._recovered()
            while not self._halt.is_set():
                try:
                    [message] = await subscription.fetch(1, timeout=FETCH_SECONDS)
                except (TimeoutError, NatsTimeout):
                    continue  # nothing new: ask again
                await self._handle(message)
        finally:
            try:
                await subscription.unsubscribe()
            except Exception:
                log.debug("bus: unsubscribing failed", exc_info=True)

    async def _handle(self, message: Msg) -> None:
        headers = message.headers or {}
        event = decode_leader_event(message.data, subject=message.subject,
                                    msg_id=headers.get(MSG_ID_HEADER),
                                    expected_prefix=self.bus.subject_prefix, redact=redact)
        assert self._apply is not None
        while (verdict := await self._verdict(message, self._apply(event))) is Verdict.RETRY:
            # Kept in hand and applied again: a nak would let the events behind it overtake
            # it (an exit decided before its entry).
            await message.in_progress()
            await self._pause(REDELIVER_SECONDS)
            if self._halt.is_set():
                return  # delivered again at the next start
        if verdict is None:
            return  # follow stops with it in hand: delivered again at the next start
        await message.ack()
        if self._apply_failed:
            self._apply_failed = False
            self._set_state("connected", f"NATS {self.where} ({self.consumer})")

    async def _verdict(self, message: Msg, applying: Future[Verdict]) -> Verdict | None:
        """The pipeline's verdict, however long it takes: the event stays in hand (its ack
        wait renewed) and none behind it is taken, so the order holds and it is applied
        once; None when follow stops first. The pipeline raising (the store failing) is
        RETRY: the event comes again and the feed goes on, shown as degraded meanwhile."""
        waiting = asyncio.wrap_future(applying)
        started = time.monotonic()
        warned_at = started
        while not (await asyncio.wait({waiting}, timeout=IN_PROGRESS_SECONDS))[0]:
            if self._halt.is_set():
                return None
            await message.in_progress()  # within the ack wait: not delivered again meanwhile
            if time.monotonic() - warned_at >= APPLY_SECONDS:
                warned_at = time.monotonic()
                log.warning("bus: a leader event is still being applied after %.0f s: "
                            "waiting for it", warned_at - started)
        try:
            return waiting.result()
        except Exception as exc:
            log.error("bus: a leader event could not be applied; it comes again", exc_info=exc)
            self._apply_failed = True
            self._set_state("backoff", f"a leader event could not be applied "
                            f"({_describe(exc)}): retried")
            return Verdict.RETRY

    # ---- the record ------------------------------------------------------------------------

    def _set_state(self, state: str, detail: str) -> None:
        self._on_state(state, detail)

    def _unavailable(self, exc: BaseException) -> None:
        self._connected = False
        self._set_state("backoff", f"NATS {self.where}: {_describe(exc)}")
        if self._outage_since is not None:
            return
        self._outage_since = time.monotonic()
        log.warning("bus: %s unavailable (%s); leader events wait on the server", self.where,
                    _describe(exc))
        self._record_outage("bus_unavailable", f"the bus at {self.where} is unavailable "
                            f"({_describe(exc)}): leader events wait on the server and are "
                            "taken when it is back", {"url": self.where, "error": _describe(exc)})

    def _recovered(self) -> None:
        self._retry_wait = RETRY_INITIAL
        self._set_state("connected", f"NATS {self.where} ({self.consumer})")
        if not self._connected:  # every (re)connection on the record, like a stream's
            self._connected = True
            self._audit("stream_connected", f"leader events connected: NATS {self.where}, "
                        f"consumer {self.consumer}", {"url": self.where})
        if self._outage_since is None:
            return
        seconds = time.monotonic() - self._outage_since
        self._outage_since = None
        log.info("bus: %s available again after %.1f s", self.where, seconds)
        self._record_outage("bus_recovered", f"the bus at {self.where} is available again "
                            f"after {seconds:.0f} s",
                            {"url": self.where, "outage_seconds": round(seconds, 1)})

    def _record_outage(self, kind: str, message: str, data: dict[str, Any]) -> None:
        try:
            record_outage_once(self.store, kind, message, data)
        except Exception:
            log.warning("bus: recording %s failed", kind, exc_info=True)

    def _audit(self, kind: str, message: str, data: dict[str, Any]) -> None:
        try:
            bus_queries.audit(self.store, kind, message, data)
        except Exception:
            log.warning("bus: recording %s failed", kind, exc_info=True)

    async def _pause(self, seconds: float) -> None:
        await pause(self._halt, seconds)

    @staticmethod
    def _is_bus_error(exc: BaseException) -> bool:
        from nats.errors import Error as NatsError

        return isinstance(exc, NatsError | TimeoutError | OSError)


def record_outage_once(store: Store, kind: str, message: str, data: dict[str, Any]) -> bool:
    """`bus_unavailable` unless the record has an outage open, `bus_recovered` only while it
    has: one pair per outage, whichever of the agent's connections (this feed, its results
    publisher) saw it. Checked and written in one write transaction (the store's lock):
    both seeing one server go at the same moment record it once."""
    with store.write():
        if (bus_queries.open_outage(store.db) is None) != (kind == "bus_unavailable"):
            return False  # the other connection recorded it
        store.audit(kind, message, data=data)
        return True


def _describe(exc: BaseException) -> str:
    from nats.js.errors import NotFoundError

    if isinstance(exc, NotFoundError):
        return ("no such consumer on the server yet: the leader's follow creates it at its "
                "start (is this follower remote = true in the leader's configuration?)")
    return describe(exc)
