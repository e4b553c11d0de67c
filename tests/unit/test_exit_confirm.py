"""When an exit is confirmed from the broker's positions before it leaves (one round trip),
and when our own view of the follower's holdings is the broker's and the exit goes at once.
Real store on a temporary file, no broker: the workers are stand-ins collecting intents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
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
SECURITY, PRODUCT = "52175", "MARGIN"


@dataclass
class Rig:
    store: Store
    replicator: Replicator
    follower: FollowerPlan
    current: list[bool]  # what view_is_current answers

    def exit_request(self) -> dict:
        """The leader sells what it holds: the follower's exit as committed."""
        self.replicator.on_leader_report(report("L2", "SELL"))
        [row] = self.store.db.execute_sql(
            "SELECT request FROM intent WHERE action = 'PLACE' ORDER BY id DESC LIMIT 1")
        return json.loads(row[0])


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    db = open_store(tmp_path / "copytrade.db")
    store = Store(db, lambda: NOW)
    current = [True]
    follower = FollowerPlan("f1", SizingRule(SizingMode.MULTIPLIER, 1.0), NO_CAPS,
                            PositionBook(), submit=lambda intent_id, **handoff: None,
                            view_is_current=lambda: current[0])
    leader_positions = PositionBook()
    replicator = Replicator(store, [follower], MirrorUpdater(store, lambda name: follower
                                                             .positions),
                            lot_size=lambda segment, security: 65,
                            freeze_limit=lambda security, symbol: None,
                            trading_date=lambda: DAY, leader_positions=leader_positions,
                            wall=lambda: 1e9, now=lambda: NOW)
    # Both hold 130 from an entry of ours (the leader's fill and the follower's, vouched).
    leader_positions.apply_fill(SECURITY, PRODUCT, "BUY", 130)
    follower.positions.apply_fill(SECURITY, PRODUCT, "BUY", 130, ours=True)
    yield Rig(store, replicator, follower, current)
    db.close()


def report(order_id: str, side: str, *, status: str = "PENDING",
           correlation_id: str = "") -> OrderReport:
    return OrderReport(
        order_id=order_id, status=status, exchange_segment="NSE_FNO", security_id=SECURITY,
        transaction_type=side, product_type=PRODUCT, order_type="LIMIT", validity="DAY",
        quantity=130, traded_quantity=130 if status == "TRADED" else 0, price=100.0,
        average_price=100.0 if status == "TRADED" else 0.0, lot_size=65, created_at=NOW,
        updated_at=NOW, correlation_id=correlation_id, source=ReportSource.STREAM)


def test_an_exit_goes_at_once_when_our_view_is_the_brokers(rig: Rig) -> None:
    request = rig.exit_request()
    assert request["order"]["quantity"] == 130
    assert "confirm_exit" not in request  # no positions read on the exit's path


def test_an_exit_is_confirmed_while_the_followers_stream_lags(rig: Rig) -> None:
    rig.current[0] = False  # the stream is down, or frames are waiting to be applied
    assert rig.exit_request()["confirm_exit"] == {"exit_units": 130, "lot_size": 65,
                                                  "await_entry": False}


def test_an_exit_is_confirmed_while_an_order_of_the_followers_own_works_there(
        rig: Rig) -> None:
    """The follower works a sell of its own in Dhan's app: its fill may be on its way."""
    rig.replicator.on_follower_report("f1", report("F9", "SELL"))
    assert rig.exit_request()["confirm_exit"]["exit_units"] == 130


def test_an_order_of_the_followers_own_seen_lately_still_counts(rig: Rig) -> None:
    rig.replicator.on_follower_report("f1", report("F9", "SELL", status="CANCELLED"))
    assert not rig.replicator.foreign_working[("f1", SECURITY, PRODUCT)]
    assert "confirm_exit" in rig.exit_request()


def test_orders_of_its_own_elsewhere_do_not_slow_this_exit(rig: Rig) -> None:
    other = replace(report("F9", "SELL"), security_id="1333")
    rig.replicator.on_follower_report("f1", other)
    assert "confirm_exit" not in rig.exit_request()


def test_an_exit_beyond_what_our_records_vouch_for_is_always_confirmed(rig: Rig) -> None:
    """Part of the holding came from fills that are not ours: the broker decides."""
    rig.follower.positions.apply_fill(SECURITY, PRODUCT, "SELL", 65, ours=True)
    rig.follower.positions.apply_fill(SECURITY, PRODUCT, "BUY", 65, ours=False)
    assert rig.exit_request()["confirm_exit"]["await_entry"] is True
