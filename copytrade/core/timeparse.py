"""Times an operator types (`--since/--until`) -> aware datetimes in IST. Pure: the clock
is passed in.

Accepted:
- an ISO 8601 date-time, with an offset (`2026-11-25T09:15:00+05:30`, `...Z`) or without
  one, which then means IST;
- a plain IST clock time `HH:MM` / `HH:MM:SS`: that time today in IST;
- `today` / `yesterday`: 00:00 IST that day, or with a clock time (`yesterday 15:00`);
- an age `90s`, `30m`, `2h`, `1d`: that long before now.
Anything else is a ValueError with a one-line message naming these forms. IST
(Asia/Kolkata) is UTC+05:30 all year: no daylight saving.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from copytrade.core.ist import IST

__all__ = ["ACCEPTED_FORMS", "IST", "parse_time", "parse_window"]

ACCEPTED_FORMS = ("an ISO 8601 date-time (2026-11-25T09:15:00, IST unless it has an offset "
                  "such as +05:30 or Z), an IST clock time HH:MM or HH:MM:SS (today), "
                  "today or yesterday (00:00 IST, or with a clock time: yesterday 15:00), "
                  "or an age such as 90s, 30m, 2h or 1d (that long ago)")
# ASCII digits only: `\d` would take other scripts' digits, which int() then reads.
_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?")
_DAY = re.compile(r"(today|yesterday)(?:\s+(\S+))?", re.IGNORECASE)
_AGE = re.compile(r"([0-9]{1,7})([smhd])", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DAYS_BACK = {"today": 0, "yesterday": 1}


def parse_time(text: str, *, now: datetime) -> datetime:
    """`text` as an aware datetime in IST; `now` (aware) says which day "today" is and
    what an age counts back from."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    value = text.strip()
    today = now.astimezone(IST).date()
    if _CLOCK.fullmatch(value):
        return _on_day(today, value, text)
    day = _DAY.fullmatch(value)
    if day:
        which = today - timedelta(days=_DAYS_BACK[day.group(1).lower()])
        clock = day.group(2)
        if clock is None:
            return datetime.combine(which, time(0), tzinfo=IST)
        if not _CLOCK.fullmatch(clock):
            raise ValueError(f"{_short(text)}: {day.group(1).lower()} takes a clock time "
                             f"HH:MM or HH:MM:SS; use {ACCEPTED_FORMS}")
        return _on_day(which, clock, text)
    age = _AGE.fullmatch(value)
    if age:
        return _ago(int(age.group(1)), age.group(2).lower(), now, text)
    return _iso(value, text)


def parse_window(since: str, until: str | None, *, now: datetime) -> tuple[datetime, datetime]:
    """[since, until] as aware IST datetimes; `until` defaults to `now`. since must be
    before until."""
    start = parse_time(since, now=now)
    end = parse_time(until, now=now) if until is not None else now.astimezone(IST)
    if start >= end:
        end_text = "until" if until is not None else "now"
        raise ValueError(f"since ({start:%Y-%m-%d %H:%M:%S} IST) must be before {end_text} "
                         f"({end:%Y-%m-%d %H:%M:%S} IST)")
    return start, end


def _on_day(day: date, clock_text: str, text: str) -> datetime:
    match = _CLOCK.fullmatch(clock_text)
    assert match is not None
    hour, minute, second = (int(part or 0) for part in match.groups())
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"{_short(text)} is not a clock time: use {ACCEPTED_FORMS}")
    return datetime.combine(day, time(hour, minute, second), tzinfo=IST)


def _ago(count: int, unit: str, now: datetime, text: str) -> datetime:
    try:
        return (now - timedelta(seconds=count * _UNIT_SECONDS[unit])).astimezone(IST)
    except OverflowError:
        raise ValueError(f"the time {_short(text)} is out of range") from None


def _iso(value: str, text: str) -> datetime:
    if _is_date_only(value):
        raise ValueError(f"{_short(text)} is a date without a time: use {ACCEPTED_FORMS}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"cannot read the time {_short(text)}: use {ACCEPTED_FORMS}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=IST)
    try:
        return moment.astimezone(IST)
    except OverflowError:
        raise ValueError(f"the time {_short(text)} is out of range") from None


def _is_date_only(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _short(text: str) -> str:
    one_line = " ".join(text.split())
    return repr(one_line if len(one_line) <= 40 else one_line[:37] + "...")
