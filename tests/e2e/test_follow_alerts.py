"""Alerts from the real `copytrade follow` process (`python -m copytrade follow`) on the
emulator, to a local webhook receiver: a follower's rejection, then the stop; an error
stop; and the emulator's own receiver (`POST /_sim/alerts`) takes the payload as sent.

Every wait is bounded: polls have deadlines, subprocesses have timeouts.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from followtools import LEADER_ID, LEADER_TOKEN, config_text, follower, sdk
from simtools import eventually
from webhook_receiver import WebhookReceiver

from copytrade.engine.alerts import Alert, AlertSender
from copytrade.sim.server import Emulator

F1 = follower("f1", "1000000002")
EXIT_WAIT = 60
SECRET_PATH = "/bot123456:AAE-alerts-bot-token-e2e/sendMessage"
TOKENS = (LEADER_TOKEN, F1.token)


def write_config(sim: Emulator, directory: Path) -> Path:
    path = directory / "follow.toml"
    path.write_text(config_text(sim, [F1]) + '''
[alerts]
webhook_url_env = "COPYTRADE_ALERTS_URL"
fields = { chat_id = "-100123" }
timeout_seconds = 2
retries = 1
''')
    return path  # the URL (a bot token in its path) reaches follow by its environment only


def environment(hook_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COPYTRADE_DEBUG", None)
    env.update({"LEADER_TOKEN": LEADER_TOKEN, "TOKEN_F1": F1.token,
                "COPYTRADE_ALERTS_URL": hook_url + SECRET_PATH})
    return env


@contextmanager
def follow_process(config: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "copytrade", "follow", "--config",
                             str(config)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=EXIT_WAIT)


def following(sim: Emulator, proc: subprocess.Popen[str]) -> bool:
    assert proc.poll() is None, f"follow exited early with {proc.returncode}"
    connections = sim.snapshot()["stream"]["connections"]
    return all(connections.get(cid, 0) >= 1 for cid in (LEADER_ID, F1.client_id))


def test_a_rejected_follower_order_is_alerted_then_the_stop(
        live_sim: Emulator, tmp_path: Path, copytrade_home: Path) -> None:
    live_sim.set_funds(F1.client_id, 10)  # RMS rejects any order of f1's
    with WebhookReceiver() as hook:
        config = write_config(live_sim, tmp_path)
        with follow_process(config, environment(hook.url)) as proc:
            eventually(lambda: following(live_sim, proc), timeout=30, interval=0.05)
            reply = sdk(live_sim, LEADER_ID, LEADER_TOKEN).place_order(
                "1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC", 0)
            leader_order = reply["data"]["orderId"]
            eventually(lambda: hook.received, timeout=15, interval=0.05)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=EXIT_WAIT)
        assert proc.returncode == 0, err
        assert err == ""
        rejected, stopped = hook.bodies  # nothing else: no repeats, no earlier runs
        raw = [r.raw for r in hook.received]
        paths = {r.path for r in hook.received}

    assert (rejected["kind"], rejected["severity"]) == ("mirror_rejected", "warning")
    assert (rejected["follower"], rejected["leader_order_id"]) == ("f1", leader_order)
    assert rejected["chat_id"] == "-100123" and rejected["source"] == "copytrade"
    assert re.fullmatch(rf"\d\d:\d\d:\d\d IST mirror rejected, follower f1, BUY 10 \S+, "
                        rf"leader order {leader_order}: .*Margin Exceeds.*", rejected["text"])
    assert rejected["at"].endswith("+05:30")

    assert (stopped["kind"], stopped["severity"]) == ("follow_stopped", "warning")
    assert "follow stopped after " in stopped["text"]
    assert "1 leader order(s); mirrors 1 rejected; 1 alert(s)" in stopped["text"]

    assert paths == {SECRET_PATH}
    assert not any(token in body for body in raw for token in TOKENS)
    log = (copytrade_home / "logs" / "copytrade.log").read_text()
    assert f"alerts: on, to {hook.url}/…" in log
    assert "alerts-bot-token" not in log + out + err


def test_an_error_stop_is_alerted_as_critical(live_sim: Emulator, tmp_path: Path) -> None:
    assert sdk(live_sim, LEADER_ID, LEADER_TOKEN).get_order_list()["status"] == "success"
    assert live_sim.expire_token(LEADER_ID) == 1  # follow stops at start: exit 4
    with WebhookReceiver() as hook:
        config = write_config(live_sim, tmp_path)
        result = subprocess.run([sys.executable, "-m", "copytrade", "follow", "--config",
                                 str(config)], env=environment(hook.url),
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=EXIT_WAIT)
        assert result.returncode == 4, result.stderr
        [stopped] = hook.bodies
    assert (stopped["kind"], stopped["severity"]) == ("follow_stopped", "critical")
    assert "follow stopped by an error: " in stopped["text"]
    assert "token" in stopped["text"] and LEADER_TOKEN not in stopped["text"]


def test_the_emulators_receiver_takes_the_payload(live_sim: Emulator) -> None:
    url = live_sim.rest_url.removesuffix("/v2") + "/_sim/alerts"
    sender = AlertSender(url, fields={"topic": "paper"}, timeout=2, retries=0).start()
    sender.send(Alert("divergence", "09:20:00 IST divergence, follower f1: WRONG_QUANTITY",
                      follower="f1", leader_order_id="1000"))
    assert sender.close(5)
    assert sender.sent == 1
    [received] = live_sim.alerts()
    assert (received["kind"], received["topic"], received["text"]) == (
        "divergence", "paper", "09:20:00 IST divergence, follower f1: WRONG_QUANTITY")
