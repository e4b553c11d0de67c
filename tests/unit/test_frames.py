"""Dhan's wire shapes of an order -> OrderReport: stream frames and REST order-book rows."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
import pytz
from hypothesis import given, settings
from hypothesis import strategies as st

from copytrade.core.events import OrderReport, ReportSource
from copytrade.dhan.frames import MalformedFrame, parse_frame, report_from_rest
from copytrade.sim.clock import ManualClock
from copytrade.sim.instruments import DEFAULT_INSTRUMENTS
from copytrade.sim.orders import SimOrder

IST = pytz.timezone("Asia/Kolkata")

# Shaped like the sample in Dhan's docs: title-case status, a Remarks key twice, and
# camelCase duplicates of some keys (whose values must lose to the PascalCase ones).
OFFICIAL_SAMPLE = """{
  "Data": {
    "Exchange": "NSE", "Segment": "E", "Source": "N", "SecurityId": "14366",
    "ClientId": "1000000001", "ExchOrderNo": "1400000000404591", "OrderNo": "1124091136546",
    "Product": "C", "TxnType": "B", "OrderType": "LMT", "Validity": "DAY",
    "DiscQuantity": 1, "DiscQtyRem": 1, "RemainingQuantity": 1, "Quantity": 1, "TradedQty": 0,
    "Price": 13, "TriggerPrice": 0, "TradedPrice": 0, "AvgTradedPrice": 0, "AlgoOrdNo": "",
    "OffMktFlag": "0", "OrderDateTime": "2024-09-11 14:39:29",
    "ExchOrderTime": "2024-09-11 14:39:29", "LastUpdatedTime": "2024-09-11 14:39:29",
    "Remarks": "NA", "MktType": "NL", "ReasonDescription": "CONFIRMED", "LegNo": 1,
    "Instrument": "EQUITY", "Symbol": "IDEA", "ProductName": "CNC", "Status": "Cancelled",
    "LotSize": 1, "StrikePrice": -0.01, "ExpiryDate": "0001-01-01 00:00:00", "OptType": "XX",
    "DisplayName": "Vodafone Idea", "Isin": "INE669E01016", "Series": "EQ",
    "GoodTillDaysDate": "2024-09-11", "RefLtp": 13.27, "TickSize": 0.01, "AlgoId": "0",
    "Multiplier": 1, "CorrelationId": "ct-abc", "Remarks": "Super Order",
    "orderNo": "999", "status": "Traded", "securityId": "1", "quantity": 5
  },
  "Type": "order_alert"
}"""


def alert(**change: Any) -> dict[str, Any]:
    """A complete order_alert Data, PascalCase; a value of None removes the key."""
    data: dict[str, Any] = {
        "Exchange": "NSE", "Segment": "E", "Source": "P", "SecurityId": "1333",
        "OrderNo": "52240101000001", "Product": "C", "TxnType": "B", "OrderType": "LMT",
        "Validity": "DAY", "Quantity": 10, "TradedQty": 0, "DiscQuantity": 0, "Price": 1640.0,
        "TriggerPrice": 0.0, "AvgTradedPrice": 0.0, "OffMktFlag": "0", "LegNo": 1,
        "LastUpdatedTime": "2026-11-25 10:00:00", "Status": "Pending", "LotSize": 1,
        "Symbol": "HDFCBANK", "CorrelationId": "ct-1", "ReasonDescription": "",
    }
    data.update(change)
    return {key: value for key, value in data.items() if value is not None}


def frame(**change: Any) -> str:
    return json.dumps({"Type": "order_alert", "Data": alert(**change)})


def parse(**change: Any) -> OrderReport:
    report = parse_frame(frame(**change))
    assert report is not None
    return report


def rest_row(**change: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "dhanClientId": "1000000001", "orderId": "52240101000001", "correlationId": "ct-1",
        "orderStatus": "PENDING", "transactionType": "BUY", "exchangeSegment": "NSE_EQ",
        "productType": "CNC", "orderType": "LIMIT", "validity": "DAY",
        "tradingSymbol": "HDFCBANK", "securityId": "1333", "quantity": 10,
        "disclosedQuantity": 0, "price": 1640.0, "triggerPrice": 0.0,
        "afterMarketOrder": False, "legName": "ENTRY_LEG", "updateTime": "2026-11-25 10:00:00",
        "omsErrorDescription": "", "filledQty": 0, "averageTradedPrice": 0.0,
    }
    row.update(change)
    return {key: value for key, value in row.items() if value is not None}


def sim_order(**change: Any) -> SimOrder:
    now = ManualClock().now()
    fields: dict[str, Any] = dict(
        order_id="52240101000007", exchange_order_id="1100000000007", client_id="1000000001",
        source="P", instrument=DEFAULT_INSTRUMENTS[0], transaction_type="BUY",
        product_type="CNC", order_type="LIMIT", validity="DAY", quantity=10,
        disclosed_quantity=0, price=1640.0, trigger_price=0.0, after_market_order=False,
        amo_time="OPEN", correlation_id="ct-7", created=now, updated=now)
    fields.update(change)
    return SimOrder(**fields)


# ----- stream frames ---------------------------------------------------------------------

def test_official_sample() -> None:
    report = parse_frame(OFFICIAL_SAMPLE)
    assert report == OrderReport(
        order_id="1124091136546", status="CANCELLED", exchange_segment="NSE_EQ",
        security_id="14366", transaction_type="BUY", product_type="CNC", order_type="LIMIT",
        validity="DAY", quantity=1, traded_quantity=0, price=13.0, trigger_price=0.0,
        # DiscQuantity 1 of Quantity 1 discloses the whole order, i.e. nothing: REST's 0
        disclosed_quantity=0, average_price=0.0, after_market_order=False,
        correlation_id="ct-abc", reason="", symbol="IDEA", lot_size=1, leg=1,
        placed_in_app=True, updated_at=IST.localize(datetime(2024, 9, 11, 14, 39, 29)),
        created_at=IST.localize(datetime(2024, 9, 11, 14, 39, 29)),
        source=ReportSource.STREAM)
    assert report.is_terminal


def test_bytes_are_accepted() -> None:
    assert parse_frame(frame().encode()) == parse_frame(frame())


def test_numbers_given_as_strings() -> None:
    report = parse(Quantity="10", TradedQty="4.0", Price="1640.50", TriggerPrice="",
                   DiscQuantity=" 5 ", AvgTradedPrice="1639.9", LotSize="65", LegNo="2",
                   OrderNo=52240101000001, SecurityId=1333)
    assert (report.quantity, report.traded_quantity, report.disclosed_quantity) == (10, 4, 5)
    assert (report.price, report.trigger_price, report.average_price) == (1640.5, 0.0, 1639.9)
    assert (report.lot_size, report.leg) == (65, 2)
    assert (report.order_id, report.security_id) == ("52240101000001", "1333")


def test_blank_optional_numbers_default_to_zero() -> None:
    report = parse(TradedQty="", Price="", DiscQuantity=None, TriggerPrice=None)
    assert (report.traded_quantity, report.price, report.disclosed_quantity) == (0, 0.0, 0)


def test_unknown_keys_are_ignored() -> None:
    assert parse(Brand="new", Nested={"a": [1, 2]}, Flag=None) == parse()


def test_keys_are_case_insensitive() -> None:
    lower = {key.lower(): value for key, value in alert().items()}
    upper = json.dumps({"TYPE": "ORDER_ALERT", "DATA": {k.upper(): v for k, v in alert().items()}})
    assert parse_frame(json.dumps({"type": "order_alert", "data": lower})) == parse()
    assert parse_frame(upper) == parse()


def test_pascal_case_wins_over_a_camel_case_duplicate() -> None:
    data = alert()
    data.update(orderNo="1", status="Traded", quantity=99)
    report = parse_frame(json.dumps({"Type": "order_alert", "Data": data}))
    assert report is not None
    assert (report.order_id, report.status, report.quantity) == ("52240101000001", "PENDING", 10)


def camel(data: dict[str, Any]) -> dict[str, Any]:
    return {key[0].lower() + key[1:]: value for key, value in data.items()}


# One public client reports frames with camelCase keys (top level too) and title-case
# status words; the stream's word for a partial fill is not documented.
@pytest.mark.parametrize(("word", "status", "traded"), [
    ("Transit", "TRANSIT", 0), ("Pending", "PENDING", 0), ("Part_Traded", "PART_TRADED", 4),
    ("PartTraded", "PART_TRADED", 4), ("Traded", "TRADED", 10), ("Cancelled", "CANCELLED", 0),
    ("Rejected", "REJECTED", 0), ("Expired", "EXPIRED", 0),
])
def test_camel_case_frames_with_title_case_status(word: str, status: str, traded: int) -> None:
    data = alert(Status=word, TradedQty=traded)
    pascal = parse_frame(json.dumps({"Type": "order_alert", "Data": data}))
    raw = json.dumps({"type": "order_alert", "data": camel(data)})
    assert '"orderNo": "52240101000001"' in raw and f'"status": "{word}"' in raw
    report = parse_frame(raw)
    assert report == pascal
    assert report is not None and (report.status, report.traded_quantity) == (status, traded)


def test_camel_case_and_pascal_case_keys_mixed_in_one_frame() -> None:
    data = alert(Status="Traded", TradedQty=10)
    half = dict(list(data.items())[::2]) | camel(dict(list(data.items())[1::2]))
    assert set(half) != set(data)  # really mixed
    raw = json.dumps({"Type": "order_alert", "data": half})
    assert parse_frame(raw) == parse(Status="Traded", TradedQty=10)


def test_a_null_pascal_case_value_falls_back_to_the_other_spelling() -> None:
    data = alert(OrderNo=None)
    data.update(OrderNo=None, orderNo="77")
    report = parse_frame(json.dumps({"Type": "order_alert", "Data": data}))
    assert report is not None and report.order_id == "77"


@pytest.mark.parametrize(("word", "status"), [
    ("Cancelled", "CANCELLED"), ("Part_Traded", "PART_TRADED"), ("PART TRADED", "PART_TRADED"),
    ("part-traded", "PART_TRADED"), (" Traded ", "TRADED"), ("Transit", "TRANSIT"),
    ("Rejected", "REJECTED"), ("Expired", "EXPIRED"), ("Triggered", "TRIGGERED"),
    ("PartTraded", "PART_TRADED"), ("Canceled", "CANCELLED"),  # spellings clients report
    ("SomethingNew", "SOMETHINGNEW"),  # unknown words pass through: the engine flags them
])
def test_status_is_upper_cased(word: str, status: str) -> None:
    assert parse(Status=word).status == status


@pytest.mark.parametrize(("code", "product"), [
    ("C", "CNC"), ("I", "INTRADAY"), ("M", "MARGIN"), ("F", "MTF"), ("V", "CO"), ("B", "BO"),
    ("CNC", "CNC"), ("intraday", "INTRADAY"), ("MTF", "MTF"), ("BO", "BO"),
])
def test_product_codes(code: str, product: str) -> None:
    assert parse(Product=code).product_type == product


@pytest.mark.parametrize(("code", "order_type"), [
    ("LMT", "LIMIT"), ("MKT", "MARKET"), ("SL", "STOP_LOSS"), ("SLM", "STOP_LOSS_MARKET"),
    ("SL-M", "STOP_LOSS_MARKET"), ("LIMIT", "LIMIT"), ("market", "MARKET"),
    ("STOP_LOSS", "STOP_LOSS"), ("STOP_LOSS_MARKET", "STOP_LOSS_MARKET"),
])
def test_order_type_codes(code: str, order_type: str) -> None:
    assert parse(OrderType=code).order_type == order_type


@pytest.mark.parametrize(("exchange", "segment", "name"), [
    ("NSE", "E", "NSE_EQ"), ("NSE", "D", "NSE_FNO"), ("NSE", "C", "NSE_CURRENCY"),
    ("BSE", "E", "BSE_EQ"), ("BSE", "D", "BSE_FNO"), ("BSE", "C", "BSE_CURRENCY"),
    ("MCX", "M", "MCX_COMM"), ("nse", "e", "NSE_EQ"),
])
def test_segment_codes(exchange: str, segment: str, name: str) -> None:
    assert parse(Exchange=exchange, Segment=segment).exchange_segment == name


@pytest.mark.parametrize(("code", "side"), [("B", "BUY"), ("S", "SELL"), ("sell", "SELL")])
def test_transaction_types(code: str, side: str) -> None:
    assert parse(TxnType=code).transaction_type == side


def test_validity_defaults_to_day_and_passes_other_words() -> None:
    assert parse(Validity=None).validity == "DAY"
    assert parse(Validity="ioc").validity == "IOC"


def test_fills_come_from_quantities_not_the_status_word() -> None:
    partial = parse(Status="Traded", Quantity=10, TradedQty=4)
    assert (partial.traded_quantity, partial.remaining_quantity) == (4, 6)
    full = parse(Status="Part_Traded", Quantity=10, TradedQty=10)
    assert (full.traded_quantity, full.remaining_quantity) == (10, 0)
    assert parse(Status="Part_Traded", Quantity=130, TradedQty=65).remaining_quantity == 65


@pytest.mark.parametrize(("flag", "amo"), [
    ("1", True), (1, True), ("0", False), (0, False), ("", False), (None, False), (True, True)])
def test_after_market_flag(flag: object, amo: bool) -> None:
    assert parse(OffMktFlag=flag).after_market_order is amo


@pytest.mark.parametrize(("source", "in_app"), [("N", True), ("n", True), ("P", False),
                                                 (None, False)])
def test_source_n_means_placed_in_dhans_app(source: str | None, in_app: bool) -> None:
    assert parse(Source=source).placed_in_app is in_app


@pytest.mark.parametrize(("lot", "size"), [(65, 65), ("30", 30), (0, None), ("", None),
                                           (None, None), ("NA", None)])
def test_lot_size(lot: object, size: int | None) -> None:
    assert parse(LotSize=lot).lot_size == size


@pytest.mark.parametrize(("leg", "number"), [(1, 1), (2, 2), (3, 3), ("3", 3), (None, 1),
                                             (0, 1), ("STOP_LOSS_LEG", 2)])
def test_leg_number(leg: object, number: int) -> None:
    assert parse(LegNo=leg).leg == number


def test_rejection_reason_and_correlation_id() -> None:
    report = parse(Status="Rejected", ReasonDescription="Insufficient Margin",
                   CorrelationId="ct-x1")
    assert (report.reason, report.correlation_id) == ("Insufficient Margin", "ct-x1")


def test_last_updated_time_is_ist() -> None:
    moment = parse(LastUpdatedTime="2026-11-25 15:29:59").updated_at
    assert moment is not None
    assert moment.utcoffset() == timedelta(hours=5, minutes=30)
    assert moment.tzinfo is not None and moment.tzinfo.zone == "Asia/Kolkata"  # type: ignore[attr-defined]
    assert moment == IST.localize(datetime(2026, 11, 25, 15, 29, 59))
    assert moment.astimezone(pytz.utc).hour == 9


@pytest.mark.parametrize("text", [None, "", "NA", "0001-01-01 00:00:00", 1732000000])
def test_missing_or_unreadable_time_is_none(text: object) -> None:
    assert parse(LastUpdatedTime=text).updated_at is None


@pytest.mark.parametrize("raw", [
    '{"Type": "heartbeat"}', '{"Type": "login_ack", "Data": {}}', '{"Type": "", "Data": 1}'])
def test_other_message_types_are_not_order_reports(raw: str) -> None:
    assert parse_frame(raw) is None


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\xff\xfe", "not JSON"),
    ("", "not JSON"),
    ("{not json", "not JSON"),
    ("[" * 100_000, "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ("42", "not a JSON object"),
    ('{"Data": {}}', "no Type"),
    ('{"Type": 7}', "Type is not a string"),
    ('{"Type": "order_alert"}', "no Data"),
    ('{"Type": "order_alert", "Data": [1]}', "Data is not an object"),
    ('{"Type": "order_alert", "Data": "x"}', "Data is not an object"),
])
def test_unusable_messages_raise(raw: str | bytes, reason: str) -> None:
    with pytest.raises(MalformedFrame, match=reason):
        parse_frame(raw)


@pytest.mark.parametrize(("change", "reason"), [
    ({"OrderNo": None}, "missing OrderNo"),
    ({"OrderNo": ""}, "missing OrderNo"),
    ({"OrderNo": [1]}, "bad OrderNo"),
    ({"Status": None}, "missing Status"),
    ({"Status": 3}, "bad Status"),
    ({"SecurityId": None}, "missing SecurityId"),
    ({"Quantity": None}, "missing Quantity"),
    ({"Quantity": ""}, "missing Quantity"),
    ({"Quantity": "ten"}, "bad Quantity"),
    ({"Quantity": "10.5"}, "not a whole number"),
    ({"Quantity": -1}, "bad Quantity"),
    ({"Quantity": True}, "bad Quantity"),
    ({"Quantity": "NaN"}, "bad Quantity"),
    ({"Quantity": 1e300}, "not a whole number"),
    ({"TradedQty": "x"}, "bad TradedQty"),
    ({"Price": "inf"}, "bad Price"),
    ({"TxnType": None}, "missing TxnType"),
    ({"TxnType": "X"}, "unknown TxnType"),
    ({"Product": "Z"}, "unknown Product"),
    ({"Product": 1}, "unknown Product"),
    ({"OrderType": "GTT"}, "unknown OrderType"),
    ({"Exchange": None}, "missing Exchange/Segment"),
    ({"Exchange": "NSE", "Segment": "M"}, "unknown Exchange/Segment"),
    ({"Exchange": "LSE", "Segment": "E"}, "unknown Exchange/Segment"),
    ({"OffMktFlag": "maybe"}, "bad OffMktFlag"),
    ({"LegNo": 4}, "unknown LegNo"),
    ({"Validity": 5}, "bad Validity"),
])
def test_unusable_order_alerts_raise(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedFrame, match=reason) as raised:
        parse_frame(frame(**change))
    assert len(str(raised.value)) <= 80


def test_malformed_frame_is_a_value_error_with_a_short_message() -> None:
    with pytest.raises(ValueError, match="bad Quantity") as raised:
        parse_frame(frame(Quantity="x" * 10_000))
    assert len(str(raised.value)) < 60


def test_frames_of_the_emulator_parse_like_its_rest_rows() -> None:
    """Two shapes of one order (the emulator's stream frame and REST row) agree."""
    order = sim_order(status="PART_TRADED", filled_quantity=4, average_price=1639.5,
                      leg_name="STOP_LOSS_LEG", order_type="STOP_LOSS", trigger_price=1641.0,
                      after_market_order=True, reason="none")
    from_stream = parse_frame(json.dumps({"Type": "order_alert", "Data": order.to_frame()}))
    from_rest = report_from_rest(order.to_rest())
    assert from_stream is not None
    assert dataclasses.replace(from_stream, source=ReportSource.REST, lot_size=None) == from_rest
    assert (from_rest.status, from_rest.leg, from_rest.order_type) == (
        "PART_TRADED", 2, "STOP_LOSS")


# ----- REST rows ---------------------------------------------------------------------------

def test_rest_row() -> None:
    report = report_from_rest(rest_row(orderStatus="PART_TRADED", filledQty=4,
                                       averageTradedPrice=1639.5, afterMarketOrder=True,
                                       legName="TARGET_LEG", omsErrorDescription="",
                                       updateTime="2026-11-25 10:00:05"))
    assert report == OrderReport(
        order_id="52240101000001", status="PART_TRADED", exchange_segment="NSE_EQ",
        security_id="1333", transaction_type="BUY", product_type="CNC", order_type="LIMIT",
        validity="DAY", quantity=10, traded_quantity=4, price=1640.0, trigger_price=0.0,
        disclosed_quantity=0, average_price=1639.5, after_market_order=True,
        correlation_id="ct-1", reason="", symbol="HDFCBANK", lot_size=None, leg=3,
        placed_in_app=False, updated_at=IST.localize(datetime(2026, 11, 25, 10, 0, 5)),
        source=ReportSource.REST)


# Shaped like order-book rows captured from the live API (dhan-api.md, "Where real Dhan
# is messier"): `legName` "NA", the fill count as `filled_qty` (no `filledQty`), an
# unanswered exchange time and order id, the remark in `omsErrorDescription`, equity
# rows with an F&O expiry of year 1.
LIVE_ROW = {
    "dhanClientId": "1000000001", "orderId": "52240101000001", "correlationId": "ct-1",
    "orderStatus": "PENDING", "transactionType": "BUY", "exchangeSegment": "NSE_EQ",
    "productType": "CNC", "orderType": "LIMIT", "validity": "DAY",
    "tradingSymbol": "HDFCBANK", "securityId": "1333", "quantity": 10,
    "disclosedQuantity": 0, "price": 1640.0, "triggerPrice": 0.0, "afterMarketOrder": False,
    "boProfitValue": 0.0, "boStopLossValue": 0.0, "legName": "NA",
    "createTime": "2026-11-25 10:00:00", "updateTime": "2026-11-25 10:00:00",
    "exchangeTime": "0000-00-00 00:00:00", "exchangeOrderId": "0", "drvExpiryDate": "0001-01-01",
    "drvOptionType": "NA", "drvStrikePrice": 0.0, "omsErrorCode": "0",
    "omsErrorDescription": "CONFIRMED", "algoId": "", "remainingQuantity": 10,
    "averageTradedPrice": 0, "filled_qty": 0,
}
# The same order on the stream, as Dhan's own sample shows a plain order: DiscQuantity
# equal to Quantity, Remarks "NR", ReasonDescription "CONFIRMED", a year-1 expiry.
LIVE_FRAME = {
    "Type": "order_alert",
    "Data": {**alert(Status="Pending", DiscQuantity=10, ReasonDescription="CONFIRMED",
                     OrderDateTime="2026-11-25 10:00:00"),
             "Remarks": "NR", "ExpiryDate": "0001-01-01 00:00:00",
             "ExchOrderTime": "0000-00-00 00:00:00", "ExchOrderNo": "0", "OptType": "XX"},
}


def test_a_live_order_book_row() -> None:
    report = report_from_rest(LIVE_ROW)
    # "CONFIRMED" is what Dhan says when there is nothing to say: no reason
    assert (report.leg, report.traded_quantity, report.reason) == (1, 0, "")
    assert report.updated_at == IST.localize(datetime(2026, 11, 25, 10, 0, 0))
    filled = report_from_rest({**LIVE_ROW, "orderStatus": "PART_TRADED", "filled_qty": 4,
                               "averageTradedPrice": 1639.5, "legName": "NA"})
    assert (filled.status, filled.traded_quantity, filled.average_price) == (
        "PART_TRADED", 4, 1639.5)


def test_a_live_row_and_its_frame_report_the_same_order() -> None:
    rest = report_from_rest(LIVE_ROW)
    stream = parse_frame(json.dumps(LIVE_FRAME))
    assert stream is not None
    same = ("order_id", "status", "exchange_segment", "security_id", "transaction_type",
            "product_type", "order_type", "validity", "quantity", "traded_quantity", "price",
            "trigger_price", "disclosed_quantity", "after_market_order", "correlation_id",
            "leg", "updated_at", "created_at")
    assert {k: getattr(stream, k) for k in same} == {k: getattr(rest, k) for k in same}


@pytest.mark.parametrize(("disclosed", "quantity", "read"), [
    (10, 10, 0), ("10", 10, 0), (0, 10, 0), (4, 10, 4), (9, 10, 9)])
def test_a_disclosed_quantity_of_the_whole_order_is_none(disclosed: object, quantity: int,
                                                         read: int) -> None:
    assert parse(DiscQuantity=disclosed, Quantity=quantity).disclosed_quantity == read
    row = rest_row(disclosedQuantity=disclosed, quantity=quantity)
    assert report_from_rest(row).disclosed_quantity == read


def test_rest_row_tolerance() -> None:
    report = report_from_rest(rest_row(
        quantity="10", filledQty="", price="1640.5", legName=None, correlationId=None,
        omsErrorDescription=None, afterMarketOrder="false", orderStatus="Cancelled",
        exchangeSegment="nse_fno", productType="M", orderType="SLM", unknownKey=[1]))
    assert (report.quantity, report.traded_quantity, report.price) == (10, 0, 1640.5)
    assert (report.leg, report.correlation_id, report.reason) == (1, "", "")
    assert (report.status, report.exchange_segment) == ("CANCELLED", "NSE_FNO")
    assert (report.product_type, report.order_type) == ("MARGIN", "STOP_LOSS_MARKET")
    assert report.after_market_order is False


def test_rest_rejection_reason() -> None:
    report = report_from_rest(rest_row(orderStatus="REJECTED",
                                       omsErrorDescription="RMS: Margin Exceeds"))
    assert report.reason == "RMS: Margin Exceeds"


@pytest.mark.parametrize(("change", "reason"), [
    ({"orderId": None}, "missing orderId"),
    ({"orderStatus": ""}, "missing orderStatus"),
    ({"exchangeSegment": "IDX_I"}, "unknown exchangeSegment"),
    ({"exchangeSegment": None}, "missing exchangeSegment"),
    ({"quantity": "x"}, "bad quantity"),
    ({"filledQty": -2}, "bad filledQty"),
    ({"transactionType": "HOLD"}, "unknown transactionType"),
    ({"legName": "SIDE_LEG"}, "unknown legName"),
])
def test_unusable_rest_rows_raise(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedFrame, match=reason):
        report_from_rest(rest_row(**change))


@pytest.mark.parametrize("row", [None, [], "row", 5])
def test_rest_row_that_is_not_an_object(row: Any) -> None:
    with pytest.raises(MalformedFrame, match="not an object"):
        report_from_rest(row)


# ----- nothing but MalformedFrame, whatever arrives ---------------------------------------------

JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
                | st.text(max_size=12))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=8)
FIELD_VALUES = (JSON_VALUES | st.sampled_from(["B", "S", "C", "LMT", "NSE", "E", "1", "0", "",
                                               "Traded", "10", "10.0", "-1", "1e400"]))


def _check(outcome: Any) -> None:
    assert outcome is None or isinstance(outcome, OrderReport)


def _frame_or_malformed(raw: str | bytes) -> None:
    with contextlib.suppress(MalformedFrame):
        _check(parse_frame(raw))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=6))
def test_any_json_object_parses_or_is_malformed(message: dict[str, Any]) -> None:
    _frame_or_malformed(json.dumps(message))


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={key: FIELD_VALUES for key in alert()}))
def test_any_order_alert_data_parses_or_is_malformed(data: dict[str, Any]) -> None:
    _frame_or_malformed(json.dumps({"Type": "order_alert", "Data": data}))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_single_field_change_parses_or_is_malformed(draw: st.DataObject) -> None:
    key = draw.draw(st.sampled_from(sorted(alert())))
    _frame_or_malformed(frame(**{key: draw.draw(FIELD_VALUES)}))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40) | st.text(max_size=40))
def test_any_bytes_or_text_parse_or_are_malformed(raw: str | bytes) -> None:
    _frame_or_malformed(raw)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={key: FIELD_VALUES for key in rest_row()}))
def test_any_rest_row_parses_or_is_malformed(row: dict[str, Any]) -> None:
    with contextlib.suppress(MalformedFrame):
        assert isinstance(report_from_rest(row), OrderReport)


def test_bo_rows_carry_their_values_and_legs() -> None:
    entry = report_from_rest(rest_row(productType="BO", legName="ENTRY_LEG",
                                      boProfitValue="5.5", boStopLossValue=2))
    assert (entry.leg, entry.bo_profit_value, entry.bo_stop_loss_value) == (1, 5.5, 2.0)
    stop = report_from_rest(rest_row(productType="BO", legName="STOP_LOSS_LEG",
                                     boProfitValue=None, boStopLossValue=None))
    assert (stop.leg, stop.key, stop.bo_profit_value) == (2, f"{stop.order_id}#2", 0.0)
    with pytest.raises(MalformedFrame):
        report_from_rest(rest_row(productType="BO", boProfitValue="lots"))


def test_frames_of_exit_legs_are_told_apart_from_their_entry() -> None:
    target = parse(Product="B", LegNo=3)
    entry = parse(Product="B", LegNo=1)
    assert (target.leg, entry.leg) == (3, 1) and target.key != entry.key
    assert target.bo_profit_value == 0.0  # Dhan's frame does not carry a BO's values
