"""A store filled by a real follow run on the emulator, for the commands that read it
(mappings, stats, explain, audit, status): one run per test session, then read-only (a
test that writes works on its own copy of the home).

    from recorded import RecordedDay, run_cli   # the fixture comes from conftest.py

    def test_something(recorded_day: RecordedDay) -> None:
        result = run_cli(recorded_day, "mappings", "--json")

The day: two followers (f1 multiplier 1; f2 two lots, no INTRADAY) and five leader orders:
`filled` (a market buy of 3 TCS), `open` (a limit buy of HDFCBANK below the market),
`cancelled` (a limit buy the leader cancelled), `skipped` (an INTRADAY buy: f2 skips it)
and `rejected` (a buy f2 cannot pay for: Dhan rejects f2's).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from followtools import LEADER_TOKEN, Follower, FollowRun, follower, running_follow
from simtools import sim_dialect

from copytrade.sim.server import Emulator
from copytrade.store.models import Intent

F1 = follower("f1", "1000000002")
F2 = follower("f2", "1000000003", "fixed_lots = 2", extra='deny_products = ["INTRADAY"]')
FOLLOWERS = (F1, F2)
CLI_TIMEOUT = 60


@dataclass(frozen=True)
class RecordedDay:
    home: Path
    config: Path
    orders: dict[str, str]  # what the order is (filled, open, ...) -> leader order id
    followers: tuple[Follower, ...]
    environ: dict[str, str]  # COPYTRADE_HOME and the tokens, for a CLI process


def _order_id(reply: dict) -> str:
    assert reply["status"] == "success", reply
    return str(reply["data"]["orderId"])


def _place(run: FollowRun, security_id: str, side: str, quantity: int, order_type: str,
           product: str, price: float = 0.0) -> str:
    return _order_id(run.leader_api.place_order(security_id, "NSE_EQ", side, quantity,
                                                order_type, product, price))


def _states(run: FollowRun, leader_order_id: str) -> dict[str, str]:
    return {m.follower: m.state for f in FOLLOWERS for m in run.mirrors(f.name)
            if m.leader_order_id == leader_order_id}


def _record(sim: Emulator, home: Path) -> dict[str, str]:
    orders: dict[str, str] = {}
    with running_follow(sim, home, list(FOLLOWERS)) as run:
        orders["filled"] = _place(run, "11536", "BUY", 3, "MARKET", "CNC")
        run.wait_for(lambda: _states(run, orders["filled"]) == {"f1": "FILLED",
                                                                "f2": "FILLED"})
        orders["open"] = _place(run, "1333", "BUY", 10, "LIMIT", "CNC", 1600.0)
        run.wait_for(lambda: _states(run, orders["open"]) == {"f1": "ACCEPTED",
                                                              "f2": "ACCEPTED"})
        orders["cancelled"] = _place(run, "2885", "BUY", 5, "LIMIT", "CNC", 1350.0)
        run.wait_for(lambda: _states(run, orders["cancelled"]) == {"f1": "ACCEPTED",
                                                                   "f2": "ACCEPTED"})
        assert run.leader_api.cancel_order(orders["cancelled"])["status"] == "success"
        run.wait_for(lambda: _states(run, orders["cancelled"]) == {"f1": "CANCELED",
                                                                   "f2": "CANCELED"})
        orders["skipped"] = _place(run, "2885", "BUY", 2, "MARKET", "INTRADAY")
        run.wait_for(lambda: _states(run, orders["skipped"]) == {"f1": "FILLED",
                                                                 "f2": "SKIPPED"})
        sim.set_funds(F2.client_id, 1.0)
        orders["rejected"] = _place(run, "1333", "BUY", 2, "MARKET", "CNC")
        run.wait_for(lambda: _states(run, orders["rejected"]) == {"f1": "FILLED",
                                                                  "f2": "REJECTED"})
        run.wait_for(lambda: not Intent.select().where(Intent.status == "SENDING").exists())
    return orders


def _in_process(args: list[str], environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    from copytrade.cli.app import run

    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(environ)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run(args)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["copytrade", *args], code, out.getvalue(),
                                       err.getvalue())


@pytest.fixture(scope="session")
def recorded_day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordedDay]:
    home = tmp_path_factory.mktemp("recorded-home")
    home.chmod(0o700)
    with Emulator(seed=7, dialect=sim_dialect()) as sim:
        orders = _record(sim, home)
    environ = {key: value for key, value in os.environ.items() if key != "COPYTRADE_DEBUG"}
    environ.update({"COPYTRADE_HOME": str(home), "LEADER_TOKEN": LEADER_TOKEN})
    environ.update({f"TOKEN_{f.name.upper()}": f.token for f in FOLLOWERS})
    yield RecordedDay(home, home / "copytrade.toml", orders, FOLLOWERS, environ)


def run_cli(day: RecordedDay, *args: str, columns: int = 120,
            process: bool = False) -> subprocess.CompletedProcess[str]:
    """`copytrade ARGS` on the recorded home, stdin and stdout not terminals: the CLI's
    own entry point (`copytrade.cli.app.run`, what `main` exits with) in this process, or
    with `process` a real `python -m copytrade` (slower: keep it for a few checks per
    command). No token may show in what it prints, and no traceback."""
    environ = {**day.environ, "COLUMNS": str(columns)}
    if process:
        result = subprocess.run(
            [sys.executable, "-m", "copytrade", *args], env=environ,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT)
    else:
        result = _in_process(list(args), environ)
    output = result.stdout + result.stderr
    for secret in (LEADER_TOKEN, *(f.token for f in day.followers)):
        assert secret not in output
    assert "Traceback" not in output, output
    return result
