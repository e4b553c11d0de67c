"""Times an operator types (`replay-missed --since/--until`) -> aware datetimes. Pure: the
clock is passed in.

Accepted: an ISO 8601 date-time, with an offset (`2026-11-25T09:15:00+05:30`, `...Z`) or
without one, which then means IST; or a plain IST clock time `HH:MM` / `HH:MM:SS`, which
means that time today in IST. Anything else is a ValueError with a one-line message
naming these forms. IST (Asia/Kolkata) is UTC+05:30 all year: no daylight saving.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

IST = timezone(timedelta(hours=5, minutes=30), "IST")
ACCEPTED_FORMS = ("an ISO 8601 date-time (2026-11-25T09:15:00, IST unless it has an offset "
                  "such as +05:30 or Z) or an IST clock time HH:MM or HH:MM:SS (today)")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def parse_time(text: str, *, now: datetime) -> datetime:
    """`text` as an aware datetime in IST; `now` (aware) says which day "today" is."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    value = text.strip()
    clock = _CLOCK.fullmatch(value)
    if clock:
        hour, minute, second = (int(part or 0) for part in clock.groups())
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"{_short(text)} is not a clock time: use {ACCEPTED_FORMS}")
        today = now.astimezone(IST).date()
        return datetime.combine(today, time(hour, minute, second), tzinfo=IST)
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


def _is_date_only(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _short(text: str) -> str:
    one_line = " ".join(text.split())
    return repr(one_line if len(one_line) <= 40 else one_line[:37] + "...")
