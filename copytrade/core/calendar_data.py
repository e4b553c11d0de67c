"""Reading the trading calendar file into a Calendar, checking everything it says.

The shipped file is copytrade/data/trading_calendar.json (package data). The environment
variable COPYTRADE_CALENDAR_FILE names another file instead: for tests, and for an
operator who must run with a corrected calendar before a release ships one. Whatever is
wrong with the file is one CalendarDataError naming the file and the entry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import date, datetime, time
from importlib.resources import files
from itertools import pairwise
from pathlib import Path
from typing import Any

from copytrade.core.calendar import (
    Calendar,
    CalendarDataError,
    Holiday,
    HolidayYear,
    SegmentSpec,
    SessionKind,
    SessionSpec,
    SpecialDay,
)

CALENDAR_FILE_ENV = "COPYTRADE_CALENDAR_FILE"
SHIPPED_NAME = "trading_calendar.json"


def load_calendar(path: str | os.PathLike[str] | None = None) -> Calendar:
    """The calendar from `path`, else from $COPYTRADE_CALENDAR_FILE, else the shipped one.
    Load it once and keep it: every query on it is cheap after the first."""
    chosen = path if path is not None else os.environ.get(CALENDAR_FILE_ENV) or None
    if chosen is None:
        where, origin = f"the shipped calendar ({SHIPPED_NAME})", None
        reader = (files("copytrade") / "data" / SHIPPED_NAME).read_text
    else:
        origin = Path(chosen)
        where, reader = f"calendar file {origin}", origin.read_text
    try:
        text = reader(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CalendarDataError(f"{where}: cannot be read ({_reason(exc)})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CalendarDataError(f"{where}: not valid JSON ({exc})") from None
    try:
        return parse_calendar(data, origin=origin)
    except CalendarDataError as exc:
        raise CalendarDataError(f"{where}: {exc}") from None


def parse_calendar(data: object, *, origin: Path | None = None) -> Calendar:
    """A Calendar from the file's parsed JSON; CalendarDataError naming the bad entry."""
    top = _mapping(data, "the file")
    valid_from = _date(top.get("valid_from"), "valid_from")
    valid_through = _date(top.get("valid_through"), "valid_through")
    if valid_through < valid_from:
        raise CalendarDataError("valid_through is before valid_from")
    years = range(valid_from.year, valid_through.year + 1)
    holidays = {name: _holiday_list(entry, f"holidays.{name}", years)
                for name, entry in _mapping(top.get("holidays"), "holidays").items()}
    segments = {name: _segment(name, entry, holidays)
                for name, entry in _mapping(top.get("segments"), "segments").items()}
    if not segments:
        raise CalendarDataError("segments: none given")
    _check_closed_parts(segments, holidays)
    specials = _specials(top.get("special_sessions", []), segments)
    outside = [day for day in (*_holiday_days(holidays), *(day for _, day in specials))
               if not valid_from <= day <= valid_through]
    if outside:
        raise CalendarDataError(f"{min(outside)} is outside valid_from..valid_through")
    notes = top.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(note, str) for note in notes):
        raise CalendarDataError("notes: must be a list of texts")
    return Calendar(_text(top.get("source"), "source"), _date(top.get("generated"), "generated"),
                    valid_from, valid_through, tuple(notes), segments, holidays, specials,
                    origin)


def _segment(name: str, entry: object, holidays: Mapping[str, object]) -> SegmentSpec:
    where = f"segments.{name}"
    fields = _mapping(entry, where)
    holiday_list = _text(fields.get("holidays"), f"{where}.holidays")
    if holiday_list not in holidays:
        raise CalendarDataError(f"{where}.holidays: no holiday list {holiday_list!r}")
    sessions = _sessions(fields.get("sessions"), f"{where}.sessions", with_parts=True)
    return SegmentSpec(name, _text(fields.get("name", name), f"{where}.name"), holiday_list,
                       sessions)


def _holiday_list(entry: object, where: str, years: range) -> dict[int, HolidayYear]:
    by_year = _mapping(entry, where)
    missing = [year for year in years if str(year) not in by_year]
    if missing:
        raise CalendarDataError(f"{where}: no entry for {missing[0]} (the calendar covers "
                                f"{years.start} to {years.stop - 1})")
    result = {}
    for key, value in by_year.items():
        if not key.isdigit():
            raise CalendarDataError(f"{where}: {key!r} is not a year")
        result[int(key)] = _holiday_year(int(key), value, f"{where}.{key}")
    return result


def _holiday_year(year: int, entry: object, where: str) -> HolidayYear:
    fields = _mapping(entry, where)
    days: dict[date, Holiday] = {}
    for index, item in enumerate(_list(fields.get("days"), f"{where}.days")):
        holiday = _holiday(item, f"{where}.days[{index}]")
        if holiday.day.year != year:
            raise CalendarDataError(f"{where}.days[{index}]: {holiday.day} is not in {year}")
        if holiday.day in days:
            raise CalendarDataError(f"{where}.days[{index}]: {holiday.day} is listed twice")
        days[holiday.day] = holiday
    return HolidayYear(_text(fields.get("source", ""), f"{where}.source", empty=True),
                       _flag(fields.get("provisional", False), f"{where}.provisional"), days)


def _holiday(entry: object, where: str) -> Holiday:
    fields = _mapping(entry, where)
    closed = fields.get("closed")
    parts = None
    if closed is not None:
        parts = frozenset(_text(part, f"{where}.closed") for part in _list(closed, where))
        if not parts:
            raise CalendarDataError(f"{where}.closed: name at least one session part")
    return Holiday(_date(fields.get("date"), f"{where}.date"),
                   _text(fields.get("name"), f"{where}.name"), parts,
                   _flag(fields.get("provisional", False), f"{where}.provisional"),
                   _text(fields.get("note", ""), f"{where}.note", empty=True))


def _specials(entries: object, segments: Mapping[str, SegmentSpec]
              ) -> dict[tuple[str, date], SpecialDay]:
    specials: dict[tuple[str, date], SpecialDay] = {}
    for index, entry in enumerate(_list(entries, "special_sessions")):
        where = f"special_sessions[{index}]"
        fields = _mapping(entry, where)
        day = _date(fields.get("date"), f"{where}.date")
        name = _text(fields.get("name"), f"{where}.name")
        provisional = _flag(fields.get("provisional", False), f"{where}.provisional")
        source = _text(fields.get("source", ""), f"{where}.source", empty=True)
        for segment, sessions in _mapping(fields.get("segments"), f"{where}.segments").items():
            if segment not in segments:
                raise CalendarDataError(f"{where}.segments: unknown segment {segment!r}")
            if (segment, day) in specials:
                raise CalendarDataError(f"{where}: {segment} already has a special session "
                                        f"on {day}")
            specials[(segment, day)] = SpecialDay(
                day, name, _sessions(sessions, f"{where}.segments.{segment}"),
                provisional, source)
    return specials


def _sessions(entry: object, where: str, *, with_parts: bool = False
              ) -> tuple[SessionSpec, ...]:
    sessions = []
    for index, item in enumerate(_list(entry, where)):
        fields = _mapping(item, f"{where}[{index}]")
        kind_text = fields.get("kind")
        try:
            kind = SessionKind(kind_text)
        except ValueError:
            raise CalendarDataError(f"{where}[{index}].kind: {kind_text!r} is not one of "
                                    f"{', '.join(k.value for k in SessionKind)}") from None
        start = _time(fields.get("start"), f"{where}[{index}].start")
        end = _time(fields.get("end"), f"{where}[{index}].end")
        if start >= end:
            raise CalendarDataError(f"{where}[{index}]: start must be before end")
        part = _text(fields.get("part", "day"), f"{where}[{index}].part") if with_parts else "day"
        sessions.append(SessionSpec(kind, start, end, part))
    for earlier, later in pairwise(sessions):
        if later.start < earlier.end:
            raise CalendarDataError(f"{where}: sessions must be in order and not overlap")
    if not sessions:
        raise CalendarDataError(f"{where}: no session")
    return tuple(sessions)


def _check_closed_parts(segments: Mapping[str, SegmentSpec],
                       holidays: Mapping[str, Mapping[int, HolidayYear]]) -> None:
    for segment in segments.values():
        for year in holidays[segment.holiday_list].values():
            for holiday in year.days.values():
                unknown = (holiday.closed_parts or frozenset()) - segment.parts
                if unknown:
                    raise CalendarDataError(
                        f"holidays.{segment.holiday_list}: {holiday.day} closes "
                        f"{', '.join(sorted(unknown))}, which {segment.name} does not have")


def _holiday_days(holidays: Mapping[str, Mapping[int, HolidayYear]]) -> list[date]:
    return [day for years in holidays.values() for year in years.values() for day in year.days]


# ---- field readers ---------------------------------------------------------------------

def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise CalendarDataError(f"{where}: must be an object")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise CalendarDataError(f"{where}: must be a list")
    return value


def _text(value: object, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise CalendarDataError(f"{where}: must be a non-empty text")
    return value


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise CalendarDataError(f"{where}: must be true or false")
    return value


def _date(value: object, where: str) -> date:
    try:
        return date.fromisoformat(_text(value, where))
    except ValueError:
        raise CalendarDataError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None


def _time(value: object, where: str) -> time:
    text = _text(value, where)
    try:
        return datetime.strptime(text, "%H:%M").time()
    except ValueError:
        raise CalendarDataError(f"{where}: {value!r} is not a time (HH:MM, IST)") from None


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
