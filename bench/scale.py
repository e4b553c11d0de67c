"""Full-run figures about a long day: P6 (memory and throughput over many orders), P7
(`replay-missed` over a day's book), and bench_flood (the leader stream under a flood)."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from bench.analysis import Placed, Timings, latencies
from bench.procs import (
    ROOT,
    Copytrade,
    Order,
    OrderMaker,
    Sim,
    config_text,
    cpu_seconds,
    env_with,
    new_account,
    rss_kb,
)
from bench.stats import ratio, summary

P6_RSS_MB = 120.0
P6_THROUGHPUT_WITHIN = 0.10
P7_CPU_S = 2.0
BLOCK = 1000  # orders per throughput block (smaller when the time limit comes first)
IST = timedelta(hours=5, minutes=30)


# ----- P6 a long day ----------------------------------------------------------------------

def p6_day(sim: Sim, workdir: Path, orders: int, followers: int, limit_s: float,
           window: int = 5, block_size: int = BLOCK) -> dict[str, Any]:
    """Leader orders back to back, at most `window` not yet fully mirrored, until `orders`
    or `limit_s` seconds; throughput, latency and copytrade's memory per block of orders."""
    blocks: list[dict[str, Any]] = []
    timings = Timings()
    with ExitStack() as stack:
        copytrade = Copytrade(sim, workdir, followers)
        stack.callback(copytrade.close)
        copytrade.orders = OrderMaker(buy_only=True)  # no exit ever waits on its entry
        ids, pid = copytrade.follower_ids, copytrade.proc.pid
        cpu_before = (cpu_seconds(pid), cpu_seconds(sim.proc.pid))
        base = sim.wait_places(ids, 0, 0)
        started = block_started = time.perf_counter()
        deadline = time.monotonic() + limit_s
        placed: list[Placed] = []
        seen = base
        stalled = False
        while len(placed) < orders and time.monotonic() < deadline:
            need = base + (len(placed) - window + 1) * followers
            if seen < need:
                seen = sim.wait_places(ids, need, 30)
                if seen < need:
                    stalled = True
                    break
            order = copytrade.orders.next()
            placed.append(Placed(sim.app_place(copytrade.leader.client_id, order), order.key,
                                 copytrade.leader.client_id, ids))
            if len(placed) % block_size == 0:
                seen = sim.wait_places(ids, base + len(placed) * followers, 30)
                now = time.perf_counter()
                done = Timings()
                done.extend(sim.take())
                block = placed[-block_size:]
                lat = latencies(done, block)
                timings.frames.clear()
                blocks.append({"orders": len(placed), "seconds": round(now - block_started, 2),
                               "orders_per_s": round(block_size / (now - block_started), 2),
                               "latency_ms": summary(lat.per_request),
                               "missing": lat.missing, **rss_kb(pid)})
                block_started = time.perf_counter()
        elapsed = time.perf_counter() - started
        final = rss_kb(pid)
        cpu = {"copytrade_s": round(cpu_seconds(pid) - cpu_before[0], 1),
               "emulator_s": round(cpu_seconds(sim.proc.pid) - cpu_before[1], 1)}
    first, last = (blocks[0], blocks[-1]) if blocks else ({}, {})
    change = (ratio(last.get("orders_per_s"), first.get("orders_per_s")) or 0) - 1 \
        if blocks else None
    peak_mb = final["peak_rss_kb"] / 1024
    met = (len(placed) >= orders and not stalled and peak_mb <= P6_RSS_MB
           and change is not None and change >= -P6_THROUGHPUT_WITHIN)
    rows: list[tuple[str, Any]] = [
        ("orders mirrored / asked / seconds",
         f"{len(placed)} / {orders} in {elapsed:.0f} s (limit {limit_s:g} s)"
         + (", STALLED" if stalled else "")),
    ]
    for block in blocks:
        rows.append((f"block to {block['orders']}: {block['orders_per_s']:g} orders/s, "
                     f"rss {block['rss_kb'] // 1024} MB", block["latency_ms"]))
    rows.append(("CPU over the run: copytrade / emulator",
                 f"{cpu['copytrade_s']} s / {cpu['emulator_s']} s of {elapsed:.0f} s wall"))
    if len(placed) < orders and blocks:
        rows.append(("at the last block's pace, all orders would take",
                     f"{orders / blocks[-1]['orders_per_s'] / 60:.0f} min"))
    rows.append(("copytrade peak resident memory", f"{peak_mb:.0f} MB (target <= "
                 f"{P6_RSS_MB:g} MB)"))
    rows.append((f"throughput, last block / first block - 1 ({block_size} orders a block)",
                 "-" if change is None else f"{change:+.1%} (target >= "
                 f"-{P6_THROUGHPUT_WITHIN:.0%}): {'ok' if met else 'MISSED'}"))
    return {"title": f"P6 a long day: leader orders x {followers} followers, at most {window} "
                     f"unmirrored, order_rate_scale {sim.order_rate_scale:g}",
            "followers": followers, "orders_asked": orders, "orders_placed": len(placed),
            "seconds": round(elapsed, 1), "stalled": stalled, "blocks": blocks,
            "peak_rss_mb": round(peak_mb, 1), "throughput_change": change, "cpu": cpu,
            "block_size": block_size,
            "target": {"peak_rss_mb": P6_RSS_MB, "throughput_change_min": -P6_THROUGHPUT_WITHIN},
            "met": met, "rows": rows, "unit": "ms"}


# ----- P7 replay-missed over a day's book ---------------------------------------------------

def p7_replay(workdir: Path, orders: int, limit_s: float, scale: float = 100.0) -> dict[str, Any]:
    """The leader's day book of `orders` orders, none mirrored; then one `copytrade
    replay-missed` over it. Its CPU time (user + system) as a child process."""
    sim = Sim(order_rate_scale=scale)
    try:
        leader, follower = new_account(), new_account()
        home = workdir / f"replay-{leader.client_id}"
        home.mkdir()
        config = home / "copytrade.toml"
        config.write_text(config_text(sim, leader, [follower], order_rate_scale=scale))
        since = (datetime.now(UTC) + IST - timedelta(seconds=5)).strftime("%H:%M:%S")
        maker = OrderMaker(buy_only=True)
        book = [maker.next() for _ in range(orders)]
        book_started = time.perf_counter()
        build_book(sim, leader.client_id, book)
        book_s = time.perf_counter() - book_started
        base = sim.wait_places([follower.client_id], 0, 0)
        sim.take()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        with (home / "replay.out").open("w") as output:
            proc = subprocess.Popen(
                [sys.executable, "-m", "copytrade", "replay-missed", "--config", str(config),
                 "--since", since, "--max-age", "86400"],
                cwd=ROOT, env=env_with({"COPYTRADE_HOME": str(home / "home"),
                                        "LEADER_TOKEN": leader.token,
                                        "TOKEN_F0": follower.token}),
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
            try:
                code: int | None = proc.wait(limit_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                code = None
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        placed = sim.wait_places([follower.client_id], base + orders, 0) - base
        tail = (home / "replay.out").read_text(errors="replace").splitlines()[-2:]
    finally:
        sim.close()
    met = code == 0 and placed >= orders and cpu <= P7_CPU_S
    rows: list[tuple[str, Any]] = [
        ("leader book", f"{orders} orders (built in {book_s:.1f} s)"),
        ("replay-missed", f"exit {code if code is not None else 'killed at ' + str(limit_s)}"
                          f", {placed}/{orders} placed, wall {wall:.1f} s, CPU {cpu:.1f} s"),
        ("target", f"CPU <= {P7_CPU_S:g} s, every order placed: {'ok' if met else 'MISSED'}"),
        ("its last lines", " | ".join(tail)[:160]),
    ]
    return {"title": f"P7 replay-missed over a {orders}-order day book, order_rate_scale "
                     f"{scale:g}", "orders": orders, "placed": placed, "exit_code": code,
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "met": met,
            "target": {"cpu_s": P7_CPU_S}, "rows": rows}


def build_book(sim: Sim, client_id: str, orders: list[Order], threads: int = 4) -> None:
    """The leader's orders through the control plane, a few connections at once."""

    def place(share: list[Order]) -> None:
        with requests.Session() as http:
            for order in share:
                reply = http.post(f"{sim.control_url}/app/place", timeout=30,
                                  json={"client_id": client_id, "order": order.body})
                reply.raise_for_status()

    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(place, orders[i::threads]) for i in range(threads)]:
            done.result(timeout=600)


# ----- bench_flood -----------------------------------------------------------------------

def flood(seconds: float) -> dict[str, Any]:
    """bench/bench_flood.py as it is (its own two processes), its lines kept."""
    done = subprocess.run([sys.executable, "-m", "bench.bench_flood", "--seconds", str(seconds)],
                          cwd=ROOT, env=env_with({}), capture_output=True, text=True,
                          timeout=4 * seconds + 40)
    lines = done.stdout.splitlines()[1:]
    return {"title": f"flood: leader stream under 10,000 frames/s then as fast as possible "
                     f"({seconds:g} s each; bench/bench_flood.py)", "exit_code": done.returncode,
            "lines": lines, "rows": [(line.split()[0] if line.split() else "", " ".join(
                line.split()[1:])[:110]) for line in lines]}
