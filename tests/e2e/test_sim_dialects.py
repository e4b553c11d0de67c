"""The emulator's dialects and real-Dhan faults, through the real dhanhq SDK and raw frames.

Each test sets the leader's dialect explicitly (per account), so it means the same whatever
COPYTRADE_SIM_DIALECT the run uses. HDFCBANK (1333) starts at 1650.00, tick 0.05.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from dhanhq import dhanhq
from simtools import LEADER_ID, LEADER_TOKEN, login, next_frames, no_more_frames, wait_logged_in
from websockets.sync.client import ClientConnection

from copytrade.sim.clock import ManualClock
from copytrade.sim.dialects import PRESETS, Dialect
from copytrade.sim.server import Emulator

OTHER_ID = "1000000002"
OTHER_TOKEN = "other-token-dialect-5b2e"


# ---- helpers ------------------------------------------------------------------------------

@contextmanager
def stream(sim: Emulator) -> Iterator[ClientConnection]:
    with login(sim.ws_url) as ws:
        wait_logged_in(sim)
        yield ws


def place(api: dhanhq, order_type: str = "LIMIT", price: float = 1600.0, quantity: int = 10,
          side: str = "BUY", validity: str = "DAY") -> dict:
    return api.place_order("1333", "NSE_EQ", side, quantity, order_type, "CNC", price,
                           validity=validity)


def placed_id(reply: dict) -> str:
    assert reply["status"] == "success", reply
    return reply["data"]["orderId"]


def row(api: dhanhq, order_id: str) -> dict:
    reply = api.get_order_by_id(order_id)
    assert reply["status"] == "success", reply
    data = reply["data"]
    return data[0] if isinstance(data, list) else data


def control(sim: Emulator, path: str, body: dict) -> requests.Response:
    return requests.post(f"{sim.control_url}{path}", json=body, timeout=5)


def data_of(frame: dict) -> dict[str, Any]:
    assert frame["Type"] == "order_alert"
    return frame["Data"]


def status_of(data: dict[str, Any]) -> str:
    return data.get("Status") or data["status"]


# ---- presets and flags --------------------------------------------------------------------

def test_clean_is_every_flag_off_and_realistic_every_flag_on() -> None:
    clean, realistic = PRESETS["clean"], PRESETS["realistic"]
    assert clean == Dialect()
    assert (realistic.row_leg_na, realistic.row_filled_qty, realistic.row_placeholders,
            realistic.frame_sample_fields) == (True, True, True, True)
    assert realistic.camel_frames_every == 2 and realistic.market_protection > 0
    assert (realistic.data_plan, realistic.quotes_per_second) == (False, 1)


@pytest.mark.parametrize("flags", [{"no_such_flag": True}, {"row_leg_na": "yes"},
                                   {"market_protection": 0.5}, {"camel_frames_every": -1},
                                   {"quotes_per_second": 1.5}, {"data_plan": 1}])
def test_bad_flags_are_refused(flags: dict) -> None:
    with pytest.raises(ValueError):
        PRESETS["clean"].with_flags(flags)


def test_run_dialect_is_chosen_at_construction() -> None:
    with Emulator(clock=ManualClock(), dialect="realistic") as sim:
        assert sim.dialect.name == "realistic"
        assert sim.dialect_of(LEADER_ID) == PRESETS["realistic"]
        assert sim.snapshot()["dialect"]["name"] == "realistic"
    with pytest.raises(ValueError, match="unknown dialect"):
        Emulator(dialect="messy")


def test_per_account_dialect_overrides_and_resets(sim: Emulator, api: dhanhq,
                                                  make_api: Any) -> None:
    described = sim.set_dialect(LEADER_ID, "realistic", {"data_plan": True})
    assert described["name"] == "realistic" and described["data_plan"] is True
    other = make_api(OTHER_ID, OTHER_TOKEN)
    leader_row = row(api, placed_id(place(api)))
    other_row = row(other, placed_id(place(other)))
    assert leader_row["legName"] == "NA" and other_row["legName"] == "ENTRY_LEG"
    assert sim.set_dialect(LEADER_ID)["name"] == sim.dialect.name  # back to the run's
    assert row(api, leader_row["orderId"])["legName"] == "ENTRY_LEG"


# ---- REST rows ----------------------------------------------------------------------------

def test_clean_rows_are_the_sdk_fixture_shapes(sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "clean")
    data = row(api, placed_id(place(api)))
    assert data["legName"] == "ENTRY_LEG" and data["filledQty"] == 0
    assert "filled_qty" not in data
    assert data["omsErrorCode"] == "" and data["drvExpiryDate"] == "NA"


def test_realistic_rows_carry_the_captured_quirks(sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "realistic")
    resting = row(api, placed_id(place(api, price=1600.0)))
    assert resting["legName"] == "NA"
    assert resting["filled_qty"] == 0 and "filledQty" not in resting
    assert (resting["omsErrorCode"], resting["omsErrorDescription"]) == ("0", "CONFIRMED")
    assert resting["drvExpiryDate"] == "0001-01-01" and resting["drvOptionType"] == "NA"
    assert resting["exchangeOrderId"] not in ("", "0")
    # Off the tick: refused by RMS before the exchange saw it, so the exchange fields are
    # Dhan's placeholders and the remark is in omsErrorDescription.
    rejected = row(api, placed_id(place(api, price=1600.03)))
    assert rejected["orderStatus"] == "REJECTED"
    assert rejected["exchangeOrderId"] == "0"
    assert rejected["exchangeTime"] == "0000-00-00 00:00:00"
    assert "tick size" in rejected["omsErrorDescription"]
    listed = api.get_order_list()["data"]
    assert all("filled_qty" in r and "filledQty" not in r for r in listed)


def test_realistic_trade_rows_use_placeholder_expiry(sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "realistic")
    order_id = placed_id(place(api, price=1700.0))
    trades = api.get_trade_book(order_id)["data"]
    assert [t["tradedQuantity"] for t in trades] == [10]
    assert trades[0]["drvExpiryDate"] == "0001-01-01"


def test_snapshot_keeps_clean_rows_whatever_the_dialect(sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "realistic")
    placed_id(place(api))
    account = sim.snapshot()["accounts"][LEADER_ID]
    assert account["dialect"] == "realistic"
    assert account["orders"][0]["legName"] == "ENTRY_LEG" and "filledQty" in account["orders"][0]


# ---- stream frames ------------------------------------------------------------------------

def test_clean_frames_are_pascal_case(sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "clean")
    with stream(sim) as ws:
        placed_id(place(api))
        frames = [data_of(f) for f in next_frames(ws, 2)]
    assert [f["Status"] for f in frames] == ["Transit", "Pending"]
    assert all(f["DiscQuantity"] == 0 and f["Remarks"] == "NA" for f in frames)


def test_realistic_frames_mix_camel_and_pascal_case_with_sample_fields(
        sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "realistic")
    with stream(sim) as ws:
        order_id = placed_id(place(api, price=1600.0))
        assert api.cancel_order(order_id)["status"] == "success"
        first, second, third = (data_of(f) for f in next_frames(ws, 3))
        assert no_more_frames(ws)
    # Frame 1 and 3 PascalCase, frame 2 camelCase; every status title case.
    assert first["OrderNo"] == order_id and first["Status"] == "Transit"
    assert second["orderNo"] == order_id and second["status"] == "Pending"
    assert "OrderNo" not in second and "Status" not in second
    assert third["Status"] == "Cancelled"
    # Dhan's sample: DiscQuantity = Quantity on a plain order (REST says 0), Remarks "NR",
    # ReasonDescription "CONFIRMED", the null expiry for equity.
    assert first["DiscQuantity"] == first["Quantity"] == 10
    assert second["discQuantity"] == 10 and second["remarks"] == "NR"
    assert first["ReasonDescription"] == "CONFIRMED"
    assert first["ExpiryDate"] == "0001-01-01 00:00:00"
    assert row(api, order_id)["disclosedQuantity"] == 0


def test_camel_frames_every_flag(sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "clean", {"camel_frames_every": 1})
    with stream(sim) as ws:
        placed_id(place(api))
        frames = [data_of(f) for f in next_frames(ws, 2)]
    assert [f["status"] for f in frames] == ["Transit", "Pending"]
    assert all(key[0].islower() for f in frames for key in f)


def test_rejection_reason_is_kept_in_realistic_frames(sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "realistic", {"camel_frames_every": 0})
    with stream(sim) as ws:
        placed_id(place(api, price=1600.03))
        frames = [data_of(f) for f in next_frames(ws, 2)]
    assert frames[-1]["Status"] == "Rejected"
    assert "tick size" in frames[-1]["ReasonDescription"]


# ---- MARKET orders as protected LIMIT orders ----------------------------------------------

def test_realistic_market_order_becomes_a_protected_limit(sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "realistic")
    buy = row(api, placed_id(place(api, "MARKET", 0)))
    assert (buy["orderType"], buy["price"], buy["orderStatus"]) == ("LIMIT", 1699.5, "TRADED")
    assert buy["averageTradedPrice"] == 1650.0  # filled at the last price, inside the band
    sell = row(api, placed_id(place(api, "MARKET", 0, side="SELL")))
    assert (sell["orderType"], sell["price"]) == ("LIMIT", 1600.5)


def test_protected_price_is_on_the_tick_inside_the_band() -> None:
    dialect = PRESETS["realistic"].with_flags({"market_protection": 0.01})
    assert dialect.protected_price(True, 1651.0, 0.05) == 1667.5  # 1667.51 down to the tick
    assert dialect.protected_price(False, 1651.0, 0.05) == 1634.5  # 1634.49 up to the tick
    assert dialect.protected_price(False, 0.05, 0.05) == 0.05  # never below one tick


def test_protected_market_order_rests_when_the_price_runs_away(sim: Emulator,
                                                               api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "realistic")
    sim.set_fill_size(2, "1333")
    order_id = placed_id(place(api, "MARKET", 0, quantity=6))
    assert row(api, order_id)["orderStatus"] == "PART_TRADED"  # 2 at 1650, limit 1699.50
    sim.set_price("1333", 1750.0)  # beyond the band: no more fills
    sim.match()
    data = row(api, order_id)
    assert (data["orderStatus"], data["filled_qty"]) == ("PART_TRADED", 2)
    sim.set_price("1333", 1690.0)  # back inside: the next chunk fills
    assert row(api, order_id)["filled_qty"] == 4


def test_clean_market_order_fills_wherever_the_price_goes(sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "clean")
    sim.set_fill_size(2, "1333")
    order_id = placed_id(place(api, "MARKET", 0, quantity=6))
    sim.set_price("1333", 1750.0)
    data = row(api, order_id)
    assert (data["orderType"], data["price"], data["filledQty"]) == ("MARKET", 0.0, 4)


def test_app_market_orders_are_not_converted(sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "realistic")
    order = {"transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
             "orderType": "MARKET", "validity": "DAY", "securityId": "1333", "quantity": 1}
    (order_id,) = sim.app_place(LEADER_ID, order)
    assert row(api, order_id)["orderType"] == "MARKET"


# ---- Data API plan and the quote rate -----------------------------------------------------

def test_no_data_plan_refuses_quotes_with_dh902(sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "realistic")
    reply = api.ticker_data({"NSE_EQ": [1333]})
    assert reply["status"] == "failure"
    assert reply["remarks"]["error_code"] == "DH-902"
    assert "Data APIs" in reply["remarks"]["error_message"]


def test_quotes_with_a_plan_are_one_a_second(sim: Emulator, api: dhanhq,
                                             clock: ManualClock) -> None:
    sim.set_dialect(LEADER_ID, "realistic", {"data_plan": True})
    first = api.ticker_data({"NSE_EQ": [1333]})
    assert first["data"]["data"]["NSE_EQ"]["1333"]["last_price"] == 1650.0
    assert api.ticker_data({"NSE_EQ": [1333]})["remarks"]["error_code"] == "DH-904"
    clock.advance(1.01)
    assert api.ticker_data({"NSE_EQ": [1333]})["status"] == "success"


def test_clean_quotes_only_meet_the_data_window(sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "clean")
    replies = [api.ticker_data({"NSE_EQ": [1333]})["status"] for _ in range(6)]
    assert replies == ["success"] * 5 + ["failure"]


# ---- IOC ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dialect", ["clean", "realistic"])
def test_marketable_ioc_limit_fills(sim: Emulator, api: dhanhq, dialect: str) -> None:
    sim.set_dialect(LEADER_ID, dialect, {"camel_frames_every": 0})
    with stream(sim) as ws:
        order_id = placed_id(place(api, price=1660.0, validity="IOC"))
        frames = [data_of(f) for f in next_frames(ws, 3)]
        assert no_more_frames(ws)
    assert [status_of(f) for f in frames] == ["Transit", "Pending", "Traded"]
    assert row(api, order_id)["orderStatus"] == "TRADED"


@pytest.mark.parametrize("dialect", ["clean", "realistic"])
def test_unmarketable_ioc_limit_is_cancelled_at_once(sim: Emulator, api: dhanhq,
                                                     dialect: str) -> None:
    sim.set_dialect(LEADER_ID, dialect, {"camel_frames_every": 0})
    with stream(sim) as ws:
        reply = place(api, price=1600.0, validity="IOC")
        frames = [data_of(f) for f in next_frames(ws, 3)]
        assert no_more_frames(ws)
    assert reply["data"]["orderStatus"] == "CANCELLED"  # already, in the place answer
    assert [status_of(f) for f in frames] == ["Transit", "Pending", "Cancelled"]
    assert frames[-1]["TradedQty"] == 0
    assert "IOC" in frames[-1]["ReasonDescription"]
    sim.set_price("1333", 1590.0)  # would now cross: nothing left to fill
    assert row(api, reply["data"]["orderId"])["orderStatus"] == "CANCELLED"


def test_ioc_fills_what_it_can_and_cancels_the_rest(sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "clean")
    sim.set_fill_size(3, "1333")
    data = row(api, placed_id(place(api, price=1660.0, validity="IOC")))
    assert (data["orderStatus"], data["filledQty"], data["remainingQuantity"]) == (
        "CANCELLED", 3, 7)


# ---- faults: a 429 with no body, a non-whitelisted IP -------------------------------------

def test_429_with_an_empty_body(sim: Emulator, api: dhanhq) -> None:
    sim.fail_next("429_empty", "/orders", method="POST")
    reply = place(api, "MARKET", 0)
    assert reply["status"] == "failure"
    assert isinstance(reply["remarks"], str)  # the SDK cannot tell it from a lost reply
    assert sim.snapshot()["accounts"].get(LEADER_ID, {}).get("orders", []) == []
    sim.fail_next("429_empty", "/fundlimit")
    raw = requests.get(f"{sim.rest_url}/fundlimit", timeout=5,
                       headers={"access-token": LEADER_TOKEN, "client-id": LEADER_ID})
    assert (raw.status_code, raw.content) == (429, b"")


def test_429_empty_over_the_control_route(sim: Emulator, api: dhanhq) -> None:
    assert control(sim, "/faults", {"kind": "429_empty", "path": "/positions"}).ok
    assert isinstance(api.get_positions()["remarks"], str)
    assert api.get_positions()["status"] == "success"


def test_not_whitelisted_ip_refuses_every_order_call(sim: Emulator, api: dhanhq,
                                                     make_api: Any) -> None:
    resting = placed_id(place(api))
    sim.set_ip_whitelisted(LEADER_ID, False)
    refusals = [
        place(api),
        api.place_order("1333", "NSE_EQ", "BUY", 10, "LIMIT", "CNC", 1600.0, should_slice=True),
        api.modify_order(resting, "LIMIT", "ENTRY_LEG", 10, 1605.0, 0, 0, "DAY"),
        api.cancel_order(resting),
    ]
    for reply in refusals:
        assert reply["status"] == "failure", reply
        assert reply["remarks"]["error_code"] == "DH-905"
        assert "static IP" in reply["remarks"]["error_message"]
    assert api.get_order_list()["status"] == "success"  # reads are not order calls
    assert row(api, resting)["orderStatus"] == "PENDING"
    assert placed_id(place(make_api(OTHER_ID, OTHER_TOKEN)))  # another account is fine
    assert sim.app_cancel(LEADER_ID, resting) == "CANCELLED"  # Dhan's app is not refused
    assert sim.snapshot()["accounts"][LEADER_ID]["ip_whitelisted"] is False
    sim.set_ip_whitelisted(LEADER_ID, True)
    assert placed_id(place(api))


# ---- control routes -----------------------------------------------------------------------

def test_dialect_and_static_ip_control_routes(sim: Emulator, api: dhanhq) -> None:
    reply = control(sim, "/accounts/dialect", {"client_id": LEADER_ID, "dialect": "realistic",
                                               "flags": {"data_plan": True}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["result"]["data_plan"] is True
    assert row(api, placed_id(place(api)))["legName"] == "NA"
    for bad in ({"client_id": LEADER_ID, "dialect": "messy"},
                {"client_id": LEADER_ID, "flags": {"nope": 1}},
                {"client_id": LEADER_ID, "flags": ["row_leg_na"]},
                {"dialect": "clean"}):
        refused = control(sim, "/accounts/dialect", bad)
        assert refused.status_code == 400 and refused.json()["errorCode"] == "DH-905", bad
    assert control(sim, "/accounts/dialect", {"client_id": LEADER_ID}).json()["result"][
        "name"] == sim.dialect.name
    assert control(sim, "/accounts/static-ip", {"client_id": LEADER_ID,
                                                "whitelisted": False}).ok
    assert place(api)["remarks"]["error_code"] == "DH-905"
    assert control(sim, "/accounts/static-ip", {"client_id": LEADER_ID,
                                                "whitelisted": "no"}).status_code == 400
    assert control(sim, "/accounts/static-ip", {"client_id": LEADER_ID}).ok  # default: on
    assert place(api)["status"] == "success"


def test_frames_stay_standard_json(sim: Emulator, api: dhanhq) -> None:
    sim.set_dialect(LEADER_ID, "realistic")
    with login(sim.ws_url) as ws:
        wait_logged_in(sim)
        placed_id(place(api, price=1700.0))
        for _ in range(3):
            json.loads(ws.recv(timeout=5), parse_constant=pytest.fail)
