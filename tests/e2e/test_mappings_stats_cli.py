"""`copytrade mappings` and `copytrade stats` on a day recorded by a real follow run
(tests/e2e/recorded.py), and what they read underneath: the follower's average fill price
and acknowledgement time follow writes, the migration that adds them, the read-only open.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from peewee import SqliteDatabase
from recorded import RecordedDay, run_cli
from rich.console import Console

from copytrade.cli import render_reports
from copytrade.core.events import OrderReport
from copytrade.core.intents import IntentAction
from copytrade.core.ist import ist_today
from copytrade.core.orders import MirrorState, Trigger
from copytrade.core.report_math import MappingRow, follower_stats
from copytrade.engine.mirrors import MirrorUpdater
from copytrade.engine.positions import PositionBook
from copytrade.errors import StoreError
from copytrade.store import migrations, trail
from copytrade.store.db import open_reader, open_store
from copytrade.store.models import database as model_database
from copytrade.store.repo import Store
from copytrade.store.reports import mapping_rows

STATES = {"filled": {"f1": "FILLED", "f2": "FILLED"},
          "open": {"f1": "ACCEPTED", "f2": "ACCEPTED"},
          "cancelled": {"f1": "CANCELED", "f2": "CANCELED"},
          "skipped": {"f1": "FILLED", "f2": "SKIPPED"},
          "rejected": {"f1": "FILLED", "f2": "REJECTED"}}


def database(day: RecordedDay) -> Path:
    return day.home / "copytrade.db"


def recorded_date(day: RecordedDay) -> str:
    with sqlite3.connect(f"{database(day).as_uri()}?mode=ro", uri=True) as db:
        [(trading_date,)] = db.execute("SELECT DISTINCT trading_date FROM leaderorder")
    return trading_date


def json_rows(day: RecordedDay, *args: str) -> list[dict]:
    result = run_cli(day, "mappings", "--date", recorded_date(day), "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def rows(recorded_day: RecordedDay) -> Iterator[list[MappingRow]]:
    db = open_reader(database(recorded_day))
    try:
        yield mapping_rows(db, trading_date=recorded_date(recorded_day))
    finally:
        db.close()


# ---- mappings ------------------------------------------------------------------------------

def test_json_maps_every_leader_order_to_each_followers_order(
        recorded_day: RecordedDay) -> None:
    records = json_rows(recorded_day)
    by_order = {v: k for k, v in recorded_day.orders.items()}
    states: dict[str, dict[str, str]] = {}
    for record in records:
        states.setdefault(by_order[record["leader_order_id"]], {})[record["follower"]] = \
            record["state"]
    assert states == STATES
    filled = next(r for r in records if r["leader_order_id"] == recorded_day.orders["filled"]
                  and r["follower"] == "f1")
    assert (filled["symbol"], filled["side"], filled["product"]) == ("TCS", "BUY", "CNC")
    assert (filled["leader_quantity"], filled["leader_filled"]) == (3, 3)
    assert (filled["quantity"], filled["filled"]) == (3, 3)
    assert filled["follower_order_ids"] and filled["leader_average_price"] > 0
    assert filled["follower_average_price"] > 0
    assert filled["slippage_rupees"] == pytest.approx(
        filled["follower_average_price"] - filled["leader_average_price"], abs=1e-3)
    assert filled["ack_lag_ms"] > 0 and filled["acked_at"].endswith("+05:30")
    assert filled["leg"] == "entry" and filled["reason"] is None


def test_json_says_why_a_mirror_was_skipped_or_rejected(recorded_day: RecordedDay) -> None:
    records = {(r["leader_order_id"], r["follower"]): r for r in json_rows(recorded_day)}
    skipped = records[(recorded_day.orders["skipped"], "f2")]
    rejected = records[(recorded_day.orders["rejected"], "f2")]
    assert "INTRADAY" in skipped["reason"] and skipped["follower_order_ids"] == []
    assert skipped["ack_lag_ms"] is None and skipped["follower_average_price"] is None
    assert rejected["reason"] and rejected["filled"] == 0
    assert rejected["slippage_rupees"] is None


def test_plain_output_is_a_line_per_row_without_colour(recorded_day: RecordedDay) -> None:
    result = run_cli(recorded_day, "mappings", "--date", recorded_date(recorded_day),
                     process=True)
    assert result.returncode == 0 and result.stderr == ""
    header, *lines = result.stdout.splitlines()
    assert "\x1b" not in result.stdout
    assert header.split()[:3] == ["seen", "IST", "leader"]
    assert len(lines) == 10  # five leader orders, two followers
    skipped = next(line for line in lines if "skipped" in line)
    assert recorded_day.orders["skipped"] in skipped and "INTRADAY" in skipped


def test_csv_holds_the_json_rows(recorded_day: RecordedDay) -> None:
    result = run_cli(recorded_day, "mappings", "--date", recorded_date(recorded_day), "--csv")
    assert result.returncode == 0
    records = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(records) == 10
    assert list(records[0]) == list(render_reports.RECORD_FIELDS)
    assert {r["state"] for r in records} == {"FILLED", "ACCEPTED", "CANCELED", "SKIPPED",
                                             "REJECTED"}


def test_filters_by_status_follower_and_leader_order(recorded_day: RecordedDay) -> None:
    filled = json_rows(recorded_day, "--status", "filled")
    assert len(filled) == 4 and {r["state"] for r in filled} == {"FILLED"}
    skipped_f2 = json_rows(recorded_day, "--follower", "F2", "--status", "Skipped")
    assert [(r["follower"], r["leader_order_id"]) for r in skipped_f2] == [
        ("f2", recorded_day.orders["skipped"])]
    one = run_cli(recorded_day, "mappings", "--leader-order", recorded_day.orders["open"],
                  "--json")
    assert {(r["follower"], r["state"]) for r in json.loads(one.stdout)} == {
        ("f1", "ACCEPTED"), ("f2", "ACCEPTED")}
    elsewhere = run_cli(recorded_day, "mappings", "--leader-order",
                        recorded_day.orders["open"], "--date", "2001-01-01")
    assert elsewhere.returncode == 9 and "not on 2001-01-01" in elsewhere.stderr


def test_a_day_without_mirrors_prints_nothing_and_says_so(recorded_day: RecordedDay) -> None:
    before = ist_today(datetime.now(UTC))
    plain = run_cli(recorded_day, "mappings", "--date", "yesterday")
    as_json = run_cli(recorded_day, "mappings", "--date", "yesterday", "--json")
    if recorded_date(recorded_day) != str(before):
        pytest.skip("the day turned over in IST since the day was recorded")
    assert (plain.returncode, plain.stdout) == (0, "")
    assert plain.stderr.startswith("no mirrors recorded for ") and "(IST)" in plain.stderr
    assert (as_json.returncode, json.loads(as_json.stdout)) == (0, [])


@pytest.mark.parametrize(("args", "code", "words"), [
    (("--leader-order", "999999999999"), 9, "999999999999"),
    (("--follower", "nobody"), 9, "f1, f2"),
    (("--status", "done"), 2, "SKIPPED"),
    (("--date", "30/11/2026"), 2, "YYYY-MM-DD"),
    (("--json", "--csv"), 2, "--csv"),
])
def test_wrong_asks_are_one_line_with_their_exit_code(
        recorded_day: RecordedDay, args: tuple[str, ...], code: int, words: str) -> None:
    result = run_cli(recorded_day, "mappings", *args)
    assert result.returncode == code
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ") and words in result.stderr


def test_without_a_database_it_fails_and_creates_none(recorded_day: RecordedDay,
                                                      tmp_path: Path) -> None:
    home = tmp_path / "empty-home"
    empty = replace(recorded_day, environ={**recorded_day.environ,
                                           "COPYTRADE_HOME": str(home)})
    for command in ("mappings", "stats"):
        result = run_cli(empty, command)
        assert result.returncode == 7 and result.stderr.count("\n") == 1
        assert "no database" in result.stderr
    assert not home.exists()


# ---- stats ---------------------------------------------------------------------------------

def test_stats_count_time_and_price_each_follower(recorded_day: RecordedDay) -> None:
    result = run_cli(recorded_day, "stats", "--date", recorded_date(recorded_day), "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    f1, f2 = report["followers"]
    assert report["trading_date"] == recorded_date(recorded_day)
    assert (f1["follower"], f1["orders"], f1["mirrored"], f1["filled"]) == ("f1", 5, 5, 3)
    assert (f2["orders"], f2["mirrored"], f2["filled"]) == (5, 3, 1)
    assert list(f2["skipped"].values()) == [1] and "INTRADAY" in next(iter(f2["skipped"]))
    assert sum(f2["rejected"].values()) == 1 and f1["skipped"] == f1["rejected"] == {}
    for follower in (f1, f2):
        latency = follower["latency_ms"]
        assert latency["count"] >= 3
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert f1["slippage"]["orders"] == 3 and f2["slippage"]["orders"] == 1


def test_stats_plain_and_an_empty_day(recorded_day: RecordedDay) -> None:
    result = run_cli(recorded_day, "stats", "--date", recorded_date(recorded_day))
    assert result.returncode == 0 and "\x1b" not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == f"{recorded_date(recorded_day)} (IST)"
    assert lines[1].split()[:3] == ["follower", "orders", "mirrored"]
    assert [line.split()[0] for line in lines[2:4]] == ["f1", "f2"]
    assert any(line.startswith("f2 skipped 1: ") for line in lines)
    empty = run_cli(recorded_day, "stats", "--date", "2001-01-01", "--json")
    assert empty.returncode == 0 and json.loads(empty.stdout) == {
        "trading_date": "2001-01-01", "followers": []}
    assert "no mirrors recorded for 2001-01-01 (IST)" in empty.stderr


# ---- Rich, at fixed widths -----------------------------------------------------------------

def rendered(renderable: object, width: int) -> list[str]:
    console = Console(width=width, record=True, force_terminal=True)
    console.print(renderable)
    return console.export_text().splitlines()


@pytest.mark.parametrize("width", [80, 120])
def test_the_mappings_table_fits_by_leaving_columns_out(rows: list[MappingRow],
                                                        width: int) -> None:
    lines = rendered(render_reports.mappings_table(rows, width), width)
    assert all(len(line) <= width for line in lines)
    assert len(lines) == 2 + len(rows)  # header, rule, a line per row: nothing wraps
    header = lines[0].split()
    for kept in ("leader", "follower", "state", "filled", "symbol", "lag", "reason"):
        assert kept in header
    assert ("order" in header[header.index("follower"):]) == (width == 120)
    assert "slip" not in header  # the recorded day has none worth a column at these widths
    assert any(r.leader_order_id in lines[2] for r in rows)


def test_the_mappings_table_shows_every_column_when_there_is_room(
        rows: list[MappingRow]) -> None:
    lines = rendered(render_reports.mappings_table(rows, 240), 240)
    for title in ("seen IST", "product", "leader avg", "follower order", "slip %", "lag ms"):
        assert title in lines[0]


@pytest.mark.parametrize("width", [80, 120])
def test_the_stats_view_fits(rows: list[MappingRow], width: int) -> None:
    lines = rendered(render_reports.stats_view(follower_stats(rows), "2026-11-30", width),
                     width)
    assert all(len(line) <= width for line in lines)
    assert lines[0] == "2026-11-30 (IST)"
    for kept in ("follower", "mirrored", "skipped", "rejected", "p50"):
        assert kept in lines[1]
    assert ("max" in lines[1]) == (width == 120)


def test_a_brokers_text_can_neither_colour_nor_break_a_line() -> None:
    hostile = MappingRow("2026-11-30", "L1", 1, "TCS", "BUY", "CNC", "LIMIT", "REJECTED", 1,
                         0, 0.0, follower="f1", state="REJECTED", quantity=1,
                         reason="\x1b[31m[red]no[/red]\nsecond line\x07")
    plain = render_reports.mappings_plain([hostile])
    assert "\x1b" not in plain and "\x07" not in plain and len(plain.splitlines()) == 2
    lines = rendered(render_reports.mappings_table([hostile], 120), 120)
    assert len(lines) == 3 and "[red]no[/red] second line" in lines[2]


def test_a_terminal_narrower_than_every_column_still_shows_the_first() -> None:
    row = MappingRow("2026-11-30", "L" * 30, 1, "TCS", "BUY", "CNC", "LIMIT", "PENDING", 1, 0,
                     0.0)
    lines = rendered(render_reports.mappings_table([row], 3), 3)
    assert [line.strip() for line in lines] == ["le…", "───", "LL…"]
    cells = render_reports.mapping_cells([row])
    # the leader order does not fit in 12: the next by priority that does ("no mirror")
    assert render_reports.fit_columns(render_reports.MAPPING_COLUMNS, cells, 12) == [(10, 9)]


# ---- what follow writes, and the store underneath ------------------------------------------

def test_follow_writes_the_average_fill_price_and_the_acknowledgement(
        recorded_day: RecordedDay) -> None:
    with sqlite3.connect(f"{database(recorded_day).as_uri()}?mode=ro", uri=True) as db:
        mirrors = db.execute("SELECT m.state, m.average_price, m.average_prices, m.acked_at, "
                             "m.filled_quantity, m.follower_order_id, l.average_price FROM "
                             "mirrororder m JOIN leaderorder l ON l.order_id = "
                             "m.leader_order_id").fetchall()
    assert len(mirrors) == 10
    for state, average, averages, acked_at, filled, order_id, leader_average in mirrors:
        if state == "FILLED":
            assert filled > 0 and json.loads(averages) == {order_id: average}
            assert average == pytest.approx(leader_average, rel=0.05)
        else:
            assert (average, json.loads(averages)) == (0.0, {})
        assert (acked_at is None) == (state == "SKIPPED")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = open_store(tmp_path / "copytrade.db")
    yield Store(db, lambda: datetime(2026, 11, 30, 4, 0, tzinfo=UTC))
    db.close()


def report(order_id: str, traded: int, average: float, status: str = "PART_TRADED",
           quantity: int = 400) -> OrderReport:
    return OrderReport(order_id, status, "NSE_EQ", "11536", "BUY", "CNC", "LIMIT", "DAY",
                       quantity, traded, price=12.0, average_price=average)


def test_a_sliced_mirrors_average_is_weighted_by_each_slices_fills(store: Store) -> None:
    leader = report("L1", 0, 0.0, "PENDING", 800)
    with store.write():
        store.save_leader(leader, (), "2026-11-30")
        store.save_leader(report("L2", 0, 0.0, "PENDING"), (), "2026-11-30")
        mirror = store.create_mirror(leader_order="L1", follower="f1", correlation_id="c1",
                                     state="SUBMITTED", quantity=800, transaction_type="BUY")
    updater = MirrorUpdater(store, lambda name: PositionBook())
    for update in (report("A", 50, 10.0), report("B", 300, 12.0),
                   report("A", 100, 10.0),  # more of A at the same price: weighs more
                   report("A", 50, 99.0)):  # a stale report: fewer fills, not taken
        with store.write():
            updater.apply_report(mirror.id, update)
    stored = store.mirror_by_id(mirror.id)
    assert (stored.average_price, json.loads(stored.average_prices)) == (
        11.5, {"A": 10.0, "B": 12.0})
    assert stored.acked_at is not None and stored.state == "PARTIALLY_FILLED"
    [l1, l2] = mapping_rows(store.db, trading_date="2026-11-30")
    assert (l1.follower, l1.filled, l1.follower_average, l1.follower_order_ids) == (
        "f1", 400, 11.5, ("A", "B"))
    assert (l2.leader_order_id, l2.follower, l2.state) == ("L2", None, None)


def test_a_bracket_orders_exit_legs_are_rows_of_their_leader_order(store: Store) -> None:
    entry = replace(report("BO1", 10, 100.0, "TRADED", 10), product_type="BO")
    with store.write():
        store.save_leader(entry, (), "2026-11-30")
        store.save_leader_leg(replace(entry, leg=2, status="PENDING", order_type="STOP_LOSS",
                                      traded_quantity=0, average_price=0.0))
        for leg, side in ((1, "BUY"), (2, "SELL")):
            store.create_mirror(leader_order="BO1", follower="f1", leg=leg,
                                correlation_id=f"c{leg}", state="ACCEPTED", quantity=10,
                                transaction_type=side)
    rows = mapping_rows(store.db, leader_order_id="BO1")
    assert [(r.leg_label, r.side, r.order_type, r.leader_status, r.leader_filled)
            for r in rows] == [("entry", "BUY", "LIMIT", "TRADED", 10),
                               ("stop_loss", "SELL", "STOP_LOSS", "PENDING", 0)]
    assert rows[1].leader_average == 0.0 and rows[1].slippage is None
    assert follower_stats(rows)[0].orders == 1  # the exit leg is not counted apart
    plain = render_reports.mappings_plain(rows).splitlines()
    assert "BO1 stop_loss" in plain[2]


def test_an_older_database_gets_the_columns_without_losing_history(tmp_path: Path) -> None:
    path = tmp_path / "copytrade.db"
    before = migrations.MIGRATIONS.index(migrations._mirror_fills)
    older = SqliteDatabase(str(path))
    older.register_function(trail.row_hash, trail.HASH_FUNCTION, 1 + len(trail.FIELDS))
    model_database.initialize(older)  # the models create the first tables
    for step in migrations.MIGRATIONS[:before]:  # the schema the step before left
        step(older)
    clock = iter(datetime(2026, 11, 30, 3, 45, 0, ms * 1000, tzinfo=UTC)
                 for ms in (0, 0, 100, 150, 300, 400))
    store = Store(older, lambda: next(clock))
    with store.write():
        store.save_leader(report("L1", 1, 10.0, "TRADED", 1), (), "2026-11-30")
        mirror = store.create_mirror(leader_order="L1", follower="f1", correlation_id="c1",
                                     state="FILLED")
        for state in (MirrorState.SUBMITTED, MirrorState.ACCEPTED, MirrorState.FILLED):
            store.record_event(mirror, MirrorState.PLANNED, state, Trigger.ACK)
        store.add_intent(mirror, IntentAction.PLACE, {})
    for column in ("average_price", "average_prices", "acked_at"):
        older.execute_sql(f"ALTER TABLE mirrororder DROP COLUMN {column}")
    older.execute_sql(f"PRAGMA user_version = {before}")
    older.close()
    open_reader(path).close()  # an older schema is brought up to date, then read
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION
        assert db.execute("SELECT average_price, average_prices, acked_at FROM "
                          "mirrororder").fetchone() == (0.0, "{}",
                                                        "2026-11-30 03:45:00.150000+00:00")
        assert db.execute("SELECT (SELECT COUNT(*) FROM intent), "
                          "(SELECT COUNT(*) FROM stateevent)").fetchone() == (1, 3)
    migrations._mirror_fills(open_store(path))  # again: nothing to add, nothing lost


def test_the_reader_reads_while_follow_holds_the_write_lock(store: Store) -> None:
    with store.write():
        store.save_leader(report("L1", 0, 0.0, "PENDING"), (), "2026-11-30")
    with store.write():  # a write in progress, not yet committed
        store.save_leader(report("L2", 0, 0.0, "PENDING"), (), "2026-11-30")
        reader = open_reader(Path(store.db.database))
        try:
            seen = [r.leader_order_id for r in mapping_rows(reader, trading_date="2026-11-30")]
        finally:
            reader.close()
    assert seen == ["L1"]


@pytest.mark.parametrize(("content", "words"), [
    (b"", "empty"), (b"not a database at all, just text" * 100, "cannot read")])
def test_the_reader_refuses_what_is_not_a_database(tmp_path: Path, content: bytes,
                                                   words: str) -> None:
    path = tmp_path / "copytrade.db"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=words):
        open_reader(path)
    assert path.read_bytes() == content


def test_the_reader_refuses_a_sqlite_file_that_is_not_copytrades(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a copytrade database"):
        open_reader(path)
