"""The replicator gathers the planner's inputs (core/plan.py) and records its actions:
what it reads, when, and the side effects it keeps outside the pure call (the lot-size
mismatch audit, the quote fetched before the write transaction). Real store on a
temporary file, no broker: the followers' workers are stand-ins that collect intents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from copytrade.core.events import OrderReport, ReportSource
from copytrade.core.sizing import NO_CAPS, SizingMode, SizingRule
from copytrade.engine.mirrors import MirrorUpdater
from copytrade.engine.positions import PositionBook
from copytrade.engine.replicator import FollowerPlan, Replicator
from copytrade.store.db import open_store
from copytrade.store.repo import Store

DAY = date(2025, 1, 6)
NOW = datetime(2025, 1, 6, 4, 0, tzinfo=UTC)
LISTED_LOT = 65


@dataclass
class Reads:
    """How often the replicator asked for each input, and in which state."""

    lot_size: int = 0
    freeze_limit: int = 0
    now: int = 0
    quotes: list[bool] = field(default_factory=list)  # in a transaction, per quote
    ticks: int = 0
    price: float | None = 100.5  # what a quote answers (None: no Data API plan)


@dataclass
class Rig:
    store: Store
    replicator: Replicator
    reads: Reads
    submitted: list[tuple[str, int]]

    def audits(self, kind: str) -> list[str]:
        return [row[0] for row in self.store.db.execute_sql(
            "SELECT message FROM auditevent WHERE kind = ? ORDER BY id", (kind,))]

    def places(self) -> list[dict]:
        return [json.loads(row[0])["order"] for row in self.store.db.execute_sql(
            "SELECT request FROM intent WHERE action = 'PLACE' ORDER BY id")]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    db = open_store(tmp_path / "copytrade.db")
    store = Store(db, lambda: NOW)
    reads, submitted = Reads(), []

    def lot_size(segment: str, security: str) -> int:
        reads.lot_size += 1
        return LISTED_LOT

    def freeze_limit(security: str, symbol: str) -> int | None:
        reads.freeze_limit += 1
        return None

    def now() -> datetime:
        reads.now += 1
        return NOW

    def last_price(segment: str, security: str) -> float | None:
        reads.quotes.append(db.in_transaction())
        return reads.price

    def tick_size(segment: str, security: str) -> float:
        reads.ticks += 1
        return 0.05

    plans = [FollowerPlan(name, SizingRule(SizingMode.MULTIPLIER, 1.0), NO_CAPS,
                          PositionBook(), submit=lambda intent_id, name=name, **kw:
                          submitted.append((name, intent_id)))
             for name in ("f1", "f2")]
    positions = PositionBook()
    replicator = Replicator(store, plans, MirrorUpdater(store, lambda name: positions),
                            lot_size=lot_size, freeze_limit=freeze_limit,
                            trading_date=lambda: DAY, leader_positions=PositionBook(),
                            wall=lambda: 1e9, now=now, last_price=last_price,
                            tick_size=tick_size)
    yield Rig(store, replicator, reads, submitted)
    db.close()


def report(status: str = "PENDING", *, order_type: str = "LIMIT", price: float = 100.0,
           lot_size: int | None = LISTED_LOT, version: int = 1, order_id: str = "L1",
           amo: bool = False, amo_time: str = "") -> OrderReport:
    traded = 130 if status == "TRADED" else 0
    return OrderReport(
        order_id=order_id, status=status, exchange_segment="NSE_FNO", security_id="52175",
        transaction_type="BUY", product_type="MARGIN", order_type=order_type,
        validity="DAY", quantity=130, traded_quantity=traded, price=price,
        average_price=100.0 if traded else 0.0, lot_size=lot_size, created_at=NOW,
        after_market_order=amo, amo_time=amo_time,
        updated_at=datetime(2025, 1, 6, 4, 0, version), source=ReportSource.STREAM)


def test_an_order_in_transit_reads_no_sizing_input(rig: Rig) -> None:
    rig.replicator.on_leader_report(report("TRANSIT"))
    assert (rig.reads.lot_size, rig.reads.freeze_limit, rig.reads.now) == (0, 0, 0)
    assert rig.reads.quotes == [] and rig.submitted == []


def test_each_follower_is_planned_with_the_inputs_gathered(rig: Rig) -> None:
    rig.replicator.on_leader_report(report())
    assert [name for name, _ in rig.submitted] == ["f1", "f2"]
    assert [order["quantity"] for order in rig.places()] == [130, 130]
    # Per follower: the lot size and the clock (staleness); the freeze limit once per
    # instrument and run (it cannot change while follow runs).
    assert (rig.reads.lot_size, rig.reads.freeze_limit, rig.reads.now) == (2, 1, 2)
    assert rig.reads.quotes == []  # a live order needs no quote


def test_a_frame_lot_size_that_disagrees_is_audited_once_outside_the_plan(rig: Rig) -> None:
    rig.replicator.on_leader_report(report(lot_size=75))
    assert [order["quantity"] for order in rig.places()] == [130, 130]  # 2 listed lots
    [message] = rig.audits("lot_size_mismatch")
    assert "says lot size 75" in message and "says 65, which is used" in message


def test_a_market_order_first_seen_filled_gets_one_quote_before_the_transaction(
        rig: Rig) -> None:
    rig.replicator.on_leader_report(report("TRADED", order_type="MARKET", price=0.0))
    assert rig.reads.quotes == [False]  # once for both followers, outside the write
    assert rig.reads.ticks == 2  # the tick size is read only for the IOC's price
    assert [(o["quantity"], o["order_type"], o["validity"], o["price"])
            for o in rig.places()] == [(130, "LIMIT", "IOC", 101.0)] * 2  # fill 100 + 1 %


def test_no_quote_is_needed_and_none_is_asked_again_soon(rig: Rig) -> None:
    rig.reads.price = None  # no Data API plan
    rig.replicator.on_leader_report(report("TRADED", order_type="MARKET", price=0.0))
    rig.replicator.on_leader_report(report("TRADED", order_type="MARKET", price=0.0,
                                           order_id="L2"))
    assert rig.reads.quotes == [False]  # asked once, then left alone for a while
    assert [o["price"] for o in rig.places()] == [101.0] * 4


def test_a_quote_at_hand_beyond_the_bound_sends_nothing(rig: Rig) -> None:
    rig.reads.price = 102.0
    rig.replicator.on_leader_report(report("TRADED", order_type="MARKET", price=0.0))
    assert rig.places() == []
    assert all("price moved 2.00%" in text for text in rig.audits("skipped"))


def test_a_chase_carries_its_code_and_is_never_modified(rig: Rig) -> None:
    rig.replicator.on_leader_report(report("TRADED", order_type="MARKET", price=0.0))
    rows = rig.store.db.execute_sql("SELECT reason_code, reason FROM mirrororder").fetchall()
    assert [code for code, _ in rows] == ["late_market_ioc"] * 2
    assert "IOC limit at 101" in rows[0][1]
    # A REST read of the same order (newer version): nothing more to do for a chase.
    rig.replicator.on_leader_report(replace(report("TRADED", order_type="MARKET", price=0.0,
                                                   version=5), source=ReportSource.REST))
    assert len(rig.store.db.execute_sql("SELECT id FROM intent").fetchall()) == 2


@pytest.mark.parametrize(("amo_time", "sent"), [("OPEN_30", "OPEN_30"), ("", "OPEN")])
def test_an_amo_is_mirrored_with_its_time(rig: Rig, amo_time: str, sent: str) -> None:
    rig.replicator.on_leader_report(report(amo=True, amo_time=amo_time))
    assert [(o["after_market_order"], o["amo_time"]) for o in rig.places()] == [
        (True, sent)] * 2


def test_a_regular_order_sends_no_amo_time(rig: Rig) -> None:
    rig.replicator.on_leader_report(report())
    assert [o["after_market_order"] for o in rig.places()] == [False] * 2
    assert all("amo_time" not in o for o in rig.places())


def test_a_later_report_of_a_mirrored_order_reads_no_clock_and_no_quote(rig: Rig) -> None:
    rig.replicator.on_leader_report(report())
    rig.replicator.on_leader_report(report("TRADED", version=2))
    assert rig.reads.now == 2 and rig.reads.quotes == []  # the first decisions' only


def follower_report(rig: Rig, status: str, traded: int) -> OrderReport:
    [(correlation,)] = rig.store.db.execute_sql(
        "SELECT correlation_id FROM mirrororder WHERE follower = 'f1'").fetchall()
    return OrderReport(
        order_id="F1", status=status, exchange_segment="NSE_FNO", security_id="52175",
        transaction_type="BUY", product_type="MARGIN", order_type="LIMIT", validity="IOC",
        quantity=130, traded_quantity=traded, price=101.0, correlation_id=correlation,
        reason="IOC order not filled" if status == "CANCELLED" else "")


def f1_mirror(rig: Rig) -> tuple[str, str, str, int]:
    return rig.store.db.execute_sql(
        "SELECT state, reason_code, reason, filled_quantity FROM mirrororder "
        "WHERE follower = 'f1'").fetchone()


def test_an_ioc_the_exchange_cancels_unfilled_is_not_mirrored_with_the_reason(
        rig: Rig) -> None:
    rig.replicator.on_leader_report(report("TRADED", order_type="MARKET", price=0.0))
    rig.replicator.on_follower_report("f1", follower_report(rig, "PENDING", 0))
    rig.replicator.on_follower_report("f1", follower_report(rig, "CANCELLED", 0))
    state, code, reason, filled = f1_mirror(rig)
    assert (state, code, filled) == ("CANCELED", "ioc_unfilled", 0)
    assert reason == ("price moved more than 1.0 % since the leader's fill: the IOC limit "
                      "order at 101 was not filled")
    assert rig.audits("divergence") == []  # the exchange ended it: not a cancel from outside
    assert rig.audits("not_mirrored") == [reason]


def test_an_ioc_partly_filled_says_how_much(rig: Rig) -> None:
    rig.replicator.on_leader_report(report("TRADED", order_type="MARKET", price=0.0))
    rig.replicator.on_follower_report("f1", follower_report(rig, "CANCELLED", 65))
    state, code, reason, filled = f1_mirror(rig)
    assert (state, code, filled) == ("CANCELED", "ioc_unfilled", 65)
    assert reason.endswith("the IOC limit order at 101 filled 65 of 130; the rest was not")


def test_an_ioc_that_fills_keeps_its_placed_reason(rig: Rig) -> None:
    rig.replicator.on_leader_report(report("TRADED", order_type="MARKET", price=0.0))
    rig.replicator.on_follower_report("f1", follower_report(rig, "TRADED", 130))
    state, code, reason, _ = f1_mirror(rig)
    assert (state, code) == ("FILLED", "late_market_ioc") and "IOC limit at 101" in reason
