"""India's exchange trading calendar: when each segment (NSE_EQ, MCX_COMM, ...) is in
pre-open, open, closed or on holiday, and when it next opens and closes. All in IST.

Pure: every function takes the Calendar (load it once with `load_calendar()`, from
copytrade/data/trading_calendar.json; see calendar_data) and an aware datetime. A time
outside the calendar's dates raises: past `valid_through` it is CalendarExpiredError, so a
caller fails closed instead of guessing. Sessions are half-open, [start, end): 09:15:00
is open, 15:30:00 is closed. Each segment's day is built once per Calendar and kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path

from copytrade.core.ist import IST


class CalendarDataError(ValueError):
    """The calendar file cannot be read or does not make sense."""


class CalendarCoverageError(ValueError):
    """The time asked is outside the dates the calendar covers."""


class CalendarExpiredError(CalendarCoverageError):
    """The time asked is past the calendar's valid-through date: nothing is known there."""


class UnknownSegmentError(ValueError):
    """A segment the calendar does not have."""


class SessionState(StrEnum):
    PRE_OPEN = "pre-open"
    OPEN = "open"
    CLOSED = "closed"
    HOLIDAY = "holiday"


class SessionKind(StrEnum):
    PRE_OPEN = "pre_open"  # order entry (equity call auction)
    PRE_OPEN_MATCHING = "pre_open_matching"  # orders matched, none entered
    OPEN = "open"  # the normal (continuous) market


ORDER_KINDS = frozenset({SessionKind.PRE_OPEN, SessionKind.OPEN})
_KIND_LABELS = {SessionKind.PRE_OPEN: "pre-open order entry",
                SessionKind.PRE_OPEN_MATCHING: "pre-open matching (no new orders)"}
_PART_LABELS = {"day": "normal market", "morning": "morning session",
                "evening": "evening session"}


@dataclass(frozen=True)
class SessionSpec:
    kind: SessionKind
    start: time
    end: time
    part: str = "day"


@dataclass(frozen=True)
class SegmentSpec:
    name: str
    description: str
    holiday_list: str
    sessions: tuple[SessionSpec, ...]

    @property
    def parts(self) -> frozenset[str]:
        return frozenset(spec.part for spec in self.sessions)


@dataclass(frozen=True)
class Holiday:
    day: date
    name: str
    closed_parts: frozenset[str] | None = None  # None: every session closed
    provisional: bool = False
    note: str = ""


@dataclass(frozen=True)
class SpecialDay:
    """A session the exchange announced for one day (Muhurat, Budget day): it replaces the
    segment's sessions that day, holiday or weekend alike."""

    day: date
    name: str
    sessions: tuple[SessionSpec, ...]
    provisional: bool = False
    source: str = ""


@dataclass(frozen=True)
class HolidayYear:
    source: str
    provisional: bool
    days: Mapping[date, Holiday]


@dataclass(frozen=True)
class Calendar:
    source: str
    generated: date
    valid_from: date
    valid_through: date
    notes: tuple[str, ...]
    segments: Mapping[str, SegmentSpec]  # in the file's order
    holidays: Mapping[str, Mapping[int, HolidayYear]]  # list name -> year -> holidays
    specials: Mapping[tuple[str, date], SpecialDay]  # (segment, day) -> special session
    origin: Path | None = None  # the file it came from (None: built in code)
    _days: dict[tuple[str, date], TradingDay] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)

    @cached_property
    def starts(self) -> datetime:
        """The first moment covered (IST midnight of valid_from)."""
        return datetime.combine(self.valid_from, time(), tzinfo=IST)

    @cached_property
    def ends(self) -> datetime:
        """The first moment NOT covered: IST midnight after valid_through."""
        return datetime.combine(self.valid_through + timedelta(days=1), time(), tzinfo=IST)

    def segment(self, name: str) -> SegmentSpec:
        try:
            return self.segments[name]
        except KeyError:
            raise UnknownSegmentError(
                f"unknown segment {name!r}: use one of {', '.join(self.segments)}") from None


@dataclass(frozen=True)
class Session:
    kind: SessionKind
    start: datetime
    end: datetime
    label: str

    @property
    def accepts_orders(self) -> bool:
        return self.kind in ORDER_KINDS

    def holds(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class TradingDay:
    """One segment's day: its sessions (none on a holiday or weekend) and why."""

    segment: str
    day: date
    sessions: tuple[Session, ...]
    weekend: bool
    holiday: Holiday | None
    special: SpecialDay | None
    provisional: bool  # built on an expected (not published) date or timing
    open_runs: tuple[tuple[datetime, datetime], ...]  # the normal market, adjacent joined

    def session_at(self, moment: datetime) -> Session | None:
        return next((session for session in self.sessions if session.holds(moment)), None)


@dataclass(frozen=True)
class SegmentStatus:
    segment: str
    at: datetime  # IST
    state: SessionState
    label: str  # why: "normal market", "weekend", "holiday: Holi", "Diwali Muhurat trading"
    session: Session | None
    day: TradingDay
    # The next start and end of the normal market; None: past valid_through (unknown).
    next_open: datetime | None
    next_close: datetime | None

    @property
    def accepts_orders(self) -> bool:
        return self.session is not None and self.session.accepts_orders

    @property
    def provisional(self) -> bool:
        return self.day.provisional


# ---- queries ---------------------------------------------------------------------------

def status(calendar: Calendar, segment: str, at: datetime) -> SegmentStatus:
    """Where `segment` stands at `at`: state, why, today's sessions, next open and close."""
    moment = covered(calendar, at)
    day = trading_day(calendar, segment, moment.date())
    session = day.session_at(moment)
    if session is not None:
        state = SessionState.OPEN if session.kind is SessionKind.OPEN else SessionState.PRE_OPEN
        holiday = day.holiday if day.special is None else None  # MCX's evening session
        label = session.label + (f" (holiday: {holiday.name})" if holiday else "")
    else:
        state, label = _outside_sessions(day, moment)
    return SegmentStatus(segment, moment, state, label, session, day,
                         next_open(calendar, segment, moment),
                         next_close(calendar, segment, moment))


def is_open_for_orders(calendar: Calendar, segment: str, at: datetime) -> bool:
    """True in a pre-open order-entry window or the normal market. Raises past the
    calendar (CalendarExpiredError): fail closed."""
    moment = covered(calendar, at)
    session = trading_day(calendar, segment, moment.date()).session_at(moment)
    return session is not None and session.accepts_orders


def next_open(calendar: Calendar, segment: str, at: datetime) -> datetime | None:
    """The next start of the normal market strictly after `at`; None when it lies past
    valid_through."""
    moment = covered(calendar, at)
    return next((start for start, _ in _runs_from(calendar, segment, moment.date())
                 if start > moment), None)


def next_close(calendar: Calendar, segment: str, at: datetime) -> datetime | None:
    """The end of the normal market now running, else of the next one; None past the
    calendar."""
    moment = covered(calendar, at)
    return next((end for _, end in _runs_from(calendar, segment, moment.date())
                 if end > moment), None)


def expires_within(calendar: Calendar, now: datetime, days: float) -> bool:
    """True when the calendar runs out within `days` of `now` (or already has)."""
    return calendar.ends - _aware(now) <= timedelta(days=days)


def covered(calendar: Calendar, at: datetime) -> datetime:
    """`at` in IST, if the calendar covers it; else CalendarExpiredError (past its end) or
    CalendarCoverageError (before its start)."""
    moment = _aware(at).astimezone(IST)
    if moment >= calendar.ends:
        raise CalendarExpiredError(
            f"{moment:%Y-%m-%d %H:%M:%S} IST is past the trading calendar, valid through "
            f"{calendar.valid_through} (IST)")
    if moment < calendar.starts:
        raise CalendarCoverageError(
            f"{moment:%Y-%m-%d %H:%M:%S} IST is before the trading calendar, which starts on "
            f"{calendar.valid_from} (IST)")
    return moment


def trading_day(calendar: Calendar, segment: str, day: date) -> TradingDay:
    """The segment's sessions on `day` (IST), built once per calendar."""
    spec = calendar.segment(segment)
    if not calendar.valid_from <= day <= calendar.valid_through:
        covered(calendar, datetime.combine(day, time(), tzinfo=IST))  # raises the right error
    key = (segment, day)
    built = calendar._days.get(key)
    if built is None:
        built = calendar._days[key] = _build_day(calendar, spec, day)
    return built


# ---- building a day --------------------------------------------------------------------

def _build_day(calendar: Calendar, spec: SegmentSpec, day: date) -> TradingDay:
    year = calendar.holidays[spec.holiday_list].get(day.year)
    holiday = year.days.get(day) if year else None
    special = calendar.specials.get((spec.name, day))
    weekend = day.weekday() >= 5
    if special is not None:
        specs, name = special.sessions, special.name
    elif weekend:
        specs, name = (), ""
    elif holiday is not None:
        closed = holiday.closed_parts or spec.parts
        specs, name = tuple(s for s in spec.sessions if s.part not in closed), ""
    else:
        specs, name = spec.sessions, ""
    sessions = tuple(_session(day, session_spec, name) for session_spec in specs)
    provisional = bool((year is None or year.provisional)
                       or (holiday and holiday.provisional)
                       or (special and special.provisional))
    return TradingDay(spec.name, day, sessions, weekend, holiday, special, provisional,
                      _open_runs(sessions))


def _session(day: date, spec: SessionSpec, special_name: str) -> Session:
    if spec.kind is SessionKind.OPEN:
        label = special_name or _PART_LABELS.get(spec.part, f"{spec.part} session")
    else:
        label = _KIND_LABELS[spec.kind] + (f", {special_name}" if special_name else "")
    return Session(spec.kind, datetime.combine(day, spec.start, tzinfo=IST),
                   datetime.combine(day, spec.end, tzinfo=IST), label)


def _open_runs(sessions: tuple[Session, ...]) -> tuple[tuple[datetime, datetime], ...]:
    """The normal market's spans, adjacent sessions joined (MCX morning + evening)."""
    runs: list[tuple[datetime, datetime]] = []
    for session in sessions:
        if session.kind is not SessionKind.OPEN:
            continue
        if runs and runs[-1][1] == session.start:
            runs[-1] = (runs[-1][0], session.end)
        else:
            runs.append((session.start, session.end))
    return tuple(runs)


def _runs_from(calendar: Calendar, segment: str,
               first: date) -> Iterator[tuple[datetime, datetime]]:
    day = first
    while day <= calendar.valid_through:  # bounded by the calendar's last day
        yield from trading_day(calendar, segment, day).open_runs
        day += timedelta(days=1)


def _outside_sessions(day: TradingDay, moment: datetime) -> tuple[SessionState, str]:
    if day.holiday is not None:
        label = f"holiday: {day.holiday.name}"
        return SessionState.HOLIDAY, label + (f"; {_what_trades(day)}" if day.sessions else "")
    if day.weekend:
        return SessionState.CLOSED, (f"weekend; {day.special.name}"
                                     if day.special and day.sessions else "weekend")
    return SessionState.CLOSED, _position(day, moment)


def _what_trades(day: TradingDay) -> str:
    if day.special is not None:
        return f"{day.special.name} only"
    labels = dict.fromkeys(s.label for s in day.sessions if s.kind is SessionKind.OPEN)
    return " and ".join(labels) + " only"


def _position(day: TradingDay, moment: datetime) -> str:
    if not day.sessions:
        return "closed"
    first = day.sessions[0]
    if moment < first.start:
        return "before pre-open" if first.kind is SessionKind.PRE_OPEN else "before open"
    if moment >= day.sessions[-1].end:
        return "after close"
    return "between sessions"


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the calendar needs an aware datetime (naive times are ambiguous)")
    return moment


def load_calendar(path: str | Path | None = None) -> Calendar:
    """The calendar from `path`, else $COPYTRADE_CALENDAR_FILE, else the shipped file."""
    from copytrade.core.calendar_data import load_calendar as load

    return load(path)
