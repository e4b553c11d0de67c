"""`python -m bench.bus_agent [--orders 200]`: the latency a remote follower's agent adds.

One emulator (its own process, timestamps on), a real nats-server on 127.0.0.1 started with
the configuration `copytrade bus init` writes (file storage, users and permissions), and two
`copytrade follow` processes with their own homes: the leader (role = "leader") with one
local follower f1 and one remote follower f2, and f2's agent (role = "agent"). For each
leader order, from the emulator's clock (one monotonic clock shared by the processes):
- local:  the leader's accepted frame sent -> f1's place request received (embedded path);
- remote: the same frame -> f2's place request received (leader -> JetStream -> agent);
- added:  remote - local, per order.
Orders one at a time (each waits for both requests), then in bursts back to back. Entries
only (marketable BUY limit orders), multiplier 1. Printed figures; not a timed test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tests/natsserver.py: the server the tests run

from bench.analysis import Placed, Timings  # noqa: E402
from bench.procs import (  # noqa: E402
    Account,
    OrderMaker,
    Sim,
    env_with,
    new_account,
    stop_process,
)
from bench.stats import ratio, summary  # noqa: E402
from copytrade.config.bus_init import plan_bus_init, write_bus_init  # noqa: E402

SCALE = 100.0  # order_rate_scale: the figures are not about Dhan's rate limits
BURST = 10
WAIT_SECONDS = 30.0
WARM_UP = 5


@dataclass(frozen=True)
class Accounts:
    leader: Account
    local: Account  # f1: mirrored by the leader's process
    remote: Account  # f2: mirrored by its agent

    @property
    def followers(self) -> list[str]:
        return [self.local.client_id, self.remote.client_id]


def follower_block(sim: Sim, name: str, account: Account, extra: str = "") -> str:
    return f'''[[followers]]
name = "{name}"
client_id = "{account.client_id}"
access_token_env = "TOKEN_{name.upper()}"
multiplier = 1.0
api_url = "{sim.rest_url}"
order_ws_url = "{sim.ws_url}"
{extra}
'''


def settings_block(sim: Sim) -> str:
    return (f'[settings]\ninstruments_url = "{sim.scrip_master_url}"\n'
            f"order_rate_scale = {SCALE}\nmarket_hours = false\n")


def leader_config(sim: Sim, accounts: Accounts, url: str, creds: Path) -> str:
    return f'''[leader]
client_id = "{accounts.leader.client_id}"
access_token_env = "LEADER_TOKEN"
api_url = "{sim.rest_url}"
order_ws_url = "{sim.ws_url}"

{settings_block(sim)}
[bus]
mode = "nats"
role = "leader"
url = "{url}"
creds_file = "{creds}"

{follower_block(sim, "f1", accounts.local)}
{follower_block(sim, "f2", accounts.remote, "remote = true")}'''


def agent_config(sim: Sim, accounts: Accounts, url: str, creds: Path) -> str:
    return f'''[leader]
client_id = "{accounts.leader.client_id}"

{settings_block(sim)}
[bus]
mode = "nats"
role = "agent"
follower = "f2"
url = "{url}"
creds_file = "{creds}"

{follower_block(sim, "f2", accounts.remote)}'''


def follow(home: Path, config: Path, tokens: dict[str, str]) -> subprocess.Popen[Any]:
    home.mkdir(mode=0o700)
    output = (home.parent / f"{home.name}.out").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "copytrade", "follow", "--config", str(config)], cwd=ROOT,
        env=env_with({"COPYTRADE_HOME": str(home), **tokens}), stdin=subprocess.DEVNULL,
        stdout=output, stderr=subprocess.STDOUT)


def drive(sim: Sim, accounts: Accounts, maker: OrderMaker, count: int,
          burst: int) -> list[Placed]:
    """`count` leader orders, `burst` at a time; each group waits for both followers'
    place requests (bounded)."""
    base = sim.wait_places(accounts.followers, 0, 0)
    placed: list[Placed] = []
    while len(placed) < count:
        for _ in range(min(burst, count - len(placed))):
            order = maker.next()
            placed.append(Placed(sim.app_place(accounts.leader.client_id, order), order.key,
                                 accounts.leader.client_id, accounts.followers))
        want = base + 2 * len(placed)
        seen = sim.wait_places(accounts.followers, want, WAIT_SECONDS)
        if seen < want:
            raise SystemExit(f"only {seen - base} of {2 * len(placed)} follower requests "
                             f"arrived within {WAIT_SECONDS:g} s")
    return placed


def per_order(timings: Timings, placed: list[Placed],
              accounts: Accounts) -> dict[str, list[float]]:
    """ms from the leader's accepted frame to each follower's first place request."""
    triggers, places = timings.triggers(), timings.places()
    found: dict[str, list[float]] = {"local": [], "remote": [], "added": []}
    for order in placed:
        sent = triggers.get((order.leader, order.order_id))
        local = places.get((accounts.local.client_id, order.key))
        remote = places.get((accounts.remote.client_id, order.key))
        if sent is None or not local or not remote:
            continue
        local_ms, remote_ms = (local[0][0] - sent) * 1000, (remote[0][0] - sent) * 1000
        found["local"].append(local_ms)
        found["remote"].append(remote_ms)
        found["added"].append(remote_ms - local_ms)
    return found


def run(scratch: Path, orders: int) -> dict[str, dict[str, list[float]]]:
    from natsserver import NatsServer

    accounts = Accounts(new_account(), new_account(), new_account())
    bus_dir = scratch / "bus"
    write_bus_init(plan_bus_init(["f2"], directory=bus_dir))
    sim = Sim(order_rate_scale=SCALE)
    server = NatsServer(scratch / "nats", config_text=(bus_dir / "nats-server.conf").read_text())
    processes: list[subprocess.Popen[Any]] = []
    try:
        server.start()
        leader_toml, agent_toml = scratch / "leader.toml", scratch / "agent.toml"
        leader_toml.write_text(leader_config(sim, accounts, server.url,
                                             bus_dir / "leader.creds"))
        agent_toml.write_text(agent_config(sim, accounts, server.url,
                                           bus_dir / "agent-f2.creds"))
        leader = follow(scratch / "leader-home", leader_toml, {
            "LEADER_TOKEN": accounts.leader.token, "TOKEN_F1": accounts.local.token})
        processes.append(leader)
        sim.wait_connected([accounts.leader.client_id, accounts.local.client_id], leader)
        agent = follow(scratch / "agent-home", agent_toml, {"TOKEN_F2": accounts.remote.token})
        processes.append(agent)
        sim.wait_connected([accounts.remote.client_id], agent)
        maker = OrderMaker(buy_only=True)
        drive(sim, accounts, maker, WARM_UP, 1)  # connections, instruments, consumer bound
        sim.take()
        results = {}
        for title, burst in (("one at a time", 1), (f"bursts of {BURST}", BURST)):
            timings = Timings()
            placed = drive(sim, accounts, maker, orders, burst)
            timings.extend(sim.take())
            results[title] = per_order(timings, placed, accounts)
        return results
    finally:
        for proc in reversed(processes):
            stop_process(proc)
        server.stop()
        sim.close()


def line(title: str, figures: dict[str, Any]) -> str:
    return (f"    {title:<36} n={figures['n']:<4} p50 {figures['p50']:8.3f} ms  "
            f"p95 {figures['p95']:8.3f} ms  p99 {figures['p99']:8.3f} ms  "
            f"max {figures['max']:8.3f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=200, help="leader orders per measure")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-bus-agent-") as scratch:
        results = run(Path(scratch), args.orders)
    load = os.getloadavg()
    print(f"bus agent latency: leader accepted frame -> follower place request (emulator's "
          f"clock); nats-server on 127.0.0.1, file storage, bus init's users; load "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")
    for title, found in results.items():
        local, remote, added = (summary(found[k]) for k in ("local", "remote", "added"))
        print(f"  {title}")
        print(line("local follower (embedded path)", local))
        print(line("remote follower (through its agent)", remote))
        print(line("added by the bus (remote - local)", added))
        print(f"    ratio remote / local: p50 {ratio(remote['p50'], local['p50'])}  "
              f"p99 {ratio(remote['p99'], local['p99'])}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
