"""LeaderStream against the emulator (and tiny servers of our own) over 127.0.0.1.

Every wait is bounded: conditions are polled with a deadline, never slept for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from dhanhq import dhanhq
from simtools import LEADER_ID, LEADER_TOKEN, eventually, login, wait_logged_in
from websockets.asyncio.server import ServerConnection, serve

from copytrade.core.events import OrderReport, ReportSource
from copytrade.dhan.stream import LeaderStream, StreamState
from copytrade.sim.server import Emulator

_T = TypeVar("_T")

GOOD_FRAME = json.dumps({"Type": "order_alert", "Data": {
    "Exchange": "NSE", "Segment": "E", "Source": "P", "SecurityId": "1333",
    "OrderNo": "52240101000042", "Product": "I", "TxnType": "S", "OrderType": "MKT",
    "Validity": "DAY", "Quantity": 5, "TradedQty": 5, "Status": "Traded",
    "LastUpdatedTime": "2026-11-25 10:00:00"}})


class Running:
    """A LeaderStream on an event loop of its own thread, and everything it reported."""

    def __init__(self, url: str, token: str = LEADER_TOKEN, **options: Any) -> None:
        self.reports: list[OrderReport] = []
        self.states: list[tuple[StreamState, str]] = []
        self.malformed: list[tuple[str, str]] = []
        options = {"backoff_initial": 0.05, "backoff_max": 0.2} | options
        self.stream = LeaderStream(
            url, LEADER_ID, token, on_report=self.reports.append,
            on_malformed=lambda reason, excerpt: self.malformed.append((reason, excerpt)),
            on_state=lambda state, detail: self.states.append((state, detail)), **options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="leader-stream", daemon=True)

    def _run(self) -> None:
        self.loop.run_until_complete(self.stream.run())

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive():
            self.stop()

    def stop(self) -> float:
        """stop() from another thread; returns how long run() took to return."""
        started = time.monotonic()
        self.stream.stop()
        self.thread.join(5.0)
        assert not self.thread.is_alive(), "run() did not return after stop()"
        self.loop.close()
        return time.monotonic() - started

    def call(self, work: Awaitable[_T], timeout: float = 5.0) -> _T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)  # type: ignore[arg-type]

    def details(self, state: StreamState) -> list[str]:
        return [detail for seen, detail in list(self.states) if seen is state]

    def statuses(self, order_id: str) -> list[str]:
        return [r.status for r in list(self.reports) if r.order_id == order_id]


def connections(sim: Emulator) -> int:
    return sim.stream.stats()["connections"].get(LEADER_ID, 0)


def run_async(scenario: Callable[[], Awaitable[_T]], timeout: float = 15.0) -> _T:
    async def bounded() -> _T:
        return await asyncio.wait_for(scenario(), timeout)

    return asyncio.run(bounded())


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """The asyncio counterpart of simtools.eventually."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nobody else takes it), never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextmanager
def silent_port() -> Iterator[int]:
    """A port whose TCP handshake succeeds but whose websocket handshake never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


class Ceiling(random.Random):
    """Jitter that always picks the top of its range, so the ceilings show."""

    def uniform(self, a: float, b: float) -> float:
        return b


def place_market(api: dhanhq, tag: str = "ct-m1") -> str:
    reply = api.place_order("1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC", 0, tag=tag)
    assert reply["status"] == "success", reply
    return reply["data"]["orderId"]


# ----- reports ---------------------------------------------------------------------------

def test_api_order_arrives_normalized(sim: Emulator, api: dhanhq) -> None:
    with Running(sim.ws_url) as run:
        wait_logged_in(sim)
        order_id = place_market(api)
        eventually(lambda: len(run.statuses(order_id)) == 3)
        assert run.statuses(order_id) == ["TRANSIT", "PENDING", "TRADED"]
        last = run.reports[-1]
        assert (last.exchange_segment, last.security_id, last.transaction_type) == (
            "NSE_EQ", "1333", "BUY")
        # Real Dhan turns an API market order into a limit order with price protection.
        converted = sim.dialect.market_protection > 0
        assert (last.product_type, last.order_type, last.validity) == (
            "CNC", "LIMIT" if converted else "MARKET", "DAY")
        assert (last.quantity, last.traded_quantity, last.average_price) == (10, 10, 1650.0)
        assert (last.correlation_id, last.placed_in_app, last.lot_size) == ("ct-m1", False, 1)
        assert last.source is ReportSource.STREAM
        assert last.updated_at is not None and last.updated_at.isoformat() == (
            "2026-11-25T10:00:00+05:30")
        assert (run.stream.frames, run.stream.malformed) == (3, 0)
        assert run.stream.state is StreamState.CONNECTED
        assert run.stream.last_frame_at is not None
        assert run.stream.last_frame_at <= time.monotonic()
    assert run.stream.state is StreamState.STOPPED
    assert run.states[-1] == (StreamState.STOPPED, "stopped")


def test_partial_fills_come_from_quantities(sim: Emulator, api: dhanhq) -> None:
    sim.set_fill_size(5)
    with Running(sim.ws_url) as run:
        wait_logged_in(sim)
        order_id = api.place_order("1333", "NSE_EQ", "BUY", 10, "LIMIT", "CNC", 1640.0)[
            "data"]["orderId"]
        eventually(lambda: run.statuses(order_id) == ["TRANSIT", "PENDING"])
        sim.set_price("1333", 1638.5)
        eventually(lambda: len(run.statuses(order_id)) == 3)
        sim.set_price("1333", 1639.5)
        eventually(lambda: len(run.statuses(order_id)) == 4)
        fills = [(r.status, r.traded_quantity, r.remaining_quantity) for r in run.reports[2:]]
        assert fills == [("PART_TRADED", 5, 5), ("TRADED", 10, 0)]


def test_app_order_arrives_with_source_n(sim: Emulator) -> None:
    with Running(sim.ws_url) as run:
        wait_logged_in(sim)
        [order_id] = sim.app_place(LEADER_ID, {
            "transactionType": "SELL", "exchangeSegment": "NSE_FNO", "productType": "MARGIN",
            "orderType": "LIMIT", "validity": "DAY", "securityId": "52175", "quantity": 130,
            "price": 26100.0})
        eventually(lambda: run.statuses(order_id) == ["TRANSIT", "PENDING"])
        sim.app_cancel(LEADER_ID, order_id)
        eventually(lambda: len(run.statuses(order_id)) == 3)
        cancelled = run.reports[-1]
        assert (cancelled.status, cancelled.placed_in_app, cancelled.lot_size) == (
            "CANCELLED", True, 65)
        assert (cancelled.exchange_segment, cancelled.product_type) == ("NSE_FNO", "MARGIN")
        assert (cancelled.transaction_type, cancelled.price, cancelled.quantity) == (
            "SELL", 26100.0, 130)


def test_reports_wait_for_the_catch_up_barrier(sim: Emulator, api: dhanhq) -> None:
    """While an async on_connected runs, frames are read (pings stay answered) and held;
    they are delivered in order once it finishes. It runs again after every reconnect."""
    release = threading.Event()
    barriers: list[float] = []

    async def catch_up() -> None:
        barriers.append(time.monotonic())
        while not release.is_set():
            await asyncio.sleep(0.01)

    with Running(sim.ws_url, on_connected=catch_up) as run:
        wait_logged_in(sim)
        eventually(lambda: barriers)
        order_id = place_market(api)
        eventually(lambda: run.stream.frames == 3)
        assert run.reports == []
        release.set()
        eventually(lambda: len(run.reports) == 3)
        assert run.statuses(order_id) == ["TRANSIT", "PENDING", "TRADED"]
        sim.drop_stream(LEADER_ID, clean=False)
        eventually(lambda: len(barriers) == 2)


@pytest.mark.parametrize("is_async", [True, False])
def test_a_failing_catch_up_drops_the_connection_and_runs_again(sim: Emulator,
                                                                is_async: bool) -> None:
    attempts: list[int] = []

    def flaky_sync() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("REST read failed")

    async def flaky_async() -> None:
        flaky_sync()

    catch_up = flaky_async if is_async else flaky_sync
    with Running(sim.ws_url, on_connected=catch_up) as run:
        eventually(lambda: len(attempts) >= 2)
        assert any("catch-up failed: RuntimeError" in d for d in run.details(StreamState.BACKOFF))


# ----- reconnects ----------------------------------------------------------------------------

@pytest.mark.parametrize(("clean", "why"), [(True, "closed by server (1001"),
                                            (False, "connection lost")])
def test_reconnects_after_a_drop(sim: Emulator, api: dhanhq, clean: bool, why: str) -> None:
    with Running(sim.ws_url) as run:
        wait_logged_in(sim)
        assert sim.drop_stream(LEADER_ID, clean=clean) == 1
        eventually(lambda: run.stream.reconnects == 1)
        wait_logged_in(sim)  # the dropped connection was forgotten at once
        order_id = place_market(api)
        eventually(lambda: len(run.statuses(order_id)) == 3)
        [backoff] = run.details(StreamState.BACKOFF)
        assert backoff.startswith(why), backoff


def test_reconnects_when_the_server_stalls(sim: Emulator, api: dhanhq) -> None:
    with Running(sim.ws_url, ping_interval=0.2, ping_timeout=0.2) as run:
        wait_logged_in(sim)
        frames_before = run.stream.frames
        sim.stall_stream(LEADER_ID, seconds=60)
        eventually(lambda: run.stream.reconnects >= 1)
        # The stalled connection lingers on the server until it unstalls; ours is the second.
        eventually(lambda: connections(sim) >= 2)
        order_id = place_market(api)
        eventually(lambda: len(run.statuses(order_id)) == 3)
        assert run.stream.frames == frames_before + 3
        assert any("no pong" in d for d in run.details(StreamState.BACKOFF))


def test_a_silent_stream_is_noticed_without_being_dropped(sim: Emulator, api: dhanhq) -> None:
    """A probe unanswered for silent_after says so once, long before the tolerant keepalive
    would close; the connection stays, and the next frame ends the silence."""
    silences: list[tuple[bool, str]] = []
    with Running(sim.ws_url, ping_interval=30.0, ping_timeout=30.0, probe_every=0.1,
                 silent_after=0.3, on_silence=lambda silent, detail: silences.append(
                     (silent, detail))) as run:
        wait_logged_in(sim)
        sim.stall_stream(LEADER_ID, seconds=60)
        eventually(lambda: silences)
        assert silences[0] == (True, "no frame and no pong for 0.3 s")
        assert run.stream.silences == 1 and run.stream.reconnects == 0
        assert run.stream.state is StreamState.CONNECTED
        order_id = place_market(api)  # held by the stall
        sim.unstall_stream(LEADER_ID)
        eventually(lambda: len(run.statuses(order_id)) == 3)
        eventually(lambda: len(silences) == 2)
        assert silences[1][0] is False and silences[1][1].startswith("heard from again")
        assert run.stream.silences == 1 and run.stream.reconnects == 0


def test_force_reconnect_gets_away_from_a_stalled_server(sim: Emulator, api: dhanhq) -> None:
    """Keepalive too slow to notice: a watchdog forces the reconnect instead."""
    with Running(sim.ws_url, ping_interval=30.0, ping_timeout=30.0) as run:
        wait_logged_in(sim)
        sim.stall_stream(LEADER_ID, seconds=60)
        started = time.monotonic()
        run.call(run.stream.force_reconnect("watchdog: no frames for 60s"))
        assert time.monotonic() - started < 3.0
        eventually(lambda: run.stream.reconnects == 1)
        eventually(lambda: connections(sim) >= 2)
        order_id = place_market(api)
        eventually(lambda: len(run.statuses(order_id)) == 3)
        assert "reconnect forced: watchdog: no frames for 60s" in run.details(
            StreamState.BACKOFF)[0]


def test_force_reconnect_while_not_connected_is_a_no_op() -> None:
    async def scenario() -> None:
        with refusing_port() as port:
            stream = LeaderStream(f"ws://127.0.0.1:{port}", LEADER_ID, LEADER_TOKEN,
                                  on_report=lambda report: None)
            await stream.force_reconnect("nothing to close")
            assert stream.state is StreamState.STOPPED

    run_async(scenario)


def test_refused_login_backs_off_and_keeps_trying(sim: Emulator) -> None:
    with Running(sim.ws_url) as run:
        wait_logged_in(sim)
        sim.expire_token(LEADER_ID)  # closes the stream with 1008; every later login refused
        eventually(lambda: len(run.details(StreamState.BACKOFF)) >= 3)
        refusals = run.details(StreamState.BACKOFF)
        assert all(d.startswith("login refused") for d in refusals), refusals
        assert sim.stream.stats()["logins_refused"] >= 2
        assert run.stream.state in (StreamState.BACKOFF, StreamState.CONNECTING,
                                    StreamState.CONNECTED)


def test_malformed_messages_are_reported_and_skipped() -> None:
    async def scenario() -> Running:
        async def handler(ws: ServerConnection) -> None:
            await ws.recv()  # the login
            for message in ("garbage{", json.dumps({"Type": "heartbeat"}), b"\xff\xfe",
                            json.dumps({"Type": "order_alert", "Data": {"OrderNo": "1"}}),
                            GOOD_FRAME):
                await ws.send(message)
            await ws.wait_closed()

        malformed: list[tuple[str, str]] = []
        reports: list[OrderReport] = []
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            stream = LeaderStream(f"ws://127.0.0.1:{port}", LEADER_ID, LEADER_TOKEN,
                                  on_report=reports.append,
                                  on_malformed=lambda *args: malformed.append(args))
            running = asyncio.create_task(stream.run())
            await until(lambda: reports)
            stream.stop()
            await running
        assert malformed == [("not JSON", "garbage{"), ("not JSON", "\ufffd\ufffd"),
                             ("missing Status", json.dumps({"Type": "order_alert",
                                                            "Data": {"OrderNo": "1"}}))]
        assert (stream.frames, stream.malformed, stream.reconnects) == (5, 3, 0)
        [report] = reports
        assert (report.order_id, report.status, report.product_type) == (
            "52240101000042", "TRADED", "INTRADAY")
        return stream

    assert run_async(scenario).state is StreamState.STOPPED


def test_a_long_malformed_message_is_excerpted() -> None:
    async def scenario() -> list[tuple[str, str]]:
        async def handler(ws: ServerConnection) -> None:
            await ws.recv()
            await ws.send("x" * 5_000)
            await ws.wait_closed()

        malformed: list[tuple[str, str]] = []
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            stream = LeaderStream(f"ws://127.0.0.1:{port}", LEADER_ID, LEADER_TOKEN,
                                  on_report=lambda report: None,
                                  on_malformed=lambda *args: malformed.append(args))
            running = asyncio.create_task(stream.run())
            await until(lambda: malformed)
            stream.stop()
            await running
        return malformed

    [(reason, excerpt)] = run_async(scenario)
    assert (reason, excerpt) == ("not JSON", "x" * 200)


# ----- backoff ---------------------------------------------------------------------------------

def backoff_delays(url: str, rng: random.Random, attempts: int,
                   **options: Any) -> tuple[list[float], LeaderStream]:
    """Run against url until `attempts` backoff sleeps were asked for; returns them."""
    delays: list[float] = []

    async def scenario() -> LeaderStream:
        stream: LeaderStream

        async def recording_sleep(seconds: float) -> None:
            delays.append(seconds)
            if len(delays) >= attempts:
                stream.stop()  # from inside the loop: loop-safe
            await asyncio.sleep(0)

        stream = LeaderStream(url, LEADER_ID, LEADER_TOKEN, on_report=lambda report: None,
                              rng=rng, sleep=recording_sleep, **options)
        await stream.run()
        return stream

    return delays, run_async(scenario)


def test_backoff_doubles_to_the_cap_and_never_gives_up() -> None:
    with refusing_port() as port:
        delays, stream = backoff_delays(f"ws://127.0.0.1:{port}", Ceiling(), 40,
                                        backoff_initial=0.5, backoff_max=8.0)
    assert delays[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert len(delays) == 40 and set(delays[4:]) == {8.0}
    assert stream.state is StreamState.STOPPED


def test_backoff_has_full_jitter() -> None:
    with refusing_port() as port:
        delays, _ = backoff_delays(f"ws://127.0.0.1:{port}", random.Random(7), 30,
                                   backoff_initial=0.5, backoff_max=8.0)
    ceilings = [min(8.0, 0.5 * 2**i) for i in range(30)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not a fixed ladder
    assert sum(delays[5:]) / 25 > sum(delays[:3]) / 3  # and growing


@pytest.mark.parametrize(("sends_a_frame", "expected"), [
    (True, [0.5] * 5),  # each connection delivered: the backoff starts over every time
    (False, [0.5, 1.0, 2.0, 4.0, 4.0]),
])
def test_backoff_resets_after_a_connection_that_delivered(
        sends_a_frame: bool, expected: list[float]) -> None:
    async def with_server() -> list[float]:
        async def handler(ws: ServerConnection) -> None:
            await ws.recv()
            if sends_a_frame:
                await ws.send(GOOD_FRAME)
            await ws.close()

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            delays: list[float] = []
            stream: LeaderStream

            async def recording_sleep(seconds: float) -> None:
                delays.append(seconds)
                if len(delays) >= 5:
                    stream.stop()
                await asyncio.sleep(0)

            stream = LeaderStream(f"ws://127.0.0.1:{port}", LEADER_ID, LEADER_TOKEN,
                                  on_report=lambda report: None, rng=Ceiling(),
                                  sleep=recording_sleep, backoff_initial=0.5, backoff_max=4.0)
            await stream.run()
            assert stream.reconnects == 4
            return delays

    assert run_async(with_server) == expected


# ----- stop ------------------------------------------------------------------------------------

def test_stop_while_connected(sim: Emulator) -> None:
    run = Running(sim.ws_url).__enter__()
    wait_logged_in(sim)
    assert run.stream.state is StreamState.CONNECTED
    assert run.stop() < 1.0
    eventually(lambda: connections(sim) == 0)
    assert run.stream.state is StreamState.STOPPED


def test_stop_during_backoff() -> None:
    with refusing_port() as port:
        run = Running(f"ws://127.0.0.1:{port}", backoff_initial=30.0, backoff_max=30.0)
        run.__enter__()
        eventually(lambda: run.stream.state is StreamState.BACKOFF)
        assert run.stop() < 0.5
    assert "connect failed: connection refused" in run.details(StreamState.BACKOFF)[0]


def test_stop_while_connecting() -> None:
    with silent_port() as port:
        run = Running(f"ws://127.0.0.1:{port}", open_timeout=10.0)
        run.__enter__()
        eventually(lambda: run.stream.state is StreamState.CONNECTING)
        assert run.stop() < 0.5
    assert run.details(StreamState.BACKOFF) == []


def test_stop_before_run_returns_at_once() -> None:
    async def scenario() -> LeaderStream:
        stream = LeaderStream("ws://127.0.0.1:9", LEADER_ID, LEADER_TOKEN,
                              on_report=lambda report: None)
        stream.stop()
        await stream.run()
        return stream

    assert run_async(scenario, timeout=1.0).state is StreamState.STOPPED


def test_stop_from_a_state_callback_skips_the_sleep() -> None:
    slept: list[float] = []

    async def scenario() -> None:
        stream: LeaderStream

        def on_state(state: StreamState, detail: str) -> None:
            if state is StreamState.BACKOFF:
                stream.stop()

        async def recording_sleep(seconds: float) -> None:
            slept.append(seconds)

        with refusing_port() as port:
            stream = LeaderStream(f"ws://127.0.0.1:{port}", LEADER_ID, LEADER_TOKEN,
                                  on_report=lambda report: None, on_state=on_state,
                                  sleep=recording_sleep)
            await stream.run()

    run_async(scenario, timeout=2.0)
    assert slept == []


def test_a_bad_url_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="not a websocket URL"):
        LeaderStream("http://127.0.0.1:1", LEADER_ID, LEADER_TOKEN, on_report=print)


# ----- the token -----------------------------------------------------------------------------

def test_the_token_never_appears(sim: Emulator, api: dhanhq, caplog: pytest.LogCaptureFixture,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("websockets", "copytrade.dhan.stream", "copytrade.dhan.stream.wire"):
        caplog.set_level(logging.DEBUG, logger=name)  # even asked for, no DEBUG gets out
    # Control: a plain websockets client at this level does log its frames at DEBUG.
    with login(sim.ws_url):
        wait_logged_in(sim)
    assert any(r.name.startswith("websockets") and r.levelno == logging.DEBUG
               for r in caplog.records)
    caplog.clear()

    with Running(sim.ws_url) as run:
        wait_logged_in(sim)
        order_id = place_market(api)
        eventually(lambda: len(run.statuses(order_id)) == 3)
        sim.drop_stream(LEADER_ID, clean=False)
        eventually(lambda: run.stream.reconnects >= 1)
        sim.expire_token(LEADER_ID)
        eventually(lambda: any(d.startswith("login refused")
                               for d in run.details(StreamState.BACKOFF)))
        seen = [repr(run.stream), repr(vars(run.stream))]

    ours = [r for r in caplog.records
            if r.name.startswith(("websockets", "copytrade.dhan.stream"))]
    assert all(r.levelno > logging.DEBUG for r in ours)  # the only websockets client here
    captured = capsys.readouterr()
    everything = "\n".join([
        caplog.text, *(r.getMessage() for r in caplog.records), *(repr(r.args) for r in
                                                                  caplog.records),
        *(detail for _, detail in run.states), *seen, captured.out, captured.err])
    assert LEADER_TOKEN not in everything
    assert run.details(StreamState.CONNECTED)  # the details are there, just not the token
