"""Alerts: the sender against a local webhook receiver (retries bounded, 4xx final, a full
queue, close's bound, redaction, the payload), and the watcher on a real store (what is
alerted, said how, and how often)."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from waiting import eventually
from webhook_receiver import WebhookReceiver

from copytrade.config.model import AccountConfig, AlertsConfig, Config, Egress, Settings
from copytrade.config.show import masked_url
from copytrade.core.events import OrderReport, ReportSource
from copytrade.core.orders import MirrorState, Trigger
from copytrade.engine.alert_watch import AlertService, AlertWatcher, start_alerts
from copytrade.engine.alerts import (
    Alert,
    AlertSender,
    check_webhook_url,
    payload,
)
from copytrade.errors import ConfigError
from copytrade.secret import Secret
from copytrade.store.db import open_store
from copytrade.store.queries import last_event_ids
from copytrade.store.repo import Store

START = datetime(2026, 1, 5, 3, 50, tzinfo=UTC)  # 09:20 IST
TOKEN = "eyJhbGciOiJIUzUxMiJ9.token-of-the-leader-4f2a"
BOT_PATH = "/bot123456:AAE-secret-bot-token-xyz/sendMessage"
FAST = {"backoff_initial": 0.01, "backoff_max": 0.02}


def sender(url: str, **options: object) -> AlertSender:
    return AlertSender(url, **{"timeout": 2.0, "retries": 2, **FAST, **options}).start()


def alert(text: str = "09:20:00 IST something", kind: str = "divergence") -> Alert:
    return Alert(kind, text, "warning", "f1", "1000", START)


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


# ---- the payload and the URL -----------------------------------------------------------

def test_the_payload_has_the_contract_keys_and_fields_add_keys_without_replacing() -> None:
    body = payload(alert("09:20:00 IST f1 rejected"), {"chat_id": "42", "text": "not ours"})
    assert body == {
        "chat_id": "42", "text": "09:20:00 IST f1 rejected",
        "message": "09:20:00 IST f1 rejected", "kind": "divergence", "severity": "warning",
        "at": "2026-01-05T09:20:00+05:30", "follower": "f1", "leader_order_id": "1000",
        "source": "copytrade"}


def test_a_token_never_reaches_the_payload() -> None:
    Secret(TOKEN)  # as the context registers every account's token
    body = payload(alert(f"refused: {TOKEN} and {json.dumps(TOKEN)}"), {"topic": TOKEN})
    assert TOKEN not in json.dumps(body)
    assert "***" in body["text"] and body["topic"] == "***"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://api.telegram.org" + BOT_PATH, "https://api.telegram.org/…"),
    ("https://user:pass@ntfy.example.com:8443/topic?x=1", "https://ntfy.example.com:8443/…"),
    ("https://ntfy.sh", "https://ntfy.sh"),
    ("https://ntfy.sh/", "https://ntfy.sh/"),
])
def test_the_sender_names_the_url_as_config_show_does(url: str, shown: str) -> None:
    assert AlertSender(url).where == shown == masked_url(url)  # not started: no thread


@pytest.mark.parametrize("url", ["ftp://example.com" + BOT_PATH, "https://" + BOT_PATH,
                                 "https://example.com" + BOT_PATH + " x", "not a url"])
def test_an_unusable_url_is_refused_without_quoting_its_path(url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        check_webhook_url(url, "webhook_url")
    assert "secret-bot-token" not in refused.value.message
    assert refused.value.message.startswith("[alerts] webhook_url: ")


# ---- the sender against a local receiver -----------------------------------------------

def test_an_alert_is_posted_as_json_with_the_fields(hook: WebhookReceiver) -> None:
    out = sender(hook.url + "/hook?x=1", fields={"topic": "copytrade-alerts"})
    out.send(alert())
    assert out.close(5)
    [received] = hook.received
    assert (received.path, received.content_type) == ("/hook?x=1", "application/json")
    assert received.body == payload(alert(), {"topic": "copytrade-alerts"})
    assert (out.sent, out.failed) == (1, 0)


def test_5xx_is_retried_a_bounded_number_of_times() -> None:
    with WebhookReceiver(default=503) as hook:
        out = sender(hook.url, retries=2)
        out.send(alert())
        assert out.close(5)
        assert len(hook.received) == 3  # the first try and two retries, no more
        assert (out.sent, out.failed) == (0, 1)


def test_429_is_retried_then_delivered() -> None:
    with WebhookReceiver([429], headers={"Retry-After": "0"}) as hook:
        out = sender(hook.url)
        out.send(alert())
        assert out.close(5)
        assert len(hook.received) == 2
        assert (out.sent, out.failed) == (1, 0)


@pytest.mark.parametrize("status", [400, 401, 404, 302])
def test_other_4xx_and_redirects_are_not_retried(status: int,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with WebhookReceiver([status], headers={"Location": "http://elsewhere.invalid/"}) as hook:
        out = sender(hook.url + BOT_PATH)
        out.send(alert())
        assert out.close(5)
        assert len(hook.received) == 1
        assert (out.sent, out.failed) == (0, 1)
    assert f"HTTP {status} (not retried)" in caplog.text
    assert "secret-bot-token" not in caplog.text


def test_a_refused_connection_is_retried_then_given_up_and_the_log_hides_the_path(
        caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = sender(f"http://127.0.0.1:{port}{BOT_PATH}", retries=2)
    out.send(alert())
    assert out.close(5)
    assert (out.sent, out.failed) == (0, 1)
    assert f"http://127.0.0.1:{port}/…" in caplog.text
    assert "after 3 attempt(s): ConnectionError" in caplog.text
    assert "secret-bot-token" not in caplog.text and "sendMessage" not in caplog.text


def test_a_timeout_is_retried(hook: WebhookReceiver) -> None:
    hook.hold()  # the webhook takes longer than the timeout
    out = sender(hook.url, timeout=0.2, retries=1)
    out.send(alert())
    eventually(lambda: len(hook.received) == 2, timeout=5)
    assert out.close(5)
    assert (out.sent, out.failed) == (0, 1)
    hook.release()
    assert len(hook.received) == 2


def test_a_full_queue_drops_the_oldest_and_one_alert_says_how_many(
        hook: WebhookReceiver) -> None:
    hook.hold()
    out = sender(hook.url, capacity=3)
    out.send(alert("first"))
    eventually(lambda: len(hook.received) == 1)  # in flight: the queue is empty again
    for n in range(1, 6):
        out.send(alert(f"alert {n}"))  # returns at once although the webhook hangs
    assert out.dropped == 2
    hook.release()
    assert out.close(5)
    texts = [body["text"] for body in hook.bodies]
    assert texts[0] == "first"
    assert texts[1].endswith("2 alert(s) dropped: they came faster than "
                             f"{hook.url} took them (queue of 3)")
    assert hook.bodies[1]["kind"] == "alerts_dropped"
    assert texts[2:] == ["alert 3", "alert 4", "alert 5"]


def test_close_drains_what_is_queued(hook: WebhookReceiver) -> None:
    out = sender(hook.url)
    for n in range(5):
        out.send(alert(f"alert {n}"))
    assert out.close(5)
    assert [b["text"] for b in hook.bodies] == [f"alert {n}" for n in range(5)]
    out.send(alert("after close"))  # ignored, never raises
    assert len(hook.received) == 5


def test_close_gives_up_at_its_bound_when_the_webhook_hangs(hook: WebhookReceiver) -> None:
    hook.hold()
    out = sender(hook.url, timeout=5.0)
    out.send(alert("hangs"))
    out.send(alert("never sent"))
    eventually(lambda: len(hook.received) == 1)
    started = time.monotonic()
    assert out.close(0.2) is False
    assert time.monotonic() - started < 2.0  # the bound, not the request's 5 s timeout
    assert out.pending == 2


def test_an_answer_slow_to_send_its_body_is_one_delivery_not_a_retry(
        hook: WebhookReceiver) -> None:
    hook.hold_body()  # the status and headers come at once, the body not before release
    out = sender(hook.url + "/hook", timeout=0.5)
    out.send(alert("slow body"))
    try:
        eventually(lambda: out.sent == 1)
    finally:
        hook.release_body()
    assert out.close(5)
    assert len(hook.received) == 1 and out.failed == 0


def test_the_body_is_redacted_on_the_wire(hook: WebhookReceiver) -> None:
    Secret(TOKEN)
    out = sender(hook.url, fields={"chat_id": "42"})
    out.send(alert(f"the broker said: invalid token {TOKEN}"))
    assert out.close(5)
    [received] = hook.received
    assert TOKEN not in received.raw and "***" in received.raw


# ---- the watcher on a real store ---------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.moment = START

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    db = open_store(tmp_path / "copytrade.db")
    yield Store(db, clock)
    db.close()


def leader(store: Store, order_id: str, symbol: str = "RELIANCE") -> None:
    report = OrderReport(
        order_id=order_id, status="PENDING", exchange_segment="NSE_EQ", security_id="2885",
        transaction_type="BUY", product_type="CNC", order_type="LIMIT", validity="DAY",
        quantity=10, traded_quantity=0, price=1300.0, source=ReportSource.REST,
        symbol=symbol)
    with store.write():
        store.save_leader(report, (), "2026-01-05")


def reject(store: Store, order_id: str, follower: str, reason: str) -> None:
    """A follower's place refused, recorded as the worker records it."""
    with store.write():
        mirror = store.create_mirror(
            leader_order=order_id, follower=follower, correlation_id=f"ct-{order_id}-{follower}",
            state=MirrorState.SUBMITTED.value, quantity=10, security_id="2885")
        store.apply_trigger(mirror, Trigger.REJECTED, reason)
        store.audit("mirror_rejected", reason, follower=follower, leader_order_id=order_id)


def audit(store: Store, kind: str, message: str, **where: str) -> None:
    with store.write():
        store.audit(kind, message, **where)


def watcher(sent: list[Alert], **options: object) -> AlertWatcher:
    return AlertWatcher(sent.append, after=last_event_ids().trail_id, **options)


def test_a_rejection_says_follower_order_and_symbol_once(store: Store) -> None:
    leader(store, "1000")
    sent: list[Alert] = []
    watch = watcher(sent)
    reject(store, "1000", "family-1", "RMS:Margin Exceeds for order, Available: 10")
    assert watch.poll() == 1
    [one] = sent
    assert (one.kind, one.severity, one.follower, one.leader_order_id) == (
        "mirror_rejected", "warning", "family-1", "1000")
    assert one.text == ("09:20:00 IST mirror rejected, follower family-1, BUY 10 RELIANCE, "
                        "leader order 1000: RMS:Margin Exceeds for order, Available: 10")
    assert watch.poll() == 0  # read once


def test_what_was_recorded_before_the_start_is_never_alerted(store: Store) -> None:
    audit(store, "divergence", "WRONG_QUANTITY: earlier run", follower="f1",
          leader_order_id="999")
    sent: list[Alert] = []
    watch = watcher(sent)
    audit(store, "divergence", "WRONG_QUANTITY: 5 vs 10", follower="f1", leader_order_id="1")
    watch.poll()
    assert [a.text for a in sent] == ["09:20:00 IST divergence, follower f1, leader order 1: "
                                      "WRONG_QUANTITY: 5 vs 10"]


@pytest.mark.parametrize(("kind", "severity", "title"), [
    ("divergence", "warning", "divergence"),
    ("token_refused", "critical", "token refused"),
    ("account_stopped", "critical", "account stopped"),
    ("token_expiring", "warning", "token expiring"),
    ("degraded", "critical", "loop degraded"),
    ("bus_unavailable", "warning", "bus unavailable"),
])
def test_each_alerted_audit_kind(store: Store, kind: str, severity: str, title: str) -> None:
    sent: list[Alert] = []
    watch = watcher(sent)
    audit(store, "stream_connected", "leader stream connected")  # not alerted
    audit(store, "skipped", "below one lot", follower="f1")  # not alerted
    audit(store, kind, "what happened\nover two lines")
    watch.poll()
    [one] = sent
    assert (one.kind, one.severity) == (kind, severity)
    assert one.text == f"09:20:00 IST {title}: what happened over two lines"


def test_repeats_within_the_window_are_counted_and_said_with_the_next(
        store: Store, clock: Clock) -> None:
    sent: list[Alert] = []
    watch = watcher(sent)
    for _ in range(3):
        audit(store, "divergence", "WRONG_PRICE", follower="f1", leader_order_id="1")
        clock.advance(minutes=1)
    audit(store, "divergence", "WRONG_PRICE", follower="f2", leader_order_id="1")  # another
    watch.poll()
    assert [(a.follower, a.text) for a in sent] == [
        ("f1", "09:20:00 IST divergence, follower f1, leader order 1: WRONG_PRICE"),
        ("f2", "09:23:00 IST divergence, follower f2, leader order 1: WRONG_PRICE")]
    clock.advance(minutes=8)  # 09:31: past the first one's ten minutes
    audit(store, "divergence", "WRONG_PRICE", follower="f1", leader_order_id="1")
    watch.poll()
    assert sent[-1].text == ("09:31:00 IST divergence, follower f1, leader order 1: "
                             "WRONG_PRICE (+2 more alike since 09:20:00 IST)")
    assert (watch.alerts, watch.repeats) == (3, 2)


def test_two_loops_degraded_are_two_subjects(store: Store) -> None:
    sent: list[Alert] = []
    watch = watcher(sent)
    audit(store, "degraded", "reconciliation: 3 failures in a row, last: OSError: disk full")
    audit(store, "degraded", "leader check: 3 failures in a row, last: OSError: disk full")
    audit(store, "degraded", "reconciliation: 4 failures in a row, last: OSError: disk full")
    watch.poll()
    assert [a.text.split(": ")[1] for a in sent] == ["reconciliation", "leader check"]


def test_the_summary_counts_this_run(store: Store) -> None:
    leader(store, "1000")
    sent: list[Alert] = []
    watch = watcher(sent)
    reject(store, "1000", "f1", "RMS")
    reject(store, "1000", "f2", "RMS")
    watch.poll()
    assert watch.summary(timedelta(hours=2, minutes=5)) == (
        "after 2 h 05 min: 1 leader order(s); mirrors 2 rejected; 2 alert(s)")
    assert watch.summary(timedelta(seconds=40)).startswith("after 40 s: ")


# ---- the service follow runs -----------------------------------------------------------

def config(alerts: AlertsConfig) -> Config:
    account = AccountConfig("1000000001", "LEADER_TOKEN", "http://127.0.0.1:1/v2",
                            "ws://127.0.0.1:2", Egress())
    return Config(account, (), Settings(), None, alerts=alerts)


def test_alerts_off_start_nothing(store: Store) -> None:
    assert start_alerts(config(AlertsConfig()), store) is None


def test_the_url_from_an_environment_variable(store: Store, hook: WebhookReceiver) -> None:
    alerts = AlertsConfig(webhook_url_env="COPYTRADE_TEST_HOOK")
    with pytest.raises(ConfigError, match="COPYTRADE_TEST_HOOK is not set"):
        start_alerts(config(alerts), store, environ={})
    service = start_alerts(config(alerts), store, environ={"COPYTRADE_TEST_HOOK": hook.url})
    assert service is not None and service.sender.url == hook.url
    assert service.stopped(drain_seconds=5)
    assert [b["kind"] for b in hook.bodies] == ["follow_stopped"]


def test_the_service_alerts_while_running_then_says_it_stopped(
        store: Store, clock: Clock, hook: WebhookReceiver) -> None:
    leader(store, "1000")
    alerts = AlertsConfig(webhook_url=hook.url + "/hook", fields={"chat_id": "42"})
    service = start_alerts(config(alerts), store, poll_seconds=0.02, now=clock,
                           sender_options=FAST)
    assert service is not None
    reject(store, "1000", "f1", "RMS:Margin Exceeds")
    eventually(lambda: len(hook.received) == 1)
    clock.advance(minutes=65)
    assert service.stopped(drain_seconds=5)
    first, stop = hook.bodies
    assert (first["kind"], first["follower"], first["leader_order_id"], first["chat_id"]) == (
        "mirror_rejected", "f1", "1000", "42")
    assert (stop["kind"], stop["severity"]) == ("follow_stopped", "warning")
    assert stop["text"] == ("10:25:00 IST follow stopped after 1 h 05 min: 1 leader order(s); "
                            "mirrors 1 rejected; 1 alert(s)")


def test_an_error_stop_is_critical_and_the_last_events_are_read_first(
        store: Store, clock: Clock, hook: WebhookReceiver) -> None:
    Secret(TOKEN)  # the CLI's tokens are known before follow runs
    service = start_alerts(config(AlertsConfig(webhook_url=hook.url)), store,
                           poll_seconds=60, now=clock, sender_options=FAST)
    assert service is not None
    audit(store, "account_stopped", "follower f1 stopped: token refused (DH-901)",
          follower="f1")
    assert service.stopped(f"the leader's token was refused: {TOKEN}", drain_seconds=5)
    refused, stop = hook.bodies
    assert refused["kind"] == "account_stopped"
    assert (stop["kind"], stop["severity"]) == ("follow_stopped", "critical")
    assert stop["text"] == ("09:20:00 IST follow stopped by an error: the leader's token "
                            "was refused: *** (after 0 s: 0 leader order(s); 1 alert(s))")
    assert all(TOKEN not in r.raw for r in hook.received)


class BrokenWatcher(AlertWatcher):
    def poll(self) -> int:
        raise OSError("disk I/O error")


def test_a_failing_watcher_is_logged_once_and_never_stops_anything(
        hook: WebhookReceiver, caplog: pytest.LogCaptureFixture) -> None:
    out = sender(hook.url)
    service = AlertService(out, BrokenWatcher(out.send, after=0), poll_seconds=60)
    with caplog.at_level(logging.ERROR):
        service.poll()
        service.poll()
    assert caplog.text.count("reading the store for alerts failed") == 1
    assert service.stopped(drain_seconds=5)
    assert [b["kind"] for b in hook.bodies] == ["follow_stopped"]
