"""Flood figures for the leader's order stream (issue 7 row 12, DESIGN.md "Speed").

Prints figures; exits 0 whatever they are (a benchmark informs, tests decide).
Run: python bench/bench_flood.py [--seconds 5] [--rate 10000]     (about 2 * seconds + 5 s)

A server in its own process (so it does not share our interpreter's lock) sends real
order_alert frames over 127.0.0.1 to one LeaderStream with production keepalive settings; its
on_report only enqueues, and a consumer thread takes the reports (no work beyond the stream's
own parse -> report path). One connection, two phases:

  N/s        the server paces N frames/s (the incident: 10,000/s)
  max        then sends as fast as it can: past our capacity the backlog, and with it the
             ping round trip, grows until the keepalive (10 s) would close 1011

Per phase: frames/s delivered to the consumer, the server's ping round trip mid-flood
(p50/p99: a ping queues behind the frames sent before it, as Dhan's do), frames lost (sent but
never delivered: must be 0), and every close the stream saw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

SEQ = "__SEQ__"
PING_EVERY = 0.05  # seconds between the server's measuring pings
SETUP_TIMEOUT = 20.0
DRAIN_TIMEOUT = 12.0  # the max phase leaves a backlog behind; with 2 x 5 s phases < 30 s


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else float("nan")


# ----- the server (its own process) ------------------------------------------------------------

def frame_template() -> tuple[str, str]:
    """A real emulator order_alert (~1 KiB), split around its order number."""
    from copytrade.sim.book import Book

    book = Book()
    account = book.authenticate("1", "t")
    frames: list[dict[str, Any]] = []
    book.on_update = lambda client_id, data: frames.append(data)
    book.place(account, {"transactionType": "BUY", "exchangeSegment": "NSE_EQ",
                         "productType": "CNC", "orderType": "LIMIT", "validity": "DAY",
                         "securityId": "1333", "quantity": 10, "price": 1600.0})
    prefix, suffix = json.dumps({"Type": "order_alert",
                                 "Data": frames[-1] | {"OrderNo": SEQ}}).split(SEQ)
    return prefix, suffix


async def send_for(ws: Any, seconds: float, rate: int | None, seq: int,
                   template: tuple[str, str]) -> int:
    prefix, suffix = template
    end = time.perf_counter() + seconds
    batch = 100 if rate is None else max(1, rate // 100)  # paced: a batch every 10 ms
    next_at = time.perf_counter()
    while time.perf_counter() < end:
        for _ in range(batch):
            await ws.send(f"{prefix}{seq:014d}{suffix}")
            seq += 1
        if rate is None:
            await asyncio.sleep(0)  # the measuring pings need turns too
        else:
            next_at += batch / rate
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return seq


async def measure_pings(ws: Any, rtts: list[float], lost: list[int],
                        stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            rtts.append(await asyncio.wait_for(await ws.ping(), 10.0))
        except TimeoutError:
            lost.append(1)
        await asyncio.sleep(PING_EVERY)


async def flood_server(pipe: Connection, seconds: float, rate: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    template = frame_template()

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # the login
        phases, seq = [], 0
        try:
            for name, per_second in ((f"{rate}/s", rate), ("max", None)):
                rtts: list[float] = []
                lost: list[int] = []
                stop = asyncio.Event()
                pinger = asyncio.create_task(measure_pings(ws, rtts, lost, stop))
                first, started = seq, time.perf_counter()
                seq = await send_for(ws, seconds, per_second, seq, template)
                elapsed = time.perf_counter() - started
                stop.set()
                await pinger
                phases.append({"name": name, "first": first, "sent": seq - first,
                               "seconds": elapsed, "rtts": rtts, "pings_lost": len(lost)})
        except ConnectionClosed as closed:
            phases.append({"name": "closed", "first": seq, "sent": 0, "seconds": 0.0,
                           "rtts": [], "pings_lost": 0, "error": str(closed)})
        pipe.send(phases)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        pipe.send(server.sockets[0].getsockname()[1])
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "quit"


def serve_flood(pipe: Connection, seconds: float, rate: int) -> None:
    asyncio.run(flood_server(pipe, seconds, rate))


# ----- the client (this process) ---------------------------------------------------------------

@dataclass
class Consumer:
    """The owner's worker thread, doing nothing but taking reports off the queue."""

    inbox: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    arrivals: list[tuple[int, float]] = field(default_factory=list)

    def run(self) -> None:
        while (report := self.inbox.get()) is not None:
            self.arrivals.append((int(report.order_id), time.perf_counter()))


async def run_stream(port: int, pipe: Connection, consumer: Consumer, seconds: float,
                     closes: list[tuple[int | None, str]]) -> tuple[list[dict[str, Any]], Any]:
    from copytrade.dhan.stream import LeaderStream

    stream = LeaderStream(f"ws://127.0.0.1:{port}", "1000000001", "bench-token",
                          on_report=consumer.inbox.put,
                          on_closed=lambda code, why: closes.append((code, why)))
    running = asyncio.create_task(stream.run())
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, pipe.poll, 2 * seconds + SETUP_TIMEOUT):
        raise SystemExit("flood server sent no results")
    phases: list[dict[str, Any]] = pipe.recv()
    total = sum(phase["sent"] for phase in phases)
    deadline = time.monotonic() + DRAIN_TIMEOUT  # let the backlog drain, boundedly
    while len(consumer.arrivals) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stream.stop()
    await running
    return phases, stream


def report(phases: list[dict[str, Any]], consumer: Consumer, stream: Any,
           closes: list[tuple[int | None, str]]) -> None:
    seqs = [seq for seq, _ in consumer.arrivals]
    in_order = seqs == sorted(set(seqs))
    for phase in phases:
        first, sent = phase["first"], phase["sent"]
        times = [at for seq, at in consumer.arrivals if first <= seq < first + sent]
        span = times[-1] - times[0] if len(times) > 1 else float("nan")
        rtts = [rtt * 1000 for rtt in phase["rtts"]]
        print(f"{phase['name']:<9} offered {sent / phase['seconds'] if sent else 0:8.0f}/s  "
              f"delivered {len(times) / span if sent else 0:8.0f}/s  "
              f"ping rtt p50 {percentile(rtts, 0.5):7.1f} ms p99 {percentile(rtts, 0.99):7.1f} ms"
              f" (n={len(rtts)}, unanswered {phase['pings_lost']})  "
              f"lost {sent - len(times)} of {sent}")
        if "error" in phase:
            print(f"          server saw the connection close: {phase['error']}")
    print(f"stream    frames {stream.frames}  reports {stream.reports}  malformed "
          f"{stream.malformed}  slow on_report {stream.slow_reports}  in order, once: "
          f"{in_order}")
    print(f"closes    during the flood: {closes[:-1] or 'none'}  at stop: {closes[-1:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase (max 5)")
    parser.add_argument("--rate", type=int, default=10_000, help="paced phase, frames/s")
    args = parser.parse_args()
    seconds = min(args.seconds, 5.0)  # keeps the whole run under 30 s
    print(f"copytrade bench_flood {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, python "
          f"{sys.version.split()[0]}, {seconds:g} s per phase")

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=serve_flood, args=(theirs, seconds, args.rate),
                             name="flood-server", daemon=True)
    server.start()
    consumer = Consumer()
    worker = threading.Thread(target=consumer.run, name="consumer", daemon=True)
    worker.start()
    closes: list[tuple[int | None, str]] = []
    try:
        if not ours.poll(SETUP_TIMEOUT):
            raise SystemExit("flood server did not start")
        port = ours.recv()
        phases, stream = asyncio.run(run_stream(port, ours, consumer, seconds, closes))
    finally:
        consumer.inbox.put(None)
        worker.join(5.0)
        with contextlib.suppress(OSError):  # the server may be gone already
            ours.send("quit")
        server.join(5.0)
        if server.is_alive():
            server.terminate()
    report(phases, consumer, stream, closes)


if __name__ == "__main__":
    main()
