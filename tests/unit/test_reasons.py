"""Reason codes: behaviour keys on the code stored beside a reason, never on its wording."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from copytrade.core.decide import is_reopenable
from copytrade.core.orders import MirrorState
from copytrade.core.reasons import ReasonCode
from copytrade.core.sizing import Caps, LeaderOrder, NetPositions, SizingRule, Skip, size_order


def order(quantity: int = 65) -> LeaderOrder:
    return LeaderOrder(security_id="52175", exchange_segment="NSE_FNO", product_type="MARGIN",
                       transaction_type="BUY", quantity=quantity, price=100.0)


@pytest.mark.parametrize(("rule", "caps", "positions", "side"), [
    (SizingRule("multiplier", 0.5), Caps(), None, "BUY"),  # 0.5 lots after multiplier
    (SizingRule("multiplier", 1.0), Caps(max_quantity=10), None, "BUY"),  # cap below a lot
])
def test_a_size_below_one_lot_carries_its_code(rule, caps, positions, side) -> None:
    sized = size_order(rule, order(), 65, caps=caps, positions=positions)
    assert isinstance(sized, Skip) and sized.code is ReasonCode.BELOW_ONE_LOT


def test_a_proportional_exit_below_one_lot_carries_its_code() -> None:
    sell = LeaderOrder(security_id="52175", exchange_segment="NSE_FNO", product_type="MARGIN",
                       transaction_type="SELL", quantity=65, price=100.0)
    sized = size_order(SizingRule("multiplier", 1.0), sell, 65,
                       positions=NetPositions(leader_before=650, follower=65))
    assert isinstance(sized, Skip) and sized.code is ReasonCode.BELOW_ONE_LOT


def test_other_skips_carry_no_code() -> None:
    sized = size_order(SizingRule("multiplier", 1.0), order(), 65,
                       caps=Caps(denied_segments=frozenset({"NSE_FNO"})))
    assert isinstance(sized, Skip) and sized.code is ReasonCode.NONE


@pytest.mark.parametrize(("state", "code", "reopens"), [
    (MirrorState.SKIPPED, ReasonCode.BELOW_ONE_LOT, True),
    (MirrorState.SKIPPED, ReasonCode.NONE, False),
    (MirrorState.CANCELED, ReasonCode.REDUCED_TO_FILLED, True),
    (MirrorState.CANCELED, ReasonCode.RESIZED_AWAY, True),
    (MirrorState.CANCELED, ReasonCode.CANCELLED_OUTSIDE, False),
    (MirrorState.REJECTED, ReasonCode.BELOW_ONE_LOT, False),
    (MirrorState.FILLED, ReasonCode.NONE, True),
])
def test_reopening_follows_the_code(state: MirrorState, code: ReasonCode, reopens: bool) -> None:
    assert is_reopenable(state, code) is reopens


def test_the_wording_alone_reopens_nothing() -> None:
    assert not is_reopenable(MirrorState.SKIPPED, "0.5 lots after multiplier 0.5: below one lot")


def test_an_older_database_gets_codes_from_the_wording(tmp_path: Path) -> None:
    from copytrade.store.db import open_store
    from copytrade.store.trail import register

    path = tmp_path / "copytrade.db"
    open_store(path).close()
    with sqlite3.connect(path) as db:  # as schema 1 left it: no reason_code column
        register(db)  # the audit trail's triggers hash every row written
        for later in ("reason_code", "average_price", "average_prices", "acked_at"):
            db.execute(f"ALTER TABLE mirrororder DROP COLUMN {later}")
        db.execute("INSERT INTO leaderorder (order_id, trading_date, status, exchange_segment,"
                   " security_id, symbol, transaction_type, product_type, order_type, "
                   "validity, quantity, traded_quantity, price, trigger_price, "
                   "disclosed_quantity, average_price, after_market_order, placed_in_app, "
                   "correlation_id, reason, version, first_seen_at) VALUES ('L1', "
                   "'2026-11-30', 'PENDING', 'NSE_FNO', '52175', '', 'BUY', 'MARGIN', "
                   "'LIMIT', 'DAY', 65, 0, 1, 0, 0, 0, 0, 0, '', '', '[]', '2026-11-30')")
        rows = [("SKIPPED", "exit: 0.5 lots after proportional exit: below one lot"),
                ("CANCELED", "leader modified: 0.2 lots after multiplier 0.2: below one lot"),
                ("CANCELED", "cancelled outside copytrade (e.g. in Dhan's app)"),
                ("SKIPPED", "segment NSE_FNO is on the segment deny list")]
        for attempt, (state, reason) in enumerate(rows, 1):
            db.execute("INSERT INTO mirrororder (leader_order_id, follower, leg, attempt, "
                       "correlation_id, legs, security_id, product_type, transaction_type, "
                       "state, quantity, carried_quantity, filled_quantity, price, "
                       "trigger_price, order_type, disclosed_quantity, sliced, "
                       "leader_position_before, follower_position_before, modifications, "
                       "reason, shadow, created_at, updated_at) VALUES ('L1', 'f1', 1, ?, ?, "
                       "'{}', '52175', 'MARGIN', 'BUY', ?, 0, 0, 0, 0, 0, 'LIMIT', 0, 0, 0, 0, "
                       "0, ?, 0, '2026-11-30', '2026-11-30')",
                       (attempt, f"cid-{attempt}", state, reason))
        # what a restart resumes from: it must survive the upgrade
        db.execute("INSERT INTO intent (mirror_id, action, status, request, outcome, "
                   "created_at) VALUES (1, 'PLACE', 'SENDING', '{}', '', '2026-11-30')")
        db.execute("INSERT INTO stateevent (mirror_id, from_state, to_state, trigger, at, "
                   "detail) VALUES (1, 'PLANNED', 'SKIPPED', 'SKIP', '2026-11-30', '')")
        db.execute("PRAGMA user_version = 1")
    open_store(path).close()
    with sqlite3.connect(path) as db:
        codes = [row[0] for row in db.execute(
            "SELECT reason_code FROM mirrororder ORDER BY attempt")]
        kept = [db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("intent", "stateevent")]
    assert codes == ["below_one_lot", "resized_away", "cancelled_outside", ""]
    assert kept == [1, 1]
