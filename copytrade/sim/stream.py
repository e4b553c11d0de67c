"""Emulated Dhan order-update stream (stand-in for ``wss://api-order-update.dhan.co``).

Speaks Dhan's protocol: the client's first message is a ``LoginReq`` (MsgCode 42); a good
login gets no acknowledgement, the server just starts sending
``{"Type": "order_alert", "Data": {...}}`` frames; there is no replay, so a frame published
while an account has no connection is lost. On top of that it injects the faults a copy
trader must survive: dropped and stalled connections, duplicated, delayed and reordered
frames, token expiry and slow consumers.

The server runs its own asyncio loop in a daemon thread. All connection and fault state is
owned by that loop; other threads reach it through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from copytrade.sim.timing import TimingLog

__all__ = ["OrderStreamServer"]

log = logging.getLogger(__name__)
# websockets logs every frame at DEBUG, the login frame (with its token) included. Its
# connections get a logger of their own that never emits DEBUG.
_wire_log = logging.getLogger(f"{__name__}.wire")
_wire_log.setLevel(logging.INFO)

LOGIN_MSG_CODE = 42
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_SLOW_CONSUMER = 1011
MAX_HOLD_SECONDS = 600.0  # longest a stall or a delay may hold frames
REORDER_MAX_WAIT = 30.0  # a reorder group that never fills is flushed after this
CLOSE_TIMEOUT = 2.0  # closing handshake budget before the TCP connection is aborted
CONTROL_TIMEOUT = 5.0  # how long a control call waits for the event loop
START_TIMEOUT = 5.0
STOP_TIMEOUT = 3.0
MAX_LOGIN_SIZE = 64 * 1024  # clients only ever send a login; refuse anything huge
MAX_RAW_FRAME_BYTES = 1024 * 1024  # websockets clients refuse bigger messages by default
MAX_FAULT_COUNT = 1_000_000
MAX_FAULTED_ACCOUNTS = 10_000  # as many as the book has accounts

_FaultKind = Literal["duplicate", "delay", "reorder"]
_T = TypeVar("_T")


@dataclass
class _Frame:
    client_id: str
    text: str
    copies: int = 1
    delay: float = 0.0


@dataclass
class _PendingFaults:
    """Frame faults still to apply, for one account or (key None) for every account."""

    duplicate: int = 0
    delay: int = 0
    delay_seconds: float = 0.0
    reorder: int = 0  # frames still to gather into reorder_group
    reorder_group: list[_Frame] = field(default_factory=list)
    reorder_timer: asyncio.TimerHandle | None = None


@dataclass
class _Counters:
    frames_sent: int = 0
    frames_dropped: int = 0
    logins_refused: int = 0


class _Connection:
    """One logged-in websocket: a bounded outgoing queue drained by a single writer task."""

    def __init__(self, ws: ServerConnection, client_id: str, queue_limit: int) -> None:
        self.ws = ws
        self.client_id = client_id
        self.queue: deque[str] = deque()
        self.queue_limit = queue_limit
        self.wakeup = asyncio.Event()
        self.stalled = False
        self.stall_timer: asyncio.TimerHandle | None = None
        self.closing = False

    def offer(self, text: str) -> bool:
        """Queue a frame; False when the queue is full."""
        if len(self.queue) >= self.queue_limit:
            return False
        self.queue.append(text)
        self.wakeup.set()
        return True

    def discard_queue(self) -> int:
        count = len(self.queue)
        self.queue.clear()
        return count

    async def write_loop(self, on_sent: Callable[[], None],
                         timing: Callable[[], TimingLog | None]) -> None:
        try:
            while True:
                while (self.stalled or not self.queue) and not self.closing:
                    self.wakeup.clear()
                    await self.wakeup.wait()
                if self.closing:
                    return
                text = self.queue.popleft()
                log = timing()
                if log is not None:  # before the write: a reply can never precede it
                    log.frame_sent(time.perf_counter(), self.client_id, text)
                await self.ws.send(text)
                on_sent()
        except ConnectionClosed:
            return

    def stall(self, seconds: float, on_timeout: Callable[[_Connection], None]) -> None:
        # Not reading means websockets cannot see (so cannot answer) pings, nor a close frame.
        self.stalled = True
        self.ws.transport.pause_reading()
        self._suspend_keepalive()
        self._cancel_stall_timer()
        loop = asyncio.get_running_loop()
        self.stall_timer = loop.call_later(seconds, on_timeout, self)

    def unstall(self) -> bool:
        if not self.stalled:
            return False
        self.stalled = False
        self._cancel_stall_timer()
        self.ws.transport.resume_reading()
        if not self.closing and self.ws.state is State.OPEN and self.ws.keepalive_task is None:
            self.ws.start_keepalive()  # was suspended by stall()
        self.wakeup.set()
        return True

    def mark_closing(self) -> int:
        """Stop writing; returns how many queued frames are thrown away."""
        self.closing = True
        self.wakeup.set()
        if self.stalled:
            # Read again so the closing handshake can complete, but send nothing more.
            self.stalled = False
            self._cancel_stall_timer()
            self.ws.transport.resume_reading()
        return self.discard_queue()

    def _suspend_keepalive(self) -> None:
        # A silent peer must stay silent: our own pings would also time out and close it.
        task = getattr(self.ws, "keepalive_task", None)
        if task is not None:
            task.cancel()
            self.ws.keepalive_task = None

    def _cancel_stall_timer(self) -> None:
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None


def _parse_login(raw: str | bytes) -> tuple[str, str] | None:
    """(client_id, token) from a Dhan LoginReq, or None when it is not one."""
    try:
        message = json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError
        return None
    if not isinstance(message, dict) or message.get("UserType") != "SELF":
        return None
    request = message.get("LoginReq")
    if not isinstance(request, dict):
        return None
    code = request.get("MsgCode")
    if type(code) is not int or code != LOGIN_MSG_CODE:
        return None
    client_id, token = request.get("ClientId"), request.get("Token")
    if not isinstance(client_id, str) or not isinstance(token, str):
        return None
    if not client_id or not token:
        return None
    return client_id, token


async def _close_bounded(ws: ServerConnection, code: int, reason: str) -> None:
    # close() waits for the write buffer to drain, forever if the peer never reads.
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT + 0.5):
            await ws.close(code, reason)
    except TimeoutError:
        ws.transport.abort()


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class OrderStreamServer:
    """Dhan-compatible order-update websocket server with fault injection."""

    def __init__(
        self,
        authenticate: Callable[[str, str], bool],
        host: str = "127.0.0.1",
        port: int = 0,
        queue_limit: int = 10_000,
        login_timeout: float = 10.0,
        *,
        ping_interval: float | None = 10.0,
    ) -> None:
        if queue_limit < 1:
            raise ValueError("queue_limit must be at least 1")
        self._authenticate = authenticate
        self._host = host
        self._requested_port = port
        self._queue_limit = queue_limit
        self._login_timeout = login_timeout
        self._ping_interval = ping_interval
        self._max_held = queue_limit  # frames held by delay/reorder, all accounts together

        self._lifecycle = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._port = 0

        # Owned by the event loop thread (or the caller while the loop is not running).
        self._sockets: set[ServerConnection] = set()  # every open socket, logged in or not
        self._by_account: dict[str, set[_Connection]] = {}
        self._faults: dict[str | None, _PendingFaults] = {}
        self._held = 0
        self._tasks: set[asyncio.Task[None]] = set()

        self._counters = _Counters()
        self._counters_lock = threading.Lock()
        self.timing: TimingLog | None = None  # benchmarks only (Emulator.enable_timing)

    # ----- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Serve from a daemon thread; returns once the listener is bound."""
        with self._lifecycle:
            if self._thread is not None:
                raise RuntimeError("OrderStreamServer already started")
            loop = asyncio.new_event_loop()
            bound = threading.Event()
            failure: list[BaseException] = []
            thread = threading.Thread(
                target=self._run_loop,
                args=(loop, bound, failure),
                name="sim-order-stream",
                daemon=True,
            )
            # Set before the thread runs, so code on the loop knows it is on the loop.
            self._loop, self._thread = loop, thread
            thread.start()
            if not bound.wait(START_TIMEOUT) or failure:
                with contextlib.suppress(RuntimeError):  # the loop may be closed already
                    loop.call_soon_threadsafe(loop.stop)
                thread.join(STOP_TIMEOUT)
                self._loop = self._thread = None
                if failure:
                    raise RuntimeError("order stream server failed to start") from failure[0]
                raise RuntimeError("order stream server did not bind in time")

    def stop(self) -> None:
        """Close every connection and the listener; idempotent, a few seconds at most."""
        with self._lifecycle:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            shutdown = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                shutdown.result(timeout=STOP_TIMEOUT)
            except Exception as exc:  # a stuck close must not make stop() hang
                log.warning("order stream shutdown incomplete: %s", type(exc).__name__)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(STOP_TIMEOUT)
            self._loop = self._thread = self._server = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"ws://{_url_host(self._host)}:{self._port}"

    def _run_loop(
        self,
        loop: asyncio.AbstractEventLoop,
        bound: threading.Event,
        failure: list[BaseException],
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(self._listen())
            self._port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:
            failure.append(exc)
            bound.set()
            loop.close()
            return
        bound.set()
        try:
            loop.run_forever()
        finally:
            self._finish_loop(loop)

    async def _listen(self) -> Server:
        return await serve(
            self._handle,
            self._host,
            self._requested_port,
            ping_interval=self._ping_interval,
            ping_timeout=None if self._ping_interval is None else 2 * self._ping_interval,
            close_timeout=CLOSE_TIMEOUT,
            max_size=MAX_LOGIN_SIZE,
            compression=None,
            logger=_wire_log,
            backlog=512,  # many followers reconnecting at once
        )

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close(close_connections=False)  # stop accepting; we close below
        for conn in self._logged_in():
            self._forget(conn)
        closes = [_close_bounded(ws, CLOSE_GOING_AWAY, "server stopping") for ws in self._sockets]
        if closes:
            await asyncio.gather(*closes, return_exceptions=True)
        if self._server is not None:
            try:
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()
            except TimeoutError:
                log.warning("order stream handlers still running at stop")

    def _finish_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        self._drop_held_frames()

    # ----- publishing ------------------------------------------------------------------

    def publish(self, client_id: str, data: dict[str, Any]) -> None:
        """Queue an order_alert for every logged-in connection of client_id (any thread)."""
        # Serialise now: the caller may mutate data afterwards, and bad data (NaN included:
        # clients must only ever see standard JSON) fails here.
        text = json.dumps({"Type": "order_alert", "Data": data}, allow_nan=False)
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._on_publish, client_id, text)
                return
            except RuntimeError:  # loop closed by a concurrent stop()
                pass
        self._count(dropped=1)

    def _on_publish(self, client_id: str, text: str) -> None:
        frame = _Frame(client_id, text)
        if self._take_fault(client_id, "duplicate") is not None:
            frame.copies = 2
        delaying = self._take_fault(client_id, "delay")
        if delaying is not None:
            frame.delay = delaying.delay_seconds
        grouping = self._take_fault(client_id, "reorder")
        if grouping is not None:
            self._gather_for_reorder(grouping, frame)
        else:
            self._release(frame)

    def _take_fault(self, client_id: str, kind: _FaultKind) -> _PendingFaults | None:
        """Consume one unit of a pending fault, the account's own before the global one."""
        for key in (client_id, None):
            pending = self._faults.get(key)
            if pending is not None and getattr(pending, kind) > 0:
                setattr(pending, kind, getattr(pending, kind) - 1)
                return pending
        return None

    def _gather_for_reorder(self, pending: _PendingFaults, frame: _Frame) -> None:
        if self._held < self._max_held:
            pending.reorder_group.append(frame)
            self._held += 1
        else:
            self._release(frame)
        if pending.reorder == 0:
            self._flush_reorder(pending)
        elif pending.reorder_timer is None:
            loop = asyncio.get_running_loop()
            pending.reorder_timer = loop.call_later(REORDER_MAX_WAIT, self._flush_reorder, pending)

    def _flush_reorder(self, pending: _PendingFaults) -> None:
        if pending.reorder_timer is not None:
            pending.reorder_timer.cancel()
            pending.reorder_timer = None
        pending.reorder = 0
        group, pending.reorder_group = pending.reorder_group, []
        self._held -= len(group)
        for frame in reversed(group):
            self._release(frame)

    def _release(self, frame: _Frame) -> None:
        if frame.delay > 0 and self._held < self._max_held:
            self._held += 1
            asyncio.get_running_loop().call_later(frame.delay, self._release_delayed, frame)
        else:
            self._deliver(frame)

    def _release_delayed(self, frame: _Frame) -> None:
        self._held -= 1
        self._deliver(frame)

    def _deliver(self, frame: _Frame) -> None:
        connections = self._by_account.get(frame.client_id)
        if not connections:
            self._count(dropped=frame.copies)  # Dhan has no replay
            return
        for conn in list(connections):
            for _ in range(frame.copies):
                self._enqueue(conn, frame.text)

    def _enqueue(self, conn: _Connection, text: str) -> bool:
        if conn.closing:
            self._count(dropped=1)
            return False
        if not conn.offer(text):
            self._count(dropped=1)
            log.warning("order stream: slow consumer on %s, closing", conn.client_id)
            self._close(conn, CLOSE_SLOW_CONSUMER, "slow consumer")
            return False
        return True

    def send_raw(self, client_id: str, text: str) -> int:
        """Queue `text` verbatim on every logged-in connection of client_id, behind what is
        already queued there and without frame faults; returns how many connections got it."""
        if not isinstance(client_id, str) or not isinstance(text, str):
            raise ValueError("client_id and text must be strings")
        try:
            size = len(text.encode())
        except UnicodeEncodeError:  # a text frame must be UTF-8; send "\\ud800" escaped
            raise ValueError("text must be encodable as UTF-8 (no lone surrogates)") from None
        if size > MAX_RAW_FRAME_BYTES:
            raise ValueError(f"text must be at most {MAX_RAW_FRAME_BYTES} bytes")

        def send_now() -> int:
            targets = self._logged_in(client_id)
            if not targets:
                self._count(dropped=1)
            return sum(self._enqueue(conn, text) for conn in targets)

        return self._on_loop(send_now)

    def _drop_held_frames(self) -> None:
        for pending in self._faults.values():
            if pending.reorder_timer is not None:
                pending.reorder_timer.cancel()
                pending.reorder_timer = None
            self._count(dropped=len(pending.reorder_group))
            pending.reorder_group.clear()
        self._held = 0

    # ----- connections -----------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self._sockets.add(ws)
        try:
            client_id = await self._login(ws)
            if client_id is not None:
                await self._serve_logged_in(ws, client_id)
        except ConnectionClosed:
            pass
        except Exception as exc:  # never log details: they could carry the token
            log.error("order stream handler failed: %s", type(exc).__name__)
        finally:
            self._sockets.discard(ws)

    async def _login(self, ws: ServerConnection) -> str | None:
        """The account id of a good login; refuses and closes the socket otherwise."""
        try:
            async with asyncio.timeout(self._login_timeout):
                raw = await ws.recv()
        except TimeoutError:
            await self._refuse(ws, None, "no login message in time")
            return None
        credentials = _parse_login(raw)
        del raw
        if credentials is None:
            await self._refuse(ws, None, "malformed login message")
            return None
        client_id, token = credentials
        accepted = self._check_credentials(client_id, token)
        del token, credentials  # keep no copy of the token after authenticating
        if not accepted:
            await self._refuse(ws, client_id, "authentication failed")
            return None
        log.info("order stream: %s logged in", client_id)
        return client_id

    def _check_credentials(self, client_id: str, token: str) -> bool:
        try:
            return bool(self._authenticate(client_id, token))
        except Exception as exc:
            log.warning("order stream: authenticate raised %s", type(exc).__name__)
            return False

    async def _refuse(self, ws: ServerConnection, client_id: str | None, why: str) -> None:
        self._count(refused=1)
        log.info("order stream: login refused for %s: %s", client_id or "unknown client", why)
        await _close_bounded(ws, CLOSE_POLICY_VIOLATION, "login refused")

    async def _serve_logged_in(self, ws: ServerConnection, client_id: str) -> None:
        conn = _Connection(ws, client_id, self._queue_limit)
        self._by_account.setdefault(client_id, set()).add(conn)
        if self.timing is not None:
            self.timing.logged_in(time.perf_counter(), client_id)
        writer = asyncio.create_task(conn.write_loop(self._count_sent, lambda: self.timing))
        try:
            await self._read_and_ignore(conn)
        finally:
            self._forget(conn)
            writer.cancel()

    async def _read_and_ignore(self, conn: _Connection) -> None:
        # Keep reading so websockets answers pings and sees the client's close frame.
        async for _message in conn.ws:
            if conn.stalled:
                # Consuming a message can make websockets resume reading; stay paused.
                conn.ws.transport.pause_reading()

    def _forget(self, conn: _Connection) -> None:
        """Take a connection out of delivery; its queued frames are lost."""
        connections = self._by_account.get(conn.client_id)
        if connections is not None:
            connections.discard(conn)
            if not connections:
                del self._by_account[conn.client_id]
        self._count(dropped=conn.mark_closing())

    def _close(self, conn: _Connection, code: int, reason: str) -> None:
        self._forget(conn)
        task = asyncio.get_running_loop().create_task(_close_bounded(conn.ws, code, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _abort(self, conn: _Connection) -> None:
        self._forget(conn)
        conn.ws.transport.abort()  # no close frame: looks like a network drop

    def _logged_in(self, client_id: str | None = None) -> list[_Connection]:
        if client_id is not None:
            return list(self._by_account.get(client_id, ()))
        return [conn for conns in self._by_account.values() for conn in conns]

    # ----- connection faults -----------------------------------------------------------

    def drop(self, client_id: str | None = None, clean: bool = True) -> int:
        """Close with 1001 (clean) or abort the TCP connection (unclean); returns how many."""

        def drop_now() -> int:
            targets = self._logged_in(client_id)
            for conn in targets:
                if clean:
                    self._close(conn, CLOSE_GOING_AWAY, "dropped by emulator")
                else:
                    self._abort(conn)
            return len(targets)

        return self._on_loop(drop_now)

    def stall(self, client_id: str | None = None, seconds: float = 60.0) -> int:
        """Silence connections (no frames, pongs or close) until unstall() or `seconds`."""
        if not 0 < seconds <= MAX_HOLD_SECONDS:
            raise ValueError(f"stall seconds must be in (0, {MAX_HOLD_SECONDS}]")

        def stall_now() -> int:
            targets = [conn for conn in self._logged_in(client_id) if not conn.closing]
            for conn in targets:
                conn.stall(seconds, _Connection.unstall)
            return len(targets)

        return self._on_loop(stall_now)

    def unstall(self, client_id: str | None = None) -> int:
        return self._on_loop(lambda: sum(conn.unstall() for conn in self._logged_in(client_id)))

    def disconnect_account(self, client_id: str) -> int:
        """Token expiry: close the account's connections with 1008; returns how many."""

        def disconnect_now() -> int:
            targets = self._logged_in(client_id)
            for conn in targets:
                self._close(conn, CLOSE_POLICY_VIOLATION, "session expired")
            return len(targets)

        return self._on_loop(disconnect_now)

    # ----- frame faults ----------------------------------------------------------------

    def duplicate_next(self, count: int, client_id: str | None = None) -> None:
        _require(0 <= count <= MAX_FAULT_COUNT, f"count must be in [0, {MAX_FAULT_COUNT}]")

        def set_now() -> None:
            self._pending(client_id).duplicate = count

        self._on_loop(set_now)

    def delay_next(self, count: int, seconds: float, client_id: str | None = None) -> None:
        _require(0 <= count <= MAX_FAULT_COUNT, f"count must be in [0, {MAX_FAULT_COUNT}]")
        _require(0 <= seconds <= MAX_HOLD_SECONDS, f"seconds must be in [0, {MAX_HOLD_SECONDS}]")

        def set_now() -> None:
            pending = self._pending(client_id)
            pending.delay, pending.delay_seconds = count, seconds

        self._on_loop(set_now)

    def reorder_next(self, count: int, client_id: str | None = None) -> None:
        _require(2 <= count <= MAX_FAULT_COUNT, f"count must be in [2, {MAX_FAULT_COUNT}]")

        def set_now() -> None:
            pending = self._pending(client_id)
            self._flush_reorder(pending)  # a half-gathered earlier group goes out first
            pending.reorder = count

        self._on_loop(set_now)

    def clear_faults(self) -> None:
        """Forget pending frame faults; frames already held are released, not lost."""

        def clear_now() -> None:
            for pending in self._faults.values():
                self._flush_reorder(pending)
            self._faults.clear()

        self._on_loop(clear_now)

    def _pending(self, client_id: str | None) -> _PendingFaults:
        if client_id not in self._faults and len(self._faults) > MAX_FAULTED_ACCOUNTS:
            raise ValueError(f"frame faults are kept for at most {MAX_FAULTED_ACCOUNTS} "
                             "accounts; clear_faults() first")
        return self._faults.setdefault(client_id, _PendingFaults())

    # ----- stats -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Logged-in connections per account and frame counters.

        frames_sent counts frames written to a socket (a duplicate counts twice);
        frames_dropped counts frames that reached nobody: no connection logged in, or
        queued on a connection that overflowed or was closed.
        """

        def snapshot() -> dict[str, Any]:
            with self._counters_lock:
                counters = self._counters
                return {
                    "connections": {cid: len(c) for cid, c in self._by_account.items()},
                    "frames_sent": counters.frames_sent,
                    "frames_dropped": counters.frames_dropped,
                    "logins_refused": counters.logins_refused,
                }

        return self._on_loop(snapshot)

    def _count(self, *, dropped: int = 0, refused: int = 0) -> None:
        with self._counters_lock:
            self._counters.frames_dropped += dropped
            self._counters.logins_refused += refused

    def _count_sent(self) -> None:
        with self._counters_lock:
            self._counters.frames_sent += 1

    # ----- plumbing --------------------------------------------------------------------

    def _on_loop(self, action: Callable[[], _T]) -> _T:
        """Run action on the event loop thread and wait for its result."""
        if threading.current_thread() is self._thread:
            return action()
        with self._lifecycle:
            loop = self._loop
            if loop is None:  # not running: nothing else touches the state
                return action()
            done: concurrent.futures.Future[_T] = concurrent.futures.Future()
            loop.call_soon_threadsafe(_run_into, done, action)
            return done.result(timeout=CONTROL_TIMEOUT)


def _run_into(done: concurrent.futures.Future[_T], action: Callable[[], _T]) -> None:
    try:
        done.set_result(action())
    except BaseException as exc:
        done.set_exception(exc)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
