"""What follow alerts on: read from what it records, never hooked into the copy path.

A thread tails the store's audit trail (store/trail.py: every audit event and mirror state
change, in one ordered table) from the rows after the start (so nothing of an earlier run
is alerted again) and turns these into alerts (engine/alerts.py):

| recorded | alert kind | severity |
|---|---|---|
| a follower's mirror entering REJECTED (a transition) | mirror_rejected | warning |
| audit `divergence` | divergence | warning |
| audit `token_refused` / `account_stopped` | the same | critical |
| audit `token_expiring` (within 30 min, renewal failing or off) | token_expiring | warning |
| audit `degraded` (a background loop failing again and again) | degraded | critical |
| follow stopping (`AlertService.stopped`) | follow_stopped | warning / critical |

The same kind about the same subject (follower and leader order, else the message's
head) is sent once per REPEAT_WINDOW; repeats in between are counted and said with the
next one. A failure in here is logged once and never reaches follow.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from copytrade.config.model import AlertsConfig, Config
from copytrade.core.ist import ist_clock
from copytrade.engine.alerts import Alert, AlertSender, Severity, check_webhook_url
from copytrade.errors import ConfigError
from copytrade.redact import redact

if TYPE_CHECKING:
    from copytrade.store.queries import TrailEvent
    from copytrade.store.repo import Store

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
REPEAT_WINDOW = timedelta(minutes=10)
STOP_DRAIN_SECONDS = 10.0  # at stop, queued alerts get this long to go out
PAGE = 500  # trail rows a read
PAGES_PER_POLL = 20  # a flood is read over several polls
TEXT_MAX = 600

# audit kind -> (what the alert calls it, severity). A follower's rejection is read from
# its mirror's transition to REJECTED instead of the `mirror_rejected` audit written with
# it (in the same transaction, engine/worker.py): the transition also covers an order the
# broker rejected after accepting it, and one rejection is one alert.
AUDIT_ALERTS: Mapping[str, tuple[str, Severity]] = {
    "divergence": ("divergence", "warning"),
    "token_refused": ("token refused", "critical"),
    "account_stopped": ("account stopped", "critical"),
    "token_expiring": ("token expiring", "warning"),
    "degraded": ("loop degraded", "critical"),
    # [bus] leader role: the agents get no events until it is back (they wait in the store)
    "bus_unavailable": ("bus unavailable", "warning"),
}
REJECTED = "REJECTED"
TRANSITION = "transition"  # the trail's kind for a mirror's state change
SUMMARY_STATES = ("FILLED", "REJECTED", "CANCELED", "SKIPPED", "EXPIRED")


@dataclass(frozen=True)
class Subject:
    """Who and what an alert is about, as far as the record knows."""

    follower: str | None = None
    leader_order_id: str | None = None
    symbol: str = ""
    side: str = ""
    quantity: int | None = None  # the follower's (a mirror's), when the event has one


@dataclass(frozen=True)
class Finding:
    """One recorded event worth an alert, before the repeat check."""

    kind: str
    title: str
    severity: Severity
    at: datetime
    subject: Subject
    detail: str

    @property
    def key(self) -> tuple[str, str | None, str | None, str]:
        """What makes two alerts alike: kind, follower and leader order, else the head of
        the message (a loop's name)."""
        who = self.subject
        head = "" if who.follower or who.leader_order_id else self.detail.partition(":")[0]
        return self.kind, who.follower, who.leader_order_id, head[:80]


@dataclass
class _Repeats:
    last_sent: datetime
    count: int = 0


class AlertWatcher:
    """Turns what the audit trail records after row `after` into alerts."""

    def __init__(self, send: Callable[[Alert], None], *, after: int,
                 window: timedelta = REPEAT_WINDOW) -> None:
        self.send = send
        self.last_id = after
        self.window = window
        self.alerts = 0
        self.repeats = 0  # not sent: inside the window of an alert alike
        self.leader_orders: set[str] = set()
        self.final_states: Counter[str] = Counter()
        self._recent: dict[tuple, _Repeats] = {}

    def poll(self) -> int:
        """Read what is new, send its alerts; the number sent."""
        from copytrade.store.queries import events_after

        sent = 0
        for _ in range(PAGES_PER_POLL):
            events = events_after(self.last_id, PAGE)
            for event in events:
                self.last_id = event.id
                finding = self._finding(event)
                alert = self._admit(finding) if finding is not None else None
                if alert is not None:
                    self.send(alert)
                    sent += 1
            if len(events) < PAGE:
                break
        self.alerts += sent
        return sent

    def _finding(self, event: TrailEvent) -> Finding | None:
        at = _aware(event.at or datetime.now(UTC))
        what = Subject(event.follower, event.leader_order_id, event.symbol, event.side,
                       event.quantity)
        if event.kind == TRANSITION:
            to = str(event.data.get("to", ""))
            if event.leader_order_id:
                self.leader_orders.add(event.leader_order_id)
            if to in SUMMARY_STATES:
                self.final_states[to] += 1
            if to != REJECTED:
                return None
            return Finding("mirror_rejected", "mirror rejected", "warning", at, what,
                           str(event.data.get("detail") or "") or "no reason given")
        rule = AUDIT_ALERTS.get(event.kind)
        if rule is None:
            return None
        return Finding(event.kind, *rule, at, what, event.message)

    def _admit(self, finding: Finding) -> Alert | None:
        """The alert, unless one alike went out within the window (then counted)."""
        at = finding.at
        seen = self._recent.get(finding.key)
        if seen is not None and at - seen.last_sent < self.window:
            seen.count += 1
            self.repeats += 1
            return None
        self._forget_before(at - self.window)
        self._recent[finding.key] = _Repeats(at)
        text = alert_line(finding)
        if seen is not None and seen.count:
            text += f" (+{seen.count} more alike since {ist_clock(seen.last_sent)})"
        return Alert(finding.kind, _one_line(text), finding.severity,
                     finding.subject.follower, finding.subject.leader_order_id, at)

    def _forget_before(self, moment: datetime) -> None:
        if len(self._recent) > 1000:  # bounded: old subjects have no window left
            self._recent = {k: v for k, v in self._recent.items() if v.last_sent >= moment}

    def summary(self, elapsed: timedelta) -> str:
        """`after 2 h 05 min: 14 leader orders; mirrors 26 filled, 1 rejected; 3 alerts`."""
        parts = [f"{len(self.leader_orders)} leader order(s)"]
        states = [f"{self.final_states[s]} {s.lower()}" for s in SUMMARY_STATES
                  if self.final_states[s]]
        if states:
            parts.append("mirrors " + ", ".join(states))
        alerts = f"{self.alerts} alert(s)"
        if self.repeats:
            alerts += f" (+{self.repeats} repeats not sent)"
        parts.append(alerts)
        return f"after {_duration(elapsed)}: " + "; ".join(parts)


def alert_line(finding: Finding) -> str:
    """`09:20:01 IST mirror rejected, follower f1, BUY 10 RELIANCE, leader order 1000: ...`:
    one line, IST."""
    who = finding.subject
    order = " ".join(str(part) for part in (who.side, who.quantity, who.symbol)
                     if part not in ("", None))
    parts = [f"{ist_clock(finding.at)} {finding.title}",
             f"follower {who.follower}" if who.follower else "", order,
             f"leader order {who.leader_order_id}" if who.leader_order_id else ""]
    return _one_line(", ".join(p for p in parts if p) + f": {finding.detail}")


def _one_line(text: str) -> str:
    return redact(" ".join(text.split()))[:TEXT_MAX]


def _aware(moment: datetime) -> datetime:
    """The store keeps UTC without a zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _duration(elapsed: timedelta) -> str:
    minutes = int(elapsed.total_seconds() // 60)
    if minutes < 1:
        return f"{int(elapsed.total_seconds())} s"
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


# ---- the service follow runs -------------------------------------------------------------


class AlertService:
    """The watcher on its own thread, and the sender; `stopped()` ends both."""

    def __init__(self, sender: AlertSender, watcher: AlertWatcher, *,
                 poll_seconds: float = POLL_SECONDS,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 close_connection: Callable[[], Any] = lambda: None) -> None:
        self.sender = sender
        self.watcher = watcher
        self.poll_seconds = poll_seconds
        self.now = now
        self.started_at = now()
        self._close_connection = close_connection  # the watcher thread's own, at its end
        self._halt = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="alert-watch", daemon=True)

    def start(self) -> AlertService:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._halt.wait(self.poll_seconds):
                self.poll()
        finally:
            try:
                self._close_connection()
            except Exception:  # the thread ends either way
                log.debug("alerts: closing the watcher's connection failed", exc_info=True)

    def poll(self) -> None:
        """One read of the store; a failure is logged once (until a read works again)."""
        try:
            self.watcher.poll()
        except Exception:
            if not self._failing:
                log.exception("alerts: reading the store for alerts failed; retrying")
            self._failing = True
            return
        if self._failing:
            log.info("alerts: reading the store works again")
            self._failing = False

    def stopped(self, error: str | None = None, *,
                drain_seconds: float = STOP_DRAIN_SECONDS) -> bool:
        """follow stopped (with `error`, or normally): the last events' alerts, then the
        stop alert with a summary; waits at most about `drain_seconds` for them to go
        out. True when they did. Never raises."""
        deadline = time.monotonic() + drain_seconds
        try:
            self._halt.set()
            if self._thread.is_alive():
                self._thread.join(max(drain_seconds, 0.0))
            if not self._thread.is_alive():
                self.poll()  # what the run recorded last
            at = self.now()
            summary = self.watcher.summary(at - self.started_at)
            if error is None:
                alert = Alert("follow_stopped", _one_line(
                    f"{ist_clock(at)} follow stopped {summary}"), "warning", at=at)
            else:
                alert = Alert("follow_stopped", _one_line(
                    f"{ist_clock(at)} follow stopped by an error: {error} ({summary})"),
                    "critical", at=at)
            self.sender.send(alert)
        except Exception:
            log.exception("alerts: the stop alert could not be made")
        return self.sender.close(deadline - time.monotonic())


def webhook_url(alerts: AlertsConfig, environ: Mapping[str, str]) -> str:
    """The webhook URL: `webhook_url`, else the variable `webhook_url_env` names."""
    if alerts.webhook_url:
        return check_webhook_url(alerts.webhook_url, "webhook_url")
    name = alerts.webhook_url_env or ""
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"[alerts] webhook_url_env: the environment variable {name} is "
                          "not set (or empty): set it to the webhook URL")
    return check_webhook_url(value, f"webhook_url_env ({name})")


def start_alerts(config: Config, store: Store | None = None, *,
                 after: int | None = None,
                 environ: Mapping[str, str] | None = None,
                 poll_seconds: float = POLL_SECONDS,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sender_options: Mapping[str, Any] | None = None) -> AlertService | None:
    """Alerts for a follow run on `store` (trail rows after `after`; by default all
    recorded so far is old); None when [alerts] is off. ConfigError for an unusable URL."""
    alerts = config.alerts
    if not alerts.enabled:
        return None
    url = webhook_url(alerts, os.environ if environ is None else environ)
    if after is None:
        from copytrade.store.queries import last_event_ids

        after = last_event_ids().trail_id
    sender = AlertSender(url, fields=alerts.fields, timeout=alerts.timeout_seconds,
                         retries=alerts.retries, now=now, **(sender_options or {}))
    watcher = AlertWatcher(sender.send, after=after)
    close = store.db.close if store is not None else (lambda: None)
    service = AlertService(sender.start(), watcher, poll_seconds=poll_seconds, now=now,
                           close_connection=close)
    log.info("alerts: on, to %s", sender.where)
    return service.start()


def start_alerts_safely(config: Config, store: Store | None,
                        warn: Callable[[str], None] = lambda text: None,
                        **options: Any) -> AlertService | None:
    """start_alerts for follow: a failure is logged once, handed to `warn` (one line) and
    leaves alerts off; follow runs on either way."""
    try:
        return start_alerts(config, store, **options)
    except ConfigError as exc:
        text = f"alerts are off: {exc.message}"
    except Exception as exc:
        text = f"alerts are off: unexpected {type(exc).__name__}: {redact(str(exc))[:200]}"
        log.exception("alerts: could not start")
    log.warning("%s", text)
    try:
        warn(text)
    except Exception:  # a closed stderr must not stop follow either
        log.debug("alerts: the warning could not be shown", exc_info=True)
    return None


def stop_reason(exc: BaseException) -> str | None:
    """What stopped follow, in the stop alert's words; None for a stop the user asked for
    (Ctrl-C before the signal handlers were in place)."""
    from copytrade.errors import CopytradeError

    if isinstance(exc, CopytradeError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and not exc.code):
        return None
    return f"unexpected {type(exc).__name__}: {exc}"
