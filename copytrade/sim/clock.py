"""Clocks for the emulator: the wall clock in IST, or a manual one for tests."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Protocol

import pytz

IST = pytz.timezone("Asia/Kolkata")


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(IST)


class ManualClock:
    """Time that moves only when told, so rate windows and timestamps are deterministic."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or IST.localize(datetime(2026, 11, 25, 10, 0, 0))
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment


def ist_text(moment: datetime) -> str:
    """Dhan's time strings: IST, `YYYY-MM-DD HH:MM:SS`."""
    return moment.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")
