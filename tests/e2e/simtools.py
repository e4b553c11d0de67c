"""Helpers for end-to-end tests: bounded waits and a websocket client for the order stream."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from waiting import eventually
from websockets.sync.client import ClientConnection, connect

from copytrade.sim.clock import IST
from copytrade.sim.dialects import PRESETS
from copytrade.sim.server import Emulator

LEADER_ID = "1000000001"
LEADER_TOKEN = "leader-token-e2e-3f9a"
# Which dialect the suites' emulators speak (docs/sim.md, "Dialects"): clean by default
# until the client handles every realistic quirk; CI runs the suites once with each.
DIALECT_ENV = "COPYTRADE_SIM_DIALECT"


def sim_dialect() -> str:
    """The dialect named by COPYTRADE_SIM_DIALECT (default realistic: the suites run
    against the broker as it really speaks); a typo fails loudly rather than silently
    testing another dialect."""
    name = os.environ.get(DIALECT_ENV, "").strip() or "realistic"
    if name not in PRESETS:
        raise ValueError(f"{DIALECT_ENV}={name!r}: expected one of {', '.join(PRESETS)}")
    return name


def suite_dialect(module_name: str) -> str:
    """The emulator's own suites (test_sim_*) specify the clean shapes and choose other
    dialects explicitly; every other suite speaks the dialect of the run."""
    return "clean" if module_name.rsplit(".", 1)[-1].startswith("test_sim_") else sim_dialect()


@contextmanager
def login(url: str, client_id: str = LEADER_ID,
          token: str = LEADER_TOKEN) -> Iterator[ClientConnection]:
    """A websocket client that has sent Dhan's login message."""
    with connect(url, open_timeout=5, close_timeout=2) as ws:
        ws.send(json.dumps({"LoginReq": {"MsgCode": 42, "ClientId": client_id, "Token": token},
                            "UserType": "SELF"}))
        yield ws


def wait_logged_in(sim: Emulator, client_id: str = LEADER_ID) -> None:
    """Dhan sends no login acknowledgement: wait until the emulator counts the connection."""
    eventually(lambda: sim.stream.stats()["connections"].get(client_id, 0) >= 1)


def next_frames(ws: ClientConnection, count: int, timeout: float = 5.0) -> list[dict]:
    frames = []
    deadline = time.monotonic() + timeout
    while len(frames) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"got {len(frames)} of {count} frames: {frames}")
        frames.append(json.loads(ws.recv(timeout=remaining)))
    return frames


def no_more_frames(ws: ClientConnection, within: float = 0.3) -> bool:
    try:
        ws.recv(timeout=within)
    except TimeoutError:
        return True
    return False


class ShiftedClock:
    """The emulator's clock: the wall clock in IST, `offset` in the past (orders created
    "earlier", a leader order from the evening before)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(IST) - self.offset
