"""The exit legs of BO and CO (core/legs.py), and the BO/CO entry's own decision."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from copytrade.core.decide import ActionKind, decide
from copytrade.core.events import OrderReport, ReportSource, bracket_values_known, leg_key
from copytrade.core.legs import FollowerLegView, LeaderLegView, decide_leg
from copytrade.core.orders import MirrorState
from copytrade.core.sizing import SizedOrder

STOP = LeaderLegView(leg=2, status="PENDING", order_type="STOP_LOSS_MARKET", quantity=10,
                     traded_quantity=0, price=0.0, trigger_price=95.0, first_price=0.0,
                     first_trigger_price=95.0)
FOLLOWER_STOP = FollowerLegView(MirrorState.ACCEPTED, quantity=4, price=0.0,
                                trigger_price=95.2, order_type="STOP_LOSS_MARKET")


def test_an_untouched_leg_needs_nothing() -> None:
    assert decide_leg(STOP, FOLLOWER_STOP, MirrorState.FILLED) == []


def test_a_moved_stop_moves_the_followers_to_the_same_level() -> None:
    moved = replace(STOP, trigger_price=98.0)
    [action] = decide_leg(moved, FOLLOWER_STOP, MirrorState.FILLED)
    assert (action.kind, action.trigger_price, action.quantity, action.order_type) == (
        ActionKind.MODIFY, 98.0, 4, "STOP_LOSS_MARKET")
    # once the follower's leg is there, nothing more
    assert decide_leg(moved, replace(FOLLOWER_STOP, trigger_price=98.0),
                      MirrorState.FILLED) == []


def test_a_moved_target_moves_the_followers_price() -> None:
    target = replace(STOP, leg=3, order_type="LIMIT", price=110.0, trigger_price=0.0,
                     first_price=110.0, first_trigger_price=0.0)
    follower = replace(FOLLOWER_STOP, order_type="LIMIT", price=110.2, trigger_price=0.0)
    [action] = decide_leg(replace(target, price=112.5), follower, MirrorState.FILLED)
    assert (action.kind, action.price, action.trigger_price) == (ActionKind.MODIFY, 112.5, 0.0)


def test_an_exit_through_a_leg_exits_the_followers_at_market_once() -> None:
    exited = replace(STOP, status="TRADED", traded_quantity=10)
    [action] = decide_leg(exited, FOLLOWER_STOP, MirrorState.FILLED)
    assert (action.kind, action.order_type, action.quantity) == (ActionKind.MODIFY, "MARKET", 4)
    assert "stop-loss" in action.reason
    asked = replace(FOLLOWER_STOP, order_type="MARKET")
    assert decide_leg(exited, asked, MirrorState.FILLED) == []


def test_an_exit_before_the_followers_entry_filled_cancels_the_entry() -> None:
    exited = replace(STOP, status="TRADED", traded_quantity=10)
    for working in (MirrorState.SUBMITTED, MirrorState.ACCEPTED, MirrorState.PARTIALLY_FILLED):
        [action] = decide_leg(exited, None, working)
        assert action.kind is ActionKind.CANCEL
    assert decide_leg(exited, None, MirrorState.FILLED) == []  # its legs are on their way
    assert decide_leg(exited, None, None) == []


@pytest.mark.parametrize("state", [MirrorState.FILLED, MirrorState.CANCELED,
                                   MirrorState.PENDING_CANCEL])
def test_an_ended_follower_leg_is_left_alone(state: MirrorState) -> None:
    exited = replace(STOP, status="TRADED", traded_quantity=10)
    assert decide_leg(exited, replace(FOLLOWER_STOP, state=state), MirrorState.FILLED) == []


@given(trigger=st.floats(1, 1_000, allow_nan=False), repeat=st.integers(1, 4),
       exited=st.booleans())
def test_deciding_again_on_the_state_it_produced_asks_nothing(trigger: float, repeat: int,
                                                              exited: bool) -> None:
    leader = replace(STOP, trigger_price=trigger, status="TRADED" if exited else "PENDING",
                     traded_quantity=10 if exited else 0)
    follower = FOLLOWER_STOP
    for _ in range(repeat):
        for action in decide_leg(leader, follower, MirrorState.FILLED):
            follower = replace(follower, price=action.price, trigger_price=action.trigger_price,
                               order_type=action.order_type)
    assert decide_leg(leader, follower, MirrorState.FILLED) == []


def _entry(product: str, **changes: object) -> OrderReport:
    base = OrderReport(order_id="1", status="PENDING", exchange_segment="NSE_EQ",
                       security_id="11536", transaction_type="BUY", product_type=product,
                       order_type="LIMIT", validity="DAY", quantity=10, traded_quantity=0,
                       price=100.0, trigger_price=0.0)
    return replace(base, **changes)


def test_a_co_entry_keeps_its_stop_loss_trigger() -> None:
    [place] = decide(_entry("CO", trigger_price=97.0), None, mirror_on_transit=False,
                     sized=SizedOrder(quantity=4, lots=4))
    assert (place.kind, place.order_type, place.trigger_price) == (ActionKind.PLACE, "LIMIT", 97.0)


def test_a_bo_entry_waits_for_its_values_on_the_stream_and_is_skipped_from_rest() -> None:
    bare = _entry("BO")
    assert not bracket_values_known(bare)
    assert decide(bare, None, mirror_on_transit=False, sized=SizedOrder(quantity=4, lots=4)) == []
    [skip] = decide(replace(bare, source=ReportSource.REST), None, mirror_on_transit=False,
                    sized=SizedOrder(quantity=4, lots=4))
    assert skip.kind is ActionKind.SKIP and "profit and stop-loss" in skip.reason
    valued = replace(bare, bo_profit_value=5.0, bo_stop_loss_value=2.5)
    [place] = decide(valued, None, mirror_on_transit=False, sized=SizedOrder(quantity=4, lots=4))
    assert place.kind is ActionKind.PLACE and place.quantity == 4


def test_exit_legs_are_keyed_apart_from_their_entry() -> None:
    assert leg_key("77", 1) == "77"
    assert len({leg_key("77", 1), leg_key("77", 2), leg_key("77", 3)}) == 3
