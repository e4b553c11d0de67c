"""The real dhanhq SDK against the emulator's REST API: every endpoint and every refusal."""

from __future__ import annotations

import csv
import io

import pytest
import requests
from dhanhq import dhanhq
from simtools import LEADER_ID

from copytrade.sim.clock import ManualClock
from copytrade.sim.server import Emulator


def placed_id(reply: dict) -> str:
    assert reply["status"] == "success", reply
    return reply["data"]["orderId"]


def refusal(reply: dict) -> str:
    """The DH-9xx code of a server refusal (the SDK turns those into a dict of remarks)."""
    assert reply["status"] == "failure", reply
    assert isinstance(reply["remarks"], dict), reply
    return reply["remarks"]["error_code"]


def buy(api: dhanhq, quantity: int = 10, order_type: str = "MARKET", price: float = 0,
        security_id: str = "1333", segment: str = "NSE_EQ", product: str = "CNC",
        **extra: object) -> dict:
    return api.place_order(security_id, segment, "BUY", quantity, order_type, product, price,
                           **extra)


def test_market_order_fills_and_shows_everywhere(api: dhanhq) -> None:
    order_id = placed_id(buy(api, 10, tag="ct-market-1"))

    order = api.get_order_by_id(order_id)["data"]
    assert order["orderStatus"] == "TRADED"
    assert (order["filledQty"], order["remainingQuantity"]) == (10, 0)
    assert order["averageTradedPrice"] == 1650.0
    assert order["correlationId"] == "ct-market-1"
    assert order["dhanClientId"] == LEADER_ID
    assert api.get_order_by_correlationID("ct-market-1")["data"]["orderId"] == order_id
    assert [o["orderId"] for o in api.get_order_list()["data"]] == [order_id]

    trades = api.get_trade_book()["data"]
    assert [(t["orderId"], t["tradedQuantity"], t["tradedPrice"]) for t in trades] == [
        (order_id, 10, 1650.0)]
    assert api.get_trade_book(order_id)["data"] == trades

    [position] = api.get_positions()["data"]
    assert (position["securityId"], position["netQty"], position["positionType"]) == (
        "1333", 10, "LONG")
    funds = api.get_fund_limits()["data"]
    assert funds["sodLimit"] == 1_000_000
    assert funds["utilizedAmount"] == 16_500
    assert funds["availabelBalance"] == 1_000_000 - 16_500


def test_limit_order_waits_then_fills_in_parts_when_price_crosses(sim: Emulator,
                                                                  api: dhanhq) -> None:
    sim.set_fill_size(5)
    order_id = placed_id(buy(api, 10, "LIMIT", 1640.0))
    assert api.get_order_by_id(order_id)["data"]["orderStatus"] == "PENDING"

    sim.set_price("1333", 1645.0)  # above the limit: no fill
    assert api.get_order_by_id(order_id)["data"]["filledQty"] == 0

    sim.set_price("1333", 1639.0)
    order = api.get_order_by_id(order_id)["data"]
    assert (order["orderStatus"], order["filledQty"]) == ("PART_TRADED", 5)

    sim.match()
    order = api.get_order_by_id(order_id)["data"]
    assert (order["orderStatus"], order["filledQty"], order["averageTradedPrice"]) == (
        "TRADED", 10, 1639.0)
    assert len(api.get_trade_book(order_id)["data"]) == 2


def test_stop_loss_orders_trigger_when_price_crosses(sim: Emulator, api: dhanhq) -> None:
    stop_limit = placed_id(buy(api, 5, "STOP_LOSS", 1661.0, trigger_price=1660.0))
    stop_market = placed_id(api.place_order("1333", "NSE_EQ", "SELL", 5, "STOP_LOSS_MARKET",
                                            "INTRADAY", 0, trigger_price=1600.0))
    assert api.get_order_by_id(stop_limit)["data"]["orderStatus"] == "PENDING"

    sim.set_price("1333", 1660.5)
    assert api.get_order_by_id(stop_limit)["data"]["orderStatus"] == "TRADED"
    assert api.get_order_by_id(stop_market)["data"]["orderStatus"] == "PENDING"

    sim.set_price("1333", 1599.0)
    assert api.get_order_by_id(stop_market)["data"]["orderStatus"] == "TRADED"


def test_modify_changes_total_quantity_price_and_type(sim: Emulator, api: dhanhq) -> None:
    order_id = placed_id(buy(api, 10, "LIMIT", 1600.0))
    reply = api.modify_order(order_id, "LIMIT", "ENTRY_LEG", 20, 1601.0, 0, 0, "DAY")
    assert reply["status"] == "success"
    assert reply["data"] == {"orderId": order_id, "orderStatus": "TRANSIT"}
    order = api.get_order_by_id(order_id)["data"]
    assert (order["quantity"], order["price"], order["orderStatus"]) == (20, 1601.0, "PENDING")

    api.modify_order(order_id, "MARKET", "ENTRY_LEG", 20, 0, 0, 0, "DAY")
    assert api.get_order_by_id(order_id)["data"]["orderStatus"] == "TRADED"


def test_modify_refused_after_25_modifications(api: dhanhq, clock: ManualClock) -> None:
    order_id = placed_id(buy(api, 10, "LIMIT", 1500.0))
    for step in range(25):
        clock.advance(0.2)  # stay inside the 10 orders/s window
        reply = api.modify_order(order_id, "LIMIT", "ENTRY_LEG", 10, 1500.0 + step / 10, 0, 0,
                                 "DAY")
        assert reply["status"] == "success", (step, reply)
    clock.advance(0.2)
    reply = api.modify_order(order_id, "LIMIT", "ENTRY_LEG", 10, 1499.0, 0, 0, "DAY")
    assert refusal(reply) == "DH-906"
    assert "25" in reply["remarks"]["error_message"]


def test_cancel_then_cancel_again_is_refused(api: dhanhq) -> None:
    order_id = placed_id(buy(api, 10, "LIMIT", 1600.0))
    reply = api.cancel_order(order_id)
    assert reply["data"] == {"orderId": order_id, "orderStatus": "CANCELLED"}
    assert api.get_order_by_id(order_id)["data"]["orderStatus"] == "CANCELLED"
    assert refusal(api.cancel_order(order_id)) == "DH-906"
    assert refusal(api.modify_order(order_id, "LIMIT", "ENTRY_LEG", 10, 1600.0, 0, 0,
                                    "DAY")) == "DH-906"


def test_unknown_order_is_not_found(api: dhanhq) -> None:
    assert refusal(api.get_order_by_id("999")) == "DH-906"
    assert refusal(api.get_order_by_correlationID("nobody")) == "DH-906"
    assert refusal(api.cancel_order("999")) == "DH-906"


def test_freeze_limit_refused_unless_sliced(api: dhanhq, sim: Emulator) -> None:
    sim.set_funds(LEADER_ID, 100_000_000)
    quantity = 65 * 30  # NIFTY futures: 30 lots, freeze limit 1755 (27 lots)
    reply = buy(api, quantity, security_id="52175", segment="NSE_FNO", product="MARGIN")
    assert refusal(reply) == "DH-905"

    reply = buy(api, quantity, security_id="52175", segment="NSE_FNO", product="MARGIN",
                should_slice=True, tag="ct-sliced")
    assert reply["status"] == "success", reply
    slices = [api.get_order_by_id(s["orderId"])["data"] for s in reply["data"]]
    assert [s["quantity"] for s in slices] == [1755, 195]
    assert {s["orderStatus"] for s in slices} == {"TRADED"}
    assert {s["correlationId"] for s in slices} == {"ct-sliced"}


INVALID_PLACE_ORDERS = {
    "transaction type": dict(transaction_type="HOLD"),
    "segment": dict(exchange_segment="NSE_XYZ"),
    "index segment is not tradable": dict(exchange_segment="IDX_I"),
    "product": dict(product_type="DELIVERY"),
    "order type": dict(order_type="ICEBERG"),
    "validity": dict(validity="GTC"),
    "unknown security": dict(security_id="424242"),
    "security in another segment": dict(security_id="52175"),
    "zero quantity": dict(quantity=0),
    "limit without price": dict(order_type="LIMIT", price=0),
    "stop loss without trigger": dict(order_type="STOP_LOSS", price=1650.0),
    "stop loss market without trigger": dict(order_type="STOP_LOSS_MARKET"),
    "buy stop trigger above limit": dict(order_type="STOP_LOSS", price=1650.0,
                                         trigger_price=1660.0),
    "disclosed 30% or less": dict(quantity=100, disclosed_quantity=30),
    "disclosed above quantity": dict(quantity=100, disclosed_quantity=101),
    "correlation id too long": dict(tag="x" * 31),
    "correlation id bad characters": dict(tag="ct.1 2"),
    "F&O quantity not whole lots": dict(security_id="52175", exchange_segment="NSE_FNO",
                                        product_type="MARGIN", quantity=100),
    "MCX quantity not whole lots": dict(security_id="447552", exchange_segment="MCX_COMM",
                                        product_type="MARGIN", quantity=50),
    "bracket order without legs": dict(product_type="BO", order_type="LIMIT", price=1650.0),
}


@pytest.mark.parametrize("change", INVALID_PLACE_ORDERS.values(), ids=INVALID_PLACE_ORDERS)
def test_invalid_orders_refused_with_dh905(api: dhanhq, sim: Emulator, change: dict) -> None:
    order = dict(security_id="1333", exchange_segment="NSE_EQ", transaction_type="BUY",
                 quantity=10, order_type="MARKET", product_type="CNC", price=0)
    order.update(change)
    assert refusal(api.place_order(**order)) == "DH-905"
    assert sim.snapshot()["accounts"][LEADER_ID]["orders"] == []


def test_valid_edge_cases_accepted(api: dhanhq) -> None:
    assert placed_id(buy(api, 100, "LIMIT", 1600.0, disclosed_quantity=31))
    assert placed_id(buy(api, 10, tag="A-z_0-9" + "x" * 23))  # exactly 30 characters
    assert placed_id(buy(api, 130, security_id="52201", segment="NSE_FNO", product="MARGIN"))


def test_invalid_modifications_refused(api: dhanhq) -> None:
    order_id = placed_id(buy(api, 10, "LIMIT", 1600.0))
    assert refusal(api.modify_order(order_id, "STOP_LOSS", "ENTRY_LEG", 10, 1600.0, 0, 0,
                                    "DAY")) == "DH-905"
    assert refusal(api.modify_order(order_id, "LIMIT", "ENTRY_LEG", 0, 1600.0, 0, 0,
                                    "DAY")) == "DH-905"
    assert refusal(api.modify_order(order_id, "LIMIT", "NO_LEG", 10, 1600.0, 0, 0,
                                    "DAY")) == "DH-905"


def test_eleventh_order_inside_one_second_gets_dh904(sim: Emulator, api: dhanhq,
                                                     clock: ManualClock) -> None:
    replies = [buy(api, 1, "LIMIT", 1600.0) for _ in range(11)]
    assert [r["status"] for r in replies[:10]] == ["success"] * 10
    assert refusal(replies[10]) == "DH-904"
    assert len(sim.snapshot()["accounts"][LEADER_ID]["orders"]) == 10

    clock.advance(1.001)  # the oldest order has left the one-second window
    assert placed_id(buy(api, 1, "LIMIT", 1600.0))


def test_http_status_of_rate_limit_is_429(sim: Emulator) -> None:
    headers = {"access-token": "raw-http-token", "client-id": "1000000077"}
    body = {"transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
            "orderType": "LIMIT", "validity": "DAY", "securityId": "1333", "quantity": 1,
            "price": 1600.0}
    statuses = [requests.post(f"{sim.rest_url}/orders", json=body, headers=headers,
                              timeout=5).status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]


def test_minute_window_allows_250_orders(api: dhanhq, clock: ManualClock) -> None:
    for index in range(250):
        if index and index % 10 == 0:
            clock.advance(1.01)
        assert api.cancel_order("1")["remarks"]["error_code"] == "DH-906", index
    clock.advance(1.01)
    assert refusal(api.cancel_order("1")) == "DH-904"  # the 251st order call this minute
    clock.advance(60)
    assert refusal(api.cancel_order("1")) == "DH-906"  # a new minute: not throttled


def test_reads_are_limited_separately_at_20_per_second(api: dhanhq) -> None:
    for _ in range(10):
        buy(api, 1, "LIMIT", 1600.0)
    replies = [api.get_order_list() for _ in range(21)]
    assert [r["status"] for r in replies[:20]] == ["success"] * 20
    assert refusal(replies[20]) == "DH-904"


def test_expired_token_gets_dh901_and_a_fresh_token_works(sim: Emulator, make_api) -> None:
    old = make_api(token="token-before")
    assert placed_id(buy(old, 1))
    sim.expire_token(LEADER_ID)
    assert refusal(buy(old, 1)) == "DH-901"
    assert refusal(old.get_order_list()) == "DH-901"

    fresh = make_api(token="token-after")
    assert len(fresh.get_order_list()["data"]) == 1  # same account, same book


def test_missing_credentials_get_dh901(sim: Emulator) -> None:
    reply = requests.get(f"{sim.rest_url}/orders", timeout=5)
    assert reply.status_code == 401
    assert reply.json() == {"errorType": "Invalid_Authentication", "errorCode": "DH-901",
                            "errorMessage": reply.json()["errorMessage"]}


def test_rms_rejects_orders_beyond_funds_with_reason(sim: Emulator, api: dhanhq) -> None:
    sim.set_funds(LEADER_ID, 10_000)
    order_id = placed_id(buy(api, 10))  # 16,500 of HDFCBANK with 10,000 available
    order = api.get_order_by_id(order_id)["data"]
    assert order["orderStatus"] == "REJECTED"
    assert "Margin" in order["omsErrorDescription"]


def test_price_off_the_tick_is_rejected_by_the_exchange(api: dhanhq) -> None:
    order_id = placed_id(buy(api, 1, "LIMIT", 1600.03))
    order = api.get_order_by_id(order_id)["data"]
    assert order["orderStatus"] == "REJECTED"
    assert "tick" in order["omsErrorDescription"]


def test_end_of_session_expires_open_orders(sim: Emulator, api: dhanhq) -> None:
    open_id = placed_id(buy(api, 10, "LIMIT", 1600.0))
    done_id = placed_id(buy(api, 10))
    assert sim.end_session() == 1
    assert api.get_order_by_id(open_id)["data"]["orderStatus"] == "EXPIRED"
    assert api.get_order_by_id(done_id)["data"]["orderStatus"] == "TRADED"

    closed_id = placed_id(buy(api, 1))
    assert api.get_order_by_id(closed_id)["data"]["orderStatus"] == "REJECTED"
    amo_id = placed_id(buy(api, 1, after_market_order=True, amo_time="OPEN"))
    assert api.get_order_by_id(amo_id)["data"]["orderStatus"] == "PENDING"
    sim.start_session()
    assert api.get_order_by_id(amo_id)["data"]["orderStatus"] == "TRADED"

    sim.start_session(new_day=True)
    assert api.get_order_list()["data"] == []


def test_profile(api: dhanhq) -> None:
    profile = api.dhan_http.get("/profile")["data"]
    assert profile["dhanClientId"] == LEADER_ID
    # valid 24 hours from its first use, on the emulator's clock (IST DD/MM/YYYY HH:MM)
    assert profile["tokenValidity"] == "26/11/2026 10:00"


def test_scrip_master_csv_has_dhan_compact_columns(sim: Emulator) -> None:
    reply = requests.get(sim.scrip_master_url, timeout=5)
    assert reply.status_code == 200
    rows = {(r["SEM_EXM_EXCH_ID"], r["SEM_SMST_SECURITY_ID"]): r
            for r in csv.DictReader(io.StringIO(reply.text))}
    assert rows[("NSE", "1333")]["SEM_TRADING_SYMBOL"] == "HDFCBANK"
    assert rows[("NSE", "1333")]["SEM_SEGMENT"] == "E"
    nifty = rows[("NSE", "52175")]
    assert (nifty["SEM_SEGMENT"], float(nifty["SEM_LOT_UNITS"])) == ("D", 65.0)
    assert float(rows[("NSE", "52174")]["SEM_LOT_UNITS"]) == 30.0
    assert rows[("MCX", "447552")]["SEM_SEGMENT"] == "M"


def test_unknown_endpoint_and_bad_json_are_refused(sim: Emulator) -> None:
    headers = {"access-token": "tok", "client-id": "1000000055",
               "Content-Type": "application/json"}
    assert requests.get(f"{sim.rest_url}/nowhere", headers=headers, timeout=5).status_code == 404
    reply = requests.post(f"{sim.rest_url}/orders", data=b"{not json", headers=headers,
                          timeout=5)
    assert (reply.status_code, reply.json()["errorCode"]) == (400, "DH-905")


def test_accounts_are_separate(make_api) -> None:
    first = make_api("1000000011", "token-11")
    second = make_api("1000000012", "token-12")
    order_id = placed_id(buy(first, 5))
    assert second.get_order_list()["data"] == []
    assert refusal(second.get_order_by_id(order_id)) == "DH-906"
    assert refusal(make_api("1000000012", "token-11").get_order_list()) == "DH-901"


def test_market_quote_ltp(api: dhanhq, sim: Emulator) -> None:
    sim.set_price("52175", 26010.0)
    reply = api.ticker_data({"NSE_EQ": [1333], "NSE_FNO": [52175, 999999]})
    assert reply["status"] == "success"
    assert reply["data"]["data"] == {"NSE_EQ": {"1333": {"last_price": 1650.0}},
                                     "NSE_FNO": {"52175": {"last_price": 26010.0}}}


def test_market_quotes_are_limited_at_5_per_second(api: dhanhq) -> None:
    replies = [api.ticker_data({"NSE_EQ": [1333]}) for _ in range(6)]
    assert [r["status"] for r in replies[:5]] == ["success"] * 5
    assert refusal(replies[5]) == "DH-904"
