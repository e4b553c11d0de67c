"""The audit trail (copytrade/store/trail.py): what the triggers record, the hash chain,
what `verify_chain` finds when rows are altered, inserted or removed (and what it cannot),
the migration of a database from before the trail, and the export's account-id masking."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from copytrade.cli.audit_cmd import _masked, mask_account_ids
from copytrade.core.events import OrderReport, ReportSource
from copytrade.core.intents import IntentStatus
from copytrade.core.orders import MirrorState, Trigger
from copytrade.errors import TamperedError
from copytrade.store import migrations, trail
from copytrade.store.db import open_reader, open_store
from copytrade.store.repo import Store

START = datetime(2026, 11, 30, 3, 45, tzinfo=UTC)  # 09:15 IST
TRAIL_SCHEMA = migrations.MIGRATIONS.index(migrations._audit_trail) + 1


def ticking_clock() -> Callable[[], datetime]:
    """Each reading 1 ms after the last: rows get distinct, increasing times."""
    ticks = iter(range(10**9))
    return lambda: START + timedelta(milliseconds=next(ticks))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "copytrade.db"


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    db = open_store(path)
    yield Store(db, ticking_clock())
    db.close()


def leader(order_id: str = "100000000001", **changes: object) -> OrderReport:
    report = OrderReport(order_id, "PENDING", "NSE_EQ", "11536", "BUY", "CNC", "LIMIT", "DAY",
                         3, 0, price=3296.0, symbol="TCS", source=ReportSource.STREAM)
    return replace(report, **changes)  # type: ignore[arg-type]


def mirror_one_order(store: Store, order_id: str = "100000000001") -> None:
    """What follow writes for a leader order mirrored to one follower and filled."""
    with store.write():
        store.save_leader(leader(order_id, status="TRANSIT"), (1,), "2026-11-30")
    with store.write():
        store.save_leader(leader(order_id), (2,), "2026-11-30")
    with store.write():
        mirror = store.create_mirror(leader_order=order_id, follower="f1", leg=1, attempt=1,
                                     correlation_id=f"ct-{order_id}", state="SUBMITTED",
                                     reason="", quantity=3, price=3296.0, order_type="LIMIT")
        store.record_event(mirror, MirrorState.PLANNED, MirrorState.SUBMITTED, Trigger.SUBMIT,
                           "3 units")
        intent = store.add_intent(mirror, "PLACE", {"order": {"quantity": 3}})
    with store.write():
        store.finish_intent(intent, IntentStatus.DONE, "200000000005")
        store.apply_trigger(mirror, Trigger.ACK)
    traded = leader(order_id, status="TRADED", traded_quantity=3)
    with store.write():
        store.save_leader(traded, (3,), "2026-11-30")
        store.apply_trigger(mirror, Trigger.FILL)
    with store.write():  # a REST read that says nothing new: not a change
        store.save_leader(replace(traded, source=ReportSource.REST), (3,), "2026-11-30")


def rows(store: Store) -> list[trail.TrailRow]:
    return list(trail.trail_rows(store.db))


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection, as a tamperer (or another tool) would open the file."""
    return sqlite3.connect(path, isolation_level=None)


def tamper(path: Path, *statements: str) -> None:
    with closing(raw(path)) as conn:
        conn.execute("DROP TRIGGER IF EXISTS trail_no_update")
        conn.execute("DROP TRIGGER IF EXISTS trail_no_delete")
        for sql in statements:
            conn.execute(sql)


def verify(path: Path) -> trail.ChainReport:
    db = open_reader(path)
    try:
        return trail.verify_chain(db)
    finally:
        db.close()


# ---- what is recorded ------------------------------------------------------------------------


def test_a_mirrored_order_is_recorded_in_the_order_it_was_written(store: Store) -> None:
    mirror_one_order(store)
    got = [(r.kind, r.message) for r in rows(store)]
    assert got == [
        ("trail_started", f"audit trail started (schema {TRAIL_SCHEMA})"),
        ("leader_order", "first seen: TRANSIT BUY 3 TCS LIMIT @ 3296.0, traded 0, from the "
                         "stream"),
        ("leader_order", "changed: PENDING BUY 3 TCS LIMIT @ 3296.0, traded 0, from the "
                         "stream (was TRANSIT 3, traded 0, @ 3296.0)"),
        ("transition", "PLANNED -> SUBMITTED (SUBMIT): 3 units"),
        ("intent", "PLACE committed (intent 1)"),
        ("intent_done", "PLACE DONE: 200000000005"),
        ("transition", "SUBMITTED -> ACCEPTED (ACK)"),
        ("leader_order", "changed: TRADED BUY 3 TCS LIMIT @ 3296.0, traded 3, from the "
                         "stream (was PENDING 3, traded 0, @ 3296.0)"),
        ("transition", "ACCEPTED -> FILLED (FILL)"),
    ]
    assert [r.id for r in rows(store)] == list(range(1, 10))
    assert verify(Path(store.db.database)).rows == 9


def test_each_row_names_its_leader_order_follower_and_mirror(store: Store) -> None:
    mirror_one_order(store)
    recorded = rows(store)
    assert {r.leader_order_id for r in recorded[1:]} == {"100000000001"}
    assert {(r.follower, r.mirror_id) for r in recorded if r.kind in
            {"intent", "intent_done", "transition"}} == {("f1", 1)}
    intent = next(r for r in recorded if r.kind == "intent")
    assert intent.data == {"intent_id": 1, "action": "PLACE", "correlation_id":
                           "ct-100000000001", "request": {"order": {"quantity": 3}}}
    done = next(r for r in recorded if r.kind == "intent_done")
    assert done.data == {"intent_id": 1, "action": "PLACE", "status": "DONE",
                         "outcome": "200000000005"}


def test_a_leader_row_says_whether_the_stream_or_a_rest_read_reported_it(store: Store) -> None:
    with store.write():
        store.save_leader(leader(source=ReportSource.REST), (1,), "2026-11-30")
    with store.write():
        store.save_leader(leader(price=3300.0), (2,), "2026-11-30")
    first, changed = [r for r in rows(store) if r.kind == "leader_order"]
    assert (first.data["source"], first.data["first"]) == ("rest", True)
    assert first.message.endswith("from a REST read")
    assert (changed.data["source"], changed.data["price"], changed.data["first"]) == (
        "stream", 3300.0, False)
    stored = store.db.execute_sql("SELECT source, recorded_at FROM leaderorder").fetchone()
    assert stored[0] == "stream" and stored[1] is not None


def test_a_report_that_changes_nothing_writes_no_row(store: Store) -> None:
    with store.write():
        store.save_leader(leader(), (1,), "2026-11-30")
    before = len(rows(store))
    for source in (ReportSource.REST, ReportSource.STREAM, ReportSource.REST):
        with store.write():
            store.save_leader(leader(source=source), (2,), "2026-11-30")
    assert len(rows(store)) == before


def test_audit_events_come_through_with_their_own_kind_and_data(store: Store) -> None:
    with store.write():
        store.audit("cancel_mirror", "f1: cancelled", leader_order_id="L1", follower="f1",
                    data={"mirror_id": 7, "failed": 0})
        store.audit("token_renewed", "token of client 1000000002 renewed")
    cancel, renewed = rows(store)[1:]
    assert (cancel.kind, cancel.leader_order_id, cancel.follower, cancel.mirror_id) == (
        "cancel_mirror", "L1", "f1", 7)
    assert cancel.data == {"failed": 0, "mirror_id": 7}
    assert (renewed.kind, renewed.mirror_id, renewed.data) == ("token_renewed", None, {})


def test_texts_of_any_shape_hash_the_same_in_sql_and_in_python(store: Store) -> None:
    awkward = ["quote ' and \"double\"", "line\nbreak\ttab", "₹ 1,200 — नमस्ते 🙂",
               "", "a\x00nul", "1:2,3~", "~"]
    with store.write():
        for text in awkward:
            store.audit("anomaly", text, follower=text or None, data={"text": text})
    assert [r.message for r in rows(store)[1:]] == awkward
    assert verify(Path(store.db.database)).rows == 1 + len(awkward)


def test_leader_legs_are_recorded_when_they_change(store: Store) -> None:
    leg = leader("100000000002", leg=2, order_type="STOP_LOSS_MARKET", trigger_price=3200.0)
    with store.write():
        store.save_leader_leg(leg)
        store.save_leader_leg(leg)  # the same again: no row
        store.save_leader_leg(replace(leg, trigger_price=3250.0))
    legs = [r for r in rows(store) if r.kind == "leader_leg"]
    assert [r.data["trigger_price"] for r in legs] == [3200.0, 3250.0]
    assert legs[0].message == "leg 2: PENDING STOP_LOSS_MARKET 3 @ 3296.0, trigger 3200.0, " \
                              "traded 0"


def test_trail_for_leader_order_holds_that_order_only_oldest_first(store: Store) -> None:
    mirror_one_order(store, "100000000001")
    mirror_one_order(store, "100000000009")
    history = trail.trail_for_leader_order(store.db, "100000000009")
    assert len(history) == 8
    assert {r.leader_order_id for r in history} == {"100000000009"}
    assert [r.id for r in history] == sorted(r.id for r in history)
    assert trail.trail_for_leader_order(store.db, "nope") == []


def test_rows_are_read_by_cursor_and_by_time(store: Store) -> None:
    mirror_one_order(store)
    everything = rows(store)
    assert [r.id for r in trail.trail_rows(store.db, after_id=7)] == [8, 9]
    assert list(trail.trail_rows(store.db, after_id=9)) == []
    middle = everything[4].at
    since = [r.id for r in trail.trail_rows(store.db, since=middle)]
    until = [r.id for r in trail.trail_rows(store.db, until=middle)]
    assert since == [r.id for r in everything if r.at >= middle]
    assert until == [r.id for r in everything if r.at <= middle]
    assert [r.id for r in trail.trail_rows(store.db, since=middle, until=middle)] == [5]


# ---- the chain -------------------------------------------------------------------------------


def test_rows_are_chained_from_the_genesis(store: Store) -> None:
    mirror_one_order(store)
    recorded = rows(store)
    assert recorded[0].prev_hash == trail.GENESIS
    for before, after in pairwise(recorded):
        assert after.prev_hash == before.hash
    report = verify(Path(store.db.database))
    assert (report.rows, report.head_id, report.head_hash) == (9, 9, recorded[-1].hash)


def test_an_altered_row_is_named(store: Store, path: Path) -> None:
    mirror_one_order(store)
    tamper(path, "UPDATE trail SET message = 'PLACE DONE: nothing to see' WHERE id = 6")
    with pytest.raises(TamperedError, match=r"row 6 was altered"):
        verify(path)


def test_an_altered_and_rehashed_row_breaks_the_next_link(store: Store, path: Path) -> None:
    mirror_one_order(store)
    *content, prev, _hash = store.db.execute_sql(
        "SELECT at, kind, leader_order_id, follower, mirror_id, message, data, prev_hash, "
        "hash FROM trail WHERE id = 6").fetchone()
    content[5] = "PLACE DONE: forged"
    forged = trail.row_hash(prev, *content)
    tamper(path, f"UPDATE trail SET message = '{content[5]}', hash = '{forged}' WHERE id = 6")
    with pytest.raises(TamperedError, match=r"row 7 does not follow row 6"):
        verify(path)


def test_a_row_inserted_with_a_valid_hash_is_named(store: Store, path: Path) -> None:
    mirror_one_order(store)
    before = rows(store)[3]  # row 4
    at = store.db.execute_sql("SELECT at FROM trail WHERE id = 4").fetchone()[0]
    forged = trail.row_hash(before.hash, at, "anomaly", None, None, None, "inserted", "{}")
    tamper(path,
           "UPDATE trail SET id = id + 1000 WHERE id > 4",  # make room, keeping the order
           "UPDATE trail SET id = id - 999 WHERE id > 1000",
           "INSERT INTO trail (id, at, kind, leader_order_id, follower, mirror_id, message, "
           f"data, prev_hash, hash) VALUES (5, '{at}', 'anomaly', NULL, NULL, NULL, "
           f"'inserted', '{{}}', '{before.hash}', '{forged}')")
    with pytest.raises(TamperedError, match=r"row 5 inserted: row 6 follows row 4"):
        verify(path)


def test_a_row_inserted_without_its_hash_is_named(store: Store, path: Path) -> None:
    mirror_one_order(store)
    tamper(path, "UPDATE trail SET id = id + 1000 WHERE id > 4",
           "UPDATE trail SET id = id - 999 WHERE id > 1000",
           "INSERT INTO trail (id, at, kind, message, data, prev_hash, hash) VALUES "
           "(5, '2026-11-30 03:45:00+00:00', 'anomaly', 'x', '{}', 'x', 'x')")
    with pytest.raises(TamperedError, match=r"row 5 was altered \(or inserted\)"):
        verify(path)


def test_a_removed_row_is_named(store: Store, path: Path) -> None:
    mirror_one_order(store)
    tamper(path, "DELETE FROM trail WHERE id = 4")
    with pytest.raises(TamperedError, match=r"row 4 was removed \(the ids go from 3 to 5\)"):
        verify(path)


def test_removed_rows_renumbered_to_hide_the_gap_still_break_the_chain(
        store: Store, path: Path) -> None:
    mirror_one_order(store)
    tamper(path, "DELETE FROM trail WHERE id = 4", "UPDATE trail SET id = id - 1 WHERE id > 4")
    with pytest.raises(TamperedError, match=r"row 4 does not follow row 3"):
        verify(path)


def test_removed_last_rows_are_found_by_the_sequence(store: Store, path: Path) -> None:
    mirror_one_order(store)
    tamper(path, "DELETE FROM trail WHERE id >= 8")
    with pytest.raises(TamperedError, match=r"rows 8-9 were removed from the end"):
        verify(path)


def test_a_removed_last_row_stays_found_after_new_rows(store: Store, path: Path) -> None:
    mirror_one_order(store)
    tamper(path, "DELETE FROM trail WHERE id = 9")
    with store.write():
        store.audit("anomaly", "written after the removal")
    with pytest.raises(TamperedError, match=r"row 9 was removed \(the ids go from 8 to 10\)"):
        verify(path)


def test_what_the_chain_alone_cannot_see_an_anchor_catches(store: Store, path: Path) -> None:
    """Not detectable by the chain alone: the last rows removed AND the sequence set back
    (nothing in the file remembers them), or every row from some row on rewritten and
    re-hashed. A hash kept from an earlier export (--anchor) catches both."""
    mirror_one_order(store)
    kept = rows(store)[8]  # row 9, as an earlier export showed it
    tamper(path, "DELETE FROM trail WHERE id = 9",
           "UPDATE sqlite_sequence SET seq = 8 WHERE name = 'trail'")
    assert verify(path).rows == 8
    db = open_reader(path)
    try:
        with pytest.raises(TamperedError, match=r"row 9 \(the anchor\) is not there"):
            trail.check_anchor(db, 9, kept.hash)
        trail.check_anchor(db, 8, rows(store)[7].hash)
    finally:
        db.close()


def test_the_trail_refuses_updates_and_deletes(store: Store) -> None:
    mirror_one_order(store)
    for sql in ("UPDATE trail SET message = 'x' WHERE id = 2", "DELETE FROM trail"):
        with pytest.raises(Exception, match="append-only"):
            store.db.execute_sql(sql)
    assert verify(Path(store.db.database)).rows == 9


def test_a_connection_without_the_hash_function_cannot_write_unrecorded(
        store: Store, path: Path) -> None:
    with closing(raw(path)) as conn, pytest.raises(sqlite3.OperationalError,
                                                   match="no such function: trail_hash"):
        conn.execute("INSERT INTO auditevent (at, kind, message, data) VALUES "
                     "('2026-11-30 03:45:00+00:00', 'anomaly', 'sneaky', '{}')")
    assert store.db.execute_sql("SELECT COUNT(*) FROM auditevent").fetchone()[0] == 0


def test_two_connections_writing_at_once_keep_one_chain(store: Store, path: Path) -> None:
    """follow and cancel-mirror write the same file: SQLite serialises their IMMEDIATE
    transactions, and each row follows the one committed before it."""
    other_db = open_store(path)
    other = Store(other_db, ticking_clock())
    errors: list[BaseException] = []

    def write(writer: Store, name: str) -> None:
        try:
            for index in range(150):
                with writer.write():
                    writer.audit("anomaly", f"{name} {index}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, n)) for s, n in ((store, "a"),
                                                                       (other, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    other_db.close()
    assert not errors and not any(t.is_alive() for t in threads)
    assert verify(path).rows == 301


def test_the_trail_is_read_while_a_writer_holds_its_lock(store: Store, path: Path) -> None:
    mirror_one_order(store)
    with closing(raw(path)) as writer:
        trail.register(writer)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO auditevent (at, kind, message, data) VALUES "
                       "('2026-11-30 03:50:00+00:00', 'anomaly', 'uncommitted', '{}')")
        assert verify(path).rows == 9  # the committed rows, at once (WAL)
        writer.execute("COMMIT")
    assert verify(path).rows == 10


# ---- migration -------------------------------------------------------------------------------


def make_v3_database(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database as copytrade at schema 3 left it, with a mirrored order, an audit event
    and an intent still SENDING."""
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:3])
        patched.setattr(migrations, "SCHEMA_VERSION", 3)
        assert TRAIL_SCHEMA > 3
        db = open_store(path)
        store = Store(db, ticking_clock())
        mirror_one_order(store)
        with store.write():
            store.audit("skipped", "product INTRADAY is on the product deny list",
                        leader_order_id="100000000001", follower="f2")
            mirror = store.mirror("100000000001", "f1")
            store.add_intent(mirror, "CANCEL", {})
        db.close()
    with closing(raw(path)) as conn:  # the columns schema 3 did not have
        for column in ("source", "recorded_at"):
            conn.execute(f"ALTER TABLE leaderorder DROP COLUMN {column}")
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'trail'").fetchone() \
            is None


def test_a_schema_3_database_is_upgraded_in_place_and_its_rows_chained(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    make_v3_database(path, monkeypatch)
    db = open_store(path)
    try:
        store = Store(db, ticking_clock())
        assert migrations.schema_version(db) == migrations.SCHEMA_VERSION
        copied = rows(store)
        kinds = [r.kind for r in copied]
        # leader orders in their latest state only; every intent, outcome, transition, audit
        assert kinds == ["leader_order", "transition", "intent", "intent_done", "transition",
                         "transition", "skipped", "intent", "trail_started"]
        assert copied[0].message == ("first seen: TRADED BUY 3 TCS LIMIT @ 3296.0, traded 3, "
                                     "from an unrecorded source")
        assert copied[-1].data == {"copied": 8, "schema": TRAIL_SCHEMA}
        assert [r.at for r in copied[:-1]] == sorted(r.at for r in copied[:-1])
        with store.write():
            store.audit("anomaly", "after the upgrade")
        assert rows(store)[-1].id == 10
    finally:
        db.close()
    assert verify(path).rows == 10
    open_store(path).close()  # opened again: nothing copied twice
    assert verify(path).rows == 10


def test_the_migration_can_run_again_without_copying_twice(path: Path) -> None:
    db = open_store(path)
    try:
        store = Store(db, ticking_clock())
        mirror_one_order(store)
        db.execute_sql(f"PRAGMA user_version = {TRAIL_SCHEMA - 1}")
    finally:
        db.close()
    open_store(path).close()
    assert verify(path).rows == 9


# ---- export: account ids ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "masked"), [
    ("token of client 1000000002 renewed", "token of client 10******02 renewed"),
    ("1000000002,1000000003", "10******02,10******03"),
    ("order 100000000017 of 1234567890", "order 100000000017 of 12******90"),
    ("ct2611301000000002x", "ct2611301000000002x"),  # a longer run of digits: not an id
    ("12345 and 123456789", "12345 and 123456789"),
])
def test_ten_digit_client_ids_are_masked(text: str, masked: str) -> None:
    assert mask_account_ids(text) == masked


def test_masking_walks_the_data() -> None:
    data = {"client_id": 1000000002, "dhanClientId": "1000000003", "quantity": 1234567890,
            "seen_at": 1796054604.44, "ids": ["1000000004", 7], "1000000005": True}
    assert _masked(data) == {"client_id": "10******02", "dhanClientId": "10******03",
                             "quantity": 1234567890, "seen_at": 1796054604.44,
                             "ids": ["10******04", 7], "10******05": True}
