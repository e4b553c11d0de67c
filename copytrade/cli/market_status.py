"""`copytrade market-status`: is each exchange segment in pre-open, open, closed or on
holiday now (or at --at TIME), with today's sessions and the next open and close, in IST.
The work is copytrade.core.calendar.status on the shipped trading calendar; this parses,
picks the segments and renders."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from copytrade.errors import CalendarError, UsageError

if TYPE_CHECKING:
    from copytrade.core.calendar import Calendar, SegmentStatus


def market_status(
    at: Annotated[str | None, typer.Option(
        "--at", metavar="TIME", show_default=False,
        help="Show the state at TIME instead of now: an ISO 8601 date-time "
        "(2026-12-01T09:10:00, IST unless it has an offset) or an IST clock time HH:MM or "
        "HH:MM:SS meaning today.")] = None,
    segment: Annotated[str | None, typer.Option(
        "--segment", metavar="SEG", show_default=False,
        help="Only this segment: NSE_EQ, BSE_EQ, NSE_FNO, BSE_FNO, NSE_CURRENCY, "
        "BSE_CURRENCY or MCX_COMM (default: every one).")] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print JSON (times in ISO 8601 with their +05:30 offset).")] = False,
) -> None:
    """Show whether each segment is in pre-open, open, closed or on holiday, in IST.

    For NSE and BSE equity and F&O, currency and MCX: the state now (or at --at), why
    (normal market, weekend, holiday: Holi, Muhurat trading, MCX's evening session), today's
    sessions, and the next open and close of the normal market. Exit 13 past the trading
    calendar's valid-through date; 2 for a TIME or segment it cannot read.
    """
    from copytrade.cli import market_render as render

    now = datetime.now(UTC)
    moment = _moment(at, now)
    calendar = _calendar()
    names = _segments(calendar, segment)
    statuses = _statuses(calendar, names, moment)
    if json_output:
        typer.echo(json.dumps(render.as_json(calendar, statuses, now), indent=2,
                              ensure_ascii=False))
        return
    from rich.console import Console

    console = Console(highlight=False)
    typer.echo(render.heading(moment))
    if console.is_terminal:
        console.print(render.table(statuses))
    else:
        typer.echo(render.plain(statuses))
    for line in render.footer(calendar, statuses, now):
        typer.echo(line)


def _moment(text: str | None, now: datetime) -> datetime:
    from copytrade.core.timeparse import parse_time

    if text is None:
        return now
    try:
        return parse_time(text, now=now)
    except ValueError as exc:
        raise UsageError(f"--at: {exc}") from None


def _calendar() -> Calendar:
    from copytrade.core.calendar import CalendarDataError, load_calendar

    try:
        return load_calendar()
    except CalendarDataError as exc:
        raise CalendarError(f"the trading calendar cannot be used: {exc}") from None


def _segments(calendar: Calendar, wanted: str | None) -> list[str]:
    if wanted is None:
        return list(calendar.segments)
    name = wanted.strip().upper()
    if name not in calendar.segments:
        raise UsageError(f"--segment: unknown segment {wanted!r}: use one of "
                         f"{', '.join(calendar.segments)}")
    return [name]


def _statuses(calendar: Calendar, names: list[str], moment: datetime) -> list[SegmentStatus]:
    from copytrade.core.calendar import CalendarCoverageError, CalendarExpiredError, status

    try:
        return [status(calendar, name, moment) for name in names]
    except CalendarExpiredError as exc:
        raise CalendarError(f"{exc}: nothing is known past it; a newer copytrade ships a "
                            "newer calendar") from None
    except CalendarCoverageError as exc:
        raise CalendarError(str(exc)) from None
