"""Leader events for the bus (issue 12): the pure parts (copytrade/core/bus_events.py: ids,
subjects, payload) and the outbox read from the store (copytrade/store/bus_queries.py:
per-order sequence numbers, the snapshot as recorded, the cursor)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from freezegun import freeze_time

from copytrade.core.bus_events import (
    LeaderChange,
    change_msg_id,
    event_bytes,
    event_payload,
    leader_subject,
    msg_id,
    order_snapshot,
    subject_token,
)
from copytrade.core.events import OrderReport, ReportSource
from copytrade.store import bus_queries, migrations
from copytrade.store.db import open_store
from copytrade.store.repo import Store

IST = timezone(timedelta(hours=5, minutes=30))
DAY = date(2026, 11, 30)
START = datetime(2026, 11, 30, 3, 45, tzinfo=UTC)


def report(order_id: str = "100000000001", **changes: object) -> OrderReport:
    base = OrderReport(order_id, "PENDING", "NSE_EQ", "11536", "BUY", "CNC", "LIMIT", "DAY",
                       3, 0, price=3296.0, symbol="TCS", source=ReportSource.STREAM,
                       created_at=datetime(2026, 11, 30, 9, 15, 1, tzinfo=IST),
                       updated_at=datetime(2026, 11, 30, 9, 15, 2, tzinfo=IST))
    return replace(base, **changes)  # type: ignore[arg-type]


def change(seq: int = 1, **changes: object) -> LeaderChange:
    return LeaderChange(7, DAY, seq, report(**changes))


# ---- ids and subjects: pure, no clock --------------------------------------------------------


def test_the_msg_id_is_the_trading_date_the_order_and_its_sequence_number() -> None:
    assert msg_id(DAY, "100000000001", 3) == "20261130:100000000001:3"
    assert change_msg_id(change(3)) == "20261130:100000000001:3"


def test_the_msg_id_does_not_depend_on_the_clock() -> None:
    with freeze_time("2026-11-30 04:00:00"):
        first = change_msg_id(change(2)), event_bytes(change(2))
    with freeze_time("2027-01-05 12:00:00"):
        assert (change_msg_id(change(2)), event_bytes(change(2))) == first


def test_each_change_of_an_order_has_its_own_id() -> None:
    ids = {msg_id(DAY, "100000000001", seq) for seq in range(1, 6)}
    ids |= {msg_id(DAY, "100000000002", 1), msg_id(date(2026, 12, 1), "100000000001", 1)}
    assert len(ids) == 7


@pytest.mark.parametrize("seq", [0, -1])
def test_a_sequence_number_starts_at_one(seq: int) -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        msg_id(DAY, "1", seq)


def test_the_subject_names_the_trading_date_and_the_order() -> None:
    assert leader_subject("copytrade", DAY, "100000000001") == \
        "copytrade.leader.20261130.100000000001"
    assert leader_subject("acme.prod", DAY, "7") == "acme.prod.leader.20261130.7"


@pytest.mark.parametrize(("order_id", "token"), [
    ("100000000001", "100000000001"),
    ("a.b", "a%2Eb"), ("x*", "x%2A"), ("y>", "y%3E"), ("50%", "50%25"),
])
def test_an_order_id_is_always_one_subject_token(order_id: str, token: str) -> None:
    assert subject_token(order_id) == token
    assert not set(".*> ") & set(subject_token(order_id))


# ---- the payload -----------------------------------------------------------------------------


def test_the_payload_follows_the_contract() -> None:
    payload = json.loads(event_bytes(change(3)))
    assert {key: payload[key] for key in ("v", "trading_date", "order_id", "seq", "source")} == {
        "v": 1, "trading_date": "2026-11-30", "order_id": "100000000001", "seq": 3,
        "source": "stream"}
    assert set(payload) == {"v", "trading_date", "order_id", "seq", "source",
                            "position_before", "order"}
    assert payload["position_before"] is None  # not known for this change
    assert json.loads(event_bytes(LeaderChange(7, DAY, 1, report(), -75)))[
        "position_before"] == -75
    assert set(payload["order"]) == {f.name for f in fields(OrderReport)}
    assert payload["order"]["created_at"] == "2026-11-30T09:15:01+05:30"
    assert payload["order"]["price"] == 3296.0
    assert payload["order"]["lot_size"] is None


def test_the_same_change_gives_the_same_bytes() -> None:
    assert event_bytes(change(2)) == event_bytes(change(2))
    assert event_bytes(change(2)) != event_bytes(change(2, status="TRADED"))


def test_the_snapshot_is_json_safe_whatever_the_text_or_number() -> None:
    odd = report(reason="bad \udc80 text", average_price=float("nan"),
                 price=float("inf"), updated_at=None, source=ReportSource.REST)
    snapshot = order_snapshot(odd)
    assert snapshot["average_price"] is None and snapshot["price"] is None
    assert snapshot["updated_at"] is None and snapshot["source"] == "rest"
    text = event_bytes(LeaderChange(1, DAY, 1, odd)).decode("utf-8")  # valid UTF-8
    assert json.loads(text)["order"]["reason"].startswith("bad ")


def test_the_payload_holds_no_follower_and_no_secret() -> None:
    body = event_bytes(change(1)).decode()
    payload = event_payload(change(1))
    for word in ("token", "client_id", "follower", "password", "secret"):
        assert word not in body
    assert payload["order"]["correlation_id"] == ""


def test_an_unknown_source_is_sent_as_a_rest_read() -> None:
    payload = event_payload(LeaderChange(1, DAY, 1, report(source="")))  # type: ignore[arg-type]
    assert payload["source"] == "rest"


# ---- the outbox in the store -----------------------------------------------------------------


def ticking_clock() -> Callable[[], datetime]:
    ticks = iter(range(10**9))
    return lambda: START + timedelta(milliseconds=next(ticks))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = open_store(tmp_path / "copytrade.db")
    yield Store(db, ticking_clock())
    db.close()


def save(store: Store, leader: OrderReport, trading_date: str = "2026-11-30") -> None:
    with store.write():
        store.save_leader(leader, (), trading_date)


def all_changes(store: Store, after: int = 0) -> list[LeaderChange]:
    return bus_queries.leader_changes(store.db, after, 1000).changes


def test_each_recorded_change_is_one_event_numbered_per_order(store: Store) -> None:
    save(store, report("A", status="TRANSIT"))
    save(store, report("B"))
    save(store, report("A"))
    save(store, report("A"))  # nothing changed: no event
    with store.write():
        store.audit("skipped", "not a leader change")
    save(store, report("A", status="TRADED", traded_quantity=3))
    events = all_changes(store)
    assert [(e.order_id, e.seq, e.report.status) for e in events] == [
        ("A", 1, "TRANSIT"), ("B", 1, "PENDING"), ("A", 2, "PENDING"), ("A", 3, "TRADED")]
    assert [e.trail_id for e in events] == sorted(e.trail_id for e in events)
    # read again, in pieces: the same numbers
    assert [e.seq for e in all_changes(store, events[1].trail_id)] == [2, 3]


def test_an_exit_leg_counts_in_its_orders_sequence(store: Store) -> None:
    entry = report("BO1", product_type="BO", status="TRADED", traded_quantity=3,
                   bo_profit_value=4.0, bo_stop_loss_value=2.0)
    save(store, entry)
    with store.write():
        store.save_leader_leg(replace(entry, leg=2, status="PENDING", transaction_type="SELL",
                                      order_type="STOP_LOSS_MARKET", trigger_price=3290.0,
                                      traded_quantity=0))
    first, leg = all_changes(store)
    assert (first.seq, leg.seq, leg.report.leg, leg.report.key) == (1, 2, 2, "BO1#2")
    assert leg.report.transaction_type == "SELL"  # the exit is the entry's other side
    assert (leg.report.trigger_price, leg.report.order_type) == (3290.0, "STOP_LOSS_MARKET")
    assert first.report.bo_profit_value == 4.0 and first.report.bo_stop_loss_value == 2.0


def test_the_snapshot_is_the_change_as_recorded(store: Store) -> None:
    placed = report("A", after_market_order=True, amo_time="OPEN_30", lot_size=1,
                    disclosed_quantity=0, correlation_id="mine-1")
    save(store, placed)
    save(store, replace(placed, price=3300.0, quantity=5))
    first, second = all_changes(store)
    assert (first.report.price, first.report.quantity) == (3296.0, 3)  # as it was then
    assert (second.report.price, second.report.quantity) == (3300.0, 5)
    assert first.trading_date == DAY
    for event in (first, second):
        assert event.report.created_at == placed.created_at
        assert (event.report.amo_time, event.report.after_market_order) == ("OPEN_30", True)
        assert (event.report.lot_size, event.report.correlation_id) == (1, "mine-1")
        assert event.report.source == ReportSource.STREAM and event.report.symbol == "TCS"
    # the leader's update time is kept for the latest state only
    assert first.report.updated_at is None
    assert second.report.updated_at == placed.updated_at


def test_the_cursor_starts_at_todays_first_event_and_only_moves_forward(store: Store) -> None:
    save(store, report("OLD"), "2026-11-29")
    save(store, report("NEW"))
    new_event = all_changes(store)[1]
    start = bus_queries.first_cursor(store.db, DAY)
    assert [e.order_id for e in all_changes(store, start)] == ["NEW"]
    assert start == new_event.trail_id - 1
    assert bus_queries.read_cursor(store.db, "COPYTRADE") is None
    bus_queries.save_cursor(store, "COPYTRADE", 10)
    bus_queries.save_cursor(store, "COPYTRADE", 4)  # behind: ignored
    assert bus_queries.read_cursor(store.db, "COPYTRADE") == 10
    assert bus_queries.read_cursor(store.db, "OTHER") is None


def test_nothing_recorded_yet_starts_at_the_head(store: Store) -> None:
    with store.write():
        store.audit("anomaly", "no leader order yet")
    head = bus_queries.trail_head(store.db)
    assert head > 0 and bus_queries.first_cursor(store.db, DAY) == head
    assert bus_queries.pending_count(store.db, head) == 0


def test_the_outbox_reads_in_batches_up_to_the_head(store: Store) -> None:
    for index in range(5):
        save(store, report(f"O{index}"))
    outbox = bus_queries.leader_changes(store.db, 0, 2)
    assert [e.order_id for e in outbox.changes] == ["O0", "O1"]
    assert outbox.head == bus_queries.trail_head(store.db)
    assert bus_queries.pending_count(store.db, outbox.changes[-1].trail_id) == 3


def test_the_migration_adds_the_outbox_to_an_older_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = Store(open_store(path), ticking_clock())
    save(store, report("A"))
    db = store.db
    for column in ("leader_created_at", "amo_time", "bo_profit_value", "bo_stop_loss_value"):
        db.execute_sql(f"ALTER TABLE leaderorder DROP COLUMN {column}")
    db.execute_sql("ALTER TABLE leaderorder DROP COLUMN position_before")
    db.execute_sql("DROP TABLE buscursor")
    db.execute_sql(f"PRAGMA user_version = {migrations.MIGRATIONS.index(migrations._bus_outbox)}")
    db.close()
    db = open_store(path)
    try:
        store = Store(db, ticking_clock())
        [event] = all_changes(store)
        assert (event.order_id, event.seq, event.report.created_at) == ("A", 1, None)
        assert event.position_before is None  # recorded before it was kept
        bus_queries.save_cursor(store, "COPYTRADE", event.trail_id)
        migrations._bus_outbox(db)  # again: nothing added twice, nothing lost
        assert bus_queries.read_cursor(db, "COPYTRADE") == event.trail_id
    finally:
        db.close()


def test_the_leader_position_before_an_order_is_fixed_at_its_first_save(store: Store) -> None:
    placed = report("A", quantity=3)
    with store.write():
        store.save_leader(placed, (), "2026-11-30", position_before=-40)
    with store.write():  # a later change gives another figure: the first one stays
        store.save_leader(replace(placed, quantity=5), (), "2026-11-30", position_before=7)
    assert [e.position_before for e in all_changes(store)] == [-40, -40]


def test_an_earlier_change_never_carries_a_later_disclosed_quantity(store: Store) -> None:
    placed = report("A", quantity=3, disclosed_quantity=0)
    save(store, placed)
    save(store, replace(placed, quantity=10, disclosed_quantity=5))  # both raised later
    first, second = all_changes(store)
    assert (first.report.quantity, first.report.disclosed_quantity) == (3, 0)
    assert (second.report.quantity, second.report.disclosed_quantity) == (10, 5)
    for event in (first, second):  # what the agent's decoder accepts
        assert event.report.disclosed_quantity <= event.report.quantity
