"""The emulator in its own process, with its benchmark timestamps on.

    python -m bench.simproc [--order-rate-scale X] [--funds F]

Prints `REST <url>` and `WS <url>` (like `copytrade sim`), then answers one JSON line per
JSON command line on stdin, until `{"cmd": "quit"}` or end of input:

    {"cmd": "wait", "clients": [...], "places": N, "timeout": S}
        until N place requests (POST /orders) from those clients were read since this
        process started (or S seconds): {"places": n}
    {"cmd": "take"}   every frame and request recorded since the last take (sim/timing.py)
    {"cmd": "connections"}   logged-in stream connections per client id
    {"cmd": "rss"}    this process's resident memory in kB

Control calls (orders from the leader's app, delays, stream faults) go over HTTP to /_sim,
as with `copytrade sim`. Its own process, so that the emulator's Python work (a thread per
REST connection, the stream's event loop) does not share an interpreter lock with the
follower under test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from copytrade.sim.server import Emulator
from copytrade.sim.timing import parse

POLL_SECONDS = 0.002  # the harness's wait; a shorter poll takes the GIL from the emulator
MAX_WAIT_SECONDS = 120.0


def rss_kb(pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Recorder:
    """Drains the emulator's timing log as it fills (raw: parsing waits for `take`, so the
    poll does no work beside the emulator's serving threads but count)."""

    def __init__(self, sim: Emulator) -> None:
        assert sim.timing is not None, "enable_timing() first"
        self.log = sim.timing
        self.frames: list[Any] = []
        self.requests: list[Any] = []
        self.logins: list[Any] = []
        self.placed: dict[str, int] = {}  # place requests per client id, ever

    def drain(self) -> None:
        log = self.log
        while log.frames:
            self.frames.append(log.frames.popleft())
        while log.logins:
            self.logins.append(log.logins.popleft())
        while log.requests:
            request = log.requests.popleft()
            self.requests.append(request)
            if request[3] == "POST" and request[4] in ("/orders", "/orders/slicing"):
                self.placed[request[2]] = self.placed.get(request[2], 0) + 1

    def places(self, clients: set[str]) -> int:
        return sum(self.placed.get(client, 0) for client in clients)

    def wait(self, clients: set[str], places: int, timeout: float) -> dict[str, int]:
        deadline = time.monotonic() + min(max(timeout, 0.0), MAX_WAIT_SECONDS)
        while True:
            self.drain()
            seen = self.places(clients)
            if seen >= places or time.monotonic() >= deadline:
                return {"places": seen}
            time.sleep(POLL_SECONDS)

    def take(self) -> dict[str, Any]:
        self.drain()
        taken = parse(self.frames, self.requests, self.logins)
        self.frames, self.requests, self.logins = [], [], []
        return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order-rate-scale", type=float, default=1.0)
    parser.add_argument("--funds", type=float, default=1e12)
    args = parser.parse_args()
    sim = Emulator(funds=args.funds, seed=7, order_rate_scale=args.order_rate_scale)
    sim.enable_timing()
    with sim:
        print(f"REST {sim.rest_url}", flush=True)
        print(f"WS {sim.ws_url}", flush=True)
        recorder = Recorder(sim)
        for line in sys.stdin:
            command = json.loads(line)
            name = command.get("cmd")
            if name == "quit":
                break
            if name == "wait":
                answer: Any = recorder.wait(set(command["clients"]), int(command["places"]),
                                            float(command["timeout"]))
            elif name == "take":
                answer = recorder.take()
            elif name == "connections":
                answer = sim.stream.stats()["connections"]
            elif name == "rss":
                answer = {"rss_kb": rss_kb()}
            else:
                answer = {"error": f"unknown command {name!r}"}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
