"""Alerts to a webhook: one JSON POST per alert, from a daemon thread of its own.

The caller's `send()` only appends to a bounded queue (the copy path never waits on an
alert); the sender thread posts each alert with a timeout per request and a bounded number
of retries with backoff (connection errors, timeouts, 429 and 5xx; any other answer is
final). When the queue is full the oldest alert is dropped, and one "N alerts dropped"
alert goes out next. Nothing here raises into the caller.

The webhook URL may carry a secret in its path or query (Telegram's bot token, an ntfy
topic): it is registered with the redaction filter and never logged; logs name only
`scheme://host/…` (config/show.masked_url). Every payload passes through the redaction
filter, so no token reaches the webhook.

`requests` (dhanhq's own HTTP library, already used by dhan/rest.py) rather than urllib:
a kept-alive session for a burst of alerts, JSON bodies, the proxy environment honoured
the same way as the broker calls. The retry loop is ours, not urllib3's Retry: its waits
must end when follow stops (close's bound), and a 429's Retry-After must be capped.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from copytrade.config.show import masked_url
from copytrade.core.ist import ist_clock, to_ist
from copytrade.errors import ConfigError
from copytrade.redact import redact, redact_value, register_secret

log = logging.getLogger(__name__)

Severity = Literal["warning", "critical"]

QUEUE_CAPACITY = 100
BACKOFF_INITIAL = 1.0  # seconds before the first retry; doubles each time
BACKOFF_MAX = 15.0
RETRY_AFTER_MAX = 30.0  # a 429's Retry-After is honoured up to this
ERROR_TEXT_MAX = 200


@dataclass(frozen=True)
class Alert:
    kind: str  # the audit kind it came from, or follow_stopped / alerts_dropped
    text: str  # one readable line, IST time first
    severity: Severity = "warning"
    follower: str | None = None
    leader_order_id: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


def payload(alert: Alert, fields: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON body: ours, plus the configured `fields` (which add keys, never replace
    ours: a typo there cannot blank the text). `message` repeats `text` for ntfy, whose
    JSON publishing reads that key. Redacted as a whole."""
    ours = {"text": alert.text, "message": alert.text, "kind": alert.kind,
            "severity": alert.severity, "at": to_ist(alert.at).isoformat(timespec="seconds"),
            "follower": alert.follower, "leader_order_id": alert.leader_order_id,
            "source": "copytrade"}
    body = {**{str(k): str(v) for k, v in (fields or {}).items()}, **ours}
    return redact_value(body)  # type: ignore[return-value]


def check_webhook_url(url: str, where: str) -> str:
    """The URL, if usable (http or https with a host); ConfigError otherwise, quoting
    none of it (its path or query may hold a bot token)."""
    from copytrade.config.load import webhook_url_problem

    problem = webhook_url_problem(url)
    if problem:
        raise ConfigError(f"[alerts] {where}: {problem}")
    return url


def _secret_part(url: str) -> str:
    """Everything after the host: the path, query and fragment."""
    parts = urlsplit(url)
    return url[len(f"{parts.scheme}://{parts.netloc}"):]


class AlertSender:
    """Posts alerts to one webhook from its own daemon thread (`start()`, `close()`)."""

    def __init__(self, url: str, *, fields: Mapping[str, str] | None = None,
                 timeout: float = 5.0, retries: int = 3, capacity: int = QUEUE_CAPACITY,
                 backoff_initial: float = BACKOFF_INITIAL, backoff_max: float = BACKOFF_MAX,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.url = url
        self.where = masked_url(url)  # as `config show` says it: no path, query or user
        self._secret = _secret_part(url)
        register_secret(self._secret)  # quoted by a library error or log: redacted
        self.fields = dict(fields or {})
        self.timeout = timeout
        self.retries = retries
        self.capacity = capacity
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.now = now
        self.sent = 0
        self.failed = 0  # given up on (retries spent, or refused)
        self.dropped = 0  # pushed out of a full queue, in total
        self._queue: deque[Alert] = deque()
        self._unreported_drops = 0
        self._ready = threading.Condition()
        self._closing = False
        self._abort = threading.Event()  # close's bound passed: stop waiting and retrying
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)

    # ---- the caller's side -----------------------------------------------------------------

    def start(self) -> AlertSender:
        self._thread.start()
        return self

    def send(self, alert: Alert) -> None:
        """Queue `alert`; never blocks on the network and never raises."""
        try:
            with self._ready:
                if self._closing:
                    return
                if len(self._queue) >= self.capacity:
                    self._queue.popleft()
                    self.dropped += 1
                    self._unreported_drops += 1
                self._queue.append(alert)
                self._ready.notify()
        except Exception:  # an alert is never worth a failure of the caller
            log.exception("an alert could not be queued")

    @property
    def pending(self) -> int:
        with self._ready:
            return len(self._queue) + (1 if self._busy else 0)

    def close(self, timeout: float) -> bool:
        """Send what is queued, within `timeout` seconds; True when all went out (or was
        given up on). Past the bound the rest is abandoned (the thread is a daemon)."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        if self._thread.is_alive():
            self._thread.join(max(timeout, 0.0))
        if not self._thread.is_alive():
            return True
        self._abort.set()  # ends a backoff wait; a request in flight ends by its timeout
        left = self.pending
        log.warning("alerts: %d alert(s) not sent to %s within %.1f s of the stop",
                    left, self.where, timeout)
        return False

    # ---- the sender thread -----------------------------------------------------------------

    def _run(self) -> None:
        import requests

        session = requests.Session()
        try:
            while True:
                alert = self._next()
                if alert is None:
                    return
                try:
                    self._deliver(session, payload(alert, self.fields))
                except Exception as exc:  # a bug here must not end the thread
                    self.failed += 1
                    log.error("alerts: %s could not be sent: %s", alert.kind,
                              self._scrub(f"{type(exc).__name__}: {exc}"))
                finally:
                    with self._ready:
                        self._busy = False
        finally:
            session.close()

    def _next(self) -> Alert | None:
        """The next alert to post (a drop notice first, when some were dropped); None
        once closing with nothing left, or aborted."""
        with self._ready:
            while not self._queue and not self._closing:
                self._ready.wait()
            if self._abort.is_set() or not self._queue:
                return None
            self._busy = True
            if self._unreported_drops:
                count, self._unreported_drops = self._unreported_drops, 0
                at = self.now()
                return Alert("alerts_dropped", f"{ist_clock(at)} {count} alert(s) dropped: "
                             f"they came faster than {self.where} took them (queue of "
                             f"{self.capacity})", at=at)
            return self._queue.popleft()

    def _deliver(self, session: Any, body: dict[str, Any]) -> bool:
        """POST `body`, retrying what may pass on a later try. True once delivered."""
        import requests

        why, retry_after = "", None
        for attempt in range(self.retries + 1):
            if attempt and self._abort.wait(self._delay(attempt, retry_after)):
                return self._gave_up(f"{why}; stopped before the next try", attempt)
            try:
                # stream: the status says it; a body is never awaited (a slow one would
                # turn a delivered alert into a retry, a sent-again alert) nor buffered.
                response = session.post(self.url, json=body, timeout=self.timeout,
                                        allow_redirects=False, stream=True)
            except (requests.ConnectionError, requests.Timeout) as exc:
                why, retry_after = type(exc).__name__, None
                continue
            except requests.RequestException as exc:  # not something a retry mends
                return self._gave_up(f"{type(exc).__name__}: {exc}", attempt + 1)
            with response:
                status = response.status_code
                retry_after = response.headers.get("Retry-After")
            if status < 300:
                self.sent += 1
                return True
            why = f"HTTP {status}"
            if status != 429 and status < 500:  # redirects too: never followed
                return self._gave_up(f"the webhook answered {why} (not retried)", attempt + 1)
        return self._gave_up(why, self.retries + 1)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1))
        try:
            return max(delay, min(float(retry_after or ""), RETRY_AFTER_MAX))
        except ValueError:  # absent, or an HTTP date: our own backoff
            return delay

    def _gave_up(self, why: str, attempts: int) -> bool:
        self.failed += 1
        log.warning("alerts: an alert to %s was not delivered after %d attempt(s): %s",
                    self.where, attempts, self._scrub(why))
        return False

    def _scrub(self, text: str) -> str:
        """A library's error text without the URL's path or query, and redacted."""
        if self._secret:
            text = text.replace(self._secret, "/…")
        return redact(text)[:ERROR_TEXT_MAX]
