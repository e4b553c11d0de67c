"""Speed figures for copytrade's own work (DESIGN.md "Speed the design must allow").

Prints figures and their ratio to the target; exits 0 whatever they are (a benchmark
informs, tests decide). Run: python bench/bench_follow.py [--orders N] [--followers N]

  parse        one order_alert frame -> OrderReport                  target  50 us median
  decide       leader report -> intents committed for every follower  target   1 ms median
  end to end   leader frame at our socket -> follower request sent     target   1 ms median
               (includes the emulator's stream hop and our thread handoff)
  fan-out      first to last of N followers' requests, one leader order target  5 ms p99
  --help       `copytrade --help` as a process                          target 300 ms median
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def report(name: str, values: list[float], unit: str, target: float, share: float = 0.5) -> None:
    value = percentile(values, share)
    label = "median" if share == 0.5 else f"p{int(share * 100)}"
    print(f"{name:<12} {label} {value:9.3f} {unit}  p99 {percentile(values, 0.99):9.3f} {unit}"
          f"  target {target:g} {unit}  ratio {value / target:5.2f}  (n={len(values)})")


def bench_parse(count: int) -> None:
    from copytrade.dhan.frames import parse_frame
    from copytrade.sim.book import Book

    book = Book()
    account = book.authenticate("1", "t")
    frames: list[str] = []
    book.on_update = lambda client_id, data: frames.append(
        json.dumps({"Type": "order_alert", "Data": data}))
    book.place(account, {"transactionType": "BUY", "exchangeSegment": "NSE_EQ",
                         "productType": "CNC", "orderType": "LIMIT", "validity": "DAY",
                         "securityId": "1333", "quantity": 10, "price": 1600.0})
    frame = frames[-1]
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        parse_frame(frame)
        samples.append((time.perf_counter() - started) * 1e6)
    report("parse", samples, "us", 50)


class RemoteSim:
    """`copytrade sim` in its own process, so its threads do not share our interpreter's
    lock: the figures are then copytrade's own work, not the emulator's."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "copytrade", "sim", "--port", "0", "--ws-port", "0"],
            stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.rest_url = self.process.stdout.readline().split()[1]
        self.ws_url = self.process.stdout.readline().split()[1]
        base = self.rest_url.removesuffix("/v2")
        self.control_url = f"{base}/_sim"
        self.scrip_master_url = f"{base}/api-data/api-scrip-master.csv"

    def call(self, path: str, body: dict) -> dict:
        import requests

        return requests.post(f"{self.control_url}{path}", json=body, timeout=10).json()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def bench_follow(orders: int, followers: int) -> None:
    from followtools import follower, running_follow

    from copytrade.store.models import Intent, MirrorOrder

    crowd = [follower(f"f{i}", f"10000001{i:02d}") for i in range(followers)]
    sim = RemoteSim()
    try:
        for client_id in ["1000000001", *(member.client_id for member in crowd)]:
            sim.call("/accounts/funds", {"client_id": client_id, "funds": 1e12})
        with tempfile.TemporaryDirectory() as home, \
                running_follow(sim, Path(home), crowd) as run:  # type: ignore[arg-type]
            for index in range(orders):
                buy = index % 2 == 0
                sim.call("/app/place", {"client_id": "1000000001", "order": {
                    "transactionType": "BUY" if buy else "SELL", "exchangeSegment": "NSE_EQ",
                    "productType": "INTRADAY", "orderType": "LIMIT", "validity": "DAY",
                    "securityId": "1333", "quantity": 1, "price": 1500.0 if buy else 1800.0}})
                run.wait_for(lambda n=index + 1: Intent.select().where(
                    Intent.status == "DONE").count() >= n * followers, timeout=30)
                time.sleep(0.11)  # pacing: stays under 10 orders/s per follower
            decide = [s * 1000 for s in run.engine.replicator.stats.decide_seconds]
            lags = [m.lag_ms for m in MirrorOrder.select() if m.lag_ms is not None]
            spreads = []
            for leader_id in {m.leader_order_id for m in MirrorOrder.select()}:
                sent = [m.lag_ms for m in MirrorOrder.select().where(
                    MirrorOrder.leader_order == leader_id) if m.lag_ms is not None]
                if len(sent) == followers:
                    spreads.append(max(sent) - min(sent))
    finally:
        sim.close()
    report("decide", decide, "ms", 1.0)
    report("end to end", lags, "ms", 1.0)
    report(f"fan-out x{followers}", spreads, "ms", 5.0, share=0.99)


def bench_help(runs: int) -> None:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "copytrade", "--help"], check=True,
                       capture_output=True)
        samples.append((time.perf_counter() - started) * 1000)
    report("--help", samples, "ms", 300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=40)
    parser.add_argument("--followers", type=int, default=10)
    args = parser.parse_args()
    print(f"copytrade bench {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, python "
          f"{sys.version.split()[0]}")
    bench_parse(20_000)
    bench_follow(args.orders, args.followers)
    bench_help(5)


if __name__ == "__main__":
    main()
