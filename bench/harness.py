"""`python -m bench [--quick]`: copytrade's speed, side by side with a naive follower.

Starts the emulator on 127.0.0.1 in its own process, runs `copytrade follow` and the
baseline (bench/baseline.py) each in their own process against it, prints a table, writes
bench/results.json and prints that JSON as the last line of stdout. Progress goes to stderr.
docs/performance.md explains the method and the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import figures
from bench.figures import log
from bench.procs import Sim
from bench.stats import Table, verdict

RESULTS = Path(__file__).resolve().with_name("results.json")
SCALE = 100.0  # order_rate_scale where a figure is not about Dhan's rate limits

PLANS: dict[str, dict[str, Any]] = {
    # p1: (followers, leader orders per side); p2: (copytrade orders, baseline orders);
    # p4: repetitions; p6: (orders, followers, time limit s, window, block); p7: (orders,
    # time limit s); flood: seconds per phase.
    "quick": {"p1": ((1, 50), (3, 30)), "sdk_samples": 50, "p2": (10, 1), "p5_runs": 5,
              "p4": None, "p6": None, "p7": None, "flood": None},
    "full": {"p1": ((1, 300), (3, 200), (10, 80)), "sdk_samples": 300, "p2": (40, 4),
             "p5_runs": 20, "p4": 3, "p6": (10_000, 10, 100.0, 5, 200), "p7": (7_000, 120.0),
             "flood": 3.0},
}

NOT_YET = {
    "P4": "recovery after a stream outage / stall detection: full run only",
    "P6": "memory and throughput over 10,000 orders x 10 followers: full run only",
    "P7": "replay-missed CPU over a 7,000-order book: full run only",
    "flood": "bench_flood (leader stream under 10,000 frames/s): full run only",
}


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                          if line.startswith("model name")), "")
    except OSError:
        pass
    memory_kb = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            memory_kb = int(meminfo.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model,
            "memory_mb": memory_kb // 1024, "python": platform.python_version(),
            "platform": platform.platform(), "load_average_at_start": os.getloadavg()}


def run_figure(results: dict[str, Any], name: str, action: Callable[[], Any]) -> None:
    started = time.perf_counter()
    log(f"{name} ...")
    try:
        results[name] = action()
    except Exception as exc:  # one broken figure must not lose the others
        traceback.print_exc(file=sys.stderr)
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    seconds = time.perf_counter() - started
    if isinstance(results[name], dict):
        results[name]["seconds"] = round(seconds, 1)
    log(f"{name} done in {seconds:.1f} s")


def measure(mode: str, workdir: Path) -> dict[str, Any]:
    plan = PLANS[mode]
    out: dict[str, Any] = {}
    sim = Sim(order_rate_scale=SCALE)
    try:
        run_figure(out, "sdk", lambda: figures.sdk_round_trip(sim, plan["sdk_samples"], 0.01))
        p1: dict[str, Any] = {}
        for followers, orders in plan["p1"]:
            run_figure(p1, f"followers_{followers}", lambda f=followers, o=orders:
                       figures.p1_copy_overhead(sim, workdir, f, o, sdk=out["sdk"]))
        out["P1"] = p1
        run_figure(out, "P2", lambda: figures.p2_fan_out(sim, workdir, *plan["p2"]))
        if plan["p4"]:
            from bench import recovery
            run_figure(out, "P4", lambda: recovery.p4_recovery(sim, workdir, plan["p4"]))
        if plan["p6"]:
            from bench import scale
            run_figure(out, "P6", lambda: scale.p6_day(sim, workdir, *plan["p6"]))
    finally:
        sim.close()
    run_figure(out, "P3", lambda: figures.p3_burst(workdir))
    run_figure(out, "P5", lambda: figures.p5_help(plan["p5_runs"]))
    if plan["p7"]:
        from bench import scale
        run_figure(out, "P7", lambda: scale.p7_replay(workdir, *plan["p7"]))
    if plan["flood"]:
        from bench import scale
        run_figure(out, "flood", lambda: scale.flood(plan["flood"]))
    return out


def table(results: dict[str, Any]) -> str:
    figs = results["figures"]
    t = Table()
    sdk = figs.get("sdk", {})
    t.section("P1 copy overhead: leader's accepted frame sent -> follower's place request "
              "received (emulator clock)")
    for key, p1 in figs.get("P1", {}).items():
        if "error" in p1:
            t.value(key, p1["error"])
            continue
        n = p1["followers"]
        t.dist(f"copytrade, {n} follower(s), every request", p1["copytrade"])
        t.dist(f"baseline,  {n} follower(s), every request", p1["baseline"])
        if n > 1:
            t.dist(f"copytrade, {n} followers, first follower", p1["copytrade_first_follower"])
            t.dist(f"baseline,  {n} followers, first follower", p1["baseline_first_follower"])
        r = p1["ratio_copytrade_to_baseline"]
        t.value(f"copytrade / baseline, {n} follower(s)",
                " ".join(f"{name} {_num(r.get(name))}" for name in ("p50", "p95", "p99")))
        o = p1["overhead_ms"]
        t.value(f"copytrade - baseline, {n} follower(s)",
                f"p50 {_num(o['p50'])} ms  p99 {_num(o['p99'])} ms",
                f"target p50 <= {figures.P1_OVERHEAD_P50_MS} / p99 <= "
                f"{figures.P1_OVERHEAD_P99_MS}: "
                f"{verdict(o['p50'], figures.P1_OVERHEAD_P50_MS)} / "
                f"{verdict(o['p99'], figures.P1_OVERHEAD_P99_MS)}")
        if n > 1:
            f = p1["overhead_first_follower_ms"]
            t.value(f"  first follower only, {n} followers",
                    f"p50 {_num(f['p50'])} ms  p99 {_num(f['p99'])} ms")
        for side, figure in p1.get("by_side", {}).items():
            o = figure["overhead_ms"]
            t.value(f"  {side} only (copytrade - baseline)",
                    f"p50 {_num(o['p50'])} ms  p99 {_num(o['p99'])} ms")
        s = p1["copytrade_minus_sdk_place_ms"]
        t.value(f"copytrade - bare SDK place, {n} follower(s)",
                f"p50 {_num(s['p50'])} ms  p99 {_num(s['p99'])} ms")
        missing = p1["missing_requests"]
        if any(missing.values()):
            t.value("  requests never seen", str(missing))
    if "sdk_place" in sdk:
        t.dist("bare SDK place round trip (client side)", sdk["sdk_place"])
        t.dist("  of which the emulator (read -> replied)", sdk["emulator_service"])
    p2 = figs.get("P2", {})
    t.section(f"P2 fan-out: {p2.get('followers', 10)} followers, emulator delay "
              f"{p2.get('delay_ms', 300):g} ms: first -> last follower place request")
    if "error" in p2:
        t.value("P2", p2["error"])
    elif p2:
        t.dist("copytrade", p2["copytrade_first_to_last"], note=(
            f"target p99 <= {figures.P2_SPREAD_P99_MS:g}: "
            f"{verdict(p2['copytrade_first_to_last']['p99'], figures.P2_SPREAD_P99_MS)}"))
        t.dist("baseline (sequential)", p2["baseline_first_to_last"])
        r = p2["ratio_copytrade_to_baseline"]
        t.value("copytrade / baseline", f"p50 {_num(r['p50'])}  p99 {_num(r['p99'])}")
    for key in ("P4", "P6"):
        if key in figs:
            _section_lines(t, key, figs[key])
    p3 = figs.get("P3", {})
    t.section("P3 burst: 100 leader orders in 1 s, one follower, Dhan's limits (10/s)")
    if "error" in p3:
        t.value("P3", p3["error"])
    elif p3:
        for side in ("copytrade", "baseline"):
            b = p3[side]
            t.value(side, f"placed {b['follower_orders_placed']}/{b['leader_orders']}  "
                    f"DH-904 {b['dh904_responses']}  last {_num(b.get('last_follower_order_s'))}"
                    f" s  earliest {_num(b.get('earliest_allowed_s'))} s  ratio "
                    f"{_num(b.get('last_to_earliest'))}",
                    "target 0 DH-904, ratio <= 1.05: " + ("ok" if p3["met"] else "MISSED")
                    if side == "copytrade" else "")
    p5 = figs.get("P5", {})
    t.section("P5 start-up, wall time of a process")
    if "error" in p5:
        t.value("P5", p5["error"])
    elif p5:
        t.dist("copytrade --help", p5["help"], note=f"target p50 <= {figures.P5_HELP_MS:g}: "
               f"{verdict(p5['help']['p50'], figures.P5_HELP_MS)}")
        t.dist("copytrade follow --help", p5["follow_help"],
               note=f"target p50 <= {figures.P5_HELP_MS:g}: "
               f"{verdict(p5['follow_help']['p50'], figures.P5_HELP_MS)}")
        t.dist("python -c pass (the floor)", p5["python_startup"])
    for key in ("P7", "flood"):
        if key in figs:
            _section_lines(t, key, figs[key])
    if results["not_measured"]:
        t.section("not measured in this run")
        for key, why in results["not_measured"].items():
            t.value(key, why)
    return t.text()


def _section_lines(t: Table, key: str, fig: dict[str, Any]) -> None:
    t.section(fig.get("title", key))
    if "error" in fig:
        t.value(key, fig["error"])
        return
    for label, value in fig.get("rows", []):
        if isinstance(value, dict) and "p50" in value:
            t.dist(label, value, unit=fig.get("unit", "ms"))
        else:
            t.value(label, str(value))


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer orders, P1 with 1 and 3 followers, no P4/P6/P7 (< 60 s)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON file")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="copytrade-bench-") as workdir:
        figs = measure(mode, Path(workdir))
    not_measured = {key: why for key, why in NOT_YET.items() if key not in figs}
    not_measured["P4 (30 s outage)"] = ("orders placed while the stream cannot reconnect for "
                                        "30 s: the emulator cannot refuse logins for a while; "
                                        "P4 measures a stall and a drop instead")
    p6 = figs.get("P6", {})
    if p6.get("orders_placed", 0) < p6.get("orders_asked", 0):
        not_measured["P6 (all orders)"] = (
            f"stopped at {p6['orders_placed']} of {p6['orders_asked']} orders by the time "
            "limit: memory and throughput are for that part of the day")
    results = {
        "bench": "copytrade", "issue": 8, "mode": mode,
        "started": started_at.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine(), "order_rate_scale": SCALE,
        "figures": figs, "not_measured": not_measured,
    }
    results["machine"]["load_average_at_end"] = os.getloadavg()
    info = results["machine"]
    print(f"copytrade bench ({mode}), {started_at:%Y-%m-%d %H:%M} UTC, {info['nproc']} x "
          f"{info['cpu_model']}, python {info['python']}, {results['seconds']} s, load "
          f"{info['load_average_at_start'][0]:.1f} -> {info['load_average_at_end'][0]:.1f}")
    print(table(results))
    text = json.dumps(results, separators=(",", ":"))
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(text, flush=True)
    return 0
