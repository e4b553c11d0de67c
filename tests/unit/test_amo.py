"""AMO fields read from a leader's order-book row (advisory: a word Dhan may not send)."""

from __future__ import annotations

import pytest

from copytrade.dhan.frames import report_from_rest

ROW = {"orderId": "1", "orderStatus": "PENDING", "exchangeSegment": "NSE_EQ",
       "securityId": "1333", "transactionType": "BUY", "productType": "CNC",
       "orderType": "LIMIT", "validity": "DAY", "quantity": 5, "price": 1600.0,
       "afterMarketOrder": True}


@pytest.mark.parametrize(("value", "read"), [
    ("OPEN_30", "OPEN_30"), ("pre_open", "PRE_OPEN"), (None, ""), ("LATER", ""), (7, "")])
def test_the_amo_time_is_read_where_known(value: object, read: str) -> None:
    row = dict(ROW) if value is None else {**ROW, "amoTime": value}
    report = report_from_rest(row)
    assert report.after_market_order and report.amo_time == read
