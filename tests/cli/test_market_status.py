"""`copytrade market-status` end to end: now (frozen with freezegun) and --at, --segment,
--json, hostile input (bad time, unknown segment), a calendar past its end or unreadable
(COPYTRADE_CALENDAR_FILE), and the Rich table at 80 and 120 columns."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from rich.console import Console

from copytrade.cli import market_render
from copytrade.cli.app import run
from copytrade.cli.exit_codes import ExitCode
from copytrade.core.calendar import SegmentStatus, load_calendar, status
from copytrade.core.calendar_data import CALENDAR_FILE_ENV
from copytrade.core.ist import IST

ANSI = re.compile(r"\x1b\[[0-9;]*m")
SEGMENTS = ("NSE_EQ", "BSE_EQ", "NSE_FNO", "BSE_FNO", "NSE_CURRENCY", "BSE_CURRENCY",
            "MCX_COMM")


def market_status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(["market-status", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def row(out: str, segment: str) -> list[str]:
    """The plain table's row for a segment, split on its column gaps."""
    line = next(line for line in out.splitlines() if line.startswith(segment + " "))
    return [cell.strip() for cell in line.split("  ") if cell.strip()]


def utc_for(*ist_args: int) -> str:
    """freezegun's naive UTC time for an IST wall-clock time."""
    moment = datetime(*ist_args, tzinfo=IST)
    return (moment - moment.utcoffset()).replace(tzinfo=None).isoformat()  # type: ignore[operator]


# ---- now, frozen: every boundary ---------------------------------------------------------

@pytest.mark.parametrize(("ist_now", "segment", "state", "why"), [
    ((2026, 12, 1, 8, 59, 59), "NSE_EQ", "closed", "before pre-open"),
    ((2026, 12, 1, 9, 0, 0), "NSE_EQ", "pre-open", "pre-open order entry"),
    ((2026, 12, 1, 9, 15, 0), "NSE_EQ", "open", "normal market"),
    ((2026, 12, 1, 15, 29, 59), "NSE_FNO", "open", "normal market"),
    ((2026, 12, 1, 15, 30, 0), "NSE_FNO", "closed", "after close"),
    ((2026, 3, 3, 11, 0, 0), "NSE_EQ", "holiday", "holiday: Holi"),
    ((2026, 12, 5, 11, 0, 0), "BSE_EQ", "closed", "weekend"),
    ((2025, 10, 21, 14, 0, 0), "NSE_EQ", "open", "Muhurat trading"),
    ((2026, 3, 3, 18, 0, 0), "MCX_COMM", "open", "evening session (holiday: Holi)"),
    ((2026, 12, 1, 16, 59, 59), "NSE_CURRENCY", "open", "normal market"),
    ((2027, 12, 31, 23, 59, 59), "MCX_COMM", "closed*", "after close"),  # 2027: provisional
])
def test_now_at_every_boundary(capsys: pytest.CaptureFixture[str], ist_now: Sequence[int],
                               segment: str, state: str, why: str) -> None:
    with freeze_time(utc_for(*ist_now)):
        code, out, err = market_status(capsys)
    assert (code, err) == (ExitCode.OK, "")
    assert row(out, segment)[1:3] == [state, why]
    assert out.startswith(f"market status at {datetime(*ist_now):%Y-%m-%d %H:%M:%S} IST")


def test_now_past_the_calendar_fails_closed(capsys: pytest.CaptureFixture[str]) -> None:
    with freeze_time(utc_for(2028, 1, 1, 0, 0, 0)):
        code, out, err = market_status(capsys)
    assert (code, out) == (ExitCode.CALENDAR, "")
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "valid through 2027-12-31" in err and "2028-01-01 00:00:00 IST" in err


# ---- --at, --segment, --json -------------------------------------------------------------

def test_every_segment_by_default_with_sessions_and_next_times(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = market_status(capsys, "--at", "2026-12-01T09:05")
    assert code == ExitCode.OK
    lines = out.splitlines()
    assert lines[0] == "market status at 2026-12-01 09:05:00 IST; every time below is IST"
    assert lines[1].split() == ["segment", "state", "why", "today", "(IST)", "next", "open",
                                "next", "close"]
    assert [line.split()[0] for line in lines[2:9]] == list(SEGMENTS)
    assert row(out, "NSE_EQ") == ["NSE_EQ", "pre-open", "pre-open order entry",
                                  "pre 09:00, 09:15-15:30", "09:15", "15:30"]
    assert row(out, "NSE_FNO") == ["NSE_FNO", "closed", "before open", "09:15-15:30", "09:15",
                                   "15:30"]
    assert row(out, "MCX_COMM") == ["MCX_COMM", "open", "morning session", "09:00-23:30",
                                    "Wed 09:00", "23:30"]
    assert "calendar valid through 2027-12-31 (IST)" in lines
    assert "┃" not in out and "\x1b" not in out  # piped: plain text


def test_one_segment_in_any_case(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = market_status(capsys, "--segment", " mcx_comm ", "--at", "2026-03-03T10:00")
    assert code == ExitCode.OK
    assert [line.split()[0] for line in out.splitlines()[2:]][:1] == ["MCX_COMM"]
    assert "NSE_EQ" not in out
    assert row(out, "MCX_COMM") == ["MCX_COMM", "holiday", "holiday: Holi; evening session only",
                                    "17:00-23:30", "17:00", "23:30"]


def test_at_with_an_offset(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = market_status(capsys, "--at", "2026-12-01T03:45:00Z", "--segment", "BSE_EQ")
    assert code == ExitCode.OK
    assert "2026-12-01 09:15:00 IST" in out and row(out, "BSE_EQ")[1] == "open"


def test_at_as_a_clock_time_means_today_in_ist(capsys: pytest.CaptureFixture[str]) -> None:
    with freeze_time(utc_for(2026, 12, 1, 7, 0, 0)):
        code, out, _ = market_status(capsys, "--at", "15:30", "--segment", "NSE_EQ")
    assert code == ExitCode.OK
    assert "2026-12-01 15:30:00 IST" in out and row(out, "NSE_EQ")[1:3] == ["closed",
                                                                          "after close"]


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    with freeze_time(utc_for(2027, 12, 10, 12, 0, 0)):
        code, out, err = market_status(capsys, "--json", "--at", "2025-10-21T13:50")
    assert (code, err) == (ExitCode.OK, "")
    data = json.loads(out)
    assert data["at"] == "2025-10-21T13:50:00+05:30"
    assert data["calendar"]["valid_through"] == "2027-12-31"
    assert data["calendar"]["days_left"] == 21  # from the real (frozen) now
    by_segment = {entry["segment"]: entry for entry in data["segments"]}
    assert list(by_segment) == list(SEGMENTS)
    equity = by_segment["NSE_EQ"]
    assert equity | {"sessions": None} == {
        "segment": "NSE_EQ", "state": "open", "label": "Muhurat trading",
        "accepts_orders": True, "provisional": False, "holiday": "Diwali Laxmi Pujan",
        "special_session": "Muhurat trading", "sessions": None,
        "next_open": "2025-10-23T09:15:00+05:30", "next_close": "2025-10-21T14:45:00+05:30"}
    assert [(s["kind"], s["start"], s["end"]) for s in equity["sessions"]] == [
        ("pre_open", "2025-10-21T13:30:00+05:30", "2025-10-21T13:38:00+05:30"),
        ("pre_open_matching", "2025-10-21T13:38:00+05:30", "2025-10-21T13:45:00+05:30"),
        ("open", "2025-10-21T13:45:00+05:30", "2025-10-21T14:45:00+05:30")]
    assert by_segment["MCX_COMM"]["provisional"] is True


def test_json_past_the_last_open_has_no_next_times(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = market_status(capsys, "--json", "--segment", "NSE_EQ", "--at",
                                 "2027-12-31T16:00")
    assert code == ExitCode.OK
    entry = json.loads(out)["segments"][0]
    assert (entry["state"], entry["next_open"], entry["next_close"]) == ("closed", None, None)


def test_provisional_days_are_flagged(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = market_status(capsys, "--at", "2027-03-22T10:00", "--segment", "NSE_EQ")
    assert code == ExitCode.OK
    assert row(out, "NSE_EQ")[1:3] == ["holiday*", "holiday: Holi"]
    assert any(line.startswith("* provisional") for line in out.splitlines())


# ---- hostile input -----------------------------------------------------------------------

@pytest.mark.parametrize("text", ["garbage", "2026-13-01T10:00", "25:00", "2026-12-01", ""])
def test_a_bad_time_is_a_usage_error(capsys: pytest.CaptureFixture[str], text: str) -> None:
    code, out, err = market_status(capsys, "--at", text)
    assert (code, out) == (ExitCode.USAGE, "")
    assert err.startswith("error: --at: ") and err.count("\n") == 1


@pytest.mark.parametrize("name", ["NSE_FO", "NSE", "", "NSE_EQ; rm -rf /"])
def test_an_unknown_segment_lists_the_known_ones(capsys: pytest.CaptureFixture[str],
                                                 name: str) -> None:
    code, out, err = market_status(capsys, "--segment", name, "--at", "2026-12-01T10:00")
    assert (code, out) == (ExitCode.USAGE, "")
    assert err.count("\n") == 1
    assert f"unknown segment {name!r}" in err and ", ".join(SEGMENTS) in err


def test_the_time_is_past_the_calendar(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = market_status(capsys, "--at", "2028-01-01T00:00:00", "--json")
    assert (code, out) == (ExitCode.CALENDAR, "")
    assert "valid through 2027-12-31" in err and err.count("\n") == 1


def test_the_time_is_before_the_calendar(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = market_status(capsys, "--at", "2024-12-31T10:00")
    assert code == ExitCode.CALENDAR and "starts on 2025-01-01" in err


def fixture_calendar(path: Path, valid_through: str = "2030-01-31") -> Path:
    data: dict[str, Any] = {
        "source": "test fixture", "generated": "2029-12-01",
        "valid_from": "2030-01-01", "valid_through": valid_through,
        "segments": {"NSE_EQ": {"holidays": "equity", "sessions": [
            {"kind": "open", "start": "09:15", "end": "15:30"}]}},
        "holidays": {"equity": {"2030": {"provisional": False, "days": []}}},
        "special_sessions": [{"date": "2030-01-19", "name": "special live trading session",
                              "segments": {"NSE_EQ": [
                                  {"kind": "open", "start": "10:00", "end": "11:00"}]}}],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_calendar_of_our_own_by_environment(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CALENDAR_FILE_ENV, str(fixture_calendar(tmp_path / "c.json")))
    with freeze_time(utc_for(2030, 1, 19, 10, 30, 0)):  # a Saturday with a special session
        code, out, _ = market_status(capsys)
    assert code == ExitCode.OK
    assert row(out, "NSE_EQ") == ["NSE_EQ", "open", "special live trading session",
                                  "10:00-11:00", "Mon 09:15", "11:00"]
    assert ("warning: the trading calendar runs out after 2030-01-31 (12 day(s) left): "
            "update copytrade for a newer one") in out.splitlines()


def test_an_expired_calendar_of_our_own(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CALENDAR_FILE_ENV, str(fixture_calendar(tmp_path / "c.json")))
    with freeze_time(utc_for(2030, 2, 1, 0, 0, 0)):
        code, out, err = market_status(capsys, "--segment", "NSE_EQ")
    assert (code, out) == (ExitCode.CALENDAR, "")
    assert "valid through 2030-01-31" in err and err.count("\n") == 1


@pytest.mark.parametrize(("content", "reason"), [
    ("{", "not valid JSON"),
    ('{"valid_from": "2030-01-01"}', "valid_through"),
    (None, "cannot be read"),
])
def test_an_unusable_calendar_file_is_one_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        content: str | None, reason: str) -> None:
    path = tmp_path / "calendar.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    monkeypatch.setenv(CALENDAR_FILE_ENV, str(path))
    code, out, err = market_status(capsys, "--at", "2030-01-02T10:00")
    assert (code, out) == (ExitCode.CALENDAR, "")
    assert err.startswith("error: the trading calendar cannot be used: ")
    assert reason in err and str(path) in err and err.count("\n") == 1


# ---- Rich: a table that reads at 80 and 120 columns --------------------------------------

def statuses_at(*ist_args: int) -> list[SegmentStatus]:
    calendar = load_calendar()
    return [status(calendar, segment, datetime(*ist_args, tzinfo=IST)) for segment in SEGMENTS]


def rendered(statuses: list[SegmentStatus], width: int) -> str:
    console = Console(width=width, record=True, color_system=None, force_terminal=True)
    console.print(market_render.table(statuses))
    return console.export_text()


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("ist_args", [(2026, 12, 1, 9, 5), (2026, 3, 3, 10, 0),
                                      (2026, 11, 8, 17, 46), (2025, 10, 21, 13, 31)])
def test_the_table_fits_and_keeps_every_name_and_time(width: int,
                                                      ist_args: tuple[int, ...]) -> None:
    statuses = statuses_at(*ist_args)
    text = rendered(statuses, width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    for status_row in market_render.rows(statuses, multiline=True):
        segment_line = next(line for line in lines if line.split()[:1] == [status_row[0]])
        assert status_row[1] in segment_line  # state beside its segment, never folded
        for cell in (status_row[4], status_row[5]):
            assert cell in segment_line  # next open and close whole, on the segment's line
        for span in status_row[3].splitlines():
            assert span in text
    words = " ".join(" ".join(cells[2] for cells in market_render.rows(statuses)).split())
    assert set(words.split()) <= set(text.split())  # the "why" wraps but loses nothing


def test_the_table_at_120_columns_keeps_each_reason_on_one_line() -> None:
    text = rendered(statuses_at(2026, 3, 3, 10, 0), 120)
    assert "holiday: Holi; evening session only" in text
    assert "today (IST)" in text and "next open" in text and "next close" in text


def test_the_terminal_path_end_to_end() -> None:
    """A real process that believes it writes to an 80-column terminal."""
    env = {**os.environ, "TTY_COMPATIBLE": "1", "COLUMNS": "80", "NO_COLOR": "1"}
    env.pop(CALENDAR_FILE_ENV, None)
    result = subprocess.run(
        [sys.executable, "-m", "copytrade", "market-status", "--at", "2026-03-03T10:00"],
        capture_output=True, text=True, timeout=60, env=env, check=False)
    assert (result.returncode, result.stderr) == (0, "")
    lines = ANSI.sub("", result.stdout).splitlines()  # bold headers: styles, not colours
    assert lines[0] == "market status at 2026-03-03 10:00:00 IST; every time below is IST"
    assert any(set(line.strip()) == {"─"} for line in lines)  # Rich's rule under the header
    assert max(len(line) for line in lines) <= 80
    assert "MCX_COMM" in result.stdout and "17:00-23:30" in result.stdout


def test_json_from_a_real_process() -> None:
    env = {key: value for key, value in os.environ.items() if key != CALENDAR_FILE_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "copytrade", "market-status", "--json", "--segment",
         "NSE_CURRENCY", "--at", "2025-02-19T11:00:00+05:30"],
        capture_output=True, text=True, timeout=60, env=env, check=False)
    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stdout)["segments"][0]
    assert (entry["state"], entry["label"], entry["accepts_orders"]) == (
        "holiday", "holiday: Chhatrapati Shivaji Maharaj Jayanti", False)
    assert entry["next_open"] == "2025-02-20T09:00:00+05:30"


def test_help_names_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["market-status", "--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "--at" in out and "--segment" in out and "--json" in out and "IST" in out


def test_when_reads_relative_to_the_time_asked() -> None:
    at = datetime(2026, 12, 1, 10, tzinfo=IST)
    assert market_render.when(at + timedelta(hours=5), at) == "15:00"
    assert market_render.when(at + timedelta(days=1), at) == "Wed 10:00"
    assert market_render.when(at + timedelta(days=8), at) == "2026-12-09 10:00"
    assert market_render.when(None, at) == "unknown"
