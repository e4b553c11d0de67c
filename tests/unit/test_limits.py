"""The per-account order limiter: Dhan's windows, never one call more, and a restart
within the day still knows what was sent."""

from __future__ import annotations

from pathlib import Path

from copytrade.engine.limits import WINDOW_MARGIN_MS, AccountLimiter


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


def test_eleventh_call_in_a_second_waits_past_the_window(tmp_path: Path) -> None:
    clock = FakeTime()
    accounts = limiter(tmp_path / "limits.db", clock)
    start = clock.ms
    for _ in range(10):
        assert accounts.acquire()
    assert clock.waits == []
    assert accounts.acquire()
    assert clock.ms - start > 1000 + WINDOW_MARGIN_MS - 1  # waited out Dhan's second and more


def test_limits_survive_a_restart(tmp_path: Path) -> None:
    clock = FakeTime()
    first = limiter(tmp_path / "limits.db", clock)
    for _ in range(10):
        first.acquire()
    again = limiter(tmp_path / "limits.db", clock)  # a new process, the same day
    assert again.acquire()
    assert clock.waits, "the restarted limiter let an 11th call through in the same second"


def test_accounts_are_limited_separately(tmp_path: Path) -> None:
    clock = FakeTime()
    one, two = limiter(tmp_path / "l.db", clock, "1"), limiter(tmp_path / "l.db", clock, "2")
    for _ in range(10):
        one.acquire()
        two.acquire()
    assert clock.waits == []


def test_stop_while_waiting_returns_false(tmp_path: Path) -> None:
    clock = FakeTime()
    stopping = AccountLimiter(tmp_path / "l.db", "1", now_ms=clock.now, wait=lambda s: True)
    for _ in range(10):
        assert stopping.acquire()
    assert stopping.acquire() is False


def test_limits_file_is_private(tmp_path: Path) -> None:
    limiter(tmp_path / "limits.db", FakeTime())
    assert (tmp_path / "limits.db").stat().st_mode & 0o777 == 0o600
