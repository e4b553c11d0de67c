"""`copytrade sim` as a user runs it: a real process, its two URL lines, the SDK, a signal."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import requests
from dhanhq import DhanContext, dhanhq
from simtools import eventually, login, next_frames

TOKEN = "cli-sim-token-7c1e"


class SimProcess:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "copytrade", "sim", "--port", "0", "--ws-port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def line(self) -> str:
        return self.lines.get(timeout=20)

    def stop(self, signum: int) -> tuple[int, str]:
        self.process.send_signal(signum)
        _, stderr = self.process.communicate(timeout=20)
        return self.process.returncode, stderr


@pytest.fixture
def sim_process() -> Iterator[SimProcess]:
    running = SimProcess("--funds", "50000")
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait(timeout=10)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sim_serves_the_sdk_and_stream_then_exits_0_on_signal(sim_process: SimProcess,
                                                              signum: int) -> None:
    rest_line, ws_line, scrip_line = sim_process.line(), sim_process.line(), sim_process.line()
    rest = re.fullmatch(r"REST (http://127\.0\.0\.1:\d+/v2)\n", rest_line)
    ws = re.fullmatch(r"WS (ws://127\.0\.0\.1:\d+)\n", ws_line)
    scrip = re.fullmatch(r"SCRIP (http://127\.0\.0\.1:\d+/api-data/api-scrip-master\.csv)\n",
                         scrip_line)
    assert rest and ws and scrip, (rest_line, ws_line, scrip_line)
    assert requests.get(scrip.group(1), timeout=5).text.startswith("SEM_")
    # the command that writes a configuration for exactly this emulator
    assert sim_process.line() == (f"CONFIG copytrade config init --sim {rest.group(1)} "
                                  f"--sim-ws {ws.group(1)}\n")
    alerts = rest.group(1).removesuffix("/v2") + "/_sim/alerts"
    assert requests.post(alerts, json={"text": "follower family-1\nrejected", "kind": "x"},
                         timeout=5).status_code == 200
    assert sim_process.line() == "alert: follower family-1 rejected\n"

    context = DhanContext("1000000001", TOKEN)
    context.get_dhan_http().base_url = rest.group(1)
    context.get_dhan_http().timeout = 10
    api = dhanhq(context)
    assert api.get_fund_limits()["data"]["sodLimit"] == 50_000
    with login(ws.group(1), "1000000001", TOKEN) as stream:
        # Dhan sends no login acknowledgement: wait until the snapshot counts the connection.
        control = rest.group(1).removesuffix("/v2") + "/_sim/snapshot"
        eventually(lambda: requests.get(control, timeout=5).json()["stream"]["connections"]
                   .get("1000000001"), timeout=10)
        order = api.place_order("1333", "NSE_EQ", "BUY", 2, "MARKET", "CNC", 0)
        assert order["status"] == "success"
        # the default dialect is realistic: some frames come with camelCase keys
        statuses = [f["Data"].get("Status") or f["Data"]["status"]
                    for f in next_frames(stream, 3)]
        assert statuses == ["Transit", "Pending", "Traded"]

    code, stderr = sim_process.stop(signum)
    assert code == 0
    assert TOKEN not in stderr
    assert "Traceback" not in stderr


def test_port_in_use_is_one_line_exit_2(sim_process: SimProcess) -> None:
    port = re.search(r":(\d+)/v2", sim_process.line()).group(1)  # type: ignore[union-attr]
    clash = subprocess.run(
        [sys.executable, "-m", "copytrade", "sim", "--port", port, "--ws-port", "0"],
        capture_output=True, text=True, timeout=30)
    assert clash.returncode == 2
    assert clash.stdout == ""
    assert len(clash.stderr.strip().splitlines()) == 1
    assert "error:" in clash.stderr


def test_dialect_option_chooses_the_run_dialect() -> None:
    running = SimProcess("--dialect", "realistic")
    try:
        rest = re.fullmatch(r"REST (http://127\.0\.0\.1:\d+/v2)\n", running.line())
        assert rest, "no REST line"
        context = DhanContext("1000000001", TOKEN)
        context.get_dhan_http().base_url = rest.group(1)
        context.get_dhan_http().timeout = 10
        reply = dhanhq(context).ticker_data({"NSE_EQ": [1333]})
        assert reply["remarks"]["error_code"] == "DH-902"  # realistic: no Data API plan
        code, _ = running.stop(signal.SIGTERM)
        assert code == 0
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(timeout=10)


def test_unknown_dialect_is_a_usage_error() -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "copytrade", "sim", "--port", "0", "--ws-port", "0",
         "--dialect", "messy"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2
    assert "unknown dialect" in refused.stderr and "realistic" in refused.stderr
