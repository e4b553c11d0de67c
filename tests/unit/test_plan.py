"""The planner (core/plan.py): plain inputs -> actions, and which inputs it reads when."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from copytrade.core.decide import Action, ActionKind, MirrorView
from copytrade.core.events import OrderReport
from copytrade.core.orders import MirrorState
from copytrade.core.plan import PlanInputs, plan
from copytrade.core.reasons import ReasonCode
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


@pytest.mark.parametrize(("quote", "placed"), [(100.5, True), (103.0, False), (None, True)])
def test_a_quote_is_optional_and_only_ever_stops_a_chase(
        quote: float | None, placed: bool) -> None:
    report = leader("TRADED", order_type="MARKET", price=0.0, average=100.0)
    [action] = plan(inputs(report, quote=quote, tick_size=0.05, max_price_drift_percent=1.0))
    assert (action.kind is K.PLACE) is placed
    if not placed:
        assert "price moved 3.00%" in action.reason and "not chased" in action.reason


@pytest.mark.parametrize(("order_type", "side", "limit"), [
    ("MARKET", "BUY", 101.0), ("MARKET", "SELL", 99.0),
    ("STOP_LOSS_MARKET", "BUY", 101.0), ("STOP_LOSS_MARKET", "SELL", 99.0)])
def test_a_market_order_first_seen_filled_is_chased_with_an_ioc_limit(
        order_type: str, side: str, limit: float) -> None:
    report = replace(leader("TRADED", order_type=order_type, price=0.0, side=side,
                            average=100.0), trigger_price=99.5)
    [action] = plan(inputs(report, tick_size=0.1, max_price_drift_percent=1.0))
    assert (action.kind, action.quantity, action.order_type, action.validity, action.price,
            action.trigger_price, action.code) == (
        K.PLACE, 130, "LIMIT", "IOC", pytest.approx(limit), 0.0, ReasonCode.LATE_MARKET_IOC)
    assert "filled at 100" in action.reason and "max_price_drift_percent 1" in action.reason


def test_a_late_market_order_still_obeys_the_age_rule() -> None:
    report = leader("TRADED", order_type="MARKET", price=0.0, average=100.0, age=301)
    [action] = plan(inputs(report, tick_size=0.05, max_order_age_seconds=300))
    assert action.kind is K.SKIP and "beyond max_order_age_seconds 300" in action.reason


@pytest.mark.parametrize(("average", "tick", "why"), [
    (0.0, 0.05, "fill price is unknown"), (100.0, None, "tick size is unknown")])
def test_a_late_market_order_that_cannot_be_priced_is_skipped(
        average: float, tick: float | None, why: str) -> None:
    report = leader("TRADED", order_type="MARKET", price=0.0, average=average)
    [action] = plan(inputs(report, tick_size=tick))
    assert action.kind is K.SKIP and why in action.reason


def test_a_live_or_limit_order_is_not_chased() -> None:
    market = plan(inputs(leader("PENDING", order_type="MARKET", price=0.0), tick_size=0.05))
    limit = plan(inputs(leader("TRADED", average=100.0), tick_size=0.05))
    assert [(a.order_type, a.validity) for a in market + limit] == [("MARKET", ""),
                                                                   ("LIMIT", "")]


def test_the_chase_value_is_judged_at_its_limit() -> None:
    report = leader("TRADED", order_type="MARKET", price=0.0, average=100.0)
    [action] = plan(inputs(report, tick_size=0.05, caps=Caps(max_order_value=130 * 100.5)))
    # 130 x 101 is above the cap (130 x the fill would not be): capped to one lot.
    assert (action.kind, action.quantity) == (K.PLACE, 65)


def test_a_pending_amo_is_placed_whatever_its_age() -> None:
    report = replace(leader(age=14 * 3600), after_market_order=True)
    [action] = plan(inputs(report, max_order_age_seconds=300))
    assert action.kind is K.PLACE


def test_a_chase_mirror_is_never_modified() -> None:
    mirror = MirrorView(MirrorState.ACCEPTED, 130, 0, 101.0, 0.0, "LIMIT", 0, chase=True)
    report = leader("TRADED", order_type="MARKET", price=0.0, average=100.0)
    assert plan(inputs(report, mirror)) == []


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
