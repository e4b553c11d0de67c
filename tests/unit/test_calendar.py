"""The trading calendar (copytrade.core.calendar + the shipped data file): every boundary
of a day (pre-open, open, close), holidays, weekends, Muhurat trading, MCX's evening
session on an equity holiday, currency hours, special sessions and the valid-through end,
with injected times; a property test on next open / next close; the loader's checks."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from copytrade.core.calendar import (
    Calendar,
    CalendarCoverageError,
    CalendarDataError,
    CalendarExpiredError,
    SessionState,
    UnknownSegmentError,
    expires_within,
    is_open_for_orders,
    next_close,
    next_open,
    status,
    trading_day,
)
from copytrade.core.calendar_data import CALENDAR_FILE_ENV, load_calendar, parse_calendar
from copytrade.core.ist import IST

SEGMENTS = ("NSE_EQ", "BSE_EQ", "NSE_FNO", "BSE_FNO", "NSE_CURRENCY", "BSE_CURRENCY",
            "MCX_COMM")
ONE_US = timedelta(microseconds=1)


@pytest.fixture(scope="module")
def shipped() -> Calendar:
    return load_calendar()


def ist(*args: int) -> datetime:
    return datetime(*args, tzinfo=IST)


def state(calendar: Calendar, segment: str, at: datetime) -> tuple[SessionState, str]:
    now = status(calendar, segment, at)
    return now.state, now.label


# ---- a regular day: Tuesday 1 Dec 2026 ---------------------------------------------------

@pytest.mark.parametrize(("at", "expected", "label", "orders"), [
    (ist(2026, 12, 1, 8, 59, 59), SessionState.CLOSED, "before pre-open", False),
    (ist(2026, 12, 1, 9, 0), SessionState.PRE_OPEN, "pre-open order entry", True),
    (ist(2026, 12, 1, 9, 7, 59), SessionState.PRE_OPEN, "pre-open order entry", True),
    (ist(2026, 12, 1, 9, 8), SessionState.PRE_OPEN, "pre-open matching (no new orders)", False),
    (ist(2026, 12, 1, 9, 14, 59), SessionState.PRE_OPEN, "pre-open matching (no new orders)",
     False),
    (ist(2026, 12, 1, 9, 15), SessionState.OPEN, "normal market", True),
    (ist(2026, 12, 1, 15, 29, 59), SessionState.OPEN, "normal market", True),
    (ist(2026, 12, 1, 15, 30), SessionState.CLOSED, "after close", False),
    (ist(2026, 12, 1, 23, 59, 59), SessionState.CLOSED, "after close", False),
])
def test_equity_day_boundaries(shipped: Calendar, at: datetime, expected: SessionState,
                               label: str, orders: bool) -> None:
    for segment in ("NSE_EQ", "BSE_EQ"):
        now = status(shipped, segment, at)
        assert (now.state, now.label, now.accepts_orders) == (expected, label, orders)
        assert is_open_for_orders(shipped, segment, at) is orders
        assert not now.provisional


def test_equity_next_open_and_close_around_the_day(shipped: Calendar) -> None:
    before = status(shipped, "NSE_EQ", ist(2026, 12, 1, 9, 0))
    assert (before.next_open, before.next_close) == (ist(2026, 12, 1, 9, 15),
                                                     ist(2026, 12, 1, 15, 30))
    during = status(shipped, "NSE_EQ", ist(2026, 12, 1, 9, 15))  # open: next open is tomorrow
    assert (during.next_open, during.next_close) == (ist(2026, 12, 2, 9, 15),
                                                     ist(2026, 12, 1, 15, 30))
    after = status(shipped, "NSE_EQ", ist(2026, 12, 1, 15, 30))
    assert (after.next_open, after.next_close) == (ist(2026, 12, 2, 9, 15),
                                                   ist(2026, 12, 2, 15, 30))


@pytest.mark.parametrize("segment", ["NSE_FNO", "BSE_FNO"])
def test_fno_has_no_pre_open(shipped: Calendar, segment: str) -> None:
    assert state(shipped, segment, ist(2026, 12, 1, 9, 5)) == (SessionState.CLOSED, "before open")
    assert not is_open_for_orders(shipped, segment, ist(2026, 12, 1, 9, 14, 59))
    assert state(shipped, segment, ist(2026, 12, 1, 9, 15))[0] is SessionState.OPEN
    assert state(shipped, segment, ist(2026, 12, 1, 15, 29, 59))[0] is SessionState.OPEN
    assert state(shipped, segment, ist(2026, 12, 1, 15, 30))[0] is SessionState.CLOSED


@pytest.mark.parametrize("segment", ["NSE_CURRENCY", "BSE_CURRENCY"])
def test_currency_hours(shipped: Calendar, segment: str) -> None:
    assert state(shipped, segment, ist(2026, 12, 1, 8, 59, 59))[0] is SessionState.CLOSED
    assert state(shipped, segment, ist(2026, 12, 1, 9, 0)) == (SessionState.OPEN,
                                                              "normal market")
    assert is_open_for_orders(shipped, segment, ist(2026, 12, 1, 16, 59, 59))
    assert state(shipped, segment, ist(2026, 12, 1, 17, 0)) == (SessionState.CLOSED,
                                                               "after close")
    assert status(shipped, segment, ist(2026, 12, 1, 17)).next_open == ist(2026, 12, 2, 9)


def test_currency_keeps_bank_holidays_the_equity_segments_do_not(shipped: Calendar) -> None:
    shivaji_jayanti = ist(2025, 2, 19, 11, 0)
    assert state(shipped, "NSE_CURRENCY", shivaji_jayanti) == (
        SessionState.HOLIDAY, "holiday: Chhatrapati Shivaji Maharaj Jayanti")
    assert state(shipped, "NSE_EQ", shivaji_jayanti)[0] is SessionState.OPEN


def test_times_in_any_zone_are_read_in_ist(shipped: Calendar) -> None:
    # 03:45 UTC is 09:15 IST; 10:00 UTC is 15:30 IST
    assert is_open_for_orders(shipped, "NSE_EQ", datetime(2026, 12, 1, 3, 45, tzinfo=UTC))
    assert not is_open_for_orders(shipped, "NSE_EQ", datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    assert status(shipped, "NSE_EQ", datetime(2026, 12, 1, 4, tzinfo=UTC)).at == ist(
        2026, 12, 1, 9, 30)


def test_a_naive_time_is_refused(shipped: Calendar) -> None:
    with pytest.raises(ValueError, match="aware"):
        status(shipped, "NSE_EQ", datetime(2026, 12, 1, 10, 0))


def test_an_unknown_segment_names_the_known_ones(shipped: Calendar) -> None:
    with pytest.raises(UnknownSegmentError, match="NSE_EQ, BSE_EQ, NSE_FNO") as caught:
        status(shipped, "NSE_FO", ist(2026, 12, 1, 10))
    assert "'NSE_FO'" in str(caught.value)


# ---- holidays and weekends ---------------------------------------------------------------

def test_an_equity_holiday(shipped: Calendar) -> None:
    for at in (ist(2026, 3, 3, 0, 0), ist(2026, 3, 3, 9, 15), ist(2026, 3, 3, 23, 59)):
        for segment in ("NSE_EQ", "BSE_EQ", "NSE_FNO", "BSE_FNO", "NSE_CURRENCY"):
            now = status(shipped, segment, at)
            assert (now.state, now.label) == (SessionState.HOLIDAY, "holiday: Holi")
            assert now.day.sessions == () and not now.accepts_orders
    assert status(shipped, "NSE_EQ", ist(2026, 3, 3, 10)).next_open == ist(2026, 3, 4, 9, 15)


def test_a_weekend(shipped: Calendar) -> None:
    saturday = ist(2026, 12, 5, 10, 0)
    for segment in SEGMENTS:
        assert state(shipped, segment, saturday) == (SessionState.CLOSED, "weekend")
        assert not is_open_for_orders(shipped, segment, saturday)
    now = status(shipped, "NSE_EQ", saturday)
    assert (now.next_open, now.next_close) == (ist(2026, 12, 7, 9, 15), ist(2026, 12, 7, 15, 30))


@pytest.mark.parametrize(("at", "segment", "expected"), [
    # Holi (Fri 14 Mar 2025) + weekend -> Monday
    (ist(2025, 3, 13, 15, 30), "NSE_EQ", ist(2025, 3, 17, 9, 15)),
    # Good Friday 2026 + weekend -> Monday 6 Apr
    (ist(2026, 4, 2, 16, 0), "NSE_FNO", ist(2026, 4, 6, 9, 15)),
    # Good Friday closes both MCX sessions: Thursday evening -> Monday morning
    (ist(2026, 4, 2, 23, 30), "MCX_COMM", ist(2026, 4, 6, 9, 0)),
    # Christmas 2026 is a Friday
    (ist(2026, 12, 24, 17, 0), "NSE_CURRENCY", ist(2026, 12, 28, 9, 0)),
])
def test_next_open_skips_holidays_and_weekends(shipped: Calendar, at: datetime, segment: str,
                                                expected: datetime) -> None:
    assert next_open(shipped, segment, at) == expected


# ---- Muhurat trading ---------------------------------------------------------------------

@pytest.mark.parametrize(("at", "expected", "label"), [
    (ist(2025, 10, 21, 10, 0), SessionState.HOLIDAY,
     "holiday: Diwali Laxmi Pujan; Muhurat trading only"),
    (ist(2025, 10, 21, 13, 29, 59), SessionState.HOLIDAY,
     "holiday: Diwali Laxmi Pujan; Muhurat trading only"),
    (ist(2025, 10, 21, 13, 30), SessionState.PRE_OPEN,
     "pre-open order entry, Muhurat trading"),
    (ist(2025, 10, 21, 13, 45), SessionState.OPEN, "Muhurat trading"),
    (ist(2025, 10, 21, 14, 44, 59), SessionState.OPEN, "Muhurat trading"),
    (ist(2025, 10, 21, 14, 45), SessionState.HOLIDAY,
     "holiday: Diwali Laxmi Pujan; Muhurat trading only"),
])
def test_muhurat_trading_2025(shipped: Calendar, at: datetime, expected: SessionState,
                              label: str) -> None:
    assert state(shipped, "NSE_EQ", at) == (expected, label)


def test_muhurat_day_next_open_and_close(shipped: Calendar) -> None:
    evening_before = status(shipped, "NSE_EQ", ist(2025, 10, 20, 15, 30))
    assert evening_before.next_open == ist(2025, 10, 21, 13, 45)  # the Muhurat hour
    assert evening_before.next_close == ist(2025, 10, 21, 14, 45)
    after = status(shipped, "NSE_FNO", ist(2025, 10, 21, 14, 45))
    assert after.next_open == ist(2025, 10, 23, 9, 15)  # 22 Oct is Balipratipada
    assert not status(shipped, "NSE_EQ", ist(2025, 10, 21, 14)).provisional
    assert status(shipped, "MCX_COMM", ist(2025, 10, 21, 14)).provisional  # assumed timing


def test_muhurat_2026_is_on_a_sunday_and_provisional(shipped: Calendar) -> None:
    assert state(shipped, "NSE_EQ", ist(2026, 11, 8, 12)) == (SessionState.CLOSED,
                                                             "weekend; Muhurat trading")
    during = status(shipped, "NSE_EQ", ist(2026, 11, 8, 18, 30))
    assert (during.state, during.provisional) == (SessionState.OPEN, True)
    assert status(shipped, "NSE_EQ", ist(2026, 11, 7, 12)).next_open == ist(2026, 11, 8, 18)


# ---- MCX ---------------------------------------------------------------------------------

def test_mcx_runs_morning_into_evening_on_a_regular_day(shipped: Calendar) -> None:
    assert state(shipped, "MCX_COMM", ist(2026, 12, 1, 8, 59, 59))[0] is SessionState.CLOSED
    assert state(shipped, "MCX_COMM", ist(2026, 12, 1, 9)) == (SessionState.OPEN,
                                                             "morning session")
    assert state(shipped, "MCX_COMM", ist(2026, 12, 1, 17)) == (SessionState.OPEN,
                                                              "evening session")
    assert state(shipped, "MCX_COMM", ist(2026, 12, 1, 23, 29, 59))[0] is SessionState.OPEN
    assert state(shipped, "MCX_COMM", ist(2026, 12, 1, 23, 30))[0] is SessionState.CLOSED
    assert next_close(shipped, "MCX_COMM", ist(2026, 12, 1, 10)) == ist(2026, 12, 1, 23, 30)


@pytest.mark.parametrize(("at", "expected", "label"), [
    (ist(2026, 3, 3, 9, 0), SessionState.HOLIDAY, "holiday: Holi; evening session only"),
    (ist(2026, 3, 3, 16, 59, 59), SessionState.HOLIDAY, "holiday: Holi; evening session only"),
    (ist(2026, 3, 3, 17, 0), SessionState.OPEN, "evening session (holiday: Holi)"),
    (ist(2026, 3, 3, 23, 29, 59), SessionState.OPEN, "evening session (holiday: Holi)"),
    (ist(2026, 3, 3, 23, 30), SessionState.HOLIDAY, "holiday: Holi; evening session only"),
])
def test_mcx_evening_only_on_an_equity_holiday(shipped: Calendar, at: datetime,
                                               expected: SessionState, label: str) -> None:
    assert state(shipped, "MCX_COMM", at) == (expected, label)
    assert state(shipped, "NSE_EQ", at)[0] is SessionState.HOLIDAY


def test_mcx_evening_day_next_open_and_close(shipped: Calendar) -> None:
    morning = status(shipped, "MCX_COMM", ist(2026, 3, 3, 10))
    assert (morning.next_open, morning.next_close) == (ist(2026, 3, 3, 17),
                                                       ist(2026, 3, 3, 23, 30))
    assert [s.label for s in morning.day.sessions] == ["evening session"]
    assert status(shipped, "MCX_COMM", ist(2026, 3, 3, 23, 30)).next_open == ist(2026, 3, 4, 9)


def test_mcx_morning_only_on_new_year_day(shipped: Calendar) -> None:
    assert state(shipped, "MCX_COMM", ist(2026, 1, 1, 16, 59))[0] is SessionState.OPEN
    assert state(shipped, "MCX_COMM", ist(2026, 1, 1, 17)) == (
        SessionState.HOLIDAY, "holiday: New Year Day; morning session only")
    assert next_close(shipped, "MCX_COMM", ist(2026, 1, 1, 10)) == ist(2026, 1, 1, 17)
    assert state(shipped, "NSE_EQ", ist(2026, 1, 1, 10))[0] is SessionState.OPEN


# ---- special sessions: Union Budget day ----------------------------------------------------

def test_budget_sunday_2026_opens_equity_fno_and_mcx_morning(shipped: Calendar) -> None:
    at = ist(2026, 2, 1, 10, 0)
    for segment in ("NSE_EQ", "BSE_EQ", "NSE_FNO", "BSE_FNO", "MCX_COMM"):
        assert state(shipped, segment, at) == (SessionState.OPEN, "Union Budget live trading")
    assert state(shipped, "NSE_CURRENCY", at) == (SessionState.CLOSED, "weekend")
    assert state(shipped, "MCX_COMM", ist(2026, 2, 1, 17)) == (
        SessionState.CLOSED, "weekend; Union Budget live trading")
    assert next_open(shipped, "NSE_EQ", ist(2026, 1, 30, 15, 30)) == ist(2026, 2, 1, 9, 15)


# ---- the calendar's end: fail closed ---------------------------------------------------

def test_the_last_covered_moment_and_the_first_past_it(shipped: Calendar) -> None:
    last = ist(2027, 12, 31, 23, 59, 59, 999999)
    final = status(shipped, "MCX_COMM", last)
    assert final.state is SessionState.CLOSED
    assert (final.next_open, final.next_close) == (None, None)  # unknown: past the calendar
    assert not is_open_for_orders(shipped, "NSE_EQ", last)
    first_past = last + ONE_US
    for call in (status, is_open_for_orders, next_open, next_close):
        with pytest.raises(CalendarExpiredError, match="valid through 2027-12-31"):
            call(shipped, "NSE_EQ", first_past)
    with pytest.raises(CalendarExpiredError):  # 18:30 UTC on the 31st is IST midnight
        is_open_for_orders(shipped, "NSE_EQ", datetime(2027, 12, 31, 18, 30, tzinfo=UTC))


def test_the_last_day_still_answers(shipped: Calendar) -> None:
    last_day = status(shipped, "NSE_EQ", ist(2027, 12, 31, 10))  # a Friday
    assert last_day.state is SessionState.OPEN
    assert last_day.next_close == ist(2027, 12, 31, 15, 30)
    assert last_day.next_open is None


def test_before_the_calendar_starts(shipped: Calendar) -> None:
    with pytest.raises(CalendarCoverageError, match="starts on 2025-01-01") as caught:
        status(shipped, "NSE_EQ", ist(2024, 12, 31, 10))
    assert not isinstance(caught.value, CalendarExpiredError)


@pytest.mark.parametrize(("now", "days", "expected"), [
    (ist(2027, 12, 1, 23, 59, 59), 30, False),
    (ist(2027, 12, 2, 0, 0), 30, True),  # exactly 30 days left
    (ist(2027, 12, 31, 12, 0), 1, True),
    (ist(2028, 3, 1, 0, 0), 30, True),  # already past
    (ist(2026, 11, 30, 0, 0), 30, False),
])
def test_expires_within(shipped: Calendar, now: datetime, days: int, expected: bool) -> None:
    assert expires_within(shipped, now, days) is expected


def test_provisional_days_are_marked(shipped: Calendar) -> None:
    assert not status(shipped, "NSE_EQ", ist(2026, 12, 1, 10)).provisional
    assert status(shipped, "NSE_EQ", ist(2027, 6, 1, 10)).provisional  # 2027: expected list
    assert status(shipped, "NSE_CURRENCY", ist(2026, 3, 19, 10)).provisional  # Gudhi Padwa


def test_days_are_built_once(shipped: Calendar) -> None:
    assert trading_day(shipped, "NSE_EQ", date(2026, 12, 1)) is trading_day(
        shipped, "NSE_EQ", date(2026, 12, 1))


# ---- the property: next open and next close are real transitions -------------------------

moments = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31, 23, 59),
                       timezones=st.just(IST))


@settings(max_examples=300, deadline=None)
@given(at=moments, segment=st.sampled_from(SEGMENTS))
def test_next_open_and_close_are_where_the_market_opens_and_closes(
        shipped: Calendar, at: datetime, segment: str) -> None:
    now = status(shipped, segment, at)
    assert now.accepts_orders is is_open_for_orders(shipped, segment, at)
    if now.next_open is not None:
        assert now.next_open > at
        assert status(shipped, segment, now.next_open).state is SessionState.OPEN
        assert status(shipped, segment, now.next_open - ONE_US).state is not SessionState.OPEN
    if now.next_close is not None:
        assert now.next_close > at
        assert status(shipped, segment, now.next_close).state is not SessionState.OPEN
        assert status(shipped, segment, now.next_close - ONE_US).state is SessionState.OPEN
        if now.state is SessionState.OPEN:  # open now: it closes before it opens again
            assert now.next_open is None or now.next_close < now.next_open
        else:
            assert now.next_open is not None and now.next_open < now.next_close


# ---- the shipped data --------------------------------------------------------------------

def test_the_shipped_file_covers_2025_to_2027_with_its_source(shipped: Calendar) -> None:
    assert tuple(shipped.segments) == SEGMENTS
    assert (shipped.valid_from, shipped.valid_through) == (date(2025, 1, 1), date(2027, 12, 31))
    assert "NSE/CMTR/65587" in shipped.source and "provisional" in shipped.source
    assert shipped.generated <= date(2027, 12, 31)


def test_nse_2025_holidays_are_the_published_ones(shipped: Calendar) -> None:
    published = {"2025-02-26", "2025-03-14", "2025-03-31", "2025-04-10", "2025-04-14",
                 "2025-04-18", "2025-05-01", "2025-08-15", "2025-08-27", "2025-10-02",
                 "2025-10-21", "2025-10-22", "2025-11-05", "2025-12-25"}
    assert {day.isoformat() for day in shipped.holidays["equity"][2025].days} == published


def test_every_holiday_is_a_weekday_and_every_2027_one_provisional(shipped: Calendar) -> None:
    for name, years in shipped.holidays.items():
        for year, listed in years.items():
            for holiday in listed.days.values():
                assert holiday.day.weekday() < 5, (name, holiday)
            assert listed.provisional is (year == 2027), (name, year)


def test_special_sessions_fall_on_holidays_weekends_or_budget_days(shipped: Calendar) -> None:
    for (segment, day), special in shipped.specials.items():
        holidays = shipped.holidays[shipped.segments[segment].holiday_list][day.year].days
        assert day in holidays or day.weekday() >= 5, (segment, special)


def test_the_currency_lists_hold_every_equity_holiday(shipped: Calendar) -> None:
    for year in (2025, 2026, 2027):
        equity = set(shipped.holidays["equity"][year].days)
        assert equity <= set(shipped.holidays["currency"][year].days)
        assert equity <= set(shipped.holidays["commodity"][year].days)


# ---- a fixture calendar: the mechanisms, apart from the shipped dates ----------------------

def fixture_data() -> dict[str, Any]:
    return {
        "source": "test fixture", "generated": "2029-12-01",
        "valid_from": "2030-01-01", "valid_through": "2030-01-31",
        "segments": {
            "NSE_EQ": {"holidays": "equity", "sessions": [
                {"kind": "pre_open", "start": "09:00", "end": "09:08"},
                {"kind": "pre_open_matching", "start": "09:08", "end": "09:15"},
                {"kind": "open", "start": "09:15", "end": "15:30"}]},
            "MCX_COMM": {"holidays": "commodity", "sessions": [
                {"part": "morning", "kind": "open", "start": "09:00", "end": "17:00"},
                {"part": "evening", "kind": "open", "start": "17:00", "end": "23:30"}]},
        },
        "holidays": {
            "equity": {"2030": {"provisional": False, "days": [
                {"date": "2030-01-14", "name": "Makar Sankranti"}]}},
            "commodity": {"2030": {"provisional": False, "days": [
                {"date": "2030-01-14", "name": "Makar Sankranti", "closed": ["morning"]}]}},
        },
        "special_sessions": [
            {"date": "2030-01-19", "name": "special live trading session", "segments": {
                "NSE_EQ": [{"kind": "open", "start": "10:00", "end": "11:00"}]}},
            {"date": "2030-01-22", "name": "shortened day", "provisional": True, "segments": {
                "NSE_EQ": [{"kind": "open", "start": "09:15", "end": "13:00"}]}},
        ],
    }


@pytest.fixture
def fixture_calendar() -> Calendar:
    return parse_calendar(fixture_data())


def test_a_special_saturday_session(fixture_calendar: Calendar) -> None:
    saturday = date(2030, 1, 19)
    assert saturday.weekday() == 5
    assert state(fixture_calendar, "NSE_EQ", ist(2030, 1, 19, 9, 59, 59)) == (
        SessionState.CLOSED, "weekend; special live trading session")
    assert state(fixture_calendar, "NSE_EQ", ist(2030, 1, 19, 10)) == (
        SessionState.OPEN, "special live trading session")
    assert not is_open_for_orders(fixture_calendar, "NSE_EQ", ist(2030, 1, 19, 11))
    assert state(fixture_calendar, "MCX_COMM", ist(2030, 1, 19, 10)) == (SessionState.CLOSED,
                                                                         "weekend")
    friday_close = ist(2030, 1, 18, 15, 30)
    assert next_open(fixture_calendar, "NSE_EQ", friday_close) == ist(2030, 1, 19, 10)
    assert next_close(fixture_calendar, "NSE_EQ", friday_close) == ist(2030, 1, 19, 11)


def test_a_special_session_replaces_a_weekdays_hours(fixture_calendar: Calendar) -> None:
    assert state(fixture_calendar, "NSE_EQ", ist(2030, 1, 22, 9, 5)) == (SessionState.CLOSED,
                                                                        "before open")
    short = status(fixture_calendar, "NSE_EQ", ist(2030, 1, 22, 12, 59))
    assert (short.state, short.next_close, short.provisional) == (
        SessionState.OPEN, ist(2030, 1, 22, 13), True)
    assert state(fixture_calendar, "NSE_EQ", ist(2030, 1, 22, 13))[1] == "after close"


def test_the_fixtures_validity_end(fixture_calendar: Calendar) -> None:
    assert status(fixture_calendar, "NSE_EQ", ist(2030, 1, 31, 15, 29)).next_open is None
    with pytest.raises(CalendarExpiredError, match="2030-01-31"):
        status(fixture_calendar, "NSE_EQ", ist(2030, 2, 1))
    assert expires_within(fixture_calendar, ist(2030, 1, 2), 30)


# ---- the loader refuses what does not make sense ------------------------------------------

def broken(change) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    data = copy.deepcopy(fixture_data())
    change(data)
    return data


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("valid_through"), "valid_through"),
    (lambda d: d.update(valid_through="2030-13-01"), "not a date"),
    (lambda d: d.update(valid_through="2029-12-31"), "before valid_from"),
    (lambda d: d["segments"]["NSE_EQ"]["sessions"][2].update(start="9h15"), "not a time"),
    (lambda d: d["segments"]["NSE_EQ"]["sessions"][2].update(end="09:00"), "start must be"),
    (lambda d: d["segments"]["NSE_EQ"]["sessions"][0].update(kind="auction"), "not one of"),
    (lambda d: d["segments"]["NSE_EQ"]["sessions"][1].update(start="09:05"), "overlap"),
    (lambda d: d["segments"]["NSE_EQ"].update(holidays="nope"), "no holiday list"),
    (lambda d: d["segments"]["NSE_EQ"].update(sessions=[]), "no session"),
    (lambda d: d["holidays"]["equity"]["2030"]["days"].append(
        {"date": "2030-01-14", "name": "again"}), "listed twice"),
    (lambda d: d["holidays"]["equity"]["2030"]["days"].append(
        {"date": "2031-01-02", "name": "x"}), "not in 2030"),
    (lambda d: d["holidays"]["commodity"]["2030"]["days"][0].update(closed=["night"]),
     "does not have"),
    (lambda d: d["holidays"]["equity"].pop("2030"), "no entry for 2030"),
    (lambda d: d["special_sessions"][0]["segments"].update(NSE_XX=[]), "unknown segment"),
    (lambda d: d["special_sessions"][0].update(date="2030-02-02"), "outside"),
    (lambda d: d["holidays"]["equity"]["2030"].update(provisional="yes"), "true or false"),
    (lambda d: d.update(segments={}), "none given"),
])
def test_a_bad_calendar_is_refused_with_the_entry_named(change, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CalendarDataError, match=message):
        parse_calendar(broken(change))


def test_the_file_can_be_overridden_by_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "calendar.json"
    path.write_text(json.dumps(fixture_data()), encoding="utf-8")
    monkeypatch.setenv(CALENDAR_FILE_ENV, str(path))
    calendar = load_calendar()
    assert (calendar.valid_through, calendar.origin) == (date(2030, 1, 31), path)
    monkeypatch.delenv(CALENDAR_FILE_ENV)
    assert load_calendar().valid_through == date(2027, 12, 31)


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ("[]", "must be an object"),
    (b"\xff\xfe", "cannot be read"),
    (None, "cannot be read"),  # no file at all
])
def test_an_unreadable_file_is_one_data_error(tmp_path: Path, content: str | bytes | None,
                                              message: str) -> None:
    path = tmp_path / "calendar.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(CalendarDataError, match=message) as caught:
        load_calendar(path)
    assert str(path) in str(caught.value)
