"""Bounded waits for tests: poll a condition until it holds, failing after a bound (never a
fixed sleep standing in for "long enough")."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(predicate: Callable[[], object], timeout: float = 5.0,
               interval: float = 0.01) -> object:
    """Poll until predicate() is truthy; fail after `timeout` seconds (a bound, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
