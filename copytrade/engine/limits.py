"""Per-account order-rate limiting with Dhan's four windows, persisted so that a restart
within the day still knows what was sent (pyrate-limiter's SQLite bucket)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

from pyrate_limiter import Duration, Rate, RateItem, SQLiteBucket

from copytrade.home import ensure_private_file, tighten_sidecars

# Dhan's windows, each a little longer on our side: we stamp a call as it leaves, Dhan
# counts it as it arrives, so a window exactly as long as Dhan's lets the 11th call land
# inside Dhan's second when the first one travelled slower.
WINDOW_MARGIN_MS = 100
ORDER_RATES = [
    Rate(10, Duration.SECOND + WINDOW_MARGIN_MS),
    Rate(250, Duration.MINUTE + WINDOW_MARGIN_MS),
    Rate(1000, Duration.HOUR + WINDOW_MARGIN_MS),
    Rate(7000, Duration.DAY + WINDOW_MARGIN_MS),
]


def scaled_rates(scale: float) -> list[Rate]:
    """Dhan's windows with their counts multiplied (an emulator run with higher limits)."""
    return [Rate(max(1, int(rate.limit * scale)), rate.interval) for rate in ORDER_RATES]


class AccountLimiter:
    """Blocks until one more order call fits every window; never lets one more through."""

    def __init__(self, db_path: Path, client_id: str, *, now_ms: Callable[[], int],
                 wait: Callable[[float], bool], rates: list[Rate] | None = None) -> None:
        # 0600, as are sidecars an older version left at 0644 (new ones take the db's mode).
        ensure_private_file(db_path)
        tighten_sidecars(db_path)
        table = "rate_" + re.sub(r"[^A-Za-z0-9_]", "_", client_id)
        self._bucket = SQLiteBucket.init_from_file(rates or ORDER_RATES, table=table,
                                                   db_path=str(db_path))
        # WAL + NORMAL: a crash of the process loses nothing, and no fsync per order.
        self._bucket.conn.execute("PRAGMA journal_mode=WAL")
        self._bucket.conn.execute("PRAGMA synchronous=NORMAL")
        tighten_sidecars(db_path)  # the -wal and -shm that WAL mode just opened
        self._now_ms = now_ms
        self._wait = wait  # returns True when asked to stop (e.g. Event.wait)
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        """True once a slot is taken; False if told to stop while waiting."""
        with self._lock:
            while True:
                item = RateItem("order", self._now_ms())
                if self._bucket.put(item):
                    return True
                delay_ms = max(int(self._bucket.waiting(item)), 1)
                if self._wait(delay_ms / 1000):
                    return False
