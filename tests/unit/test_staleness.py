"""The staleness policy: what copytrade will not chase when it first sees an order late,
and how a market order first seen filled is bounded instead (an IOC limit, core/plan.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import pytz
from hypothesis import given
from hypothesis import strategies as st

from copytrade.core.decide import drift_reason, ioc_limit_price, is_pending_amo, stale_reason
from copytrade.core.events import OrderReport

IST = pytz.timezone("Asia/Kolkata")
CREATED = IST.localize(datetime(2026, 11, 25, 10, 0, 0))


def order(status: str = "PENDING", order_type: str = "LIMIT", average: float = 0.0,
          created: datetime | None = CREATED, amo: bool = False) -> OrderReport:
    return OrderReport("1", status, "NSE_EQ", "1333", "BUY", "CNC", order_type, "DAY", 10,
                       10 if status == "TRADED" else 0, price=1600.0, average_price=average,
                       created_at=created, after_market_order=amo)


def reason(report: OrderReport, *, age: float = 10) -> str:
    return stale_reason(report, now=CREATED + timedelta(seconds=age), max_age_seconds=300)


def test_young_orders_are_chased() -> None:
    assert reason(order(), age=299) == ""


def test_old_orders_are_not() -> None:
    assert "301 s old, beyond max_order_age_seconds 300" in reason(order(), age=301)


def test_age_applies_to_late_market_orders_too() -> None:
    assert "beyond max_order_age_seconds" in reason(order("TRADED", "MARKET", 1600.0), age=301)


def test_unknown_creation_time_is_no_reason() -> None:
    assert reason(order(created=None), age=10_000) == ""


@pytest.mark.parametrize("status", ["TRANSIT", "PENDING"])
def test_a_pending_amo_is_mirrored_whatever_its_age(status: str) -> None:
    # Placed at 18:00 the evening before, seen at 08:30: still waiting for the open.
    assert reason(order(status, amo=True), age=14.5 * 3600) == ""


@pytest.mark.parametrize("report", [order("TRADED", amo=True, average=1600.0),
                                    order("PART_TRADED", amo=True), order("PENDING")],
                         ids=["amo-traded", "amo-part-traded", "not-amo"])
def test_only_an_untraded_amo_is_exempt(report: OrderReport) -> None:
    assert not is_pending_amo(report)
    assert "beyond max_order_age_seconds" in reason(report, age=14.5 * 3600)


@pytest.mark.parametrize(("quote", "text"), [
    (None, ""), (1610.0, ""), (1616.0, ""), (1650.0, "price moved 3.12%"),
    (1550.0, "price moved 3.12%")])
def test_a_quote_only_adds_a_check(quote: float | None, text: str) -> None:
    why = drift_reason(order("TRADED", "MARKET", 1600.0), quote=quote, max_drift_percent=1.0)
    assert (text in why) if text else why == ""


@pytest.mark.parametrize(("side", "fill", "drift", "tick", "limit"), [
    ("BUY", 100.0, 1.0, 0.05, 101.0), ("SELL", 100.0, 1.0, 0.05, 99.0),
    ("BUY", 1234.55, 1.0, 0.05, 1246.85),  # 1246.8955 rounds down
    ("SELL", 1234.55, 1.0, 0.05, 1222.25),  # 1222.2045 rounds up
    ("BUY", 24567.3, 0.5, 0.1, 24690.1), ("SELL", 24567.3, 0.5, 0.1, 24444.5),
    ("BUY", 83.4525, 1.0, 0.0025, 84.285), ("SELL", 5.0, 100.0, 0.05, 0.05)])
def test_the_ioc_limit_is_the_fill_moved_by_the_bound_on_the_tick(
        side: str, fill: float, drift: float, tick: float, limit: float) -> None:
    assert ioc_limit_price(side, fill, drift, tick) == pytest.approx(limit, abs=1e-9)


TICKS = st.sampled_from([0.0025, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0])


@given(side=st.sampled_from(["BUY", "SELL"]), tick=TICKS,
       ticks=st.integers(1, 10_000_000), offset=st.floats(0, 0.999),
       drift=st.floats(0, 20).map(lambda d: round(d, 2)))
def test_the_ioc_limit_never_exceeds_the_bound_and_sits_on_a_tick(
        side: str, tick: float, ticks: int, offset: float, drift: float) -> None:
    """Rounded toward safety: a buy limit at most fill x (1 + drift), a sell limit at least
    fill x (1 - drift), each less than a tick from the bound and on the tick grid."""
    step = Decimal(str(tick))
    fill = float(round((ticks + Decimal(str(offset))) * step, 4))  # an average: off-tick
    limit = Decimal(str(ioc_limit_price(side, fill, drift, tick)))
    factor = Decimal(str(drift)) / 100
    bound = Decimal(str(fill)) * (1 + factor if side == "BUY" else 1 - factor)
    assert limit % step == 0
    if side == "BUY":
        assert bound - step < limit <= bound
    else:
        assert bound <= limit < bound + step or limit == step
