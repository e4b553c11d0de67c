"""The figures: each runs its processes, drives the leader, and returns a JSON-able dict.

Every wait is bounded (per order, per figure); every process is closed in a finally.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from dhanhq import DhanContext, dhanhq

from bench.analysis import Placed, Timings, latencies
from bench.procs import ROOT, Baseline, Copytrade, OrderMaker, Sim, env_with, new_account
from bench.stats import difference, percentile, ratio, ratios, summary

Side = Copytrade | Baseline

# Targets (issue 8, Deliver 1).
P1_OVERHEAD_P50_MS = 0.5
P1_OVERHEAD_P99_MS = 3.0
P2_SPREAD_P99_MS = 10.0
P3_LAST_WITHIN = 1.05  # last follower order within 5 % of the earliest the limits allow
P5_HELP_MS = 300.0
# Dhan's order-API windows per account (docs/sim.md, Rate limits): (orders, seconds).
DHAN_ORDER_WINDOWS = ((10, 1.0), (250, 60.0), (1000, 3600.0), (7000, 86400.0))


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ----- driving the leader ------------------------------------------------------------------

def schedule(counts: dict[str, int]) -> list[str]:
    """Interleave the sides evenly (so drift in the machine hits both alike)."""
    slots = [((i + 0.5) / count, kind) for kind, count in counts.items() for i in range(count)]
    return [kind for _, kind in sorted(slots)]


def drive(sim: Sim, sides: dict[str, Side], counts: dict[str, int], *, gap: float,
          timeout: float) -> dict[str, list[Placed]]:
    """Place leader orders one at a time in the interleaved order; after each, wait until
    every follower of that side has sent its place request (bounded), then idle `gap`."""
    placed: dict[str, list[Placed]] = {kind: [] for kind in sides}
    expected = {kind: sim.wait_places(side.follower_ids, 0, 0) for kind, side in sides.items()}
    jitter = random.Random(8)
    for kind in schedule(counts):
        side = sides[kind]
        order = side.orders.next()
        order_id = sim.app_place(side.leader.client_id, order)
        placed[kind].append(Placed(order_id, order.key, side.leader.client_id,
                                   side.follower_ids, time.perf_counter()))
        expected[kind] = sim.wait_places(side.follower_ids,
                                         expected[kind] + len(side.follower_ids), timeout)
        time.sleep(gap + 0.01 * jitter.random())  # jitter: no lockstep with periodic work
    return placed


def start_pair(stack: ExitStack, sim: Sim, workdir: Path, followers: int) -> dict[str, Side]:
    copytrade = Copytrade(sim, workdir, followers)
    stack.callback(copytrade.close)
    baseline = Baseline(sim, workdir, followers)
    stack.callback(baseline.close)
    return {"copytrade": copytrade, "baseline": baseline}


# ----- P1 copy overhead ------------------------------------------------------------------

def sdk_round_trip(sim: Sim, samples: int, gap: float) -> dict[str, Any]:
    """The bare SDK place round trip (this process -> emulator -> this process), and the
    emulator's own share of it (request read -> reply written)."""
    account = new_account()
    context = DhanContext(account.client_id, account.token)
    context.get_dhan_http().base_url = sim.rest_url
    context.get_dhan_http().timeout = 10
    api = dhanhq(context)
    orders = OrderMaker()
    sim.take()
    times = []
    for index in range(samples + 3):
        body = orders.next().body
        started = time.perf_counter()
        api.place_order(body["securityId"], body["exchangeSegment"], body["transactionType"],
                        body["quantity"], body["orderType"], body["productType"], body["price"])
        if index >= 3:  # the first ones open the connection
            times.append((time.perf_counter() - started) * 1000)
        time.sleep(gap)
    served = [(r[1] - r[0]) * 1000 for r in sim.take()["requests"][3:]
              if r[2] == account.client_id and r[3] == "POST"]
    return {"sdk_place": summary(times), "emulator_service": summary(served)}


def p1_copy_overhead(sim: Sim, workdir: Path, followers: int, orders: int, *,
                     sdk: dict[str, Any], gap: float = 0.03) -> dict[str, Any]:
    with ExitStack() as stack:
        sides = start_pair(stack, sim, workdir, followers)
        drive(sim, sides, {"copytrade": 3, "baseline": 3}, gap=gap, timeout=10)  # warm-up
        sim.take()
        timings = Timings()
        placed = drive(sim, sides, {"copytrade": orders, "baseline": orders}, gap=gap,
                       timeout=10)
        timings.extend(sim.take())
    ct, bl = latencies(timings, placed["copytrade"]), latencies(timings, placed["baseline"])
    ct_all, bl_all = summary(ct.per_request), summary(bl.per_request)
    by_side = {}  # entries (BUY) and exits (SELL): an exit is confirmed from positions first
    for side, name in (("BUY", "entries"), ("SELL", "exits")):
        ct_side = summary(latencies(timings, [p for p in placed["copytrade"]
                                              if p.key[1] == side]).per_request)
        bl_side = summary(latencies(timings, [p for p in placed["baseline"]
                                              if p.key[1] == side]).per_request)
        by_side[name] = {"copytrade": ct_side, "baseline": bl_side, "overhead_ms": {
            "p50": difference(ct_side["p50"], bl_side["p50"]),
            "p99": difference(ct_side["p99"], bl_side["p99"])}}
    over50 = difference(ct_all["p50"], bl_all["p50"])
    over99 = difference(ct_all["p99"], bl_all["p99"])
    return {
        "followers": followers, "orders_per_side": orders,
        "copytrade": ct_all, "baseline": bl_all,
        "copytrade_first_follower": summary(ct.first),
        "baseline_first_follower": summary(bl.first),
        "ratio_copytrade_to_baseline": ratios(ct_all, bl_all),
        "overhead_ms": {"p50": over50, "p99": over99},
        "overhead_first_follower_ms": {
            "p50": difference(summary(ct.first)["p50"], summary(bl.first)["p50"]),
            "p99": difference(summary(ct.first)["p99"], summary(bl.first)["p99"])},
        "copytrade_minus_sdk_place_ms": {
            "p50": difference(ct_all["p50"], sdk["sdk_place"]["p50"]),
            "p99": difference(ct_all["p99"], sdk["sdk_place"]["p99"])},
        "baseline_minus_sdk_place_ms": {
            "p50": difference(bl_all["p50"], sdk["sdk_place"]["p50"]),
            "p99": difference(bl_all["p99"], sdk["sdk_place"]["p99"])},
        "missing_requests": {"copytrade": ct.missing, "baseline": bl.missing},
        "by_side": by_side,
        "target_ms": {"overhead_p50": P1_OVERHEAD_P50_MS, "overhead_p99": P1_OVERHEAD_P99_MS},
        "met": (over50 is not None and over99 is not None and over50 <= P1_OVERHEAD_P50_MS
                and over99 <= P1_OVERHEAD_P99_MS and ct.missing == 0),
    }


# ----- P2 fan-out ---------------------------------------------------------------------------

def p2_fan_out(sim: Sim, workdir: Path, copytrade_orders: int, baseline_orders: int, *,
               followers: int = 10, delay_ms: float = 300.0) -> dict[str, Any]:
    with ExitStack() as stack:
        sides = start_pair(stack, sim, workdir, followers)
        drive(sim, sides, {"copytrade": 2, "baseline": 1}, gap=0.05, timeout=30)  # warm-up
        sim.set_delay(delay_ms)
        stack.callback(sim.set_delay, 0)
        sim.take()
        timings = Timings()
        # The gap lets every reply (delay_ms after its request) land before the next order.
        placed = drive(sim, sides, {"copytrade": copytrade_orders, "baseline": baseline_orders},
                       gap=delay_ms / 1000 + 0.05, timeout=followers * delay_ms / 1000 + 15)
        timings.extend(sim.take())
    ct, bl = latencies(timings, placed["copytrade"]), latencies(timings, placed["baseline"])
    ct_spread, bl_spread = summary(ct.spread), summary(bl.spread)
    return {
        "followers": followers, "delay_ms": delay_ms,
        "copytrade_first_to_last": ct_spread, "baseline_first_to_last": bl_spread,
        "copytrade_last_follower": summary(ct.last), "baseline_last_follower": summary(bl.last),
        "ratio_copytrade_to_baseline": ratios(ct_spread, bl_spread),
        "missing_requests": {"copytrade": ct.missing, "baseline": bl.missing},
        "target_ms": {"first_to_last_p99": P2_SPREAD_P99_MS},
        "met": (ct_spread["p99"] is not None and ct_spread["p99"] <= P2_SPREAD_P99_MS
                and ct.missing == 0),
    }


# ----- P3 burst -----------------------------------------------------------------------------

def earliest_schedule(leader_times: list[float],
                      windows: tuple[tuple[int, float], ...] = DHAN_ORDER_WINDOWS) -> list[float]:
    """The earliest time each follower order may reach the broker: not before its leader
    order, and never more than `limit` orders in any `seconds` window."""
    earliest: list[float] = []
    for index, at in enumerate(sorted(leader_times)):
        bound = at
        for limit, seconds in windows:
            if index >= limit:
                bound = max(bound, earliest[index - limit] + seconds)
        earliest.append(bound)
    return earliest


def burst(sim: Sim, side: Side, orders: int, seconds: float, settle: float) -> dict[str, Any]:
    """`orders` leader orders spread evenly over `seconds`; then wait (bounded) until the
    follower has placed them all or stopped trying."""
    follower = side.follower_ids[0]
    side.orders = OrderMaker(buy_only=True)  # entries only: no exit waits on its entry
    before = sim.wait_places([follower], 0, 0)
    sim.take()
    placed = []
    started = time.perf_counter()
    for index in range(orders):
        delay = started + index * seconds / orders - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        order = side.orders.next()
        placed.append(Placed(sim.app_place(side.leader.client_id, order), order.key,
                             side.leader.client_id, [follower]))
    offered = time.perf_counter() - started
    timings = Timings()
    ok: list[float] = []
    refused = 0
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        sim.wait_places([follower], before + orders, max(0.0, deadline - time.monotonic()))
        timings.extend(sim.take())
        orders_api = [r for r in timings.requests if r[2] == follower and r[4].startswith(
            "/orders") and r[3] in ("POST", "PUT", "DELETE")]
        ok = [r[0] for r in orders_api if r[3] == "POST" and r[5] == 200]
        refused = sum(1 for r in orders_api if r[5] == 429)
        if len(ok) >= orders or side.kind == "baseline":
            break  # the baseline never retries: what it sent is all it will send
        time.sleep(0.2)
    triggers = timings.triggers()
    leader_times = sorted(t for (client, _), t in triggers.items()
                          if client == side.leader.client_id)
    earliest = earliest_schedule(leader_times)
    first = leader_times[0] if leader_times else None
    last = max(ok) if ok else None
    result: dict[str, Any] = {
        "leader_orders": orders, "offered_over_s": round(offered, 3),
        "follower_orders_placed": len(ok), "dh904_responses": refused,
    }
    if first is not None and last is not None and earliest:
        result["last_follower_order_s"] = round(last - first, 3)
        result["earliest_allowed_s"] = round(earliest[-1] - first, 3)
        result["last_to_earliest"] = ratio(last - first, earliest[-1] - first)
    return result


def p3_burst(workdir: Path, orders: int = 100, seconds: float = 1.0) -> dict[str, Any]:
    """Dhan's real limits: an emulator at order_rate_scale 1 of its own."""
    sim = Sim(order_rate_scale=1.0)
    try:
        with ExitStack() as stack:
            copytrade = Copytrade(sim, workdir, 1)
            stack.callback(copytrade.close)
            baseline = Baseline(sim, workdir, 1)
            stack.callback(baseline.close)
            ct = burst(sim, copytrade, orders, seconds, settle=orders / 10 * 3 + 10)
            bl = burst(sim, baseline, orders, seconds, settle=10)
    finally:
        sim.close()
    met = (ct.get("dh904_responses") == 0 and ct.get("follower_orders_placed") == orders
           and (ct.get("last_to_earliest") or 99) <= P3_LAST_WITHIN)
    return {"copytrade": ct, "baseline": bl,
            "target": {"dh904_responses": 0, "last_to_earliest": P3_LAST_WITHIN}, "met": met}


# ----- P5 start-up --------------------------------------------------------------------------

def copytrade_command() -> list[str]:
    script = Path(sys.executable).with_name("copytrade")
    return [str(script)] if script.exists() else [sys.executable, "-m", "copytrade"]


def wall_times(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT, env=env_with({}),
                       timeout=30)
        times.append((time.perf_counter() - started) * 1000)
    return times


def p5_help(runs: int) -> dict[str, Any]:
    command = copytrade_command()
    wall_times([*command, "--help"], 1)  # warm the file cache
    floor = summary(wall_times([sys.executable, "-c", "pass"], runs))
    results: dict[str, Any] = {"command": " ".join(Path(command[0]).name
                                                   if i == 0 else c for i, c in
                                                   enumerate(command)),
                               "python_startup": floor}
    met = True
    for name, args in (("help", ["--help"]), ("follow_help", ["follow", "--help"])):
        stats = summary(wall_times([*command, *args], runs))
        results[name] = stats
        results[f"{name}_ratio_to_target"] = ratio(stats["p50"], P5_HELP_MS)
        met = met and stats["p50"] is not None and stats["p50"] <= P5_HELP_MS
    results["target_ms"] = {"p50": P5_HELP_MS}
    results["met"] = met
    return results


__all__ = ["log", "p1_copy_overhead", "p2_fan_out", "p3_burst", "p5_help", "percentile",
           "sdk_round_trip"]
