"""The per-account order limiter: Dhan's windows, never one call more, and a restart
within the day still knows what was sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from waiting import eventually

from copytrade.engine.limits import (
    ORDERS_PER_SECOND,
    WINDOW_MARGIN_MS,
    AccountLimiter,
    scaled_rates,
)
from copytrade.sim.accounts import ORDER_RATES as DHAN_RATES


class FakeTime:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000
        self.waits: list[float] = []

    def now(self) -> int:
        return self.ms

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.ms += int(seconds * 1000) + 1
        return False


def limiter(path: Path, clock: FakeTime, client_id: str = "1000000002") -> AccountLimiter:
    return AccountLimiter(path, client_id, now_ms=clock.now, wait=clock.wait)


def test_our_per_second_limit_keeps_a_margin_under_dhans() -> None:
    dhan_per_second = next(r.limit for r in DHAN_RATES if r.interval == 1000)
    assert dhan_per_second - 1 == ORDERS_PER_SECOND


@pytest.mark.parametrize(("chosen", "allowed", "per_minute"),
                         [(10, 9, 250), (25, 24, 250), (4, 3, 175), (1, 1, 58)])
def test_a_chosen_rate_keeps_the_same_margin_and_dhans_other_windows(
        tmp_path: Path, chosen: int, allowed: int, per_minute: int) -> None:
    rates = scaled_rates(1.0, per_second=chosen)
    assert [(r.limit, r.interval) for r in rates] == [
        (allowed, 1000 + WINDOW_MARGIN_MS), (per_minute, 60_000 + WINDOW_MARGIN_MS),
        (1000, 3_600_000 + WINDOW_MARGIN_MS), (7000, 86_400_000 + WINDOW_MARGIN_MS)]
    clock = FakeTime()
    accounts = AccountLimiter(tmp_path / "limits.db", "1000000002", now_ms=clock.now,
                              wait=clock.wait, rates=rates)
    for _ in range(allowed):
        assert accounts.acquire()
    assert clock.waits == []
    assert accounts.acquire()
    assert clock.waits  # one more waits for the next second
    accounts.close()


def test_one_call_more_in_a_second_waits_past_the_window(tmp_path: Path) -> None:
    clock = FakeTime()
    accounts = limiter(tmp_path / "limits.db", clock)
    start = clock.ms
    for _ in range(ORDERS_PER_SECOND):
        assert accounts.acquire()
    assert clock.waits == []
    assert accounts.acquire()
    assert clock.ms - start > 1000 + WINDOW_MARGIN_MS - 1  # waited out Dhan's second and more


def test_limits_survive_a_restart(tmp_path: Path) -> None:
    clock = FakeTime()
    first = limiter(tmp_path / "limits.db", clock)
    for _ in range(ORDERS_PER_SECOND):
        first.acquire()
    first.close()  # the process ends
    again = limiter(tmp_path / "limits.db", clock)  # a new process, the same day
    assert again.acquire()
    assert clock.waits, "the restarted limiter let one call too many through in a second"


def test_sends_are_saved_in_the_background_without_a_close(tmp_path: Path) -> None:
    """A kill -9 loses at most the last FLUSH_SECONDS of sends."""
    import sqlite3
    from contextlib import closing

    clock = FakeTime()
    first = limiter(tmp_path / "limits.db", clock)
    for _ in range(3):
        first.acquire()
    def saved() -> bool:
        with closing(sqlite3.connect(tmp_path / "limits.db")) as db:
            return db.execute("SELECT COUNT(*) FROM sends").fetchone()[0] == 3

    eventually(saved, timeout=10, interval=0.05)
    first.close()


def test_accounts_are_limited_separately(tmp_path: Path) -> None:
    clock = FakeTime()
    one, two = limiter(tmp_path / "l.db", clock, "1"), limiter(tmp_path / "l.db", clock, "2")
    for _ in range(ORDERS_PER_SECOND):
        one.acquire()
        two.acquire()
    assert clock.waits == []


def test_stop_while_waiting_returns_false(tmp_path: Path) -> None:
    clock = FakeTime()
    stopping = AccountLimiter(tmp_path / "l.db", "1", now_ms=clock.now, wait=lambda s: True)
    for _ in range(ORDERS_PER_SECOND):
        assert stopping.acquire()
    assert stopping.acquire() is False


def test_limits_file_is_private(tmp_path: Path) -> None:
    limiter(tmp_path / "limits.db", FakeTime())
    assert (tmp_path / "limits.db").stat().st_mode & 0o777 == 0o600
