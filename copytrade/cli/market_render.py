"""What `copytrade market-status` shows: pure functions of the statuses, in IST. Rich is
imported only by the function that builds a Rich table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from copytrade.core.ist import ist_text, to_ist

if TYPE_CHECKING:
    from rich.table import Table

    from copytrade.core.calendar import Calendar, SegmentStatus, Session

HEADER = ("segment", "state", "why", "today (IST)", "next open", "next close")
STATE_STYLES = {"open": "green", "pre-open": "yellow", "closed": "dim", "holiday": "magenta"}
EXPIRY_WARNING_DAYS = 30
PROVISIONAL_MARK = "*"
_WRAPPING_COLUMNS = {2: 1}  # only "why" wraps: a session span per line never does


def heading(at: datetime) -> str:
    return f"market status at {ist_text(at)}; every time below is IST"


def rows(statuses: Sequence[SegmentStatus], *, multiline: bool = False
         ) -> list[tuple[str, ...]]:
    return [(status.segment,
             status.state.value + (PROVISIONAL_MARK if status.provisional else ""),
             status.label,
             ("\n" if multiline else ", ").join(session_spans(status.day.sessions)) or "none",
             when(status.next_open, status.at), when(status.next_close, status.at))
            for status in statuses]


def session_spans(sessions: Sequence[Session]) -> list[str]:
    """`pre 09:00`, `09:15-15:30`: a pre-open (entry and matching) that runs into the
    market shows its start only; adjacent sessions are joined (MCX: 09:00-23:30)."""
    spans: list[tuple[bool, datetime, datetime]] = []
    for session in sessions:
        pre = session.kind.value != "open"
        if spans and spans[-1][0] == pre and spans[-1][2] == session.start:
            spans[-1] = (pre, spans[-1][1], session.end)
        else:
            spans.append((pre, session.start, session.end))
    texts = []
    for index, (pre, start, end) in enumerate(spans):
        runs_in = index + 1 < len(spans) and spans[index + 1][1] == end
        if pre and runs_in:
            texts.append(f"pre {start:%H:%M}")
        else:
            texts.append(("pre " if pre else "") + f"{start:%H:%M}-{end:%H:%M}")
    return texts


def when(moment: datetime | None, at: datetime) -> str:
    """In IST: `15:30` the same day, `Wed 09:15` within the week, else `2026-12-09 09:15`."""
    if moment is None:
        return "unknown"  # past the calendar's valid-through date
    local, base = to_ist(moment), to_ist(at)
    if local.date() == base.date():
        return f"{local:%H:%M}"
    if local.date() - base.date() < timedelta(days=7):
        return f"{local:%a %H:%M}"
    return f"{local:%Y-%m-%d %H:%M}"


def table(statuses: Sequence[SegmentStatus]) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # No vertical rules: six columns still read at 80 columns.
    grid = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, expand=True)
    for index, title in enumerate(HEADER):
        ratio = _WRAPPING_COLUMNS.get(index)
        grid.add_column(title, overflow="fold", no_wrap=ratio is None, ratio=ratio)
    for status, row in zip(statuses, rows(statuses, multiline=True), strict=True):
        style = STATE_STYLES.get(status.state.value, "")
        grid.add_row(*(Text(cell, style=style if column == 1 else "")
                       for column, cell in enumerate(row)))
    return grid


def plain(statuses: Sequence[SegmentStatus]) -> str:
    """Aligned columns, no box or colour: for pipes, logs and cron mail."""
    all_rows = [HEADER, *rows(statuses)]
    widths = [max(len(cell) for cell in column) for column in zip(*all_rows, strict=True)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     .rstrip() for row in all_rows)


def footer(calendar: Calendar, statuses: Sequence[SegmentStatus], now: datetime) -> list[str]:
    lines = [f"calendar valid through {calendar.valid_through} (IST)"]
    if any(status.provisional for status in statuses):
        lines.append(f"{PROVISIONAL_MARK} provisional: this day is built on an expected date "
                     "or timing, not a published one")
    left = days_left(calendar, now)
    if left <= EXPIRY_WARNING_DAYS:
        lines.append(f"warning: the trading calendar runs out after {calendar.valid_through} "
                     f"({left} day(s) left): update copytrade for a newer one")
    return lines


def days_left(calendar: Calendar, now: datetime) -> int:
    """Whole days from `now` until the calendar's end (0 on its last day)."""
    return max(0, (calendar.ends - to_ist(now)).days)


def as_json(calendar: Calendar, statuses: Sequence[SegmentStatus], now: datetime
            ) -> dict[str, Any]:
    return {
        "at": statuses[0].at.isoformat() if statuses else None,
        "timezone": "IST (UTC+05:30)",
        "calendar": {"source": calendar.source, "generated": calendar.generated.isoformat(),
                     "valid_through": calendar.valid_through.isoformat(),
                     "days_left": days_left(calendar, now)},
        "segments": [_status_json(status) for status in statuses],
    }


def _status_json(status: SegmentStatus) -> dict[str, Any]:
    day = status.day
    return {
        "segment": status.segment,
        "state": status.state.value,
        "label": status.label,
        "accepts_orders": status.accepts_orders,
        "provisional": status.provisional,
        "holiday": day.holiday.name if day.holiday else None,
        "special_session": day.special.name if day.special else None,
        "sessions": [{"kind": s.kind.value, "label": s.label, "start": s.start.isoformat(),
                      "end": s.end.isoformat()} for s in day.sessions],
        "next_open": status.next_open.isoformat() if status.next_open else None,
        "next_close": status.next_close.isoformat() if status.next_close else None,
    }
