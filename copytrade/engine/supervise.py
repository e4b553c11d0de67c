"""Background loops that cannot die quietly.

A loop body that raises (a full disk, a bad row, an overflow) is logged with its
traceback, counted and run again after a backoff; after `DEGRADED_AFTER` failures in a
row the loop is shown as degraded (live table, log, and follow's exit code) until a round
succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEGRADED_AFTER = 3
BACKOFF_MAX = 30.0  # seconds; the first retry waits two intervals, then doubles


@dataclass
class LoopHealth:
    name: str
    failures: int = 0  # in total
    consecutive: int = 0
    last_error: str = ""
    ever_degraded: bool = False

    @property
    def degraded(self) -> bool:
        return self.consecutive >= DEGRADED_AFTER


async def supervised(health: LoopHealth, round_: Callable[[], Awaitable[bool]], *,
                     wait: Callable[[float], Awaitable[bool]],
                     interval: float,
                     on_change: Callable[[LoopHealth], None] = lambda h: None) -> None:
    """Run `round_` every `interval` seconds until it returns False or `wait` says stop.

    `wait(seconds)` sleeps and returns True when the loop must end."""
    delay = interval
    while not await wait(delay):
        try:
            go_on = await round_()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            health.failures += 1
            health.consecutive += 1
            health.last_error = f"{type(exc).__name__}: {exc}"[:300]
            was = health.ever_degraded
            health.ever_degraded |= health.degraded
            log.error("%s failed (%d in a row)", health.name, health.consecutive,
                      exc_info=exc)
            if health.degraded and not was:
                log.error("%s is degraded: %d failures in a row", health.name,
                          health.consecutive)
            on_change(health)
            delay = min(BACKOFF_MAX, interval * 2 ** health.consecutive)
            continue
        if health.consecutive:
            health.consecutive = 0
            on_change(health)
        delay = interval
        if not go_on:
            return
