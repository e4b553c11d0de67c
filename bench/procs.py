"""The processes a benchmark runs: the emulator, `copytrade follow` and the baseline.

Each is its own OS process on 127.0.0.1, so none shares an interpreter lock with another;
every wait here is bounded, and `close()` ends the process (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
COMMAND_TIMEOUT = 150.0

# Securities and their start prices in the emulator (docs/sim.md, Instruments).
SECURITIES = (("1333", 1650.0), ("2885", 1400.0), ("11536", 3200.0), ("1594", 1500.0),
              ("3045", 800.0))
TICK = 0.05


def env_with(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COPYTRADE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def stop_process(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> int | None:
    """SIGTERM, wait (bounded), then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def rss_kb(pid: int) -> dict[str, int]:
    """Resident memory now and its peak (VmRSS, VmHWM) in kB, from /proc."""
    found = {"rss_kb": 0, "peak_rss_kb": 0}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    found["rss_kb"] = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    found["peak_rss_kb"] = int(line.split()[1])
    except OSError:
        pass
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


# ----- accounts and orders -----------------------------------------------------------------

@dataclass(frozen=True)
class Account:
    client_id: str
    token: str

    @property
    def pair(self) -> str:
        return f"{self.client_id}:{self.token}"


_ids = itertools.count(1)


def new_account() -> Account:
    """A fresh account: every phase uses its own, so no phase sees another's orders."""
    number = next(_ids)
    client_id = f"77{os.getpid() % 10000:04d}{number:04d}"
    return Account(client_id, f"bench-token-{client_id}-5b1e")


@dataclass(frozen=True)
class Order:
    body: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, float]:
        return order_key(self.body)


def order_key(body: dict[str, Any]) -> tuple[str, str, float]:
    """Security, side and price: unique per leader order in one emulator, and copied as is
    by a follower with multiplier 1, so a follower's place request names its leader order."""
    try:
        price = round(float(body.get("price", 0)), 2)
    except (TypeError, ValueError):
        price = 0.0
    return str(body.get("securityId")), str(body.get("transactionType")), price


class OrderMaker:
    """One leader's orders: marketable LIMIT orders (they fill at once at the last price, like
    most copied orders), each at its own price: BUY a few ticks above the last price, SELL a
    few ticks below, cycling over five securities (five buys, then five sells that close them),
    so a day of 10,000 stays within 3 % of the last price and the leader stays about flat."""

    def __init__(self, buy_only: bool = False) -> None:
        self.count = 0
        self.buy_only = buy_only

    def next(self) -> Order:
        k = self.count
        self.count += 1
        security, last = SECURITIES[k % len(SECURITIES)]
        buy = self.buy_only or (k // len(SECURITIES)) % 2 == 0
        step = k // (len(SECURITIES) if self.buy_only else 2 * len(SECURITIES)) + 1
        price = round(last + step * TICK if buy else last - step * TICK, 2)
        return Order({"transactionType": "BUY" if buy else "SELL", "exchangeSegment": "NSE_EQ",
                      "productType": "INTRADAY", "orderType": "LIMIT", "validity": "DAY",
                      "securityId": security, "quantity": 1, "price": price})


# ----- the emulator ----------------------------------------------------------------------

class Lines:
    """A process's stdout, line by line, with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def get(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer within {timeout:g} s") from None
        if line is None:
            raise EOFError("the process ended")
        return line


class Sim:
    """`python -m bench.simproc`: the emulator with timestamps, in its own process."""

    def __init__(self, order_rate_scale: float = 1.0) -> None:
        self.order_rate_scale = order_rate_scale
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.simproc", "--order-rate-scale", str(order_rate_scale)],
            cwd=ROOT, env=env_with({}), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.out = Lines(self.proc.stdout)
        try:
            self.rest_url = self.out.get(START_TIMEOUT).split()[1]
            self.ws_url = self.out.get(START_TIMEOUT).split()[1]
        except BaseException:
            stop_process(self.proc)
            raise
        base = self.rest_url.removesuffix("/v2")
        self.control_url = f"{base}/_sim"
        self.scrip_master_url = f"{base}/api-data/api-scrip-master.csv"
        self.http = requests.Session()

    # control plane (HTTP, like any client of `copytrade sim`)
    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        reply = self.http.post(f"{self.control_url}{path}", json=body or {}, timeout=30)
        reply.raise_for_status()
        return reply.json().get("result")

    def app_place(self, client_id: str, order: Order) -> str:
        return self.control("/app/place", {"client_id": client_id, "order": order.body})[0]

    def set_delay(self, milliseconds: float) -> None:
        self.control("/delay", {"ms": milliseconds})

    # the timing side channel (stdin / stdout of the emulator process)
    def command(self, payload: dict[str, Any], timeout: float = COMMAND_TIMEOUT) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(payload) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.out.get(timeout))

    def wait_places(self, clients: list[str], total: int, timeout: float) -> int:
        """Until `total` place requests from these clients were received since start."""
        return int(self.command({"cmd": "wait", "clients": clients, "places": total,
                                 "timeout": timeout}, timeout + 10)["places"])

    def take(self) -> dict[str, list[list[Any]]]:
        return self.command({"cmd": "take"})

    def connections(self) -> dict[str, int]:
        return self.command({"cmd": "connections"})

    def wait_connected(self, client_ids: list[str], process: subprocess.Popen[Any],
                       timeout: float = START_TIMEOUT, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while True:
            connected = self.connections()
            if all(connected.get(cid, 0) >= count for cid in client_ids):
                return
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[2:4]} exited with {process.returncode} "
                                   "before its streams connected")
            if time.monotonic() > deadline:
                raise TimeoutError(f"streams not connected within {timeout:g} s: {connected}")
            time.sleep(0.05)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write('{"cmd": "quit"}\n')
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
        self.http.close()


# ----- the followers under test ----------------------------------------------------------

def config_text(sim: Sim, leader: Account, followers: list[Account], *,
                order_rate_scale: float) -> str:
    blocks = [f'''[leader]
client_id = "{leader.client_id}"
access_token_env = "LEADER_TOKEN"
api_url = "{sim.rest_url}"
order_ws_url = "{sim.ws_url}"

[settings]
instruments_url = "{sim.scrip_master_url}"
order_rate_scale = {order_rate_scale}
market_hours = false
''']
    for index, account in enumerate(followers):
        blocks.append(f'''[[followers]]
name = "f{index}"
client_id = "{account.client_id}"
access_token_env = "TOKEN_F{index}"
multiplier = 1.0
api_url = "{sim.rest_url}"
order_ws_url = "{sim.ws_url}"
''')
    return "\n".join(blocks)


class _FollowerProcess:
    """What the harness asks of either follower under test (copytrade or the baseline)."""

    followers: list[Account]
    proc: subprocess.Popen
    output: IO[str]
    home: Path
    log_name: str

    @property
    def follower_ids(self) -> list[str]:
        return [f.client_id for f in self.followers]

    def close(self) -> int | None:
        code = stop_process(self.proc)
        self.output.close()
        return code

    def tail(self, lines: int = 5) -> str:
        text = (self.home / self.log_name).read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class Copytrade(_FollowerProcess):
    """`copytrade follow` as an OS process, with its own COPYTRADE_HOME and config."""

    kind = "copytrade"
    log_name = "follow.out"

    def __init__(self, sim: Sim, workdir: Path, followers: int) -> None:
        self.orders = OrderMaker()
        self.leader = new_account()
        self.followers = [new_account() for _ in range(followers)]
        self.home = workdir / f"copytrade-{self.leader.client_id}"
        self.home.mkdir(parents=True)
        config = self.home / "copytrade.toml"
        config.write_text(config_text(sim, self.leader, self.followers,
                                      order_rate_scale=sim.order_rate_scale))
        tokens = {"LEADER_TOKEN": self.leader.token}
        tokens.update({f"TOKEN_F{i}": f.token for i, f in enumerate(self.followers)})
        self.output = (self.home / self.log_name).open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "copytrade", "follow", "--config", str(config)],
            cwd=ROOT, env=env_with({"COPYTRADE_HOME": str(self.home / "home"), **tokens}),
            stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT)
        try:
            sim.wait_connected([self.leader.client_id, *self.follower_ids], self.proc)
        except BaseException as exc:
            self.close()
            raise RuntimeError(f"copytrade follow did not start: {exc}; its output ends: "
                               f"{self.tail()!r}") from exc



class Baseline(_FollowerProcess):
    """bench/baseline.py: a naive sequential follower, as an OS process."""

    kind = "baseline"
    log_name = "baseline.out"

    def __init__(self, sim: Sim, workdir: Path, followers: int) -> None:
        self.orders = OrderMaker()
        self.leader = new_account()
        self.followers = [new_account() for _ in range(followers)]
        self.home = workdir / f"baseline-{self.leader.client_id}"
        self.home.mkdir(parents=True)
        self.output = (self.home / self.log_name).open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.baseline", sim.ws_url, sim.rest_url, self.leader.pair,
             *(f.pair for f in self.followers)],
            cwd=ROOT, env=env_with({}), stdin=subprocess.DEVNULL, stdout=self.output,
            stderr=subprocess.STDOUT)
        try:
            sim.wait_connected([self.leader.client_id], self.proc)
        except BaseException as exc:
            self.close()
            raise RuntimeError(f"the baseline did not start: {exc}; its output ends: "
                               f"{self.tail()!r}") from exc

