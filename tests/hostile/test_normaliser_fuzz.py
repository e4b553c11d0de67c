"""The one normaliser (dhan/frames.py) under fuzz: any JSON value in any field of a stream
frame or a REST order row gives either a report that holds together or MalformedFrame
(which follow records and skips) - never another exception, never a half-trusted report."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from copytrade.core.events import OrderReport
from copytrade.dhan.frames import MAX_PRICE, MAX_QUANTITY, MalformedFrame, parse_frame
from copytrade.dhan.frames import report_from_rest as parse_row

FRAME = {
    "Exchange": "NSE", "Segment": "D", "Source": "P", "SecurityId": "52201",
    "OrderNo": "100000000001", "Product": "I", "TxnType": "B", "OrderType": "LMT",
    "Validity": "DAY", "DiscQuantity": 0, "RemainingQuantity": 65, "Quantity": 65,
    "TradedQty": 0, "Price": 240.0, "TriggerPrice": 0, "AvgTradedPrice": 0,
    "OffMktFlag": "0", "LastUpdatedTime": "2026-11-30 09:20:01", "Symbol": "NIFTY CE",
    "ReasonDescription": "CONFIRMED", "LegNo": 1, "LotSize": 65, "Status": "Pending",
    "CorrelationId": "ctabcdefghijklmnopqrst-1", "OrderDateTime": "2026-11-30 09:20:01",
}
ROW = {
    "orderId": "100000000001", "orderStatus": "PENDING", "exchangeSegment": "NSE_FNO",
    "securityId": "52201", "transactionType": "BUY", "productType": "INTRADAY",
    "orderType": "LIMIT", "validity": "DAY", "quantity": 65, "filledQty": 0,
    "price": 240.0, "triggerPrice": 0, "disclosedQuantity": 0, "averageTradedPrice": 0,
    "afterMarketOrder": False, "correlationId": "", "omsErrorDescription": "",
    "tradingSymbol": "NIFTY CE", "legName": "NA", "updateTime": "2026-11-30 09:20:01",
    "createTime": "2026-11-30 09:20:01",
}

SCALARS = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(max_size=40) | st.sampled_from(["", " ", "NA", "-1", "1e400", "nan",
                                                     "\ud800", "0" * 400, "B", "S"]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)


def holds_together(report: OrderReport) -> None:
    assert 0 < report.quantity <= MAX_QUANTITY
    assert 0 <= report.traded_quantity <= report.quantity
    assert 0 <= report.disclosed_quantity <= report.quantity
    for price in (report.price, report.trigger_price, report.average_price):
        assert math.isfinite(price) and 0 <= price <= MAX_PRICE
    for ident in (report.order_id, report.security_id):
        assert ident and ident.isascii() and ident.isprintable() and len(ident) <= 64
    for text in (report.symbol, report.reason, report.correlation_id, report.status):
        text.encode("utf-8")  # storable: no lone surrogate
        assert text.isprintable()
    assert report.leg in (1, 2, 3)


def parse_or_refuse(parse, value) -> None:
    try:
        report = parse(value)
    except MalformedFrame:
        return
    if report is not None:
        holds_together(report)


@settings(max_examples=400, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(sorted(FRAME)), JSON_VALUES, min_size=1,
                               max_size=4))
def test_any_value_in_any_frame_field(changes: dict) -> None:
    data = {**FRAME, **changes}
    parse_or_refuse(parse_frame, json.dumps({"Type": "order_alert", "Data": data}))


@settings(max_examples=400, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(sorted(ROW)), JSON_VALUES, min_size=1,
                               max_size=4))
def test_any_value_in_any_row_field(changes: dict) -> None:
    parse_or_refuse(parse_row, {**ROW, **changes})


@settings(max_examples=300, deadline=None)
@given(message=JSON_VALUES | st.text(max_size=200) | st.binary(max_size=200))
def test_any_message_at_all(message: object) -> None:
    raw = message if isinstance(message, str | bytes) else json.dumps(message)
    parse_or_refuse(parse_frame, raw)
    parse_or_refuse(parse_row, message)


def test_the_clean_shapes_parse() -> None:
    """The fuzz starts from shapes that are valid, so refusals come from the changes."""
    holds_together(parse_frame(json.dumps({"Type": "order_alert", "Data": FRAME})))
    holds_together(parse_row(ROW))


def test_a_fill_above_the_quantity_is_refused_from_either_source() -> None:
    for parse, value in ((parse_frame, json.dumps({"Type": "order_alert",
                                                   "Data": {**FRAME, "TradedQty": 500}})),
                         (parse_row, {**ROW, "filledQty": 500}),
                         (parse_row, {**{k: v for k, v in ROW.items() if k != "filledQty"},
                                      "filled_qty": 500})):
        try:
            parse(value)
        except MalformedFrame as refused:
            assert "above the order's quantity" in str(refused)
        else:
            raise AssertionError(f"accepted a fill of 500 on 65: {value!r}")


def test_reals_rows_dialect_filled_qty_and_leg_na_are_read() -> None:
    row = {k: v for k, v in ROW.items() if k != "filledQty"} | {"filled_qty": 65,
                                                               "orderStatus": "TRADED"}
    report = parse_row(row)
    assert report.traded_quantity == 65 and report.leg == 1
