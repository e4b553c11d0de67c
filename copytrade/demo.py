"""The demo's world: the emulator in-process, a throwaway home and config with two
followers, and a scripted leader session of every kind of order."""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from copytrade.dhan.rest import DhanAccount, PlaceRequest
from copytrade.sim.server import Emulator

LEADER_ID = "1100000001"
FOLLOWERS = (("family-1", "1100000002", "multiplier = 1.0"),
             ("family-2", "1100000003", "multiplier = 0.5"))


@dataclass
class DemoWorld:
    sim: Emulator
    home: Path
    config_path: Path
    environ: dict[str, str]  # token env vars: made up here, never printed

    def leader(self) -> DhanAccount:
        return DhanAccount(LEADER_ID, self.environ["DEMO_LEADER_TOKEN"],
                           api_url=self.sim.rest_url)


def _config_text(sim: Emulator) -> str:
    followers = "".join(f'''
[[followers]]
name = "{name}"
client_id = "{client_id}"
access_token_env = "DEMO_TOKEN_{index}"
{sizing}
api_url = "{sim.rest_url}"
order_ws_url = "{sim.ws_url}"
''' for index, (name, client_id, sizing) in enumerate(FOLLOWERS, start=1))
    return f'''# Written by `copytrade demo` for its own emulator; thrown away afterwards.
[leader]
client_id = "{LEADER_ID}"
access_token_env = "DEMO_LEADER_TOKEN"
api_url = "{sim.rest_url}"
order_ws_url = "{sim.ws_url}"

[settings]
instruments_url = "{sim.scrip_master_url}"
market_hours = false  # the demo's emulator trades at any hour
{followers}'''


@contextmanager
def demo_world(seed: int = 11) -> Iterator[DemoWorld]:
    with tempfile.TemporaryDirectory(prefix="copytrade-demo-") as directory, \
            Emulator(seed=seed, dialect="realistic") as sim:  # as real Dhan speaks
        home = Path(directory)
        home.chmod(0o700)
        config_path = home / "copytrade.toml"
        config_path.write_text(_config_text(sim))
        config_path.chmod(0o600)
        environ = {"DEMO_LEADER_TOKEN": secrets.token_hex(16)}
        environ.update({f"DEMO_TOKEN_{i}": secrets.token_hex(16)
                        for i in range(1, len(FOLLOWERS) + 1)})
        yield DemoWorld(sim, home, config_path, environ)


def _order(security_id: str, segment: str, side: str, quantity: int, order_type: str,
           product: str, price: float = 0.0, trigger: float = 0.0) -> PlaceRequest:
    return PlaceRequest(security_id, segment, side, quantity, order_type, product, price,
                        trigger_price=trigger)


def leader_session(world: DemoWorld, stop: threading.Event,
                   pause: Callable[[float], bool] | None = None) -> list[str]:
    """The scripted leader: returns what it did, one line a step. Every step waits a
    little so a person can watch the table change."""
    wait = pause or stop.wait
    sim, leader = world.sim, world.leader()
    done: list[str] = []
    sim.set_fill_size(10, "2885")  # RELIANCE fills ten at a time: partial fills

    def step(text: str, action: Callable[[], object]) -> bool:
        if stop.is_set():
            return False
        action()
        done.append(text)
        return not wait(1.0)

    def place(request: PlaceRequest, tag: str) -> str:
        outcome = leader.place(request, tag, slice_order=False)
        return outcome.data[0] if outcome.ok else ""

    tcs: list[str] = []
    steps: list[tuple[str, Callable[[], object]]] = [
        ("market BUY 10 HDFCBANK", lambda: place(
            _order("1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC"), "demo-1")),
        ("limit BUY 20 RELIANCE at 1398", lambda: place(
            _order("2885", "NSE_EQ", "BUY", 20, "LIMIT", "CNC", 1398.0), "demo-2")),
        ("RELIANCE falls to 1397.5: fills in two parts", lambda: (
            sim.set_price("2885", 1397.5), sim.match())),
        ("NIFTY future BUY 2 lots (130), market", lambda: place(
            _order("52175", "NSE_FNO", "BUY", 130, "MARKET", "MARGIN"), "demo-3")),
        ("stop-loss SELL 2 lots NIFTY future, trigger 25900", lambda: place(
            _order("52175", "NSE_FNO", "SELL", 130, "STOP_LOSS_MARKET", "MARGIN",
                   trigger=25900.0), "demo-4")),
        ("limit BUY 5 TCS at 3150", lambda: tcs.append(place(
            _order("11536", "NSE_EQ", "BUY", 5, "LIMIT", "CNC", 3150.0), "demo-5"))),
        ("modify TCS to 8 at 3160", lambda: leader.modify(
            tcs[0], order_type="LIMIT", quantity=8, price=3160.0, trigger_price=0.0,
            disclosed_quantity=0, validity="DAY")),
        ("cancel TCS", lambda: leader.cancel(tcs[0])),
        ("in Dhan's app: limit BUY 50 SBIN at 799", lambda: sim.app_place(LEADER_ID, {
            "transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "INTRADAY",
            "orderType": "LIMIT", "validity": "DAY", "securityId": "3045", "quantity": 50,
            "price": 799.0})),
        ("SBIN dips to 798.5", lambda: sim.set_price("3045", 798.5)),
        ("NIFTY call BUY 1 lot (65): half a lot for family-2", lambda: place(
            _order("52201", "NSE_FNO", "BUY", 65, "MARKET", "MARGIN"), "demo-6")),
        ("NIFTY falls to 25880: the stop-loss exits both lots", lambda: sim.set_price(
            "52175", 25880.0)),
    ]
    for text, action in steps:
        if not step(text, action):
            break
    return done


def wait_until(condition: Callable[[], bool], stop: threading.Event, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if stop.is_set() or time.monotonic() > deadline:
            return False
        stop.wait(0.05)
    return True
