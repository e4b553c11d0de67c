"""The emulator's order stream as a client sees it: the exact frame sequence of each story."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from dhanhq import dhanhq
from simtools import LEADER_ID, eventually, login, next_frames, no_more_frames, wait_logged_in
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from copytrade.sim.server import Emulator

IST_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


@pytest.fixture
def stream(sim: Emulator) -> Iterator[ClientConnection]:
    with login(sim.ws_url) as ws:
        wait_logged_in(sim)
        yield ws


def story(frames: list[dict]) -> list[tuple[str, int, int]]:
    """(Status, TradedQty, RemainingQuantity) of each frame."""
    assert all(f["Type"] == "order_alert" for f in frames)
    return [(f["Data"]["Status"], f["Data"]["TradedQty"], f["Data"]["RemainingQuantity"])
            for f in frames]


def test_market_order(stream: ClientConnection, api: dhanhq) -> None:
    reply = api.place_order("1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC", 0, tag="ct-m1")
    frames = next_frames(stream, 3)
    assert story(frames) == [("Transit", 0, 10), ("Pending", 0, 10), ("Traded", 10, 0)]
    data = frames[-1]["Data"]
    assert data["OrderNo"] == reply["data"]["orderId"]
    assert (data["Source"], data["CorrelationId"], data["ClientId"]) == ("P", "ct-m1", LEADER_ID)
    assert (data["Exchange"], data["Segment"], data["SecurityId"]) == ("NSE", "E", "1333")
    assert (data["TxnType"], data["Product"], data["OrderType"]) == ("B", "C", "MKT")
    assert (data["TradedPrice"], data["AvgTradedPrice"], data["LotSize"]) == (1650.0, 1650.0, 1)
    assert data["ExchOrderNo"]
    for key in ("OrderDateTime", "ExchOrderTime", "LastUpdatedTime"):
        assert IST_TIME.fullmatch(data[key]), key
    assert data["LastUpdatedTime"] == "2026-11-25 10:00:00"  # the emulator's clock, in IST
    assert no_more_frames(stream)


def test_limit_order_filled_in_two_parts(stream: ClientConnection, api: dhanhq,
                                         sim: Emulator) -> None:
    sim.set_fill_size(5)
    api.place_order("1333", "NSE_EQ", "BUY", 10, "LIMIT", "CNC", 1640.0)
    assert story(next_frames(stream, 2)) == [("Transit", 0, 10), ("Pending", 0, 10)]
    sim.set_price("1333", 1638.5)
    [first] = next_frames(stream, 1)
    assert story([first]) == [("Part_Traded", 5, 5)]
    assert (first["Data"]["TradedPrice"], first["Data"]["OrderType"]) == (1638.5, "LMT")
    sim.set_price("1333", 1639.5)
    assert story(next_frames(stream, 1)) == [("Traded", 10, 0)]
    assert no_more_frames(stream)


def test_modify(stream: ClientConnection, api: dhanhq) -> None:
    order_id = api.place_order("1333", "NSE_EQ", "BUY", 10, "LIMIT", "CNC", 1600.0)["data"][
        "orderId"]
    next_frames(stream, 2)
    api.modify_order(order_id, "LIMIT", "ENTRY_LEG", 15, 1605.0, 0, 0, "DAY")
    [frame] = next_frames(stream, 1)
    data = frame["Data"]
    assert (data["OrderNo"], data["Status"], data["Quantity"], data["Price"]) == (
        order_id, "Pending", 15, 1605.0)
    assert no_more_frames(stream)


def test_cancel(stream: ClientConnection, api: dhanhq) -> None:
    order_id = api.place_order("1333", "NSE_EQ", "SELL", 10, "LIMIT", "INTRADAY", 1700.0)[
        "data"]["orderId"]
    next_frames(stream, 2)
    api.cancel_order(order_id)
    assert story(next_frames(stream, 1)) == [("Cancelled", 0, 10)]
    assert no_more_frames(stream)


def test_rejection_carries_the_reason(stream: ClientConnection, api: dhanhq,
                                      sim: Emulator) -> None:
    sim.set_funds(LEADER_ID, 1_000)
    api.place_order("1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC", 0)
    frames = next_frames(stream, 2)
    assert story(frames) == [("Transit", 0, 10), ("Rejected", 0, 10)]
    assert "Margin" in frames[1]["Data"]["ReasonDescription"]
    assert frames[1]["Data"]["ExchOrderNo"] == ""  # never reached the exchange
    assert no_more_frames(stream)


def test_app_placed_order_has_source_n(stream: ClientConnection, sim: Emulator) -> None:
    [order_id] = sim.app_place(LEADER_ID, {
        "transactionType": "SELL", "exchangeSegment": "NSE_FNO", "productType": "MARGIN",
        "orderType": "LIMIT", "validity": "DAY", "securityId": "52175", "quantity": 130,
        "price": 26100.0})
    frames = next_frames(stream, 2)
    assert story(frames) == [("Transit", 0, 130), ("Pending", 0, 130)]
    data = frames[1]["Data"]
    assert (data["Source"], data["OrderNo"], data["LotSize"]) == ("N", order_id, 65)
    assert (data["Exchange"], data["Segment"], data["Instrument"]) == ("NSE", "D", "FUTIDX")
    sim.app_cancel(LEADER_ID, order_id)
    assert story(next_frames(stream, 1)) == [("Cancelled", 0, 130)]


def test_end_of_session_expires_with_frames(stream: ClientConnection, api: dhanhq,
                                            sim: Emulator) -> None:
    api.place_order("1333", "NSE_EQ", "BUY", 10, "LIMIT", "CNC", 1600.0)
    next_frames(stream, 2)
    sim.end_session()
    assert story(next_frames(stream, 1)) == [("Expired", 0, 10)]


def test_frames_only_reach_their_own_account(sim: Emulator, make_api) -> None:
    with login(sim.ws_url, "1000000099", "other-token") as other:
        wait_logged_in(sim, "1000000099")
        make_api().place_order("1333", "NSE_EQ", "BUY", 1, "MARKET", "CNC", 0)
        assert no_more_frames(other)


def test_bad_login_closes_the_socket(sim: Emulator) -> None:
    sim.expire_token(LEADER_ID)  # no account yet: nothing to expire, login still works
    with login(sim.ws_url, token="") as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_token_expiry_closes_the_stream_and_refuses_login(stream: ClientConnection,
                                                          sim: Emulator, api: dhanhq) -> None:
    api.get_order_list()  # the token is known to the account
    sim.expire_token(LEADER_ID)
    with pytest.raises(ConnectionClosed):
        stream.recv(timeout=5)
    with login(sim.ws_url) as again, pytest.raises(ConnectionClosed):
        again.recv(timeout=5)
    assert sim.stream.stats()["connections"].get(LEADER_ID, 0) == 0


def test_dropped_stream_loses_frames_until_the_client_returns(stream: ClientConnection,
                                                              sim: Emulator,
                                                              api: dhanhq) -> None:
    assert sim.drop_stream(LEADER_ID, clean=False) == 1
    with pytest.raises(ConnectionClosed):
        stream.recv(timeout=5)
    eventually(lambda: sim.stream.stats()["connections"].get(LEADER_ID, 0) == 0)
    api.place_order("1333", "NSE_EQ", "BUY", 1, "MARKET", "CNC", 0)  # nobody listening
    with login(sim.ws_url) as back:
        wait_logged_in(sim)
        assert no_more_frames(back)  # Dhan has no replay: the REST book is the only record
    assert len(api.get_order_list()["data"]) == 1


def test_duplicated_and_reordered_frames(stream: ClientConnection, api: dhanhq,
                                         sim: Emulator) -> None:
    sim.duplicate_frames(1)
    sim.reorder_frames(2)
    api.place_order("1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC", 0)
    statuses = [f["Data"]["Status"] for f in next_frames(stream, 4)]
    # Transit is held for reordering and sent twice, Pending overtakes it, then Traded.
    assert statuses == ["Pending", "Transit", "Transit", "Traded"]
    assert no_more_frames(stream)


def test_delayed_frame_is_overtaken(stream: ClientConnection, api: dhanhq,
                                    sim: Emulator) -> None:
    sim.delay_frames(1, seconds=0.5)
    api.place_order("1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC", 0)
    statuses = [f["Data"]["Status"] for f in next_frames(stream, 3)]
    assert statuses == ["Pending", "Traded", "Transit"]


def test_stalled_stream_is_silent_until_released(stream: ClientConnection, api: dhanhq,
                                                 sim: Emulator) -> None:
    assert sim.stall_stream(LEADER_ID, seconds=30) == 1
    api.place_order("1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC", 0)
    pong = stream.ping()
    assert not pong.wait(0.5)  # no pong while stalled
    assert no_more_frames(stream)
    sim.unstall_stream(LEADER_ID)
    assert len(next_frames(stream, 3)) == 3
    assert pong.wait(5)
