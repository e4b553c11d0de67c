"""Per-account order-rate limiting with Dhan's four windows.

The decision is made in memory (pyrate-limiter's InMemoryBucket: a bisect over the send
times): on the hot path it costs microseconds. The send times are also written to
`limits.db` by a background thread every FLUSH_SECONDS, so a restart within the day
still knows what was sent; a kill -9 can lose the last FLUSH_SECONDS of them, which the
broker's own limit (a DH-904, retried after a pause) then covers. Another process on the
same home (cancel-mirror while follow runs) is read only when a limiter starts: its sends
are covered the same way.
"""

from __future__ import annotations

import atexit
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pyrate_limiter import Duration, InMemoryBucket, Rate, RateItem

from copytrade.home import ensure_private_file, tighten_sidecars

# A client limiter and Dhan's window never line up: we stamp a call as it leaves, Dhan
# counts it as it arrives, and a loaded machine can delay the send after the stamp. So
# one call a second under Dhan's 10 (an 11th call would need a send delayed by a ninth of
# a second), in windows a hair longer than Dhan's for clock granularity.
WINDOW_MARGIN_MS = 25
ORDERS_PER_SECOND = 9
ORDER_RATES = [
    Rate(ORDERS_PER_SECOND, Duration.SECOND + WINDOW_MARGIN_MS),
    Rate(250, Duration.MINUTE + WINDOW_MARGIN_MS),
    Rate(1000, Duration.HOUR + WINDOW_MARGIN_MS),
    Rate(7000, Duration.DAY + WINDOW_MARGIN_MS),
]
FLUSH_SECONDS = 0.5
_DAY_MS = Duration.DAY + WINDOW_MARGIN_MS


def scaled_rates(scale: float, per_second: int = ORDERS_PER_SECOND + 1) -> list[Rate]:
    """Dhan's windows with their counts multiplied (an emulator run with higher limits);
    `per_second`: the account's chosen cap a second (10 by default, up to Dhan's 25), kept
    with the same one-call margin as the default."""
    second = max(per_second - 1, 1)
    rates = [Rate(second, ORDER_RATES[0].interval), *ORDER_RATES[1:]]
    scaled: list[Rate] = []
    for rate in rates:
        limit = max(1, int(rate.limit * scale))
        if scaled:  # a longer window never allows more than the shorter one's pace
            shorter = scaled[-1]
            limit = max(min(limit, shorter.limit * rate.interval // shorter.interval),
                        shorter.limit + 1)
        scaled.append(Rate(limit, rate.interval))
    return scaled


class Limiter(Protocol):
    """What a follower's worker asks of its account's limiter."""

    def acquire(self) -> bool: ...

    def close(self) -> None: ...


# (client id, wait) -> that account's limiter; `wait(seconds)` returns True when asked
# to stop. Built by the composition root (the limits file, the clock, the rates).
LimiterFor = Callable[[str, Callable[[float], bool]], Limiter]


class NoLimit:
    """For a run that sends nothing (a dry run): every slot free, nothing written."""

    def acquire(self) -> bool:
        return True

    def close(self) -> None:
        pass


def no_limit(_client_id: str, _wait: Callable[[float], bool]) -> Limiter:
    return NoLimit()


class AccountLimiter:
    """Blocks until one more order call fits every window; never lets one more through."""

    def __init__(self, db_path: Path, client_id: str, *, now_ms: Callable[[], int],
                 wait: Callable[[float], bool], rates: list[Rate] | None = None) -> None:
        self._bucket = InMemoryBucket(rates or ORDER_RATES)
        self._client_id = client_id
        self._now_ms = now_ms
        self._wait = wait  # returns True when asked to stop (e.g. Event.wait)
        self._lock = threading.Lock()
        self._unsaved: list[int] = []
        self._journal = _SendJournal(db_path)
        for stamp in self._journal.load(client_id, since_ms=now_ms() - _DAY_MS):
            self._bucket.put(RateItem("order", stamp))
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, daemon=True,
                                         name=f"limits-{client_id}")
        self._flusher.start()
        atexit.register(self.close)  # a short command (cancel-mirror) saves its sends too

    def acquire(self) -> bool:
        """True once a slot is taken; False if told to stop while waiting."""
        with self._lock:
            while True:
                stamp = self._now_ms()
                item = RateItem("order", stamp)
                if self._bucket.put(item):
                    self._unsaved.append(stamp)
                    return True
                delay_ms = max(int(self._bucket.waiting(item)), 1)
                if self._wait(delay_ms / 1000):
                    return False

    def close(self) -> None:
        """Write what is unsaved and stop the background writer (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._flusher.join(5)
        self.flush()
        self._journal.close()
        atexit.unregister(self.close)

    def flush(self) -> None:
        with self._lock:
            stamps, self._unsaved = self._unsaved, []
        if stamps:
            self._journal.save(self._client_id, stamps)

    def _flush_loop(self) -> None:
        while not self._closed.wait(FLUSH_SECONDS):
            self.flush()


class _SendJournal:
    """Send times per account in SQLite (its own connection, used by one thread at a time
    under a lock): read once at start, appended in batches."""

    def __init__(self, db_path: Path) -> None:
        # 0600, as are sidecars an older version left at 0644 (new ones take the db's mode).
        ensure_private_file(db_path)
        tighten_sidecars(db_path)
        self._conn = sqlite3.connect(str(db_path), check_same_thread=False, timeout=5)
        self._lock = threading.Lock()
        with self._lock, self._conn:
            # WAL + NORMAL: a crash of the process loses nothing written, and no fsync.
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("CREATE TABLE IF NOT EXISTS sends (account TEXT NOT NULL, "
                               "at_ms INTEGER NOT NULL)")
            self._conn.execute("CREATE INDEX IF NOT EXISTS sends_by_account ON sends "
                               "(account, at_ms)")
        tighten_sidecars(db_path)  # the -wal and -shm that WAL mode just opened

    def load(self, account: str, *, since_ms: int) -> list[int]:
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM sends WHERE at_ms < ?", (since_ms,))
            rows = self._conn.execute("SELECT at_ms FROM sends WHERE account = ? ORDER BY "
                                      "at_ms", (account,)).fetchall()
        return [row[0] for row in rows]

    def save(self, account: str, stamps: list[int]) -> None:
        with self._lock, self._conn:
            self._conn.executemany("INSERT INTO sends (account, at_ms) VALUES (?, ?)",
                                   [(account, stamp) for stamp in stamps])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
