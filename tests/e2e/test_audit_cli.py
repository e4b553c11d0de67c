"""`copytrade audit` and `copytrade audit verify` on a store a real follow run filled
(tests/e2e/recorded.py): the export for cron (JSON lines, CSV, cursor, time window, masking,
a private output file) and the hash chain check. Tests that change the store work on a
private copy of it; the recorded day itself is only read."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import stat
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest
from followtools import LEADER_TOKEN
from recorded import RecordedDay, run_cli

from copytrade.cli.audit_cmd import COLUMNS
from copytrade.store import trail
from copytrade.store.db import copy_database


def private_copy(day: RecordedDay, tmp_path: Path) -> RecordedDay:
    """The recorded day in a home of its own, to add rows to or tamper with."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    copy_database(day.home / "copytrade.db", home / "copytrade.db")
    os.chmod(home / "copytrade.db", 0o600)
    return replace(day, home=home, config=home / "copytrade.toml",
                   environ={**day.environ, "COPYTRADE_HOME": str(home)})


def add_audit_event(day: RecordedDay, kind: str, message: str, data: dict) -> None:
    """A row written as any copytrade process writes one (its connection hashes it)."""
    with closing(sqlite3.connect(day.home / "copytrade.db", isolation_level=None)) as conn:
        trail.register(conn)
        conn.execute("INSERT INTO auditevent (at, kind, message, data) VALUES (?, ?, ?, ?)",
                      (datetime.now(UTC).isoformat(" "), kind, message, json.dumps(data)))


def tamper(day: RecordedDay, sql: str) -> None:
    with closing(sqlite3.connect(day.home / "copytrade.db", isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER trail_no_update")  # the guards first, as a tamperer would
        conn.execute("DROP TRIGGER trail_no_delete")
        conn.execute(sql)


def exported(day: RecordedDay, *args: str) -> list[dict]:
    result = run_cli(day, "audit", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def error_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---- export ----------------------------------------------------------------------------------


def test_the_export_holds_the_day_in_order(recorded_day: RecordedDay) -> None:
    result = run_cli(recorded_day, "audit", process=True)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [list(row) for row in rows[:1]] == [list(COLUMNS)]
    assert [row["id"] for row in rows] == list(range(1, len(rows) + 1))
    assert result.stderr == f"last-id: {len(rows)}\n"
    assert rows[0]["kind"] == "trail_started"
    assert {"leader_order", "intent", "intent_done", "transition", "skipped"} <= {
        row["kind"] for row in rows}
    for before, after in pairwise(rows):
        assert after["prev_hash"] == before["hash"]
    assert all(row["at"].endswith("+05:30") for row in rows)  # IST, and says so


def test_every_leader_order_has_its_history(recorded_day: RecordedDay) -> None:
    rows = exported(recorded_day)
    for what, order_id in recorded_day.orders.items():
        history = [row for row in rows if row["leader_order_id"] == order_id]
        reports = [row for row in history if row["kind"] == "leader_order"]
        assert reports and reports[0]["data"]["first"] is True, what
        assert {row["data"]["source"] for row in reports} <= {"stream", "rest"}, what
    rejected = [row for row in rows if row["leader_order_id"] == recorded_day.orders["rejected"]
                and row["kind"] == "transition" and row["follower"] == "f2"]
    assert rejected[-1]["data"]["to"] == "REJECTED"
    assert "Margin" in rejected[-1]["message"]
    skipped = [row for row in rows if row["kind"] == "skipped"]
    assert [(row["leader_order_id"], row["follower"]) for row in skipped] == [
        (recorded_day.orders["skipped"], "f2")]
    places = [row for row in rows if row["kind"] == "intent"
              and row["data"]["action"] == "PLACE"]
    assert {row["data"]["request"]["order"]["security_id"] for row in places} == {
        "11536", "1333", "2885"}


def test_csv_has_the_same_rows(recorded_day: RecordedDay) -> None:
    rows = exported(recorded_day)
    result = run_cli(recorded_day, "audit", "--format", "csv")
    assert result.returncode == 0, result.stderr
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert result.stdout.splitlines()[0] == ",".join(COLUMNS)
    assert [int(row["id"]) for row in table] == [row["id"] for row in rows]
    assert [json.loads(row["data"]) for row in table] == [row["data"] for row in rows]
    assert [row["hash"] for row in table] == [row["hash"] for row in rows]
    assert result.stderr == f"last-id: {rows[-1]['id']}\n"


def test_the_cursor_gives_each_row_once(recorded_day: RecordedDay, tmp_path: Path) -> None:
    day = private_copy(recorded_day, tmp_path)
    first = run_cli(day, "audit", "--after-id", "0")
    last = int(first.stderr.removeprefix("last-id: "))
    assert last == len(first.stdout.splitlines())
    add_audit_event(day, "anomaly", "written after the first export", {})
    second = run_cli(day, "audit", "--after-id", str(last))
    assert second.returncode == 0
    new = [json.loads(line) for line in second.stdout.splitlines()]
    assert [(row["id"], row["kind"]) for row in new] == [(last + 1, "anomaly")]
    assert new[0]["prev_hash"] == json.loads(first.stdout.splitlines()[-1])["hash"]
    assert second.stderr == f"last-id: {last + 1}\n"
    nothing = run_cli(day, "audit", "--after-id", str(last + 1))
    assert (nothing.returncode, nothing.stdout, nothing.stderr) == (
        0, "", f"last-id: {last + 1}\n")


def test_since_and_until_select_by_time(recorded_day: RecordedDay) -> None:
    rows = exported(recorded_day)
    middle = rows[len(rows) // 2]["at"]
    moment = datetime.fromisoformat(middle)
    after = [row["id"] for row in rows if datetime.fromisoformat(row["at"]) >= moment]
    before = [row["id"] for row in rows if datetime.fromisoformat(row["at"]) <= moment]
    assert [row["id"] for row in exported(recorded_day, "--since", middle)] == after
    assert [row["id"] for row in exported(recorded_day, "--until", middle)] == before
    ist_without_offset = middle.removesuffix("+05:30")  # a time without offset is IST
    assert [row["id"] for row in exported(recorded_day, "--since", ist_without_offset,
                                          "--until", ist_without_offset)] == sorted(
        set(after) & set(before))
    result = run_cli(recorded_day, "audit", "--since", "2000-01-01T00:00:00", "--until",
                     "2000-01-02T00:00:00", "--after-id", "3")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "last-id: 3\n")


@pytest.mark.parametrize("args", [
    ("--since", "tomorrow-ish"),
    ("--since", "2026-11-30"),
    ("--until", "25:00"),
    ("--since", "2026-11-30T10:00:00", "--until", "2026-11-30T09:00:00"),
    ("--format", "xml"),
    ("--after-id", "-1"),
    ("--format", "csv", "verify"),
])
def test_bad_options_are_exit_2_in_one_line(recorded_day: RecordedDay, args: tuple) -> None:
    result = run_cli(recorded_day, "audit", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert error_line(result).startswith("error: ")


def test_a_number_that_is_not_one_is_a_usage_error(recorded_day: RecordedDay) -> None:
    result = run_cli(recorded_day, "audit", "--after-id", "abc")
    assert (result.returncode, result.stdout) == (2, "")


def test_account_ids_are_masked_unless_asked_for(recorded_day: RecordedDay,
                                                 tmp_path: Path) -> None:
    day = private_copy(recorded_day, tmp_path)
    client = day.followers[0].client_id
    add_audit_event(day, "token_renewed", f"token of client {client} renewed",
                    {"client_id": int(client), "account": client})
    masked = run_cli(day, "audit")
    assert client not in masked.stdout
    last = json.loads(masked.stdout.splitlines()[-1])
    masked_id = f"{client[:2]}******{client[-2:]}"
    assert last["message"] == f"token of client {masked_id} renewed"
    assert last["data"] == {"client_id": masked_id, "account": masked_id}
    for order_id in day.orders.values():  # order ids (12 digits) stay whole
        assert order_id in masked.stdout
    full = run_cli(day, "audit", "--include-account-ids", "--format", "csv")
    assert f"token of client {client} renewed" in full.stdout


def test_the_output_file_is_private_whole_and_never_overwritten_by_accident(
        recorded_day: RecordedDay, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    target = folder / "audit.jsonl"
    written = run_cli(recorded_day, "audit", "--output", str(target))
    assert written.returncode == 0 and written.stdout == ""
    assert written.stderr.startswith("last-id: ")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == run_cli(recorded_day, "audit").stdout
    assert os.listdir(folder) == ["audit.jsonl"]  # no temporary file left behind
    target.write_text("kept\n")
    refused = run_cli(recorded_day, "audit", "--output", str(target))
    assert refused.returncode == 2 and "--force" in error_line(refused)
    assert target.read_text() == "kept\n"
    replaced = run_cli(recorded_day, "audit", "--output", str(target), "--force",
                       "--format", "csv")
    assert replaced.returncode == 0
    assert target.read_text().startswith(",".join(COLUMNS))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(os.listdir(folder)) == ["audit.jsonl"]


def test_no_token_reaches_the_export(recorded_day: RecordedDay) -> None:
    for args in ((), ("--format", "csv", "--include-account-ids")):
        result = run_cli(recorded_day, "audit", *args)  # run_cli checks every token too
        assert result.returncode == 0 and result.stdout
        for token in (LEADER_TOKEN, *(f.token for f in recorded_day.followers)):
            assert token not in result.stdout


# ---- verify ----------------------------------------------------------------------------------


def test_verify_passes_on_the_recorded_day(recorded_day: RecordedDay) -> None:
    rows = exported(recorded_day)
    result = run_cli(recorded_day, "audit", "verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"{len(rows)} rows verified (ids 1-{len(rows)}); last hash "
                             f"{rows[-1]['hash']}\n")
    anchored = run_cli(recorded_day, "audit", "verify", "--anchor",
                       f"{rows[3]['id']}:{rows[3]['hash']}")
    assert anchored.returncode == 0, anchored.stderr


def test_verify_names_an_altered_row(recorded_day: RecordedDay, tmp_path: Path) -> None:
    day = private_copy(recorded_day, tmp_path)
    tamper(day, "UPDATE trail SET message = 'PLACE DONE: all fine' WHERE id = 7")
    result = run_cli(day, "audit", "verify")
    assert (result.returncode, result.stdout) == (12, "")
    assert error_line(result).startswith("error: audit trail row 7 was altered")


def test_verify_names_a_removed_row(recorded_day: RecordedDay, tmp_path: Path) -> None:
    day = private_copy(recorded_day, tmp_path)
    tamper(day, "DELETE FROM trail WHERE id = 5")
    result = run_cli(day, "audit", "verify")
    assert result.returncode == 12
    assert "row 5 was removed" in error_line(result)


def test_verify_with_an_anchor_that_no_longer_matches_fails(recorded_day: RecordedDay) -> None:
    result = run_cli(recorded_day, "audit", "verify", "--anchor", f"4:{'0' * 64}")
    assert result.returncode == 12
    assert "row 4 has hash" in error_line(result)


# ---- no database -----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [(), ("verify",), ("--format", "csv", "--output", "OUT")])
def test_a_missing_database_is_exit_7_and_none_is_made(recorded_day: RecordedDay,
                                                       tmp_path: Path, args: tuple) -> None:
    home = tmp_path / "empty-home"
    home.mkdir(mode=0o700)
    for where in (tmp_path / "no-home", home):
        day = replace(recorded_day, environ={**recorded_day.environ,
                                             "COPYTRADE_HOME": str(where)})
        result = run_cli(day, "audit", *(str(tmp_path / "x.csv") if a == "OUT" else a
                                         for a in args))
        assert (result.returncode, result.stdout) == (7, "")
        assert str(where / "copytrade.db") in error_line(result)
    assert not (tmp_path / "no-home").exists()
    assert os.listdir(home) == []
    assert not (tmp_path / "x.csv").exists()
