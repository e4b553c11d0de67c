"""Bracket (BO) and cover (CO) orders in the emulator, through the real SDK and the stream:
the place rules, the exit legs under one order id, one-cancels-other, leg modify and exit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from dhanhq import dhanhq
from simtools import LEADER_ID, login, next_frames, no_more_frames, wait_logged_in
from websockets.sync.client import ClientConnection

from copytrade.sim.clock import ManualClock
from copytrade.sim.errors import ApiError
from copytrade.sim.server import Emulator

DIALECTS = ("clean", "realistic")
LEG_NUMBERS = {"ENTRY_LEG": 1, "STOP_LOSS_LEG": 2, "TARGET_LEG": 3}


@pytest.fixture
def stream(sim: Emulator) -> Iterator[ClientConnection]:
    with login(sim.ws_url) as ws:
        wait_logged_in(sim)
        yield ws


# ---- helpers --------------------------------------------------------------------------------

def placed_id(reply: dict) -> str:
    assert reply["status"] == "success", reply
    return reply["data"]["orderId"]


def refusal(reply: dict) -> tuple[str, str]:
    """(DH-9xx code, message) of a server refusal."""
    assert reply["status"] == "failure", reply
    assert isinstance(reply["remarks"], dict), reply
    return reply["remarks"]["error_code"], reply["remarks"]["error_message"]


def bracket(api: dhanhq, side: str = "BUY", quantity: int = 10, order_type: str = "LIMIT",
            price: float = 1650.0, profit: float | None = 10.0, stop: float | None = 5.0,
            **extra: Any) -> dict:
    """A BO on HDFCBANK (last price 1650, tick 0.05)."""
    extra.setdefault("security_id", "1333")
    extra.setdefault("exchange_segment", "NSE_EQ")
    return api.place_order(transaction_type=side, quantity=quantity, order_type=order_type,
                           product_type="BO", price=price, bo_profit_value=profit,
                           bo_stop_loss_Value=stop, **extra)


def cover(api: dhanhq, side: str = "BUY", trigger: float = 1640.0, order_type: str = "MARKET",
          price: float = 0, **extra: Any) -> dict:
    return api.place_order("1333", "NSE_EQ", side, 10, order_type, "CO", price,
                           trigger_price=trigger, **extra)


def legs(api: dhanhq, order_id: str) -> dict[str, dict]:
    """The BO/CO's rows by legName, from GET /orders/{id} (a list for a BO/CO)."""
    reply = api.get_order_by_id(order_id)
    assert reply["status"] == "success", reply
    assert isinstance(reply["data"], list), reply["data"]
    assert {row["orderId"] for row in reply["data"]} == {order_id}
    return {row["legName"]: row for row in reply["data"]}


def states(api: dhanhq, order_id: str) -> dict[str, str]:
    return {name: row["orderStatus"] for name, row in legs(api, order_id).items()}


def filled(row: dict) -> int:
    return row["filledQty"] if "filledQty" in row else row["filled_qty"]


def data(frame: dict) -> dict:
    """A frame's Data with PascalCase keys (realistic frames are camelCase every other one)."""
    assert frame["Type"] == "order_alert"
    return {key[:1].upper() + key[1:]: value for key, value in frame["Data"].items()}


def story(frames: list[dict]) -> list[tuple[int, str, int, int]]:
    """(LegNo, Status, Quantity, TradedQty) of each frame."""
    return [(d["LegNo"], d["Status"], d["Quantity"], d["TradedQty"])
            for d in map(data, frames)]


def net_quantity(api: dhanhq) -> int:
    [position] = api.get_positions()["data"]
    return position["netQty"]


def entered(api: dhanhq, stream: ClientConnection, **change: Any) -> str:
    """A BUY BO of 10 filled at 1650: stop-loss trigger 1645, target 1660; frames read."""
    order_id = placed_id(bracket(api, **change))
    next_frames(stream, 5)  # entry Transit, Pending, Traded; legs 2 and 3 Pending
    return order_id


# ---- place rules ----------------------------------------------------------------------------

PLACE_REFUSALS = {
    "BO without boProfitValue": (dict(profit=None), "DH-905", "boProfitValue"),
    "BO without boStopLossValue": (dict(stop=None), "DH-905", "boStopLossValue"),
    "BO with a zero boProfitValue": (dict(profit=0), "DH-905", "boProfitValue"),
    "BO with a negative boStopLossValue": (dict(stop=-5), "DH-905", "boStopLossValue"),
    "BO as AMO": (dict(after_market_order=True), "DH-905", "AMO"),
    "BO stop-loss entry": (dict(order_type="STOP_LOSS", trigger_price=1649.0), "DH-905",
                           "orderType"),
    "BO on MCX": (dict(security_id="447552", exchange_segment="MCX_COMM", quantity=100,
                       price=5600.0), "DH-906", "MCX_COMM"),
}


@pytest.mark.parametrize("case", PLACE_REFUSALS.values(), ids=PLACE_REFUSALS)
def test_bracket_orders_breaking_dhans_rules_are_refused(api: dhanhq, sim: Emulator,
                                                         case: tuple) -> None:
    change, code, named = case
    got_code, message = refusal(bracket(api, **change))
    assert got_code == code and named in message
    assert sim.snapshot()["accounts"][LEADER_ID]["orders"] == []


COVER_REFUSALS = {
    "CO without trigger": (dict(trigger=0), "triggerPrice"),
    "CO BUY trigger above the last price": (dict(trigger=1651.0), "below"),
    "CO BUY trigger above its limit": (dict(trigger=1645.0, order_type="LIMIT", price=1640.0),
                                       "below"),
    "CO SELL trigger below the last price": (dict(side="SELL", trigger=1640.0), "above"),
    "CO as AMO": (dict(after_market_order=True), "AMO"),
}


@pytest.mark.parametrize("case", COVER_REFUSALS.values(), ids=COVER_REFUSALS)
def test_cover_orders_breaking_dhans_rules_are_refused(api: dhanhq, sim: Emulator,
                                                       case: tuple) -> None:
    change, named = case
    code, message = refusal(cover(api, **change))
    assert code == "DH-905" and named in message
    assert sim.snapshot()["accounts"][LEADER_ID]["orders"] == []


def test_bracket_and_cover_orders_are_taken_on_fno(api: dhanhq, sim: Emulator) -> None:
    assert placed_id(api.place_order("52175", "NSE_FNO", "BUY", 65, "MARKET", "CO", 0,
                                     trigger_price=25900.0))
    assert placed_id(bracket(api, quantity=65, order_type="MARKET", price=0,
                             security_id="52175", exchange_segment="NSE_FNO"))
    rows = sim.snapshot()["accounts"][LEADER_ID]["orders"]
    assert {(r["productType"], r["legName"]) for r in rows} == {
        ("CO", "ENTRY_LEG"), ("CO", "STOP_LOSS_LEG"), ("BO", "ENTRY_LEG"),
        ("BO", "STOP_LOSS_LEG"), ("BO", "TARGET_LEG")}


def test_app_places_meet_the_same_rules(sim: Emulator) -> None:
    order = {"transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "BO",
             "orderType": "LIMIT", "validity": "DAY", "securityId": "1333", "quantity": 10,
             "price": 1650.0, "boProfitValue": 10.0}
    with pytest.raises(ApiError) as refused:
        sim.app_place(LEADER_ID, order)
    assert refused.value.code == "DH-905" and "boStopLossValue" in refused.value.message
    [order_id] = sim.app_place(LEADER_ID, {**order, "boStopLossValue": 5.0})
    assert sim.snapshot()["accounts"][LEADER_ID]["orders"][0]["orderId"] == order_id


def test_accounts_without_bo_co_are_refused_every_bo_and_co(sim: Emulator, api: dhanhq) -> None:
    reply = requests.post(f"{sim.control_url}/accounts/bo-co",
                          json={"client_id": LEADER_ID, "allowed": False}, timeout=5)
    assert reply.status_code == 200, reply.text
    for placed in (bracket(api), cover(api)):
        code, message = refusal(placed)
        assert code == "DH-906" and "BO/CO orders are not enabled" in message
    with pytest.raises(ApiError) as refused:
        sim.app_place(LEADER_ID, {"transactionType": "BUY", "exchangeSegment": "NSE_EQ",
                                  "productType": "CO", "orderType": "MARKET", "validity": "DAY",
                                  "securityId": "1333", "quantity": 1, "triggerPrice": 1640})
    assert refused.value.code == "DH-906"
    assert placed_id(api.place_order("1333", "NSE_EQ", "BUY", 1, "MARKET", "INTRADAY", 0))
    bad = requests.post(f"{sim.control_url}/accounts/bo-co",
                        json={"client_id": LEADER_ID, "allowed": "no"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["errorCode"] == "DH-905"
    sim.set_bo_co_allowed(LEADER_ID, True)
    assert placed_id(bracket(api))


# ---- legs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dialect", DIALECTS)
def test_filled_entry_creates_stop_loss_and_target_legs(sim: Emulator, api: dhanhq,
                                                        stream: ClientConnection,
                                                        dialect: str) -> None:
    sim.set_dialect(LEADER_ID, dialect)
    order_id = placed_id(bracket(api, profit=10.02, stop=5.01, tag="ct-bo-1"))
    frames = next_frames(stream, 5)
    assert story(frames) == [(1, "Transit", 10, 0), (1, "Pending", 10, 0), (1, "Traded", 10, 10),
                             (2, "Pending", 10, 0), (3, "Pending", 10, 0)]
    entry, stop, target = map(data, frames[2:])
    assert {d["OrderNo"] for d in (entry, stop, target)} == {order_id}
    assert {d["CorrelationId"] for d in (entry, stop, target)} == {"ct-bo-1"}
    assert {d["Product"] for d in (entry, stop, target)} == {"B"}
    # Entry average 1650: stop 1650 - 5.01 rounded down to the tick, target 1660.02 up.
    assert (stop["TxnType"], stop["OrderType"], stop["TriggerPrice"]) == ("S", "SLM", 1644.95)
    assert (target["TxnType"], target["OrderType"], target["Price"]) == ("S", "LMT", 1660.05)
    assert stop["ExchOrderNo"] not in (entry["ExchOrderNo"], target["ExchOrderNo"])
    assert not [key for d in (entry, stop, target) for key in d if key.lower().startswith("bo")]
    assert no_more_frames(stream)

    rows = api.get_order_list()["data"]
    assert [(r["orderId"], r["legName"]) for r in rows] == [
        (order_id, "ENTRY_LEG"), (order_id, "STOP_LOSS_LEG"), (order_id, "TARGET_LEG")]
    assert {(r["boProfitValue"], r["boStopLossValue"], r["correlationId"]) for r in rows} == {
        (10.02, 5.01, "ct-bo-1")}
    by_id = legs(api, order_id)
    assert list(by_id) == ["ENTRY_LEG", "STOP_LOSS_LEG", "TARGET_LEG"]
    assert (by_id["STOP_LOSS_LEG"]["orderType"], by_id["STOP_LOSS_LEG"]["triggerPrice"],
            by_id["STOP_LOSS_LEG"]["quantity"]) == ("STOP_LOSS_MARKET", 1644.95, 10)
    assert (by_id["TARGET_LEG"]["orderType"], by_id["TARGET_LEG"]["price"],
            by_id["TARGET_LEG"]["transactionType"]) == ("LIMIT", 1660.05, "SELL")
    assert api.get_order_by_correlationID("ct-bo-1")["data"] == api.get_order_by_id(
        order_id)["data"]


def test_plain_order_lookups_keep_one_row(api: dhanhq) -> None:
    order_id = placed_id(api.place_order("1333", "NSE_EQ", "BUY", 1, "MARKET", "CNC", 0,
                                         tag="ct-plain"))
    row = api.get_order_by_id(order_id)["data"]
    assert isinstance(row, dict) and row["legName"] == "ENTRY_LEG"
    assert row["boProfitValue"] is None and row["boStopLossValue"] is None
    assert api.get_order_by_correlationID("ct-plain")["data"] == row


@pytest.mark.parametrize("dialect", DIALECTS)
def test_stop_loss_triggers_and_cancels_the_target(sim: Emulator, api: dhanhq,
                                                   stream: ClientConnection,
                                                   dialect: str) -> None:
    sim.set_dialect(LEADER_ID, dialect)
    order_id = entered(api, stream)
    sim.set_price("1333", 1646.0)  # above the trigger 1645
    assert no_more_frames(stream)
    sim.set_price("1333", 1644.0)
    frames = next_frames(stream, 2)
    assert story(frames) == [(2, "Traded", 10, 10), (3, "Cancelled", 10, 0)]
    assert data(frames[0])["TradedPrice"] == 1644.0  # at the last price
    assert states(api, order_id) == {"ENTRY_LEG": "TRADED", "STOP_LOSS_LEG": "TRADED",
                                     "TARGET_LEG": "CANCELLED"}
    assert net_quantity(api) == 0
    trades = api.get_trade_book(order_id)["data"]
    assert [(t["transactionType"], t["tradedQuantity"], t["tradedPrice"]) for t in trades] == [
        ("BUY", 10, 1650.0), ("SELL", 10, 1644.0)]
    assert len(api.get_trade_book()["data"]) == 2


def test_target_fills_and_cancels_the_stop_loss(sim: Emulator, api: dhanhq,
                                                stream: ClientConnection) -> None:
    order_id = entered(api, stream)
    sim.set_price("1333", 1659.0)
    assert no_more_frames(stream)
    sim.set_price("1333", 1662.0)
    assert story(next_frames(stream, 2)) == [(3, "Traded", 10, 10), (2, "Cancelled", 10, 0)]
    assert states(api, order_id)["STOP_LOSS_LEG"] == "CANCELLED"
    [position] = api.get_positions()["data"]
    assert (position["netQty"], position["productType"], position["realizedProfit"]) == (
        0, "BO", 120.0)


def test_partial_exit_fill_shrinks_the_other_leg(sim: Emulator, api: dhanhq,
                                                 stream: ClientConnection) -> None:
    order_id = entered(api, stream)
    sim.set_fill_size(4)
    sim.set_price("1333", 1661.0)
    assert story(next_frames(stream, 2)) == [(3, "Part_Traded", 10, 4), (2, "Pending", 6, 0)]
    sim.set_price("1333", 1644.0)  # the stop-loss now closes only what is left
    assert story(next_frames(stream, 2)) == [(2, "Part_Traded", 6, 4), (3, "Part_Traded", 6, 4)]
    sim.match()
    assert story(next_frames(stream, 2)) == [(2, "Traded", 6, 6), (3, "Cancelled", 6, 4)]
    assert net_quantity(api) == 0
    rows = legs(api, order_id)
    assert (filled(rows["STOP_LOSS_LEG"]), filled(rows["TARGET_LEG"])) == (6, 4)


def test_short_bracket_legs_sit_on_the_other_side(sim: Emulator, api: dhanhq,
                                                  stream: ClientConnection) -> None:
    order_id = placed_id(bracket(api, "SELL", order_type="MARKET", price=0, profit=20.03,
                                 stop=7.52))
    next_frames(stream, 5)
    rows = legs(api, order_id)
    # Away from the entry: stop 1657.52 up to 1657.55, target 1629.97 down to 1629.95.
    assert (rows["STOP_LOSS_LEG"]["transactionType"],
            rows["STOP_LOSS_LEG"]["triggerPrice"]) == ("BUY", 1657.55)
    assert (rows["TARGET_LEG"]["transactionType"], rows["TARGET_LEG"]["price"]) == (
        "BUY", 1629.95)
    sim.set_price("1333", 1657.5)
    assert no_more_frames(stream)
    sim.set_price("1333", 1658.0)
    assert story(next_frames(stream, 2)) == [(2, "Traded", 10, 10), (3, "Cancelled", 10, 0)]
    assert net_quantity(api) == 0


# ---- modify ---------------------------------------------------------------------------------

def test_modify_moves_the_stop_loss_trigger_and_the_target_price(
        sim: Emulator, api: dhanhq, stream: ClientConnection) -> None:
    order_id = entered(api, stream)
    reply = api.modify_order(order_id, "STOP_LOSS_MARKET", "STOP_LOSS_LEG", 10, 0, 1648.0, 0,
                             "DAY")
    assert reply["data"] == {"orderId": order_id, "orderStatus": "TRANSIT"}
    [moved] = next_frames(stream, 1)
    assert (data(moved)["LegNo"], data(moved)["TriggerPrice"]) == (2, 1648.0)
    api.modify_order(order_id, "LIMIT", "TARGET_LEG", 10, 1670.0, 0, 0, "DAY")
    [moved] = next_frames(stream, 1)
    assert (data(moved)["LegNo"], data(moved)["Price"]) == (3, 1670.0)
    rows = legs(api, order_id)
    assert (rows["STOP_LOSS_LEG"]["triggerPrice"], rows["TARGET_LEG"]["price"]) == (
        1648.0, 1670.0)

    sim.set_price("1333", 1661.0)  # past the old target, short of the new one
    assert no_more_frames(stream)
    sim.set_price("1333", 1647.5)  # past the new trigger, short of the old one
    assert story(next_frames(stream, 2)) == [(2, "Traded", 10, 10), (3, "Cancelled", 10, 0)]


def test_leg_modifications_that_break_the_rules_are_refused(
        sim: Emulator, api: dhanhq, stream: ClientConnection, clock: ManualClock) -> None:
    pending = placed_id(bracket(api, price=1600.0))
    next_frames(stream, 2)
    code, message = refusal(api.modify_order(pending, "STOP_LOSS_MARKET", "STOP_LOSS_LEG", 10,
                                             0, 1590.0, 0, "DAY"))
    assert code == "DH-906" and "STOP_LOSS_LEG" in message  # no legs before the entry fills

    order_id = entered(api, stream)
    code, message = refusal(api.modify_order(order_id, "LIMIT", "TARGET_LEG", 5, 1670.0, 0, 0,
                                             "DAY"))
    assert code == "DH-905" and "Quantity" in message
    assert refusal(api.modify_order(order_id, "STOP_LOSS_MARKET", "TARGET_LEG", 10, 0, 1640.0,
                                    0, "DAY"))[0] == "DH-905"
    assert refusal(api.modify_order(order_id, "LIMIT", "ENTRY_LEG", 10, 1650.0, 0, 0,
                                    "DAY"))[0] == "DH-906"  # the entry is TRADED
    assert no_more_frames(stream)

    sim.set_price("1333", 1662.0)
    next_frames(stream, 2)
    code, message = refusal(api.modify_order(order_id, "STOP_LOSS_MARKET", "STOP_LOSS_LEG", 10,
                                             0, 1648.0, 0, "DAY"))
    assert code == "DH-906" and "CANCELLED" in message

    clock.advance(1.01)  # a new second for the order-rate window
    plain = placed_id(api.place_order("1333", "NSE_EQ", "BUY", 1, "LIMIT", "CNC", 1600.0))
    assert refusal(api.modify_order(plain, "LIMIT", "TARGET_LEG", 1, 1601.0, 0, 0,
                                    "DAY"))[0] == "DH-906"
    assert api.modify_order(plain, "LIMIT", "NA", 1, 1601.0, 0, 0, "DAY")["status"] == "success"


def test_modifications_are_counted_per_leg(api: dhanhq, stream: ClientConnection,
                                           clock: ManualClock) -> None:
    order_id = entered(api, stream)
    for step in range(25):
        clock.advance(0.2)  # stay inside the 10 orders/s window
        reply = api.modify_order(order_id, "STOP_LOSS_MARKET", "STOP_LOSS_LEG", 10, 0,
                                 1600.0 + step, 0, "DAY")
        assert reply["status"] == "success", (step, reply)
    clock.advance(0.2)
    code, message = refusal(api.modify_order(order_id, "STOP_LOSS_MARKET", "STOP_LOSS_LEG", 10,
                                             0, 1630.0, 0, "DAY"))
    assert code == "DH-906" and "25" in message
    assert api.modify_order(order_id, "LIMIT", "TARGET_LEG", 10, 1670.0, 0, 0,
                            "DAY")["status"] == "success"
    assert len(next_frames(stream, 26)) == 26  # one per modification that went through


@pytest.mark.parametrize("dialect", DIALECTS)
def test_target_modified_to_market_exits_at_once(sim: Emulator, api: dhanhq,
                                                 stream: ClientConnection, dialect: str) -> None:
    sim.set_dialect(LEADER_ID, dialect)
    order_id = entered(api, stream)
    sim.set_price("1333", 1652.0)
    api.modify_order(order_id, "MARKET", "TARGET_LEG", 10, 0, 0, 0, "DAY")
    frames = next_frames(stream, 3)
    assert story(frames) == [(3, "Pending", 10, 0), (3, "Traded", 10, 10),
                             (2, "Cancelled", 10, 0)]
    assert (data(frames[1])["OrderType"], data(frames[1])["TradedPrice"]) == ("MKT", 1652.0)
    assert states(api, order_id) == {"ENTRY_LEG": "TRADED", "STOP_LOSS_LEG": "CANCELLED",
                                     "TARGET_LEG": "TRADED"}
    assert net_quantity(api) == 0


def test_app_modifies_the_stop_loss_to_market(sim: Emulator, api: dhanhq,
                                              stream: ClientConnection) -> None:
    order_id = entered(api, stream)
    sim.set_price("1333", 1649.0)
    status = sim.app_modify(LEADER_ID, order_id, {
        "orderType": "MARKET", "legName": "STOP_LOSS_LEG", "quantity": 10, "price": 0,
        "triggerPrice": 0, "validity": "DAY"})
    assert status == "TRADED"
    frames = next_frames(stream, 3)
    assert story(frames) == [(2, "Pending", 10, 0), (2, "Traded", 10, 10),
                             (3, "Cancelled", 10, 0)]
    assert data(frames[1])["Source"] == "N"
    assert net_quantity(api) == 0


# ---- cancel ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dialect", DIALECTS)
def test_cancel_after_the_fill_exits_the_position(sim: Emulator, api: dhanhq,
                                                  stream: ClientConnection, dialect: str) -> None:
    sim.set_dialect(LEADER_ID, dialect)
    order_id = entered(api, stream)
    sim.set_price("1333", 1653.0)
    reply = api.cancel_order(order_id)
    assert reply["data"] == {"orderId": order_id, "orderStatus": "TRADED"}  # the exit leg's
    frames = next_frames(stream, 2)
    assert story(frames) == [(2, "Traded", 10, 10), (3, "Cancelled", 10, 0)]
    assert data(frames[0])["TradedPrice"] == 1653.0
    assert net_quantity(api) == 0
    code, message = refusal(api.cancel_order(order_id))
    assert code == "DH-906" and "cannot be cancelled" in message


def test_cancel_of_a_pending_entry_cancels_it_without_legs(api: dhanhq,
                                                           stream: ClientConnection) -> None:
    order_id = placed_id(bracket(api, price=1600.0))
    next_frames(stream, 2)
    assert api.cancel_order(order_id)["data"]["orderStatus"] == "CANCELLED"
    assert story(next_frames(stream, 1)) == [(1, "Cancelled", 10, 0)]
    assert no_more_frames(stream)
    assert states(api, order_id) == {"ENTRY_LEG": "CANCELLED"}
    assert refusal(api.cancel_order(order_id))[0] == "DH-906"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_part_filled_entry_cancelled_gets_legs_for_the_filled_quantity(
        sim: Emulator, api: dhanhq, stream: ClientConnection, dialect: str) -> None:
    sim.set_dialect(LEADER_ID, dialect)
    sim.set_fill_size(4)
    order_id = placed_id(bracket(api))
    assert story(next_frames(stream, 3)) == [(1, "Transit", 10, 0), (1, "Pending", 10, 0),
                                             (1, "Part_Traded", 10, 4)]
    api.cancel_order(order_id)
    assert story(next_frames(stream, 3)) == [(1, "Cancelled", 10, 4), (2, "Pending", 4, 0),
                                             (3, "Pending", 4, 0)]
    rows = legs(api, order_id)
    assert (rows["STOP_LOSS_LEG"]["quantity"], rows["TARGET_LEG"]["quantity"]) == (4, 4)
    assert rows["ENTRY_LEG"]["orderStatus"] == "CANCELLED" and filled(rows["ENTRY_LEG"]) == 4
    sim.set_price("1333", 1640.0)
    assert story(next_frames(stream, 2)) == [(2, "Traded", 4, 4), (3, "Cancelled", 4, 0)]
    assert net_quantity(api) == 0


# ---- cover orders and the session -----------------------------------------------------------

@pytest.mark.parametrize("dialect", DIALECTS)
def test_cover_order_has_only_a_stop_loss_leg(sim: Emulator, api: dhanhq,
                                              stream: ClientConnection, dialect: str) -> None:
    sim.set_dialect(LEADER_ID, dialect)
    order_id = placed_id(cover(api, trigger=1640.0, tag="ct-co-1"))
    frames = next_frames(stream, 4)
    assert story(frames) == [(1, "Transit", 10, 0), (1, "Pending", 10, 0), (1, "Traded", 10, 10),
                             (2, "Pending", 10, 0)]
    stop = data(frames[3])
    assert (stop["Product"], stop["TxnType"], stop["OrderType"], stop["TriggerPrice"]) == (
        "V", "S", "SLM", 1640.0)
    assert stop["CorrelationId"] == "ct-co-1"
    rows = legs(api, order_id)
    assert list(rows) == ["ENTRY_LEG", "STOP_LOSS_LEG"]
    assert refusal(api.modify_order(order_id, "LIMIT", "TARGET_LEG", 10, 1670.0, 0, 0,
                                    "DAY"))[0] == "DH-906"
    sim.set_price("1333", 1639.0)
    assert story(next_frames(stream, 1)) == [(2, "Traded", 10, 10)]
    assert no_more_frames(stream)
    [position] = api.get_positions()["data"]
    assert (position["netQty"], position["productType"]) == (0, "CO")


def test_open_legs_expire_with_the_session(sim: Emulator, api: dhanhq,
                                           stream: ClientConnection) -> None:
    order_id = entered(api, stream)
    assert sim.end_session() == 2
    assert story(next_frames(stream, 2)) == [(2, "Expired", 10, 0), (3, "Expired", 10, 0)]
    assert set(states(api, order_id).values()) == {"TRADED", "EXPIRED"}
    assert refusal(api.cancel_order(order_id))[0] == "DH-906"


def test_snapshot_lists_every_leg(sim: Emulator, api: dhanhq, stream: ClientConnection) -> None:
    order_id = entered(api, stream)
    orders = sim.snapshot()["accounts"][LEADER_ID]["orders"]
    assert [(o["orderId"], o["legName"], o["orderStatus"]) for o in orders] == [
        (order_id, "ENTRY_LEG", "TRADED"), (order_id, "STOP_LOSS_LEG", "PENDING"),
        (order_id, "TARGET_LEG", "PENDING")]
    assert sim.snapshot()["accounts"][LEADER_ID]["funds"]["utilizedAmount"] == 3300.0
