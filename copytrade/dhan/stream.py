"""Our own client for Dhan's order-update stream (the SDK's prints the token and cannot stop).

One `LeaderStream` keeps one account's stream open until `stop()`: connect, send Dhan's login,
turn every message into an `OrderReport` (`frames.parse_frame`) for `on_report`. Any
disconnect or failure goes through exponential backoff with full jitter and tries again,
forever. Dhan sends no login acknowledgement and no heartbeat, so liveness is websockets'
ping/pong keepalive: a server that stops answering pings is closed and reconnected.

Silence is told apart from death. Real Dhan can be slow to answer pings (users report 1011
keepalive closes at the SDK's 20 s, and a 3 s ping timeout reconnects needlessly), so the
keepalive that closes the connection is tolerant; but a silent stream must be *noticed* fast.
With `probe_every` set, the client pings that often, and when neither a frame nor the pong
came within `silent_after` it tells `on_silence(True, ...)` once (the owner reads the order
book over REST, which is cheap, instead of waiting); the next frame or pong ends the silence
(`on_silence(False, ...)`).

Dhan refuses a bad login by closing the socket (1008). That is reported as "login refused" and
retried with backoff like any disconnect; the owner learns of an expired token from REST
(DH-901) and calls `stop()`.

Floods (issue 7 row 12): a pong or a server ping is answered by websockets when its bytes are
read (`data_received`), not when we consume messages. So reading must not wait on consumption:
websockets reads and queues up to MAX_QUEUE messages on its own, and our reader gives the loop a
turn every YIELD_EVERY seconds even while messages are queued (`recv()` does not yield while it
has one). Per message the loop does only the parse and `on_report`, which must be a cheap
enqueue: a slow one is counted (`slow_reports`) and logged, because while it runs nothing on
the loop runs. If messages keep arriving faster than they are consumed, the queue reaches
MAX_QUEUE and reading pauses, so memory stays bounded; pings then wait behind the unread
backlog, and past the ping timeout the keepalive closes 1011 and the owner's catch-up at the
next login finds what was in flight. Every ended connection is reported once to `on_closed`
with its close code.

The token goes into exactly one place, the login message. It is never logged, never put in a
state detail or exception text, and websockets' DEBUG frame logging is shut off for our
connections (it would print the login message).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import Close
from websockets.uri import parse_uri

from copytrade.core.events import OrderReport
from copytrade.dhan.frames import MalformedFrame, parse_frame
from copytrade.redact import redact
from copytrade.secret import Secret

__all__ = ["LeaderStream", "StreamState"]

log = logging.getLogger(__name__)

LOGIN_MSG_CODE = 42
CLOSE_POLICY_VIOLATION = 1008  # Dhan's answer to a bad login
CLOSE_TOO_BIG = 1009
CLOSE_ABNORMAL = 1006  # RFC 6455 7.1.5: the connection ended without a close frame either way
# An order_alert is ~1 KiB (about 45 short keys); 64 KiB leaves room for any order Dhan may send
# while capping what one message, and MAX_QUEUE of them, can cost. Bigger closes 1009, which is
# reported and followed by a reconnect and catch-up like any close.
MAX_MESSAGE_BYTES = 64 * 1024
# Messages websockets reads ahead of us: pings are answered while fewer are waiting. 8192 real
# frames are ~9 MiB (512 MiB if every one were MAX_MESSAGE_BYTES) and absorb 0.8 s of a flood
# 10k/s faster than we consume. Once full, reading resumes after 1024 are consumed, not
# websockets' default three quarters: the ping behind them should not wait that long.
MAX_QUEUE = 8192
RESUME_QUEUE = MAX_QUEUE - 1024
YIELD_EVERY = 0.005  # seconds of back-to-back messages before the loop gets a turn
SLOW_REPORT = 0.02  # an on_report this slow holds up pings: counted and logged
CLOSE_TIMEOUT = 1.0  # closing handshake budget: a stalled server must not hold up a reconnect
STABLE_AFTER = 30.0  # a connection up this long resets the backoff even if it carried nothing
SILENT_AFTER = 2.0  # no frame and no pong this long after a probe: the stream is silent
EXCERPT_CHARS = 200  # of a malformed message, for on_malformed
DETAIL_CHARS = 160

_T = TypeVar("_T")


class StreamState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"  # login sent (Dhan never acknowledges one)
    BACKOFF = "backoff"
    STOPPED = "stopped"


class _NeverDebug(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger that drops DEBUG whatever level is configured: websockets logs every frame
    at DEBUG, and our first frame carries the token."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        return None


_wire_log = _NeverDebug(logging.getLogger(f"{__name__}.wire"), {})


class _CatchUpFailed(Exception):
    """on_connected raised: the connection is dropped so the next login runs it again."""


def _log_malformed(reason: str, excerpt: str) -> None:
    log.warning("order stream: skipped a malformed message: %s", reason)


def _log_state(state: StreamState, detail: str) -> None:
    log.info("order stream %s: %s", state, detail)


def _log_closed(code: int | None, reason: str) -> None:
    log.info("order stream closed (%s): %s", code, reason)


class LeaderStream:
    """The order-update stream of one account, reconnecting until stop()."""

    def __init__(
        self,
        url: str,
        client_id: str,
        token: str,
        *,
        on_report: Callable[[OrderReport], None],
        on_malformed: Callable[[str, str], None] = _log_malformed,
        on_state: Callable[[StreamState, str], None] = _log_state,
        on_connected: Callable[[], Awaitable[None] | None] | None = None,
        on_closed: Callable[[int | None, str], None] = _log_closed,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        ping_interval: float = 10.0,
        ping_timeout: float = 10.0,
        open_timeout: float = 10.0,
        stable_after: float = STABLE_AFTER,
        probe_every: float | None = None,
        silent_after: float = SILENT_AFTER,
        on_silence: Callable[[bool, str], None] | None = None,
    ) -> None:
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        try:
            where = parse_uri(url)
        except InvalidURI:
            raise ValueError(f"not a websocket URL: {url!r}") from None
        self._url = url
        self._where = f"{where.host}:{where.port}"
        self._client_id = client_id
        self._token = Secret(token)
        self._on_report = on_report
        self._on_malformed = on_malformed
        self._on_state = on_state
        self._on_connected = on_connected
        self._on_closed = on_closed
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._open_timeout = open_timeout
        self._stable_after = stable_after
        self._probe_every = probe_every
        self._silent_after = silent_after
        self._on_silence = on_silence

        self._state = StreamState.STOPPED
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._current: asyncio.Future[Any] | None = None  # what stop() cancels
        self._failures = 0  # consecutive unproductive connections: the backoff exponent
        self._logins = 0
        self._frames = 0
        self._malformed = 0
        self._reports = 0
        self._slow_reports = 0
        self._closes: dict[int, int] = {}
        self._connect_failures = 0
        self._last_frame_at: float | None = None
        # Per connection:
        self._ws: ClientConnection | None = None
        self._connected_at: float | None = None
        self._delivered = False
        self._forced: str | None = None
        self._warned_slow = False
        self._held: list[OrderReport] | None = None  # reports waiting for on_connected
        self._silent_since: float | None = None  # a probe went unanswered, nothing came since
        self._silences = 0
        self._closing: set[asyncio.Task[None]] = set()  # keeps close tasks referenced

    def __repr__(self) -> str:
        return f"<LeaderStream {self._client_id} {self._where} {self._state}>"

    # ----- observable state ----------------------------------------------------------------

    @property
    def state(self) -> StreamState:
        return self._state

    @property
    def reconnects(self) -> int:
        """Logins after the first one."""
        return max(self._logins - 1, 0)

    @property
    def frames(self) -> int:
        """Messages received, malformed and non-order ones included."""
        return self._frames

    @property
    def malformed(self) -> int:
        return self._malformed

    @property
    def reports(self) -> int:
        """OrderReports handed to on_report."""
        return self._reports

    @property
    def slow_reports(self) -> int:
        """on_report calls that took SLOW_REPORT or longer (each one held up pings)."""
        return self._slow_reports

    @property
    def closes(self) -> dict[int, int]:
        """Ended connections by close code (1006: no close frame), a copy."""
        return self._closes.copy()

    @property
    def connect_failures(self) -> int:
        """Attempts that never got a websocket connection (on_closed saw code None)."""
        return self._connect_failures

    @property
    def silences(self) -> int:
        """Times a probe found the connection silent (no frame, no pong in silent_after)."""
        return self._silences

    @property
    def last_frame_at(self) -> float | None:
        """time.monotonic() of the last message received."""
        return self._last_frame_at

    # ----- control ---------------------------------------------------------------------

    async def run(self) -> None:
        """Keep the stream open until stop(); never gives up, never raises for the network."""
        if self._loop is not None:
            raise RuntimeError("LeaderStream.run() is already running")
        self._loop = asyncio.get_running_loop()
        try:
            while not self._stopping:
                why = await self._until_stopped(self._session())
                if self._stopping or why is None:
                    break
                self._count_outcome()
                delay = self._next_delay()
                self._set_state(StreamState.BACKOFF, f"{why}; retrying in {delay:.2f}s")
                await self._until_stopped(self._sleep(delay))
        finally:
            self._loop = None
            self._set_state(StreamState.STOPPED, "stopped")

    def stop(self) -> None:
        """Make run() return promptly, from any state; safe from any thread. Final."""
        self._stopping = True
        loop = self._loop
        if loop is None:
            return  # not running: a later run() returns at once
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._interrupt()
        else:
            with contextlib.suppress(RuntimeError):  # loop already closed: nothing to stop
                loop.call_soon_threadsafe(self._interrupt)

    def set_token(self, token: Secret) -> None:
        """A renewed token: the next login uses it (the open connection stays logged in)."""
        self._token = token

    async def force_reconnect(self, reason: str) -> None:
        """Close the current connection (a watchdog saw it stall); run() backs off and
        reconnects. A no-op while not connected. Call it on run()'s event loop."""
        ws = self._ws
        if ws is None:
            return
        self._forced = self._redact(reason)[:DETAIL_CHARS]
        await ws.close(reason="reconnect")

    def _interrupt(self) -> None:
        if self._current is not None:
            self._current.cancel()

    async def _until_stopped(self, work: Awaitable[_T]) -> _T | None:
        """Run one phase (a connection or a backoff sleep) that stop() can cancel."""
        task = asyncio.ensure_future(work)
        if self._stopping:  # stop() came from a callback between two phases
            task.cancel()
        self._current = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._stopping and current is not None and current.cancelling() == 0:
                return None  # cancelled by stop(), not by whoever runs us
            raise
        finally:
            self._current = None

    # ----- one connection --------------------------------------------------------------

    async def _session(self) -> str:
        """Connect, log in, read until the connection ends; returns why it ended."""
        self._ws, self._connected_at, self._delivered, self._forced = None, None, False, None
        self._held, self._warned_slow = None, False
        self._set_state(StreamState.CONNECTING, f"connecting to {self._where}")
        opened: ClientConnection | None = None
        why = "connection ended"
        try:
            async with connect(
                self._url,
                open_timeout=self._open_timeout,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                close_timeout=CLOSE_TIMEOUT,
                max_size=MAX_MESSAGE_BYTES,
                max_queue=(MAX_QUEUE, RESUME_QUEUE),
                logger=_wire_log,
            ) as ws:
                opened = ws
                try:
                    await self._serve(ws)  # only leaves through an exception
                except asyncio.CancelledError:
                    # A normal closure (1000); leaving `async with` on an exception says 1011.
                    await ws.close()
                    raise
        except asyncio.CancelledError:
            why = "stopped" if self._stopping else "cancelled"
            raise
        except ConnectionClosed as closed:
            why = self._closed_detail(closed)
        except _CatchUpFailed as failed:
            why = str(failed)
        except Exception as exc:  # OSError, TimeoutError, InvalidHandshake, and bugs
            why = self._failure_detail(exc)
        finally:
            self._ws = None
            self._record_close(opened, why)  # on stop() too: every ended connection
        return why

    async def _serve(self, ws: ClientConnection) -> None:
        login = {"LoginReq": {"MsgCode": LOGIN_MSG_CODE, "ClientId": self._client_id,
                              "Token": self._token.reveal()}, "UserType": "SELF"}
        await ws.send(json.dumps(login))
        del login
        self._ws, self._connected_at = ws, time.monotonic()
        self._logins += 1
        self._set_state(StreamState.CONNECTED, f"login sent for {self._client_id}")
        catch_up = self._start_catch_up()
        probe = asyncio.ensure_future(self._probe(ws)) if self._probe_every else None
        turn_at = time.monotonic() + YIELD_EVERY
        try:
            while True:
                self._on_message(await ws.recv())
                if time.monotonic() >= turn_at:
                    # recv() returns queued messages without yielding: without this turn a
                    # backlog would keep data_received (pongs, pings) and keepalive waiting.
                    await asyncio.sleep(0)
                    turn_at = time.monotonic() + YIELD_EVERY
        finally:
            if catch_up is not None and not catch_up.done():
                catch_up.cancel()  # the next login runs its own
            if probe is not None:
                probe.cancel()
            self._heard("the silent connection ended")  # the next one starts afresh

    async def _probe(self, ws: ClientConnection) -> None:
        """Ping every probe_every; a probe answered by neither a frame nor its pong within
        silent_after marks the stream silent until one of them comes."""
        assert self._probe_every is not None
        while True:
            await asyncio.sleep(self._probe_every)
            sent = time.monotonic()
            try:
                pong = await ws.ping()
            except ConnectionClosed:
                return
            try:
                await asyncio.wait_for(asyncio.shield(pong), self._silent_after)
            except TimeoutError:
                last = self._last_frame_at
                if last is None or last < sent:
                    self._fell_silent(sent)
                try:
                    await pong  # the keepalive closes the connection if it never comes
                except ConnectionClosed:
                    return
            except ConnectionClosed:
                return
            self._heard()

    def _fell_silent(self, since: float) -> None:
        if self._silent_since is not None:
            return
        self._silent_since = since
        self._silences += 1
        if self._on_silence is not None:
            _call(self._on_silence, True, f"no frame and no pong for {self._silent_after:g} s")

    def _heard(self, detail: str = "heard from again") -> None:
        """A frame or a pong (or the connection's end): whatever silence there was is over."""
        if self._silent_since is None:
            return
        silent_for = time.monotonic() - self._silent_since
        self._silent_since = None
        if self._on_silence is not None:
            _call(self._on_silence, False, f"{detail} after {silent_for:.1f} s")

    def _on_message(self, message: str | bytes) -> None:
        self._frames += 1
        self._last_frame_at = time.monotonic()
        if self._silent_since is not None:
            self._heard()
        try:
            report = parse_frame(message)
        except MalformedFrame as bad:
            self._malformed += 1
            _call(self._on_malformed, str(bad), _excerpt(message))
            return
        if report is None:
            return
        self._delivered = True
        if self._held is not None:
            self._held.append(report)
        else:
            self._report(report)

    def _report(self, report: OrderReport) -> None:
        started = time.monotonic()
        _call(self._on_report, report)
        self._reports += 1
        took = time.monotonic() - started
        if took >= SLOW_REPORT:
            self._slow_reports += 1
            if not self._warned_slow:  # once per connection: logging is not free either
                self._warned_slow = True
                log.warning("order stream: on_report took %.0f ms on the event loop; pings "
                            "wait while it runs (it should only enqueue)", took * 1000)

    # ----- the owner's catch-up barrier --------------------------------------------------

    def _start_catch_up(self) -> asyncio.Future[Any] | None:
        """Call on_connected. While an async one runs, the socket keeps being read (so pings
        are answered) and reports are held, then delivered in order once it finishes."""
        if self._on_connected is None:
            return None
        try:
            pending = self._on_connected()
        except Exception as exc:
            log.error("order stream: on_connected failed", exc_info=True)
            raise _CatchUpFailed(f"catch-up failed: {type(exc).__name__}") from None
        if not inspect.isawaitable(pending):
            return None
        self._held = []
        catch_up = asyncio.ensure_future(pending)
        ws = self._ws
        catch_up.add_done_callback(lambda done: self._catch_up_done(done, ws))
        return catch_up

    def _catch_up_done(self, done: asyncio.Future[Any], ws: ClientConnection | None) -> None:
        if done.cancelled() or ws is not self._ws:
            return  # that connection is gone; its held reports go with it
        held, self._held = self._held or [], None
        failure = done.exception()
        if failure is not None:
            log.error("order stream: on_connected failed", exc_info=failure)
            # Drop the connection: the next login runs the catch-up again, and it covers
            # what was held here.
            self._forced = f"catch-up failed: {type(failure).__name__}"
            if ws is not None:
                closing = asyncio.ensure_future(ws.close(reason="catch-up failed"))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            return
        for report in held:
            self._report(report)

    # ----- backoff -----------------------------------------------------------------------

    def _count_outcome(self) -> None:
        """A connection that delivered, or stayed up a while, resets the backoff."""
        up_since = self._connected_at
        lasted = up_since is not None and time.monotonic() - up_since >= self._stable_after
        self._failures = 0 if (self._delivered or lasted) else self._failures + 1

    def _next_delay(self) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2**(failures - 1))]."""
        exponent = min(max(self._failures - 1, 0), 64)
        ceiling = min(self._backoff_max, self._backoff_initial * 2.0**exponent)
        return self._rng.uniform(0.0, ceiling)

    # ----- reporting -----------------------------------------------------------------------

    def _set_state(self, state: StreamState, detail: str) -> None:
        self._state = state
        _call(self._on_state, state, self._redact(detail))

    def _record_close(self, ws: ClientConnection | None, why: str) -> None:
        if ws is None:
            code: int | None = None
            self._connect_failures += 1
        else:
            protocol = ws.protocol
            first, _ = _first_close(protocol.close_rcvd, protocol.close_sent,
                                    protocol.close_rcvd_then_sent)
            code = CLOSE_ABNORMAL if first is None else int(first.code)  # not an enum
            self._closes[code] = self._closes.get(code, 0) + 1
        _call(self._on_closed, code, self._redact(why))

    def _closed_detail(self, closed: ConnectionClosed) -> str:
        if self._forced is not None:
            return f"reconnect forced: {self._forced}"
        first, by_us = _first_close(closed.rcvd, closed.sent, closed.rcvd_then_sent)
        if first is None:
            return "connection lost (no close frame)"
        code = f"{first.code} {first.reason}" if first.reason else str(first.code)
        if by_us:
            if "keepalive" in first.reason:
                return "no pong within the ping timeout (stalled connection)"
            if first.code == CLOSE_TOO_BIG:
                return self._redact(f"message too big ({code})")
            return self._redact(f"closed by us ({code})")
        if first.code == CLOSE_POLICY_VIOLATION:
            return self._redact(f"login refused (server closed {code})")
        return self._redact(f"closed by server ({code})")

    def _failure_detail(self, exc: Exception) -> str:
        detail = _describe_failure(exc)
        if detail.startswith("unexpected"):  # a bug: say what, without a traceback's locals
            log.error("order stream: %s: %s", detail, self._redact(str(exc)))
        return self._redact(detail)

    def _redact(self, text: str) -> str:
        token = self._token.reveal()
        if token and token in text:
            text = text.replace(token, "<token>")
        return redact(text)[:DETAIL_CHARS]  # every known token, in every quoted form


def _first_close(rcvd: Close | None, sent: Close | None,
                 rcvd_then_sent: bool | None) -> tuple[Close | None, bool]:
    """The close frame of whichever side closed first, and whether that was us: its code says
    why the connection ended (an echo of it says nothing more)."""
    if sent is not None and (rcvd is None or rcvd_then_sent is False):
        return sent, True
    return rcvd, False


def _describe_failure(exc: Exception) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connect failed: connection refused"
    if isinstance(exc, TimeoutError):
        return "connect failed: timed out"
    if isinstance(exc, InvalidStatus):
        return f"connect failed: HTTP {exc.response.status_code}"
    if isinstance(exc, OSError):
        return f"connect failed: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, InvalidHandshake):
        return f"connect failed: {type(exc).__name__}"
    return f"unexpected {type(exc).__name__}"


def _excerpt(message: str | bytes) -> str:
    if isinstance(message, bytes):
        return message[:EXCERPT_CHARS].decode("utf-8", "replace")
    return message[:EXCERPT_CHARS]


def _call(callback: Callable[..., object], *args: object) -> None:
    """Callbacks belong to the owner: a failing one is logged, the stream keeps running."""
    try:
        callback(*args)
    except Exception:
        log.exception("order stream: %s raised", getattr(callback, "__name__", "callback"))
