"""The staleness policy: what copytrade will not chase when it first sees an order late."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytz

from copytrade.core.decide import stale_reason
from copytrade.core.events import OrderReport

IST = pytz.timezone("Asia/Kolkata")
CREATED = IST.localize(datetime(2026, 11, 25, 10, 0, 0))


def order(status: str = "PENDING", order_type: str = "LIMIT", average: float = 0.0,
          created: datetime | None = CREATED) -> OrderReport:
    return OrderReport("1", status, "NSE_EQ", "1333", "BUY", "CNC", order_type, "DAY", 10,
                       10 if status == "TRADED" else 0, price=1600.0, average_price=average,
                       created_at=created)


def reason(report: OrderReport, *, age: float = 10, price: float | None = 1650.0) -> str:
    return stale_reason(report, now=CREATED + timedelta(seconds=age), max_age_seconds=300,
                        max_drift_percent=1.0, quote=price)


def test_young_orders_are_chased() -> None:
    assert reason(order(), age=299) == ""


def test_old_orders_are_not() -> None:
    assert "301 s old, beyond max_order_age_seconds 300" in reason(order(), age=301)


def test_unknown_creation_time_is_no_reason() -> None:
    assert reason(order(created=None), age=10_000) == ""


def test_filled_market_order_within_the_drift_is_chased() -> None:
    assert reason(order("TRADED", "MARKET", average=1640.0), price=1650.0) == ""


def test_filled_market_order_beyond_the_drift_is_not() -> None:
    text = reason(order("TRADED", "MARKET", average=1600.0), price=1650.0)
    assert "price moved 3.12%" in text and "max_price_drift_percent 1" in text


def test_no_quote_fails_closed() -> None:
    assert "no price" in reason(order("TRADED", "MARKET", average=1600.0), price=None)


def test_drift_is_only_for_filled_market_orders() -> None:
    assert reason(order("PENDING", "MARKET"), price=None) == ""
    assert reason(order("TRADED", "LIMIT", average=1600.0), price=9999.0) == ""
