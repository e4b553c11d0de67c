"""`copytrade explain` on the recorded day (each of its five orders, unknown ids, a missing
database, --json, Rich at 80 and 120 columns), and `copytrade status` (after the run, while
a follow runs healthy, and with a follower whose token is refused)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from followtools import follower, running_follow
from recorded import CLI_TIMEOUT, RecordedDay, run_cli
from rich.console import Console
from simtools import eventually

from copytrade.cli.explain import story_text, story_view
from copytrade.core.story import Story, build_story
from copytrade.engine import status_file
from copytrade.engine.lock import acquire_follow_lock
from copytrade.sim.server import Emulator
from copytrade.store import explain_queries

IST_CLOCK = re.compile(r"\b\d{2}:\d{2}:\d{2}\.\d{3} IST\b")


def explained(day: RecordedDay, what: str, *extra: str) -> str:
    # the rejected order's story through a real `python -m copytrade` process, the rest
    # through the CLI's entry point in this process (the same code, faster)
    result = run_cli(day, "explain", day.orders[what], *extra, process=what == "rejected")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def section(text: str, follower_name: str) -> str:
    """One follower's part of the plain story."""
    start = text.index(f"\nfollower {follower_name}: ")
    end = text.find("\nfollower ", start + 1)
    return text[start:end if end > 0 else None]


def db_value(day: RecordedDay, sql: str, *params: object) -> object:
    with closing(sqlite3.connect(f"{(day.home / 'copytrade.db').as_uri()}?mode=ro",
                                 uri=True)) as db:
        return db.execute(sql, params).fetchone()[0]


# ---- explain: the five orders -----------------------------------------------------------------


def test_a_filled_order_tells_each_followers_story_in_ist(recorded_day: RecordedDay) -> None:
    text = explained(recorded_day, "filled")
    order_id = recorded_day.orders["filled"]
    assert text.startswith(f"leader order {order_id}: BUY 3 TCS (NSE_EQ 11536)")
    assert "now TRADED, traded 3/3" in text
    # what reported it: each change with its source (the audit trail)
    assert re.search(r"stream frame: \w+|REST read: \w+", text), text
    f1, f2 = section(text, "f1"), section(text, "f2")
    assert "follower f1: mirrored: filled 3/3" in f1
    assert "follower f2: mirrored: filled 2/2" in f2
    for part in (f1, f2):
        for step in ("PLANNED -> SUBMITTED", "request PLACE", "response PLACE: DONE",
                     "-> FILLED"):
            assert step in part, part
        assert re.search(r"lag \d+\.\d ms \(leader seen -> request sent\)", part)
    # the sizing inputs and caps recorded with the place
    assert "sizing rule multiplier 1; caps checked: none set" in f1
    assert "sizing rule fixed_lots 2; caps checked: deny products INTRADAY" in f2
    assert "positions before: leader 0, follower 0; placed 2" in f2
    # every time is IST and says so
    assert len(IST_CLOCK.findall(text)) >= 12
    assert "UTC" not in text and "+00:00" not in text


def test_an_open_order(recorded_day: RecordedDay) -> None:
    text = explained(recorded_day, "open")
    assert "follower f1: mirrored, open: accepted 0/10" in text
    assert "follower f2: mirrored, open: accepted 0/2" in text
    assert "request CANCEL" not in text


def test_a_cancelled_order_shows_the_cancel_sent_and_its_answer(
        recorded_day: RecordedDay) -> None:
    text = explained(recorded_day, "cancelled")
    for name in ("f1", "f2"):
        part = section(text, name)
        assert f"follower {name}: mirrored, then cancelled: leader order cancelled" in part
        assert "request CANCEL" in part and "response CANCEL: DONE" in part
        assert "-> CANCELED" in part
    assert "CANCELLED" in text.split("\nfollower ")[0]  # the leader's own report said it


def test_a_skipped_order_says_why_the_follower_skipped_it(recorded_day: RecordedDay) -> None:
    text = explained(recorded_day, "skipped")
    f1, f2 = section(text, "f1"), section(text, "f2")
    assert "follower f1: mirrored: filled 2/2" in f1
    assert ("follower f2: not mirrored: product INTRADAY is on the product deny list"
            in f2)
    assert "PLANNED -> SKIPPED" in f2 and "request PLACE" not in f2
    assert "configuration now: fixed_lots 2; caps: deny products INTRADAY" in f2


def test_a_rejected_order_gives_the_brokers_reason(recorded_day: RecordedDay) -> None:
    text = explained(recorded_day, "rejected")
    reason = db_value(recorded_day, "SELECT reason FROM mirrororder WHERE follower = 'f2' "
                      "AND leader_order_id = ?", recorded_day.orders["rejected"])
    assert isinstance(reason, str) and reason.startswith("RMS:")
    f2 = section(text, "f2")
    assert f"follower f2: rejected by the follower's broker: {reason}" in f2
    assert "response PLACE: DONE" in f2 and "-> REJECTED" in f2
    assert "follower f1: mirrored: filled 2/2" in section(text, "f1")


# ---- explain: what it refuses ---------------------------------------------------------------


@pytest.mark.parametrize("order_id", ["999999999999", "", "x" * 500, "1\n2",
                                      "'; DROP TABLE leaderorder; --", "१२३"])
def test_an_unknown_leader_order_is_one_line_and_exit_9(recorded_day: RecordedDay,
                                                        order_id: str) -> None:
    result = run_cli(recorded_day, "explain", order_id)
    assert result.returncode == 9, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: leader order ") and "is not in the record" in line
    assert "5 leader order(s) recorded" in line and len(line) < 300
    assert db_value(recorded_day, "SELECT COUNT(*) FROM leaderorder") == 5


def run_on_home(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "COPYTRADE_DEBUG"}
    return subprocess.run([sys.executable, "-m", "copytrade", *args],
                          env={**environ, "COPYTRADE_HOME": str(home)},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT)


def test_no_database_is_exit_7_and_none_is_created(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run_on_home(home, "explain", "100000000001")
    assert result.returncode == 7
    [line] = result.stderr.splitlines()
    assert line.startswith("error: no database at ")
    assert not home.exists()  # nothing created, not even the directory
    home.mkdir(mode=0o700)
    (home / "copytrade.db").touch()  # a lost database (0 bytes) is not an empty one
    result = run_on_home(home, "explain", "100000000001")
    assert result.returncode == 7 and "empty (0 bytes)" in result.stderr
    assert (home / "copytrade.db").stat().st_size == 0


# ---- explain: JSON, redaction, Rich ------------------------------------------------------------


def test_json_holds_the_whole_story_with_ist_times(recorded_day: RecordedDay) -> None:
    data = json.loads(explained(recorded_day, "skipped", "--json"))
    assert data["leader"]["order_id"] == recorded_day.orders["skipped"]
    followers = {f["name"]: f for f in data["followers"]}
    assert set(followers) == {"f1", "f2"}
    assert followers["f1"]["mirrored"] is True and followers["f1"]["state"] == "FILLED"
    f2 = followers["f2"]
    assert (f2["mirrored"], f2["state"]) == (False, "SKIPPED")
    assert f2["reason"] == "product INTRADAY is on the product deny list"
    assert [e["title"] for e in f2["events"]] == ["PLANNED -> SKIPPED"]
    times = [data["leader"]["first_seen_at"], *(e["at"] for f in data["followers"]
                                                 for e in f["events"])]
    assert times and all(t.endswith("+05:30") for t in times)
    assert followers["f1"]["sizing"]["rule"] == "multiplier 1"


def test_a_token_quoted_in_the_record_is_never_shown(recorded_day: RecordedDay,
                                                     tmp_path: Path) -> None:
    home = tmp_path / "copy"
    shutil.copytree(recorded_day.home, home)
    token = next(f.token for f in recorded_day.followers if f.name == "f2")
    with closing(sqlite3.connect(home / "copytrade.db")) as db:
        from copytrade.store.trail import register

        register(db)  # the trail's triggers hash every write with it
        db.execute("INSERT INTO auditevent (at, kind, leader_order_id, follower, message, "
                   "data) VALUES ('2026-11-30 03:45:00+00:00', 'divergence', ?, 'f2', ?, '{}')",
                   (recorded_day.orders["skipped"], f"broker said: bad token {token}"))
        db.commit()
    day = replace(recorded_day, home=home,
                  environ={**recorded_day.environ, "COPYTRADE_HOME": str(home)})
    for extra in ((), ("--json",)):
        result = run_cli(day, "explain", recorded_day.orders["skipped"], *extra)
        assert result.returncode == 0, result.stderr
        assert token not in result.stdout  # (run_cli checks every token too)
        assert "broker said: bad token ***" in result.stdout


@contextmanager
def recorded_story(day: RecordedDay, what: str) -> Iterator[Story]:
    db = explain_queries.open_for_reading(day.home / "copytrade.db")
    try:
        record = explain_queries.order_record(db, day.orders[what])
        assert record is not None
        yield build_story(record)
    finally:
        db.close()


@pytest.mark.parametrize("width", [80, 120])
def test_rich_view_fits_the_terminal(recorded_day: RecordedDay, width: int) -> None:
    with recorded_story(recorded_day, "rejected") as story:
        console = Console(width=width, color_system=None, record=True, file=io.StringIO())
        console.print(story_view(story))
        text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    flat = " ".join(" ".join(lines).split())
    assert "follower f2: rejected by the follower's broker: RMS:" in flat
    assert "follower f1: mirrored: filled 2/2" in flat
    assert "response PLACE: DONE" in flat and "IST" in flat
    # the same story as the plain form tells
    assert "follower f2: rejected" in story_text(story)


# ---- status --------------------------------------------------------------------------------------


def status_json(result: subprocess.CompletedProcess[str]) -> dict:
    data = json.loads(result.stdout)
    assert data["exit_code"] == result.returncode
    return data


def test_status_after_the_recorded_run_is_not_running(recorded_day: RecordedDay) -> None:
    result = run_cli(recorded_day, "status")
    assert result.returncode == 10
    [line] = result.stderr.splitlines()
    assert line.startswith("error: follow is not running on this home")
    assert "IST" in line  # its last heartbeat, in IST
    data = status_json(run_cli(recorded_day, "status", "--json"))
    assert (data["running"], data["healthy"]) == (False, False)
    today = data["today"]
    recorded_date = db_value(recorded_day, "SELECT MAX(trading_date) FROM leaderorder")
    if today["trading_date"] == recorded_date:  # (not run across midnight IST)
        assert today["leader_orders"] == 5
        f2 = today["followers"]["f2"]
        assert (f2["skipped"], f2["rejected"], f2["open"]) == (1, 1, 1)
        assert today["followers"]["f1"]["mirrored"] == 5


def test_status_without_a_home_is_not_running(tmp_path: Path) -> None:
    result = run_on_home(tmp_path / "none", "status", "--json")
    assert result.returncode == 10
    data = status_json(result)
    assert data["today"] is None and data["accounts"] == []
    assert not (tmp_path / "none").exists()


F1 = follower("f1", "1000000002")
F2 = follower("f2", "1000000003", "fixed_lots = 2")


def healthy_in_file(home: Path) -> bool:
    """The status file follow writes says every account is connected (the lock is held
    by this test, as `copytrade follow` holds it)."""
    state = status_file.read_status(status_file.status_path(home))
    verdict = status_file.judge(state, os.getpid(), datetime.now(UTC))
    return state is not None and verdict.healthy


def test_status_while_follow_runs_then_with_a_refused_follower(live_sim: Emulator,
                                                              tmp_path: Path) -> None:
    home = tmp_path / "home"
    with running_follow(live_sim, home, [F1, F2]) as run:
        lock = acquire_follow_lock(status_file.lock_path(home))  # as `copytrade follow` does
        try:
            eventually(lambda: healthy_in_file(home), timeout=15, interval=0.05)
            result = run_on_home(home, "status", "--json")
            assert result.returncode == 0, result.stderr
            data = status_json(result)
            assert (data["running"], data["healthy"], data["pid"]) == (True, True, os.getpid())
            assert {a["name"]: a["stream"] for a in data["accounts"]} == {
                "leader": "connected", "f1": "connected", "f2": "connected"}
            assert data["since"].endswith("+05:30")
            plain = run_on_home(home, "status")
            assert plain.returncode == 0 and plain.stdout.splitlines()[-1] == "healthy"
            assert "follow is running on this home" in plain.stdout and " IST" in plain.stdout

            assert live_sim.expire_token(F1.client_id) >= 1
            run.leader_api.place_order("1333", "NSE_EQ", "BUY", 3, "MARKET", "CNC", 0)
            run.wait_for(lambda: "f1" in run.engine.status.stopped_followers, timeout=15)
            # the file first (cheap to poll), then the command's word on it
            eventually(lambda: not healthy_in_file(home), timeout=15, interval=0.05)
            assert run_on_home(home, "status").returncode == 11
            result = run_on_home(home, "status", "--json")
            data = status_json(result)
            assert (data["running"], data["healthy"]) == (True, False)
            f1 = next(a for a in data["accounts"] if a["name"] == "f1")
            assert f1["stopped_kind"] == "token_refused" and "refresh" in f1["stopped"]
            [line] = run_on_home(home, "status").stderr.splitlines()
            assert line.startswith("error: follow runs but is unhealthy: follower f1 stopped")
            assert F1.token not in result.stdout + line
        finally:
            lock.close()
    result = run_on_home(home, "status")  # follow stopped, its lock released
    assert result.returncode == 10
