"""The planner (core/plan.py): plain inputs -> actions, and which inputs it reads when."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from copytrade.core.decide import Action, ActionKind, MirrorView
from copytrade.core.events import OrderReport
from copytrade.core.orders import MirrorState
from copytrade.core.plan import PlanInputs, plan
from copytrade.core.sizing import Capital, Caps, NetPositions, SizingMode, SizingRule

LOT = 65
NOW = datetime(2025, 1, 6, 4, 0, tzinfo=UTC)
K = ActionKind


def leader(status: str = "PENDING", *, quantity: int = 130, order_type: str = "LIMIT",
           price: float = 100.0, side: str = "BUY", age: float = 1.0,
           average: float = 0.0) -> OrderReport:
    return OrderReport(
        order_id="L1", status=status, exchange_segment="NSE_FNO", security_id="52175",
        transaction_type=side, product_type="MARGIN", order_type=order_type,
        validity="DAY", quantity=quantity,
        traded_quantity=quantity if status == "TRADED" else 0, price=price,
        average_price=average, lot_size=LOT, created_at=NOW - timedelta(seconds=age))


def inputs(report: OrderReport, mirror: MirrorView | None = None, **changes) -> PlanInputs:
    base = PlanInputs(report, mirror, SizingRule(SizingMode.MULTIPLIER, 1.0),
                      lot_size=LOT, positions=NetPositions(0, 0), now=NOW)
    return replace(base, **changes)


def bare(report: OrderReport, mirror: MirrorView | None = None, **changes) -> PlanInputs:
    """No sizing inputs at all: what the replicator passes when no size is needed."""
    return PlanInputs(report, mirror, SizingRule(SizingMode.MULTIPLIER, 1.0), **changes)


def test_a_fresh_order_is_placed_sized_by_the_rule() -> None:
    assert plan(inputs(leader(), rule=SizingRule(SizingMode.MULTIPLIER, 2.0))) == [
        Action(K.PLACE, quantity=260, price=100.0, order_type="LIMIT")]


@pytest.mark.parametrize("report", [leader("TRANSIT"), leader("CANCELLED"),
                                    leader("REJECTED")], ids=["wait", "cancelled", "rejected"])
def test_decisions_without_a_size_read_no_sizing_input(report: OrderReport) -> None:
    # No lot size, positions or clock: had the planner sized, it would skip or raise.
    actions = plan(bare(report))
    assert all(action.kind is K.SKIP and "lot size" not in action.reason
               for action in actions)


def test_a_first_decision_that_sizes_needs_the_clock() -> None:
    with pytest.raises(ValueError, match="now"):
        plan(inputs(leader(), now=None))


def test_an_unknown_lot_size_skips() -> None:
    [action] = plan(inputs(leader(), lot_size=None))
    assert action.kind is K.SKIP and "lot size unknown" in action.reason


def test_an_old_order_first_seen_is_not_chased() -> None:
    [action] = plan(inputs(leader(age=301), max_order_age_seconds=300))
    assert action.kind is K.SKIP and "beyond max_order_age_seconds 300" in action.reason


def test_staleness_is_for_first_decisions_only() -> None:
    mirror = MirrorView(MirrorState.ACCEPTED, 65, 0, 100.0, 0.0, "LIMIT", 0)
    assert plan(inputs(leader(age=10_000), mirror, now=None)) == [
        Action(K.MODIFY, quantity=130, price=100.0, order_type="LIMIT")]


@pytest.mark.parametrize(("quote", "placed"), [(100.5, True), (103.0, False), (None, False)])
def test_a_market_order_first_seen_filled_is_judged_by_the_quote_given(
        quote: float | None, placed: bool) -> None:
    report = leader("TRADED", order_type="MARKET", price=0.0, average=100.0)
    [action] = plan(inputs(report, quote=quote, max_price_drift_percent=1.0))
    assert (action.kind is K.PLACE) is placed
    if not placed:
        assert "not chased" in action.reason or "no price" in action.reason


def test_an_exit_is_sized_from_the_follower_position_given() -> None:
    # The leader sells half its 260 long; the follower holds 130: it sells 65.
    report = leader(side="SELL", quantity=130)
    [action] = plan(inputs(report, positions=NetPositions(leader_before=260, follower=130)))
    assert (action.kind, action.quantity) == (K.PLACE, 65)


def test_caps_capital_and_the_freeze_limit_are_applied() -> None:
    rule = SizingRule(SizingMode.CAPITAL_RATIO, 1.0)
    [action] = plan(inputs(leader(quantity=650), rule=rule, capital=Capital(1e6, 2e6),
                           caps=Caps(max_quantity=975), freeze_limit=900))
    assert (action.kind, action.quantity, action.slice) == (K.PLACE, 975, True)


def test_an_ended_mirror_reopened_takes_the_top_up_with_its_fills_carried() -> None:
    ended = MirrorView(MirrorState.CANCELED, 130, 65, 100.0, 0.0, "LIMIT", 0, reopenable=True)
    assert plan(inputs(leader(quantity=195, price=101.0), ended, now=None)) == [
        Action(K.PLACE, quantity=130, price=101.0, order_type="LIMIT",
               reason="leader grew the order")]
    assert plan(bare(leader("CANCELLED"), ended)) == []
