"""The recorded day (tests/e2e/recorded.py) is what the commands that read it expect."""

from __future__ import annotations

from recorded import RecordedDay


def test_the_recorded_day_holds_every_kind_of_outcome(recorded_day: RecordedDay) -> None:
    assert set(recorded_day.orders) == {"filled", "open", "cancelled", "skipped", "rejected"}
    assert (recorded_day.home / "copytrade.db").exists()
