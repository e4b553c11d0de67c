"""Times for `--since/--until`: ISO 8601 date-times (naive = IST), IST clock times meaning
today, today/yesterday (with or without a clock time) and ages (30m, 2h); everything else a
one-line ValueError naming the accepted forms."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest
import pytz
from freezegun import freeze_time
from hypothesis import given
from hypothesis import strategies as st

from copytrade.core.timeparse import ACCEPTED_FORMS, IST, parse_time, parse_window

# 20:00 IST on the 25th is 14:30 UTC; 02:00 IST on the 26th is still the 25th in UTC.
NOW = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)
AFTER_MIDNIGHT_IST = datetime(2026, 11, 25, 20, 30, tzinfo=UTC)


def ist(*args: int) -> datetime:
    return datetime(*args, tzinfo=IST)


@pytest.mark.parametrize(("text", "expected"), [
    ("09:15", ist(2026, 11, 25, 9, 15)),
    ("9:15", ist(2026, 11, 25, 9, 15)),
    ("09:15:30", ist(2026, 11, 25, 9, 15, 30)),
    ("  15:29:59 ", ist(2026, 11, 25, 15, 29, 59)),
    ("00:00", ist(2026, 11, 25, 0, 0)),
    ("23:59:59", ist(2026, 11, 25, 23, 59, 59)),
    ("2026-11-24T09:15:00", ist(2026, 11, 24, 9, 15)),
    ("2026-11-24 09:15", ist(2026, 11, 24, 9, 15)),
    ("2026-11-24T09:15:00.250000", ist(2026, 11, 24, 9, 15, 0, 250000)),
    ("2026-11-24T03:45:00Z", ist(2026, 11, 24, 9, 15)),
    ("2026-11-24T03:45:00+00:00", ist(2026, 11, 24, 9, 15)),
    ("2026-11-24T09:15:00+05:30", ist(2026, 11, 24, 9, 15)),
    ("2026-11-23T22:45:00-05:00", ist(2026, 11, 24, 9, 15)),
    ("20261124T091500", ist(2026, 11, 24, 9, 15)),
])
def test_accepted_forms(text: str, expected: datetime) -> None:
    parsed = parse_time(text, now=NOW)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(hours=5, minutes=30)


def test_a_clock_time_is_today_in_ist_not_today_in_utc() -> None:
    assert parse_time("01:00", now=AFTER_MIDNIGHT_IST) == ist(2026, 11, 26, 1, 0)
    # the same instant seen from another zone: still the IST day
    elsewhere = AFTER_MIDNIGHT_IST.astimezone(timezone(timedelta(hours=-8)))
    assert parse_time("01:00", now=elsewhere) == ist(2026, 11, 26, 1, 0)


def test_naive_means_ist_like_pytz_asia_kolkata() -> None:
    kolkata = pytz.timezone("Asia/Kolkata")
    assert parse_time("2026-06-01T12:00:00", now=NOW) == kolkata.localize(
        datetime(2026, 6, 1, 12, 0))


@pytest.mark.parametrize("text", [
    "", " ", "now", "2026-11-25", "20261125", "24:00", "10:60", "10:00:60",
    "1:2", "10:00:00:00", "10h15", "-01:00", "2026-11-25T25:00", "2026-13-01T10:00",
    "2026-11-25T09:15:00+25:00", "09:15 IST", "1732526100", "2026-11-25T09:15\n00:00",
])
def test_everything_else_is_one_line_naming_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_time(text, now=NOW)
    message = str(error.value)
    assert "\n" not in message
    assert message.endswith(ACCEPTED_FORMS)
    assert "HH:MM" in message and "ISO 8601" in message


# ---- relative forms ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("today", ist(2026, 11, 25, 0, 0)),
    ("Today", ist(2026, 11, 25, 0, 0)),
    ("yesterday", ist(2026, 11, 24, 0, 0)),
    ("today 09:15", ist(2026, 11, 25, 9, 15)),
    ("today   9:15:30", ist(2026, 11, 25, 9, 15, 30)),
    ("yesterday 15:00", ist(2026, 11, 24, 15, 0)),
    ("YESTERDAY 23:59:59", ist(2026, 11, 24, 23, 59, 59)),
    ("90s", ist(2026, 11, 25, 19, 58, 30)),
    ("30m", ist(2026, 11, 25, 19, 30)),
    ("30M", ist(2026, 11, 25, 19, 30)),
    ("2h", ist(2026, 11, 25, 18, 0)),
    ("1d", ist(2026, 11, 24, 20, 0)),
    ("0s", ist(2026, 11, 25, 20, 0)),
])
def test_relative_forms(text: str, expected: datetime) -> None:
    parsed = parse_time(text, now=NOW)  # NOW is 20:00 IST on the 25th
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(hours=5, minutes=30)


def test_today_is_the_ist_day_even_when_utc_is_still_on_the_day_before() -> None:
    # 02:00 IST on the 26th is 20:30 UTC on the 25th
    assert parse_time("today", now=AFTER_MIDNIGHT_IST) == ist(2026, 11, 26, 0, 0)
    assert parse_time("yesterday 15:00", now=AFTER_MIDNIGHT_IST) == ist(2026, 11, 25, 15, 0)
    elsewhere = AFTER_MIDNIGHT_IST.astimezone(timezone(timedelta(hours=-8)))
    assert parse_time("today", now=elsewhere) == ist(2026, 11, 26, 0, 0)


def test_yesterday_crosses_a_month_and_a_year() -> None:
    new_year = datetime(2027, 1, 1, 0, 30, tzinfo=IST)
    assert parse_time("yesterday 09:15", now=new_year) == ist(2026, 12, 31, 9, 15)


def test_an_age_counts_back_from_the_injected_clock() -> None:
    with freeze_time("2030-01-01 00:00:00"):  # the wall clock is not what counts
        assert parse_time("2h", now=NOW) == ist(2026, 11, 25, 18, 0)


@pytest.mark.parametrize("text", [
    "today 25:00", "yesterday 15", "yesterday 15:00 IST", "today09:15", "tomorrow",
    "today yesterday", "30", "m", "30 m", "-30m", "+30m", "1.5h", "30min", "2w", "1h30m",
    "1e3s", "\u0663\u0660m", "30m ago", "today\n09:15x", "\ud800", "x" * 10_000,
])
def test_hostile_relative_forms_are_one_line_naming_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_time(text, now=NOW)
    message = str(error.value)
    assert "\n" not in message and len(message) < 600
    assert message.endswith(ACCEPTED_FORMS)


def test_an_age_beyond_the_calendar_is_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_time("9999999d", now=NOW)


def test_a_relative_window() -> None:
    assert parse_window("yesterday 15:00", "today", now=NOW) == (
        ist(2026, 11, 24, 15, 0), ist(2026, 11, 25, 0, 0))
    assert parse_window("30m", None, now=NOW) == (ist(2026, 11, 25, 19, 30),
                                                  ist(2026, 11, 25, 20, 0))
    with pytest.raises(ValueError, match="before now"):
        parse_window("0s", None, now=NOW)


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_time("09:15", now=datetime(2026, 11, 25, 12, 0))


def test_window_until_defaults_to_now() -> None:
    assert parse_window("09:15", None, now=NOW) == (ist(2026, 11, 25, 9, 15),
                                                    ist(2026, 11, 25, 20, 0))


def test_window_with_both_ends() -> None:
    assert parse_window("2026-11-24T09:15:00", "10:00", now=NOW) == (
        ist(2026, 11, 24, 9, 15), ist(2026, 11, 25, 10, 0))


@pytest.mark.parametrize(("since", "until", "words"), [
    ("10:00", "10:00", "before until"),
    ("10:00", "09:59:59", "before until"),
    ("21:00", None, "before now"),  # later today than now
])
def test_since_must_be_before_until(since: str, until: str | None, words: str) -> None:
    with pytest.raises(ValueError, match=words) as error:
        parse_window(since, until, now=NOW)
    assert "\n" not in str(error.value)


def test_a_bad_until_is_reported_too() -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_window("09:15", "soon", now=NOW)


# ---- round trips ------------------------------------------------------------------------

offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))
moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31))
nows = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31),
                    timezones=offsets)


@given(moment=moments, zone=offsets, now=nows, separator=st.sampled_from(["T", " "]))
def test_an_aware_date_time_round_trips(moment: datetime, zone: timezone, now: datetime,
                                        separator: str) -> None:
    aware = moment.replace(tzinfo=zone)
    parsed = parse_time(aware.isoformat(sep=separator), now=now)
    assert parsed == aware  # the same instant
    assert parsed.utcoffset() == timedelta(hours=5, minutes=30)
    assert parse_time(parsed.isoformat(), now=now) == parsed


@given(moment=moments, now=nows)
def test_a_naive_date_time_is_read_as_ist(moment: datetime, now: datetime) -> None:
    parsed = parse_time(moment.isoformat(), now=now)
    assert parsed == moment.replace(tzinfo=IST)
    assert parsed.replace(tzinfo=None) == moment


@given(clock=st.times(), now=nows, with_seconds=st.booleans())
def test_a_clock_time_round_trips_as_today_in_ist(clock: time, now: datetime,
                                                  with_seconds: bool) -> None:
    text = clock.strftime("%H:%M:%S" if with_seconds else "%H:%M")
    parsed = parse_time(text, now=now)
    assert parsed.date() == now.astimezone(IST).date()
    expected = clock.replace(microsecond=0) if with_seconds else clock.replace(
        second=0, microsecond=0)
    assert parsed.timetz() == expected.replace(tzinfo=IST)
    assert parsed.strftime("%H:%M:%S" if with_seconds else "%H:%M") == text


@given(since=moments, gap=st.integers(min_value=1, max_value=10**7), now=nows)
def test_a_window_keeps_its_order(since: datetime, gap: int, now: datetime) -> None:
    until = since + timedelta(seconds=gap)
    assert parse_window(since.isoformat(), until.isoformat(), now=now) == (
        since.replace(tzinfo=IST), until.replace(tzinfo=IST))
    with pytest.raises(ValueError, match="must be before"):
        parse_window(until.isoformat(), since.isoformat(), now=now)
