"""Rows of an order book are applied in the order they happened, not the book's (newest
first, whole-second times)."""

from __future__ import annotations

from datetime import datetime

from copytrade.core.events import OrderReport, ReportSource, book_order

SECOND = datetime(2026, 11, 25, 10, 0, 0)


def row(order_id: str, side: str, updated: datetime | None = SECOND) -> OrderReport:
    return OrderReport(
        order_id=order_id, status="TRADED", exchange_segment="NSE_EQ", security_id="1333",
        transaction_type=side, product_type="INTRADAY", order_type="MARKET", validity="DAY",
        quantity=10, traded_quantity=10, created_at=updated, updated_at=updated,
        source=ReportSource.REST)


def test_a_buy_and_its_sell_of_the_same_second_are_applied_buy_first() -> None:
    book = [row("100000000002", "SELL"), row("100000000001", "BUY")]  # Dhan: newest first
    assert [r.transaction_type for r in sorted(book, key=book_order)] == ["BUY", "SELL"]


def test_longer_ids_are_newer_and_times_come_first() -> None:
    later = datetime(2026, 11, 25, 10, 0, 1)
    book = [row("99", "BUY"), row("100", "SELL"), row("5", "BUY", later), row("7", "BUY", None)]
    assert [r.order_id for r in sorted(book, key=book_order)] == ["7", "99", "100", "5"]
