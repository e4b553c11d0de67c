"""The emulator's webhook receiver, `/_sim/alerts`, as follow's alert sender (or curl) uses it:
any JSON kept (the last 200), listed back, handed to `on_alert`; anything else refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from copytrade.sim.server import MAX_ALERT_BYTES, MAX_ALERTS, Emulator

PAYLOAD = {"text": "follower family-2 rejected leader order 1: margin", "kind": "mirror_rejected",
           "severity": "warning", "at": "2026-11-25T10:00:00+05:30", "follower": "family-2",
           "leader_order_id": "1", "source": "copytrade", "chat_id": "42"}


def post(sim: Emulator, data: bytes) -> requests.Response:
    return requests.post(f"{sim.control_url}/alerts", data=data, timeout=5,
                         headers={"Content-Type": "application/json"})


def listed(sim: Emulator) -> list[Any]:
    reply = requests.get(f"{sim.control_url}/alerts", timeout=5)
    assert reply.status_code == 200, reply.text
    payload = reply.json()
    assert payload["ok"] is True
    return payload["result"]


def test_any_json_is_kept_listed_and_handed_to_the_listener(sim: Emulator) -> None:
    heard: list[Any] = []
    sim.on_alert = heard.append
    assert listed(sim) == []
    bodies = [PAYLOAD, [1, 2], "plain text", 42, None]
    for body in bodies:
        reply = post(sim, json.dumps(body).encode())
        assert (reply.status_code, reply.json()) == (200, {"ok": True})
    assert listed(sim) == bodies == sim.alerts() == heard


@pytest.mark.parametrize("raw", [b"not json", b"{\"text\": ", b"NaN"],
                         ids=["text", "cut short", "NaN"])
def test_a_body_that_is_not_json_is_refused_and_not_kept(sim: Emulator, raw: bytes) -> None:
    reply = post(sim, raw)
    assert reply.status_code == 400
    body = reply.json()
    assert body["errorCode"] == "DH-905"
    assert body["errorMessage"].startswith("control POST /alerts: body ")
    assert listed(sim) == []


def test_an_oversized_alert_is_refused_and_not_kept(sim: Emulator) -> None:
    reply = post(sim, json.dumps({"text": "x" * MAX_ALERT_BYTES}).encode())
    assert reply.status_code == 400 and "at most 65536 bytes" in reply.json()["errorMessage"]
    assert listed(sim) == []


def test_only_the_last_200_are_kept(sim: Emulator) -> None:
    with requests.Session() as session:
        for number in range(MAX_ALERTS + 5):
            reply = session.post(f"{sim.control_url}/alerts", json={"n": number}, timeout=5)
            assert reply.status_code == 200
    assert [body["n"] for body in listed(sim)] == list(range(5, MAX_ALERTS + 5))


def test_a_failing_listener_does_not_refuse_the_alert(sim: Emulator) -> None:
    def broken(body: Any) -> None:
        raise OSError("stdout is gone")

    sim.on_alert = broken
    reply = post(sim, b'{"text": "still kept"}')
    assert reply.status_code == 200
    assert listed(sim) == [{"text": "still kept"}]
