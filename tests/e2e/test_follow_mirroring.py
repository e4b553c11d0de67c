"""follow end to end: what a follower gets for every kind of leader order.

The leader trades through the real dhanhq SDK (`run.leader_api`) or "Dhan's app"
(`live_sim.app_place`); the engine mirrors through its own stream client and the SDK. Every
test checks both sides: what the store recorded (mirrors, intents, audit) and what the
broker really holds (`run.follower_book(f)`: the emulator's order book of that follower).

Instruments (docs/sim.md): 1333 HDFCBANK 1650, 2885 RELIANCE 1400, 11536 TCS 3200,
1594 INFY 1500, 3045 SBIN 800 (equity, lot 1); 52175 NIFTY future (lot 65, freeze 1755,
26000), 52174 BANKNIFTY future (lot 30, 58000), 52201 NIFTY 26000 call (lot 65, 250).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from followtools import LEADER_ID, Follower, FollowRun, follower, running_follow, sdk

from copytrade.sim.server import Emulator
from copytrade.store.models import Intent, MirrorOrder

NIFTY_FUT, BANKNIFTY_FUT, NIFTY_CALL = "52175", "52174", "52201"
NIFTY_LOT, BANKNIFTY_LOT = 65, 30
LIVE = frozenset({"TRANSIT", "PENDING", "PART_TRADED"})
# Fields of a follower's order in the broker's book that must follow the leader's.
ORDER_FIELDS = ("transactionType", "exchangeSegment", "productType", "orderType", "validity",
                "securityId", "quantity", "disclosedQuantity", "price", "triggerPrice",
                "afterMarketOrder")


# ---- helpers ------------------------------------------------------------------------------

def order_id_of(reply: dict) -> str:
    assert reply["status"] == "success", reply
    return str(reply["data"]["orderId"])


def mirrors_of(leader_order_id: str, name: str) -> list[MirrorOrder]:
    """Every attempt of one follower's mirror of one leader order, oldest first."""
    return list(MirrorOrder.select().where((MirrorOrder.leader_order == leader_order_id)
                                           & (MirrorOrder.follower == name))
                .order_by(MirrorOrder.attempt))


def latest(leader_order_id: str, name: str) -> MirrorOrder | None:
    found = mirrors_of(leader_order_id, name)
    return found[-1] if found else None


def wait_mirror(run: FollowRun, leader_order_id: str, name: str, *states: str,
                timeout: float = 10.0) -> MirrorOrder:
    """The follower's latest mirror of the order once it is in one of `states`."""
    def reached() -> MirrorOrder | None:
        mirror = latest(leader_order_id, name)
        return mirror if mirror is not None and mirror.state in states else None
    try:
        return run.wait_for(reached, timeout=timeout)  # type: ignore[return-value]
    except AssertionError:
        found = [(m.attempt, m.state, m.quantity, m.filled_quantity, m.reason)
                 for m in mirrors_of(leader_order_id, name)]
        leader = [(o.status, o.quantity, o.traded_quantity, o.price) for o in
                  run.leader_orders() if o.order_id == leader_order_id]
        raise AssertionError(f"{name}'s mirror of {leader_order_id} not in {states} within "
                             f"{timeout}s: mirrors {found}, leader {leader}, "
                             f"audit {[(a.kind, a.message) for a in run.audit()][-5:]}, "
                             f"failure {run.failure}") from None


def intents_of(mirror: MirrorOrder) -> list[Intent]:
    return list(Intent.select().where(Intent.mirror == mirror.id).order_by(Intent.id))


def orders_tagged(run: FollowRun, who: Follower, correlation_id: str) -> list[dict]:
    return [o for o in run.follower_book(who) if o["correlationId"] == correlation_id]


def the_order(run: FollowRun, who: Follower, mirror: MirrorOrder) -> dict:
    """The one broker order carrying the mirror's correlation id."""
    [order] = orders_tagged(run, who, mirror.correlation_id)
    return order


def fields(order: dict) -> dict:
    return {key: order[key] for key in ORDER_FIELDS}


def expected(side: str, segment: str, product: str, order_type: str, security_id: str,
             quantity: int, *, price: float = 0.0, trigger: float = 0.0, disclosed: int = 0,
             validity: str = "DAY", amo: bool = False) -> dict:
    return {"transactionType": side, "exchangeSegment": segment, "productType": product,
            "orderType": order_type, "validity": validity, "securityId": security_id,
            "quantity": quantity, "disclosedQuantity": disclosed, "price": price,
            "triggerPrice": trigger, "afterMarketOrder": amo}


class _ProtectedPrice:
    """Equal to any positive price: what a protected limit order carries."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int | float) and other > 0

    def __repr__(self) -> str:
        return "<a protected limit price>"


def converts_market_orders(sim: Emulator) -> bool:
    """Real Dhan turns an API market order into a limit order with price protection."""
    return sim.dialect.market_protection > 0


def as_the_broker_shows(sim: Emulator, want: dict) -> dict:
    """A follower order we sent as `want`, as the broker's book shows it."""
    if want["orderType"] == "MARKET" and converts_market_orders(sim):
        return {**want, "orderType": "LIMIT", "price": _ProtectedPrice()}
    return want


def app_order(sim: Emulator, security_id: str, segment: str, quantity: int, product: str,
              order_type: str = "MARKET", side: str = "BUY") -> str:
    """A leader order placed in Dhan's app (Dhan converts only API market orders)."""
    [order_id] = sim.app_place(LEADER_ID, {
        "transactionType": side, "exchangeSegment": segment, "productType": product,
        "orderType": order_type, "validity": "DAY", "securityId": security_id,
        "quantity": quantity})
    return order_id


def settled(run: FollowRun, mirror: MirrorOrder) -> MirrorOrder:
    """The mirror read afresh once none of its intents is still being sent: the follower's
    stream can report an order before the worker has recorded the reply to its request."""
    run.wait_for(lambda: all(i.status != "SENDING" for i in intents_of(mirror)))
    return MirrorOrder.get_by_id(mirror.id)


def assert_placed(run: FollowRun, mirror: MirrorOrder) -> None:
    """A mirror that was sent: exactly one PLACE intent, done, and its lag recorded."""
    mirror = settled(run, mirror)
    places = [i for i in intents_of(mirror) if i.action == "PLACE"]
    assert [i.status for i in places] == ["DONE"], [(i.status, i.outcome) for i in places]
    assert mirror.lag_ms is not None and mirror.lag_ms >= 0, mirror.lag_ms


def assert_skipped(mirror: MirrorOrder, *words: str) -> None:
    assert mirror.state == "SKIPPED", (mirror.state, mirror.reason)
    for word in words:
        assert word in mirror.reason, mirror.reason
    assert intents_of(mirror) == [], "a skipped mirror must send nothing"


def net_quantity(run: FollowRun, client_id: str, security_id: str, product: str) -> int:
    account = run.sim.snapshot()["accounts"].get(client_id, {})
    return sum(int(p["netQty"]) for p in account.get("positions", [])
               if str(p["securityId"]) == security_id and p["productType"] == product)


def next_second(run: FollowRun, after: float) -> None:
    """Wait until the wall clock is in a later second than `after`: Dhan's (and the
    emulator's) LastUpdatedTime has one-second resolution."""
    run.wait_for(lambda: int(time.time()) > int(after), timeout=2.0)


# ---- 1. order types, products, validity, disclosed quantity, AMO --------------------------

def test_every_order_type_product_and_validity_is_mirrored_field_for_field(
        live_sim: Emulator, tmp_path: Path) -> None:
    half = follower("half", "1000000002", "multiplier = 0.5")
    with running_follow(live_sim, tmp_path, [half]) as run:
        api = run.leader_api
        cases = {
            # leader order id -> what the follower's order must look like
            app_order(live_sim, "1333", "NSE_EQ", 10, "CNC"):
                expected("BUY", "NSE_EQ", "CNC", "MARKET", "1333", 5),
            order_id_of(api.place_order("2885", "NSE_EQ", "BUY", 20, "LIMIT", "INTRADAY",
                                        1350)):
                expected("BUY", "NSE_EQ", "INTRADAY", "LIMIT", "2885", 10, price=1350.0),
            order_id_of(api.place_order("11536", "NSE_EQ", "BUY", 4, "STOP_LOSS", "INTRADAY",
                                        3310, trigger_price=3300)):
                expected("BUY", "NSE_EQ", "INTRADAY", "STOP_LOSS", "11536", 2, price=3310.0,
                         trigger=3300.0),
            order_id_of(api.place_order("1594", "NSE_EQ", "BUY", 6, "STOP_LOSS_MARKET",
                                        "INTRADAY", 0, trigger_price=1550)):
                expected("BUY", "NSE_EQ", "INTRADAY", "STOP_LOSS_MARKET", "1594", 3,
                         trigger=1550.0),
            order_id_of(api.place_order("3045", "NSE_EQ", "BUY", 8, "LIMIT", "CNC", 805,
                                        validity="IOC")):
                expected("BUY", "NSE_EQ", "CNC", "LIMIT", "3045", 4, price=805.0,
                         validity="IOC"),
            app_order(live_sim, NIFTY_FUT, "NSE_FNO", 2 * NIFTY_LOT, "MARGIN"):
                expected("BUY", "NSE_FNO", "MARGIN", "MARKET", NIFTY_FUT, NIFTY_LOT),
            # disclosed 40 of 100 -> 20 of 50: still more than 30 % of the order
            order_id_of(api.place_order("2885", "NSE_EQ", "BUY", 100, "LIMIT", "CNC", 1340,
                                        disclosed_quantity=40)):
                expected("BUY", "NSE_EQ", "CNC", "LIMIT", "2885", 50, price=1340.0,
                         disclosed=20),
        }
        filled = {order for order, want in cases.items() if want["orderType"] == "MARKET"
                  or want["validity"] == "IOC"}
        for order, want in cases.items():
            mirror = wait_mirror(run, order, "half", "FILLED" if order in filled else "ACCEPTED")
            book_order = the_order(run, half, mirror)
            if mirror.reason_code == "late_market_ioc":
                # A periodic book read can show a market order filled before its frames are
                # applied: first seen filled, it is chased with a bounded IOC limit order.
                want = {**want, "orderType": "LIMIT", "validity": "IOC", "price": mirror.price}
            assert fields(book_order) == as_the_broker_shows(live_sim, want)
            assert book_order["orderStatus"] == ("TRADED" if order in filled else "PENDING")
            assert (mirror.quantity, mirror.order_type, mirror.price, mirror.trigger_price,
                    mirror.disclosed_quantity) == (want["quantity"], want["orderType"],
                                                   want["price"], want["triggerPrice"],
                                                   want["disclosedQuantity"])
            assert mirror.follower_order_id == book_order["orderId"]
            assert_placed(run, mirror)
        assert len(run.follower_book(half)) == len(cases)
        assert not run.failure


def test_after_market_order_is_mirrored_as_an_amo(live_sim: Emulator, tmp_path: Path) -> None:
    f1 = follower("amo", "1000000002")
    with running_follow(live_sim, tmp_path, [f1]) as run:
        live_sim.end_session()
        order = order_id_of(run.leader_api.place_order(
            "1333", "NSE_EQ", "BUY", 10, "LIMIT", "CNC", 1600, after_market_order=True,
            amo_time="OPEN"))
        mirror = wait_mirror(run, order, "amo", "ACCEPTED")
        book_order = the_order(run, f1, mirror)
        assert fields(book_order) == expected("BUY", "NSE_EQ", "CNC", "LIMIT", "1333", 10,
                                              price=1600.0, amo=True)
        assert book_order["orderStatus"] == "PENDING"  # accepted although the market is shut
        assert json.loads(intents_of(mirror)[0].request)["order"]["after_market_order"] is True
        assert_placed(run, mirror)


# ---- 2. sizing --------------------------------------------------------------------------

def test_sizing_modes_floor_to_whole_lots_and_skip_below_one_lot(live_sim: Emulator,
                                                                  tmp_path: Path) -> None:
    mult = follower("mult", "1000000002", "multiplier = 0.4")
    fixed = follower("fixed", "1000000003", "fixed_lots = 2")
    capital = follower("capital", "1000000004", "capital_ratio = true")
    small = follower("small", "1000000005", "multiplier = 0.2")
    live_sim.set_funds(LEADER_ID, 10_000_000)  # before follow starts: it reads funds once
    live_sim.set_funds(capital.client_id, 5_000_000)  # half the leader's
    with running_follow(live_sim, tmp_path, [mult, fixed, capital, small]) as run:
        api = run.leader_api
        nifty = order_id_of(api.place_order(NIFTY_FUT, "NSE_FNO", "BUY", 4 * NIFTY_LOT,
                                            "LIMIT", "MARGIN", 25000))
        banknifty = order_id_of(api.place_order(BANKNIFTY_FUT, "NSE_FNO", "BUY",
                                                3 * BANKNIFTY_LOT, "MARKET", "MARGIN", 0))
        call = order_id_of(api.place_order(NIFTY_CALL, "NSE_FNO", "BUY", 3 * NIFTY_LOT,
                                           "MARKET", "MARGIN", 0))
        want = {  # (leader order, follower) -> units
            (nifty, "mult"): 65, (banknifty, "mult"): 30, (call, "mult"): 65,  # 1.6, 1.2, 1.2
            (nifty, "fixed"): 130, (banknifty, "fixed"): 60, (call, "fixed"): 130,
            (nifty, "capital"): 130, (banknifty, "capital"): 30, (call, "capital"): 65,
        }
        clients = {"mult": mult, "fixed": fixed, "capital": capital}
        for (order, name), units in want.items():
            mirror = wait_mirror(run, order, name, "ACCEPTED", "FILLED")
            assert mirror.quantity == units, (name, order)
            assert the_order(run, clients[name], mirror)["quantity"] == units
            assert_placed(run, mirror)
        for order, lots in ((nifty, "0.8"), (banknifty, "0.6"), (call, "0.6")):
            mirror = wait_mirror(run, order, "small", "SKIPPED")
            assert_skipped(mirror, f"{lots} lots", "below one lot")
        assert run.follower_book(small) == []
        assert {a.follower for a in run.audit("skipped")} == {"small"}


def test_caps_reduce_the_order_and_lists_skip_naming_the_list(live_sim: Emulator,
                                                             tmp_path: Path) -> None:
    max_qty = follower("maxq", "1000000002", extra="max_quantity = 150")
    max_value = follower("maxv", "1000000003", extra="max_order_value = 5000000")
    deny_segment = follower("denyseg", "1000000004", extra='deny_segments = ["NSE_FNO"]')
    allow_product = follower("allowprod", "1000000005", extra='allow_products = ["CNC"]')
    deny_security = follower("denysec", "1000000006",
                             extra=f'deny_security_ids = ["{NIFTY_FUT}"]')
    allow_security = follower("allowsec", "1000000007", extra='allow_security_ids = ["1333"]')
    everyone = [max_qty, max_value, deny_segment, allow_product, deny_security, allow_security]
    live_sim.set_funds(LEADER_ID, 10_000_000)
    with running_follow(live_sim, tmp_path, everyone) as run:
        order = order_id_of(run.leader_api.place_order(NIFTY_FUT, "NSE_FNO", "BUY",
                                                       4 * NIFTY_LOT, "LIMIT", "MARGIN", 25000))
        # 260 units capped at 150 -> 2 whole lots; 260 x 25000 = 6.5 M capped at 5 M -> 3 lots
        for who, units in ((max_qty, 130), (max_value, 195)):
            mirror = wait_mirror(run, order, who.name, "ACCEPTED")
            assert mirror.quantity == units
            assert fields(the_order(run, who, mirror)) == expected(
                "BUY", "NSE_FNO", "MARGIN", "LIMIT", NIFTY_FUT, units, price=25000.0)
            assert_placed(run, mirror)
        for who, words in ((deny_segment, ("segment NSE_FNO", "segment deny list")),
                           (allow_product, ("product MARGIN", "product allow list")),
                           (deny_security, (f"security {NIFTY_FUT}", "security deny list")),
                           (allow_security, (f"security {NIFTY_FUT}", "security allow list"))):
            assert_skipped(wait_mirror(run, order, who.name, "SKIPPED"), *words)
            assert run.follower_book(who) == []

        # An equity MARKET order: the lists let it through; max_quantity reduces it; an
        # unpriced order's value cannot be checked, so max_order_value fails closed.
        market = app_order(live_sim, "1333", "NSE_EQ", 200, "CNC")
        for who, units in ((max_qty, 150), (deny_segment, 200), (allow_product, 200),
                           (deny_security, 200), (allow_security, 200)):
            mirror = wait_mirror(run, market, who.name, "FILLED")
            assert (mirror.quantity, the_order(run, who, mirror)["quantity"]) == (units, units)
            assert_placed(run, mirror)
        assert_skipped(wait_mirror(run, market, "maxv", "SKIPPED"), "order value unknown",
                       "max_order_value")


# ---- 3, 4. orders first seen traded; orders placed in Dhan's app -----------------------

def test_order_first_seen_traded_is_mirrored_exactly_once(live_sim: Emulator,
                                                          tmp_path: Path) -> None:
    f1 = follower("f1", "1000000002")
    with running_follow(live_sim, tmp_path, [f1]) as run:
        replicator = run.engine.replicator
        assert replicator is not None
        before = replicator.stats.leader_reports
        live_sim.reorder_frames(3, LEADER_ID)  # Traded, then Pending, then Transit
        order = order_id_of(run.leader_api.place_order("1333", "NSE_EQ", "BUY", 10, "MARKET",
                                                       "CNC", 0))
        mirror = wait_mirror(run, order, "f1", "FILLED")
        run.wait_for(lambda: replicator.stats.leader_reports >= before + 3)
        book = run.follower_book(f1)
        assert [(o["quantity"], o["orderStatus"], o["correlationId"]) for o in book] == [
            (10, "TRADED", mirror.correlation_id)]
        assert len(mirrors_of(order, "f1")) == 1
        assert_placed(run, mirror)


def test_order_placed_in_dhans_app_is_mirrored(live_sim: Emulator, tmp_path: Path) -> None:
    f1 = follower("f1", "1000000002", "multiplier = 2.0")
    with running_follow(live_sim, tmp_path, [f1]) as run:
        [order] = live_sim.app_place(LEADER_ID, {
            "transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
            "orderType": "LIMIT", "validity": "DAY", "securityId": "1333", "quantity": 10,
            "price": 1600})
        mirror = wait_mirror(run, order, "f1", "ACCEPTED")
        assert fields(the_order(run, f1, mirror)) == expected(
            "BUY", "NSE_EQ", "CNC", "LIMIT", "1333", 20, price=1600.0)
        [leader] = [row for row in run.leader_orders() if row.order_id == order]
        assert leader.placed_in_app
        assert_placed(run, mirror)


# ---- 5, 6. modifications ----------------------------------------------------------------

def test_leader_modifications_modify_the_follower_order(live_sim: Emulator,
                                                        tmp_path: Path) -> None:
    """Each leader change a second after the last (see the same-second test below)."""
    double = follower("double", "1000000002", "multiplier = 2.0")
    with running_follow(live_sim, tmp_path, [double]) as run:
        api = run.leader_api
        order = order_id_of(api.place_order("1333", "NSE_EQ", "BUY", 10, "LIMIT", "CNC", 1600))
        last_call = time.time()
        mirror = wait_mirror(run, order, "double", "ACCEPTED")
        follower_order = mirror.follower_order_id
        steps = [  # (order type, leader quantity, price, trigger) -> the follower's order
            (("LIMIT", 15, 1605.0, 0.0), ("LIMIT", 30, 1605.0, 0.0, "PENDING")),
            (("STOP_LOSS", 15, 1705.0, 1700.0), ("STOP_LOSS", 30, 1705.0, 1700.0, "PENDING")),
            (("MARKET", 15, 0.0, 0.0), ("MARKET", 30, 0.0, 0.0, "TRADED")),
        ]
        if converts_market_orders(live_sim):  # the leader's order becomes a protected limit
            steps[-1] = (steps[-1][0], ("LIMIT", 30, _ProtectedPrice(), 0.0, "TRADED"))
        for (order_type, quantity, price, trigger), want in steps:
            next_second(run, last_call)
            reply = api.modify_order(order, order_type, "ENTRY_LEG", quantity, price, trigger,
                                     0, "DAY")
            last_call = time.time()
            assert reply["status"] == "success", reply

            def shows(want: tuple = want) -> bool:
                [o] = run.follower_book(double)
                return (o["orderType"], o["quantity"], o["price"], o["triggerPrice"],
                        o["orderStatus"]) == want
            run.wait_for(shows, timeout=5)
        mirror = settled(run, wait_mirror(run, order, "double", "FILLED"))
        [book_order] = run.follower_book(double)
        assert book_order["orderId"] == follower_order  # modified in place, never replaced
        assert (mirror.quantity, mirror.filled_quantity, mirror.order_type,
                mirror.modifications) == (30, 30, steps[-1][1][0], 3)
        modifies = [i for i in intents_of(mirror) if i.action == "MODIFY"]
        assert [i.status for i in modifies] == ["DONE"] * 3
        assert [json.loads(i.request)["modify"]["quantity"] for i in modifies] == [30] * 3
        assert len(mirrors_of(order, "double")) == 1


def test_leader_modification_within_the_same_second_is_mirrored(live_sim: Emulator,
                                                                tmp_path: Path) -> None:
    double = follower("double", "1000000002", "multiplier = 2.0")
    with running_follow(live_sim, tmp_path, [double]) as run:
        api = run.leader_api
        started = time.time()
        next_second(run, started)  # start at the top of a second: all below fits in it
        started = time.time()
        order = order_id_of(api.place_order("1333", "NSE_EQ", "BUY", 10, "LIMIT", "CNC", 1600))
        wait_mirror(run, order, "double", "ACCEPTED")
        reply = api.modify_order(order, "LIMIT", "ENTRY_LEG", 15, 1605, 0, 0, "DAY")
        assert reply["status"] == "success", reply
        if int(time.time()) != int(started):
            pytest.skip("placing and modifying took over a second here: not the case tested")
        run.wait_for(lambda: [(o["quantity"], o["price"]) for o in run.follower_book(double)]
                     == [(30, 1605.0)], timeout=3)


def test_many_leader_modifications_keep_one_live_follower_order_with_the_latest_values(
        live_sim: Emulator, tmp_path: Path) -> None:
    """Dhan (and the emulator) allow 25 modifications of an order, so the leader cannot
    be modified 26 times; its 25 must all reach the follower's one order, which stays
    within the limit. (Past the limit the engine cancels and replaces: exercised through
    a sliced mirror in test_modifying_a_sliced_mirror_cancels_and_replaces_it.)"""
    f1 = follower("f1", "1000000002")
    with running_follow(live_sim, tmp_path, [f1]) as run:
        api = run.leader_api
        order = order_id_of(api.place_order("1333", "NSE_EQ", "BUY", 10, "LIMIT", "CNC", 1500))
        mirror = wait_mirror(run, order, "f1", "ACCEPTED")
        last_call = time.monotonic()
        price = 1500.0
        for step in range(1, 26):
            # at most 5 leader order calls a second (Dhan allows 10)
            run.wait_for(lambda since=last_call: time.monotonic() - since >= 0.2, timeout=1)
            price = 1500.0 + step * 0.5
            reply = api.modify_order(order, "LIMIT", "ENTRY_LEG", 10, price, 0, 0, "DAY")
            last_call = time.monotonic()
            assert reply["status"] == "success", (step, reply)
            run.wait_for(lambda p=price: [o["price"] for o in orders_tagged(
                run, f1, mirror.correlation_id)] == [p], timeout=3)
        run.wait_for(lambda: time.monotonic() - last_call >= 0.2, timeout=1)
        refused = api.modify_order(order, "LIMIT", "ENTRY_LEG", 10, 1490, 0, 0, "DAY")
        assert refused["status"] == "failure"  # the broker's 25-modification limit
        live = [o for o in run.follower_book(f1) if o["orderStatus"] in LIVE]
        assert [(o["quantity"], o["price"]) for o in live] == [(10, price)]
        assert latest(order, "f1").modifications == 25


# ---- 7. cancellation -------------------------------------------------------------------

def test_leader_cancel_cancels_the_follower_remainder(live_sim: Emulator,
                                                      tmp_path: Path) -> None:
    one, two = follower("one", "1000000002"), follower("two", "1000000003", "multiplier = 2.0")
    with running_follow(live_sim, tmp_path, [one, two]) as run:
        api = run.leader_api
        untouched = order_id_of(api.place_order("1333", "NSE_EQ", "BUY", 10, "LIMIT", "CNC",
                                                1600))
        partial = order_id_of(api.place_order("2885", "NSE_EQ", "BUY", 10, "LIMIT", "CNC",
                                              1390))
        for order in (untouched, partial):
            for name in ("one", "two"):
                wait_mirror(run, order, name, "ACCEPTED")
        live_sim.set_fill_size(4, "2885")
        live_sim.set_price("2885", 1390)  # one match: 4 units each, leader and followers
        for name in ("one", "two"):
            run.wait_for(lambda n=name: latest(partial, n).filled_quantity == 4)
            wait_mirror(run, partial, name, "PARTIALLY_FILLED")

        for order in (untouched, partial):
            assert order_id_of(api.cancel_order(order)) == order
        for order, filled in ((untouched, 0), (partial, 4)):
            for who, units in ((one, 10), (two, 20)):
                mirror = settled(run, wait_mirror(run, order, who.name, "CANCELED"))
                book_order = the_order(run, who, mirror)
                assert (book_order["orderStatus"], book_order["quantity"],
                        book_order["filledQty"]) == ("CANCELLED", units, filled)
                assert (mirror.quantity, mirror.filled_quantity) == (units, filled)
                assert [(i.action, i.status) for i in intents_of(mirror)] == [
                    ("PLACE", "DONE"), ("CANCEL", "DONE")]
        assert net_quantity(run, two.client_id, "2885", "CNC") == 4


# ---- 8. rejections ----------------------------------------------------------------------

def test_rejections_on_either_side_are_recorded_with_the_reason(live_sim: Emulator,
                                                                tmp_path: Path) -> None:
    rich, poor = follower("rich", "1000000002"), follower("poor", "1000000003")
    live_sim.set_funds(poor.client_id, 10)
    with running_follow(live_sim, tmp_path, [rich, poor]) as run:
        api = run.leader_api
        live_sim.set_funds(LEADER_ID, 10)
        refused = api.place_order("1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC", 0)
        leader_order = order_id_of(refused)
        for who in (rich, poor):
            mirror = wait_mirror(run, leader_order, who.name, "SKIPPED")
            assert_skipped(mirror, "leader order rejected", "Margin Exceeds")
            assert run.follower_book(who) == []

        live_sim.set_funds(LEADER_ID, 1_000_000)
        order = order_id_of(api.place_order("1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC", 0))
        filled = wait_mirror(run, order, "rich", "FILLED")
        assert the_order(run, rich, filled)["orderStatus"] == "TRADED"
        assert_placed(run, filled)
        rejected = wait_mirror(run, order, "poor", "REJECTED")
        book_order = the_order(run, poor, rejected)
        assert book_order["orderStatus"] == "REJECTED"
        assert "Margin Exceeds" in book_order["omsErrorDescription"]
        assert rejected.reason == book_order["omsErrorDescription"]  # Dhan's own words
        assert_placed(run, rejected)
        assert run.follower_book(rich) == [the_order(run, rich, filled)]


# ---- 9. fills ---------------------------------------------------------------------------

def test_partial_and_full_fills_are_tracked_with_their_lags(live_sim: Emulator,
                                                           tmp_path: Path) -> None:
    one, two = follower("one", "1000000002"), follower("two", "1000000003", "multiplier = 2.0")
    with running_follow(live_sim, tmp_path, [one, two]) as run:
        # An order of the follower's own (not ours), resting: the engine must leave it alone.
        own = sdk(live_sim, one.client_id, one.token).place_order(
            "1333", "NSE_EQ", "BUY", 3, "LIMIT", "CNC", 1000)
        own_order = order_id_of(own)
        order = order_id_of(run.leader_api.place_order("1333", "NSE_EQ", "BUY", 10, "LIMIT",
                                                       "CNC", 1600))
        for name in ("one", "two"):
            wait_mirror(run, order, name, "ACCEPTED")
        live_sim.set_fill_size(4, "1333")
        for price, filled in ((1600.0, 4), (1599.5, 8)):
            live_sim.set_price("1333", price)  # one match: 4 more units on every order
            for who in (one, two):
                mirror = run.wait_for(lambda n=who.name, f=filled: (
                    m := latest(order, n)) is not None and m.filled_quantity == f and m)
                assert mirror.state == "PARTIALLY_FILLED"
                book_order = the_order(run, who, mirror)
                assert (book_order["orderStatus"], book_order["filledQty"]) == (
                    "PART_TRADED", filled)
        live_sim.set_fill_size(None, "1333")
        live_sim.set_price("1333", 1599.0)
        for who, units in ((one, 10), (two, 20)):
            mirror = wait_mirror(run, order, who.name, "FILLED")
            book_order = the_order(run, who, mirror)
            assert (book_order["orderStatus"], book_order["filledQty"]) == ("TRADED", units)
            assert mirror.filled_quantity == units
            # Leader and follower fill in the same match: which fill report is applied
            # first is a race between two threads, and the lag is signed by design.
            assert mirror.fill_lag_ms is not None and abs(mirror.fill_lag_ms) < 5000
            assert_placed(run, mirror)
        [leader] = [row for row in run.leader_orders() if row.order_id == order]
        assert (leader.status, leader.traded_quantity) == ("TRADED", 10)
        # the follower's own order: still resting, adopted by no mirror
        assert [o["orderStatus"] for o in run.follower_book(one)
                if o["orderId"] == own_order] == ["PENDING"]
        assert all(own_order not in m.legs for m in run.mirrors("one"))
        assert len(run.mirrors("one")) == 1


def test_fill_lag_is_recorded_when_the_follower_fills_before_the_leader(
        live_sim: Emulator, tmp_path: Path) -> None:
    half = follower("half", "1000000002", "multiplier = 0.5")
    with running_follow(live_sim, tmp_path, [half]) as run:
        order = order_id_of(run.leader_api.place_order("1333", "NSE_EQ", "BUY", 10, "LIMIT",
                                                       "CNC", 1600))
        wait_mirror(run, order, "half", "ACCEPTED")
        live_sim.set_fill_size(5, "1333")
        live_sim.set_price("1333", 1600)  # leader 5 of 10, follower 5 of 5: done first
        wait_mirror(run, order, "half", "FILLED")
        live_sim.set_price("1333", 1599.5)  # the leader's other 5
        run.wait_for(lambda: [o.status for o in run.leader_orders()] == ["TRADED"])
        run.wait_for(lambda: latest(order, "half").fill_lag_ms is not None, timeout=3)
        # Signed: the follower filled before the leader did, so its lag is negative.
        assert latest(order, "half").fill_lag_ms <= 0


# ---- 10. exits -------------------------------------------------------------------------

def test_exit_is_sized_from_the_followers_actual_position(live_sim: Emulator,
                                                          tmp_path: Path) -> None:
    f1 = follower("f1", "1000000002")
    with running_follow(live_sim, tmp_path, [f1]) as run:
        api = run.leader_api
        entry = order_id_of(api.place_order(NIFTY_FUT, "NSE_FNO", "BUY", 2 * NIFTY_LOT,
                                            "MARKET", "MARGIN", 0))
        wait_mirror(run, entry, "f1", "FILLED")
        # The follower sells one lot itself, outside copytrade.
        own = order_id_of(sdk(live_sim, f1.client_id, f1.token).place_order(
            NIFTY_FUT, "NSE_FNO", "SELL", NIFTY_LOT, "MARKET", "MARGIN", 0))
        assert net_quantity(run, f1.client_id, NIFTY_FUT, "MARGIN") == NIFTY_LOT

        leaving = order_id_of(api.place_order(NIFTY_FUT, "NSE_FNO", "SELL", 2 * NIFTY_LOT,
                                              "MARKET", "MARGIN", 0))
        mirror = wait_mirror(run, leaving, "f1", "FILLED", "SKIPPED", "REJECTED")
        assert all(own not in m.legs for m in run.mirrors("f1"))  # never adopted
        assert the_order(run, f1, mirror)["quantity"] == NIFTY_LOT
        assert net_quantity(run, f1.client_id, NIFTY_FUT, "MARGIN") == 0


def test_exits_are_sized_in_proportion_and_never_beyond_the_position(live_sim: Emulator,
                                                                     tmp_path: Path) -> None:
    half, same = follower("half", "1000000002", "multiplier = 0.5"), follower("same",
                                                                             "1000000003")
    with running_follow(live_sim, tmp_path, [half, same]) as run:
        api = run.leader_api

        def trade(side: str, lots: int) -> str:
            order = order_id_of(api.place_order(NIFTY_FUT, "NSE_FNO", side, lots * NIFTY_LOT,
                                                "MARKET", "MARGIN", 0))
            for name in ("half", "same"):
                wait_mirror(run, order, name, "FILLED")
            return order

        entry = trade("BUY", 4)  # half: 2 lots, same: 4 lots
        first_exit = trade("SELL", 2)  # the leader exits half: so does each follower
        for who, units in ((half, 65), (same, 130)):
            mirror = latest(first_exit, who.name)
            assert the_order(run, who, mirror)["quantity"] == units == mirror.quantity
            assert net_quantity(run, who.client_id, NIFTY_FUT, "MARGIN") == units
        last_exit = trade("SELL", 2)  # the leader goes flat: so does each follower
        for who, units in ((half, 65), (same, 130)):
            assert the_order(run, who, latest(last_exit, who.name))["quantity"] == units
            assert net_quantity(run, who.client_id, NIFTY_FUT, "MARGIN") == 0
        assert [latest(entry, n).quantity for n in ("half", "same")] == [130, 260]


# ---- 11. freeze limit -> slicing ----------------------------------------------------------

def test_order_above_the_freeze_limit_goes_through_the_slicing_endpoint(
        live_sim: Emulator, tmp_path: Path) -> None:
    double = follower("double", "1000000002", "multiplier = 2.0")
    live_sim.set_funds(LEADER_ID, 30_000_000)
    live_sim.set_funds(double.client_id, 30_000_000)
    with running_follow(live_sim, tmp_path, [double]) as run:
        # 15 lots (975) for the leader, 30 lots (1950) for the follower: above 1755
        order = order_id_of(run.leader_api.place_order(NIFTY_FUT, "NSE_FNO", "BUY",
                                                       15 * NIFTY_LOT, "MARKET", "MARGIN", 0))
        mirror = wait_mirror(run, order, "double", "FILLED")
        slices = orders_tagged(run, double, mirror.correlation_id)
        assert sorted((o["quantity"], o["orderStatus"]) for o in slices) == [
            (195, "TRADED"), (1755, "TRADED")]
        assert len(run.follower_book(double)) == 2
        assert (mirror.quantity, mirror.filled_quantity, mirror.sliced) == (1950, 1950, True)
        assert sorted(json.loads(mirror.legs)) == sorted(o["orderId"] for o in slices)
        [place] = intents_of(mirror)
        assert json.loads(place.request)["slice"] is True
        assert_placed(run, mirror)
        assert net_quantity(run, double.client_id, NIFTY_FUT, "MARGIN") == 1950


CRUDE_FUT = "447552"  # MCX, lot 100; the exchange's freeze is 10,000, unknown to our table


def test_a_derivative_whose_freeze_we_do_not_know_goes_through_the_slicing_endpoint(
        live_sim: Emulator, tmp_path: Path) -> None:
    """Stock F&O, BSE and MCX freeze quantities are not in our table: such orders go through
    Dhan's slicing endpoint, which splits them only when the exchange needs it, so none is
    rejected for exceeding a freeze quantity; one that stays one order is modified in place."""
    double = follower("double", "1000000002", "multiplier = 2.0")
    live_sim.set_funds(LEADER_ID, 500_000_000)
    live_sim.set_funds(double.client_id, 500_000_000)
    with running_follow(live_sim, tmp_path, [double]) as run:
        big = app_order(live_sim, CRUDE_FUT, "MCX_COMM", 6000, "MARGIN")  # 12,000 for double
        mirror = wait_mirror(run, big, "double", "FILLED")
        slices = orders_tagged(run, double, mirror.correlation_id)
        assert sorted((o["quantity"], o["orderStatus"]) for o in slices) == [
            (2000, "TRADED"), (10_000, "TRADED")]
        assert (mirror.quantity, mirror.filled_quantity, mirror.sliced) == (12_000, 12_000, True)
        assert json.loads(intents_of(mirror)[0].request)["slice"] is True

        small = order_id_of(run.leader_api.place_order(CRUDE_FUT, "MCX_COMM", "BUY", 100,
                                                       "LIMIT", "MARGIN", 5000))
        one = wait_mirror(run, small, "double", "ACCEPTED")
        assert [o["quantity"] for o in orders_tagged(run, double, one.correlation_id)] == [200]
        assert one.sliced is False  # one order came back: modified, not replaced
        assert run.leader_api.modify_order(small, "LIMIT", "ENTRY_LEG", 100, 5010, 0, 0,
                                           "DAY")["status"] == "success"
        run.wait_for(lambda: the_order(run, double, latest(small, "double"))["price"] == 5010)
        assert len(mirrors_of(small, "double")) == 1


def test_modifying_a_sliced_mirror_cancels_and_replaces_it(live_sim: Emulator,
                                                           tmp_path: Path) -> None:
    double = follower("double", "1000000002", "multiplier = 2.0")
    live_sim.set_funds(LEADER_ID, 30_000_000)
    live_sim.set_funds(double.client_id, 30_000_000)
    with running_follow(live_sim, tmp_path, [double]) as run:
        api = run.leader_api
        order = order_id_of(api.place_order(NIFTY_FUT, "NSE_FNO", "BUY", 15 * NIFTY_LOT,
                                            "LIMIT", "MARGIN", 25000))
        placed_at = time.time()
        first = wait_mirror(run, order, "double", "ACCEPTED")
        assert len(orders_tagged(run, double, first.correlation_id)) == 2
        next_second(run, placed_at)
        assert api.modify_order(order, "LIMIT", "ENTRY_LEG", 15 * NIFTY_LOT, 25010, 0, 0,
                                "DAY")["status"] == "success"
        run.wait_for(lambda: len(mirrors_of(order, "double")) == 2
                     and mirrors_of(order, "double")[1].state == "ACCEPTED"
                     and mirrors_of(order, "double")[0].state == "CANCELED")
        old, new = mirrors_of(order, "double")
        assert sorted(o["orderStatus"] for o in orders_tagged(run, double, old.correlation_id)
                      ) == ["CANCELLED", "CANCELLED"]
        replacement = orders_tagged(run, double, new.correlation_id)
        assert sorted((o["quantity"], o["price"], o["orderStatus"]) for o in replacement) == [
            (195, 25010.0, "PENDING"), (1755, 25010.0, "PENDING")]
        live = [o for o in run.follower_book(double) if o["orderStatus"] in LIVE]
        assert sorted(o["orderId"] for o in live) == sorted(o["orderId"] for o in replacement)
        assert new.attempt == 2 and new.price == 25010.0
        assert_placed(run, new)
        assert [(i.action, i.status) for i in intents_of(settled(run, old))] == [
            ("PLACE", "DONE"), ("CANCEL", "DONE")]
        assert [a.follower for a in run.audit("replaced")] == ["double"]


# ---- 12, 13. shadow and disabled followers -------------------------------------------------

def test_shadow_follower_records_and_disabled_follower_gets_nothing(live_sim: Emulator,
                                                                    tmp_path: Path) -> None:
    normal = follower("normal", "1000000002")
    shadow = follower("shadow", "1000000003", extra="shadow = true")
    off = follower("off", "1000000004", extra="enabled = false")
    with running_follow(live_sim, tmp_path, [normal, shadow, off]) as run:
        api = run.leader_api
        market = order_id_of(api.place_order("1333", "NSE_EQ", "BUY", 10, "MARKET", "CNC", 0))
        resting = order_id_of(api.place_order("2885", "NSE_EQ", "BUY", 5, "LIMIT", "CNC",
                                              1300))
        assert_placed(run, wait_mirror(run, market, "normal", "FILLED"))
        wait_mirror(run, resting, "normal", "ACCEPTED")
        assert order_id_of(api.cancel_order(resting)) == resting
        wait_mirror(run, resting, "normal", "CANCELED")
        for order, units in ((market, 10), (resting, 5)):
            mirror = latest(order, "shadow")
            assert mirror is not None and mirror.shadow
            assert_skipped(mirror, "shadow", f"would place {units}")
        assert {a.leader_order_id for a in run.audit("shadow")} == {market, resting}
        assert run.follower_book(shadow) == []
        assert run.mirrors("off") == [] and run.follower_book(off) == []
        assert "off" not in run.engine.workers
