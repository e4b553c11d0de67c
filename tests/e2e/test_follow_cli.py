"""The real `copytrade follow` process (`python -m copytrade follow`) against an emulator
running in this test process on 127.0.0.1: it mirrors, stops when told to, refuses a second
run on the same home, and fails with the documented exit code and one `error:` line.

COPYTRADE_HOME comes from the autouse fixture and is inherited through the environment.
Every wait is bounded: polls have deadlines, subprocesses have timeouts.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from followtools import LEADER_ID, LEADER_TOKEN, config_text, follower, sdk
from simtools import eventually, sim_dialect

from copytrade.sim.server import Emulator

F1 = follower("f1", "1000000002")
F2 = follower("f2", "1000000003", "fixed_lots = 2")
EXIT_WAIT = 60  # the longest any follow process may take to exit once it should


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(seed=3, dialect=sim_dialect()) as sim:
        yield sim


def write_config(sim: Emulator, directory: Path) -> Path:
    path = directory / "follow.toml"
    path.write_text(config_text(sim, [F1, F2]))
    return path


def token_env(**overrides: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COPYTRADE_DEBUG", None)
    env.update({"LEADER_TOKEN": LEADER_TOKEN, "TOKEN_F1": F1.token, "TOKEN_F2": F2.token})
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def follow_args(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "copytrade", "follow", "--config", str(config), *extra]


@contextmanager
def follow_process(config: Path, *extra: str,
                   env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """`copytrade follow` in the background; killed (bounded) if the test leaves it running."""
    proc = subprocess.Popen(follow_args(config, *extra), env=env or token_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=EXIT_WAIT)


def streams_connected(sim: Emulator) -> bool:
    connections = sim.snapshot()["stream"]["connections"]
    return all(connections.get(cid, 0) >= 1 for cid in (LEADER_ID, F1.client_id, F2.client_id))


def wait_following(sim: Emulator, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """Until the process has every stream logged in (so its signal handlers are set)."""
    def ready() -> bool:
        assert proc.poll() is None, f"follow exited early with {proc.returncode}"
        return streams_connected(sim)
    eventually(ready, timeout=timeout, interval=0.05)


def orders_of(sim: Emulator, client_id: str) -> list[dict]:
    return sim.snapshot()["accounts"].get(client_id, {}).get("orders", [])


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def test_follow_mirrors_prints_plain_lines_and_exits_0_after_duration(
        emulator: Emulator, tmp_path: Path, copytrade_home: Path) -> None:
    config = write_config(emulator, tmp_path)
    with follow_process(config, "--duration", "5") as proc:
        wait_following(emulator, proc)
        reply = sdk(emulator, LEADER_ID, LEADER_TOKEN).place_order(
            "1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC", 0)
        assert reply["status"] == "success", reply
        leader_order = reply["data"]["orderId"]
        eventually(lambda: [o["orderStatus"] for o in orders_of(emulator, F1.client_id)]
                   == ["TRADED"] and [o["orderStatus"] for o in orders_of(
                       emulator, F2.client_id)] == ["TRADED"], timeout=10, interval=0.05)
        out, err = proc.communicate(timeout=EXIT_WAIT)
    assert proc.returncode == 0, err
    assert err == ""
    [mirrored] = orders_of(emulator, F1.client_id)
    assert (mirrored["quantity"], mirrored["correlationId"][:2]) == (10, "ct")
    assert [o["quantity"] for o in orders_of(emulator, F2.client_id)] == [2]
    # not a terminal: plain lines, no live table, no colour codes
    assert "\x1b[" not in out
    lines = out.splitlines()
    assert lines[0] == "copytrade follow: started"
    stop = next(i for i, line in enumerate(lines)
                if line.startswith("copytrade follow stopped: this run, "))
    events = lines[1:stop]
    # a line per event: time IST, follower, leader order, symbol side quantity, what happened
    assert any(re.fullmatch(rf"\d\d:\d\d:\d\d IST  f1 +{leader_order} +\S+ BUY 10  placed",
                            line) for line in events), out
    assert any(re.fullmatch(rf"\d\d:\d\d:\d\d IST  f2 +{leader_order} +\S+ BUY 2  "
                            r"filled 2/2 @ \d+\.\d\d", line) for line in events), out
    # every event line starts with its time in IST, labelled
    assert all(re.match(r"\d{2}:\d{2}:\d{2} IST ", line) for line in events), out
    # then the run's summary: seen, mirrored and filled, per follower
    assert [row.split()[:4] for row in lines[stop + 2:stop + 4]] == [
        ["f1", "1", "1", "1"], ["f2", "1", "1", "1"]], out
    assert (copytrade_home / "copytrade.db").exists()
    assert (copytrade_home / "logs" / "copytrade.log").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_follow_cleanly_with_exit_0(emulator: Emulator, tmp_path: Path,
                                                 signum: signal.Signals) -> None:
    config = write_config(emulator, tmp_path)
    with follow_process(config) as proc:
        wait_following(emulator, proc)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=EXIT_WAIT)
    assert proc.returncode == 0, err
    assert err == ""
    assert out.startswith("copytrade follow: started")
    eventually(lambda: not any(emulator.snapshot()["stream"]["connections"].values()),
               timeout=10, interval=0.05)


def test_sigint_lets_the_call_in_flight_finish_and_be_recorded(
        emulator: Emulator, tmp_path: Path, copytrade_home: Path) -> None:
    config = write_config(emulator, tmp_path)
    with follow_process(config) as proc:
        wait_following(emulator, proc)
        emulator.set_delay(3000)  # every REST reply: 1.5 s before the work, 1.5 s after
        [leader_order] = emulator.app_place(LEADER_ID, {
            "transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
            "orderType": "MARKET", "validity": "DAY", "securityId": "1333", "quantity": 4,
            "price": 0})
        # f1's place has been executed by the broker; its reply is still 1.5 s away
        eventually(lambda: orders_of(emulator, F1.client_id), timeout=10, interval=0.02)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=EXIT_WAIT)
    assert proc.returncode == 0, err
    [placed] = orders_of(emulator, F1.client_id)
    with closing(sqlite3.connect(copytrade_home / "copytrade.db")) as db:
        rows = db.execute(
            "SELECT m.follower, m.follower_order_id, i.status FROM intent i "
            "JOIN mirrororder m ON m.id = i.mirror_id "
            "WHERE m.leader_order_id = ? AND m.follower = 'f1'", (leader_order,)).fetchall()
    assert rows == [("f1", placed["orderId"], "DONE")]


def test_second_follow_on_the_same_home_exits_6(emulator: Emulator, tmp_path: Path) -> None:
    config = write_config(emulator, tmp_path)
    with follow_process(config) as first:
        wait_following(emulator, first)
        second = subprocess.run(follow_args(config, "--duration", "5"), env=token_env(),
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=EXIT_WAIT)
        assert second.returncode == 6, second.stderr
        line = one_error_line(second.stderr)
        assert "already running" in line and str(first.pid) in line
        assert first.poll() is None  # the first one is untouched
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=EXIT_WAIT)
    assert first.returncode == 0


def test_missing_token_exits_3_with_one_line(emulator: Emulator, tmp_path: Path) -> None:
    config = write_config(emulator, tmp_path)
    result = subprocess.run(follow_args(config, "--duration", "5"),
                            env=token_env(TOKEN_F2=None), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=EXIT_WAIT)
    assert result.returncode == 3, result.stderr
    line = one_error_line(result.stderr)
    assert "TOKEN_F2" in line
    assert emulator.snapshot()["stream"]["connections"] == {}  # never got as far as Dhan


def test_leader_token_expired_exits_4(emulator: Emulator, tmp_path: Path) -> None:
    config = write_config(emulator, tmp_path)
    # The token has been used, then Dhan expired it (tokens last at most 24 hours).
    assert sdk(emulator, LEADER_ID, LEADER_TOKEN).get_order_list()["status"] == "success"
    assert emulator.expire_token(LEADER_ID) == 1
    result = subprocess.run(follow_args(config, "--duration", "10"), env=token_env(),
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=EXIT_WAIT)
    assert result.returncode == 4, result.stderr
    line = one_error_line(result.stderr)
    assert "leader" in line and "refresh" in line.lower()
    assert LEADER_TOKEN not in result.stdout + result.stderr
