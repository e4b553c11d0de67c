"""The trading calendar in follow (engine/market.py) and in the planner: a first decision
while the segment takes no orders is a skip with the reason, an AMO still goes."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from test_plan import inputs, leader

from copytrade.core.calendar import load_calendar
from copytrade.core.decide import ActionKind
from copytrade.core.ist import IST
from copytrade.core.plan import plan
from copytrade.engine.market import MarketHours, check_calendar
from copytrade.errors import CalendarError

CLOSED = "NSE_EQ is closed (weekend) at 11:00:00 IST: not sent"


def at(*moment: int) -> MarketHours:
    fixed = datetime(*moment, tzinfo=IST)
    return MarketHours(load_calendar(), lambda: fixed)


def test_a_closed_segment_skips_a_first_decision_with_the_reason() -> None:
    [skip] = plan(inputs(leader(), closed_reason=CLOSED))
    assert (skip.kind, skip.reason) == (ActionKind.SKIP, CLOSED)


def test_a_leader_amo_is_still_sent_while_closed() -> None:
    [place] = plan(inputs(replace(leader(), after_market_order=True), closed_reason=CLOSED))
    assert place.kind is ActionKind.PLACE


@pytest.mark.parametrize(("moment", "reason"), [
    ((2026, 12, 6, 11, 0), CLOSED),  # a Sunday
    ((2026, 12, 8, 10, 30), ""),  # a Tuesday, in the normal market
    ((2026, 12, 8, 9, 5), ""),  # pre-open order entry
    ((2026, 12, 8, 9, 10), "pre-open"),  # pre-open matching: no new orders
    ((2026, 12, 8, 15, 30), "closed"),  # the close itself
    ((2026, 12, 25, 11, 0), "holiday"),  # Christmas
])
def test_the_reason_names_the_state(moment: tuple[int, ...], reason: str) -> None:
    found = at(*moment).closed_reason("NSE_EQ")
    assert (found == "") if not reason else (reason in found and found.endswith("not sent"))


def test_past_the_calendar_nothing_is_sent_and_follow_will_not_start() -> None:
    assert "covers up to 2027-12-31" in at(2028, 1, 3, 10, 0).closed_reason("NSE_EQ")
    with pytest.raises(CalendarError, match="valid through 2027-12-31"):
        check_calendar(load_calendar, lambda: datetime(2028, 1, 1, tzinfo=IST))


def test_an_unknown_segment_is_not_sent() -> None:
    assert "not in the trading calendar" in at(2026, 12, 8, 10, 30).closed_reason("IDX_I")


def test_the_warning_comes_within_thirty_days_of_the_end() -> None:
    assert at(2026, 12, 8, 10, 30).expiry_warning() is None
    warning = at(2027, 12, 10, 10, 30).expiry_warning()
    assert warning is not None and "2027-12-31" in warning


def test_an_unreadable_calendar_is_a_one_line_calendar_error(tmp_path: Path) -> None:
    broken = tmp_path / "calendar.json"
    broken.write_text("{not json")
    with pytest.raises(CalendarError, match="cannot be read") as caught:
        check_calendar(lambda: load_calendar(broken), lambda: datetime(2026, 12, 8,
                                                                        tzinfo=IST))
    assert "\n" not in str(caught.value)
