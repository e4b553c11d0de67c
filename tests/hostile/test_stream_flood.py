"""Issue 7 row 12: a flood of frames must not kill the leader's order stream.

A websockets server on 127.0.0.1, in a thread and event loop of its own (a blocked client loop
must not stall it), floods LeaderStream while both sides ping each other. Every wait is a
bounded poll; nothing here measures speed (bench/bench_flood.py does).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from simtools import eventually
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from copytrade.core.events import OrderReport
from copytrade.dhan.stream import MAX_MESSAGE_BYTES, LeaderStream

_T = TypeVar("_T")

CLIENT_ID = "1000000001"
TOKEN = "leader-token-flood-7c1e"
FLOOD = 20_000
WORK_SECONDS = 0.0002  # the owner's per-report work (SQLite), done on its own thread


def frame(seq: int) -> str:
    return json.dumps({"Type": "order_alert", "Data": {
        "Exchange": "NSE", "Segment": "E", "Source": "P", "SecurityId": "1333",
        "OrderNo": f"{seq:014d}", "Product": "I", "TxnType": "B", "OrderType": "LMT",
        "Validity": "DAY", "Quantity": 5, "TradedQty": 0, "Price": 1600.0,
        "Status": "Pending", "LastUpdatedTime": "2026-11-25 10:00:00"}})


def order_ids(first: int, count: int) -> list[str]:
    return [f"{seq:014d}" for seq in range(first, first + count)]


async def flood(ws: ServerConnection, frames: list[str], ping_every: int = 1_000) -> int:
    """Send as fast as the connection takes them, pinging along the way; returns how many of
    those pings were answered."""
    pongs = []
    for index, message in enumerate(frames):
        await ws.send(message)
        if index % ping_every == 0:
            pongs.append(await ws.ping())
        if index % 100 == 0:
            await asyncio.sleep(0)  # our own keepalive and pong handling need turns too
    answered = await asyncio.wait_for(asyncio.gather(*pongs), 10.0)
    return len(answered)


class FloodServer:
    """One websockets server on 127.0.0.1 that records logins and how connections ended."""

    def __init__(self, ping_interval: float | None = 0.2, ping_timeout: float = 2.0) -> None:
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.logins: list[dict[str, Any]] = []
        self.connections: list[ServerConnection] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="flood-server",
                                       daemon=True)
        self.server: Server | None = None

    async def _handler(self, ws: ServerConnection) -> None:
        self.logins.append(json.loads(await ws.recv()))
        self.connections.append(ws)
        await ws.wait_closed()

    async def _start(self) -> Server:
        return await serve(self._handler, "127.0.0.1", 0, ping_interval=self.ping_interval,
                           ping_timeout=self.ping_timeout, close_timeout=0.5)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    @property
    def current(self) -> ServerConnection:
        return self.connections[-1]

    def call(self, work: Coroutine[Any, Any, _T], timeout: float = 20.0) -> _T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def start(self, work: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Run work on the server's loop without waiting for it."""
        return asyncio.run_coroutine_threadsafe(work, self.loop)

    def __enter__(self) -> FloodServer:
        self.thread.start()
        self.server = self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        async def shut() -> None:
            assert self.server is not None
            self.server.close()
            await self.server.wait_closed()

        self.call(shut(), timeout=5.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)
        self.loop.close()


class Owner:
    """What follow.py does with reports: enqueue on the loop, work on a thread of its own."""

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[OrderReport | None] = queue.SimpleQueue()
        self.done: list[str] = []
        self.thread = threading.Thread(target=self._work, name="owner", daemon=True)
        self.thread.start()

    def on_report(self, report: OrderReport) -> None:
        self.inbox.put(report)

    def _work(self) -> None:
        while (report := self.inbox.get()) is not None:
            until = time.perf_counter() + WORK_SECONDS
            while time.perf_counter() < until:  # holds the GIL, as Python-side work does
                pass
            self.done.append(report.order_id)

    def close(self) -> None:
        self.inbox.put(None)
        self.thread.join(5.0)


class Client:
    """A LeaderStream on an event loop of its own thread, and every close it reported."""

    def __init__(self, url: str, on_report: Callable[[OrderReport], None],
                 **options: Any) -> None:
        self.closed: list[tuple[int | None, str]] = []
        options = {"backoff_initial": 0.05, "backoff_max": 0.2, "ping_interval": 0.2,
                   "ping_timeout": 2.0} | options
        self.stream = LeaderStream(url, CLIENT_ID, TOKEN, on_report=on_report,
                                   on_closed=lambda code, why: self.closed.append((code, why)),
                                   **options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=lambda: self.loop.run_until_complete(self.stream.run()),
            name="leader-stream", daemon=True)

    def call(self, work: Awaitable[_T], timeout: float = 5.0) -> _T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.stream.stop()
        self.thread.join(5.0)
        assert not self.thread.is_alive(), "run() did not return after stop()"
        self.loop.close()


@contextmanager
def running(url: str, on_report: Callable[[OrderReport], None],
            **options: Any) -> Iterator[Client]:
    client = Client(url, on_report, **options)
    client.thread.start()
    try:
        yield client
    finally:
        if client.thread.is_alive():
            client.stop()


# ----- the flood -------------------------------------------------------------------------------

def test_a_flood_is_delivered_once_in_order_while_pings_are_answered() -> None:
    owner = Owner()
    frames = [frame(seq) for seq in range(FLOOD)]
    with FloodServer() as server, running(server.url, owner.on_report) as client:
        eventually(lambda: server.connections)
        answered = server.call(flood(server.current, frames), timeout=60.0)
        assert answered == len(range(0, FLOOD, 1_000))  # every ping sent mid-flood came back
        eventually(lambda: len(owner.done) >= FLOOD, timeout=60.0)
        # The server's keepalive (0.2 s / 2 s) and ours both held through the flood.
        assert client.closed == []
        assert server.current.state is State.OPEN
        assert len(server.logins) == 1
        stream = client.stream
        assert (stream.frames, stream.reports, stream.malformed) == (FLOOD, FLOOD, 0)
        assert (stream.closes, stream.reconnects) == ({}, 0)
    owner.close()
    assert owner.done == order_ids(0, FLOOD)  # each exactly once, in order
    assert client.closed == [(1000, "stopped")]
    assert client.stream.closes == {1000: 1}


async def close_1011(ws: ServerConnection) -> None:
    await ws.close(1011, f"overloaded {TOKEN}")  # outside text: on_closed gets it redacted


async def too_big(ws: ServerConnection) -> None:
    await ws.send("x" * (MAX_MESSAGE_BYTES + 1))


async def abort(ws: ServerConnection) -> None:
    ws.transport.abort()


async def close_1001(ws: ServerConnection) -> None:
    await ws.close(1001, "going away")


@pytest.mark.parametrize(("ending", "code", "why", "all_delivered"), [
    (close_1011, 1011, "closed by server (1011 overloaded <token>)", True),
    (too_big, 1009, "message too big (1009", True),
    (abort, 1006, "connection lost (no close frame)", False),  # abort drops unsent frames
    (close_1001, 1001, "closed by server (1001 going away)", True),
])
def test_a_close_right_after_a_flood_is_recorded_and_the_stream_logs_in_again(
        ending: Callable[[ServerConnection], Awaitable[None]], code: int, why: str,
        all_delivered: bool) -> None:
    burst = 2_000
    owner = Owner()
    frames = [frame(seq) for seq in range(burst)]

    async def burst_then_end(ws: ServerConnection) -> None:
        await flood(ws, frames)
        await ending(ws)

    with FloodServer() as server, running(server.url, owner.on_report) as client:
        eventually(lambda: server.connections)
        server.call(burst_then_end(server.current))
        eventually(lambda: client.closed, timeout=10.0)
        [(seen_code, seen_why)] = client.closed
        assert seen_code == code and type(seen_code) is int  # storable as is, not an enum
        assert seen_why.startswith(why), seen_why
        eventually(lambda: len(server.logins) == 2)  # reconnected and logged in again
        assert server.logins[1]["LoginReq"]["ClientId"] == CLIENT_ID
        server.call(server.current.send(frame(burst)))
        eventually(lambda: owner.done[-1:] == order_ids(burst, 1))
        assert client.stream.closes == {code: 1}
        assert client.stream.reconnects == 1
    owner.close()
    before_close, after = owner.done[:-1], owner.done[-1:]
    # Frames read before a close frame are delivered, not thrown away with the connection;
    # what an abort loses on the wire is the owner's catch-up's to find.
    expected = order_ids(0, burst if all_delivered else len(before_close))
    assert before_close == expected and after == order_ids(burst, 1)


# ----- a slow owner ------------------------------------------------------------------------------

def test_a_slow_on_report_still_gets_pings_answered_and_drops_nothing() -> None:
    """A 50 ms on_report blocks the loop while it runs, but between calls the loop gets its
    turn: a burst that takes 3 s to hand over (past the server's 2 s ping timeout) arrives
    whole on the same connection, and the slowness is counted."""
    count = 60
    delivered: list[str] = []

    def slow(report: OrderReport) -> None:
        time.sleep(0.05)
        delivered.append(report.order_id)

    async def burst_then_ping(ws: ServerConnection) -> int:
        for seq in range(count):
            await ws.send(frame(seq))
        await asyncio.wait_for(await ws.ping(), 10.0)
        return len(delivered)  # how far the client was when its pong came back

    with FloodServer() as server, running(server.url, slow) as client:
        eventually(lambda: server.connections)
        delivered_at_pong = server.call(burst_then_ping(server.current))
        assert delivered_at_pong < count  # answered mid-backlog, not after it
        eventually(lambda: len(delivered) == count, timeout=20.0)
        assert client.closed == []
        assert server.current.state is State.OPEN
        assert client.stream.slow_reports == count
    assert delivered == order_ids(0, count)


def test_a_slow_on_report_under_a_flood_ends_in_a_recorded_1011_not_a_silent_loss() -> None:
    """Impossible to keep up with: a synchronous on_report runs on the loop, so at 50 ms a call
    the backlog reaches MAX_QUEUE, reading pauses and our pongs wait behind it. The keepalive
    closes 1011, on_closed records it, frames already read are delivered in order, and the
    stream logs in again (the owner's catch-up then finds the rest)."""
    delivered: list[str] = []
    server = FloodServer(ping_interval=None)  # only our keepalive decides

    def slow_until_closed(report: OrderReport) -> None:
        closing = server.current.protocol.close_rcvd is not None  # our 1011 reached it
        if not closing and len(delivered) < 400:  # bound: 20 s at worst
            time.sleep(0.05)
        delivered.append(report.order_id)

    async def flood_until_closed(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):  # or it all fitted in the buffers
            await flood(ws, [frame(seq) for seq in range(FLOOD)], ping_every=FLOOD)

    with server, running(server.url, slow_until_closed, ping_timeout=0.5) as client:
        eventually(lambda: server.connections)
        flooding = server.start(flood_until_closed(server.current))
        eventually(lambda: client.closed, timeout=30.0)
        [(code, why)] = client.closed
        assert (code, why) == (1011, "no pong within the ping timeout (stalled connection)")
        assert 0 < client.stream.slow_reports < len(delivered)
        assert client.stream.closes == {1011: 1}
        eventually(lambda: len(server.logins) == 2)
        flooding.result(5.0)
    assert delivered == order_ids(0, len(delivered))  # a prefix: in order, nothing twice
