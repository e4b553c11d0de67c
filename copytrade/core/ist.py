"""Times as copytrade shows them: IST (Asia/Kolkata, UTC+05:30 all year), labelled.

Every time printed to an operator goes through here, so none is shown in UTC or unlabelled.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

IST = timezone(timedelta(hours=5, minutes=30), "IST")


def to_ist(moment: datetime) -> datetime:
    """An aware time in IST; a naive one is taken as UTC (how the store keeps times)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(IST)


def ist_text(moment: datetime | None, *, seconds: bool = True, millis: bool = False) -> str:
    """`2026-11-30 09:15:02 IST`; "" for no time."""
    if moment is None:
        return ""
    local = to_ist(moment)
    if millis:
        return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} IST"
    return f"{local:%Y-%m-%d %H:%M:%S} IST" if seconds else f"{local:%Y-%m-%d %H:%M} IST"


def ist_clock(moment: datetime | None) -> str:
    """`09:15:02 IST`: a time of today, for live lines; "" for no time."""
    return f"{to_ist(moment):%H:%M:%S} IST" if moment is not None else ""


def ist_today(now: datetime) -> date:
    """The IST calendar day of an aware (or UTC-naive) time: copytrade's trading date."""
    return to_ist(now).date()
