"""decide(): a leader order's merged state + one follower's mirror -> actions, every
branch (core/decide.py)."""

from __future__ import annotations

from datetime import datetime

import pytest

from copytrade.core.decide import (
    MAX_MODIFICATIONS,
    Action,
    ActionKind,
    MirrorView,
    decide,
    effective_price,
    effective_trigger,
    needs_size,
)
from copytrade.core.events import OrderReport
from copytrade.core.orders import OPEN_STATES, TERMINAL_STATES, MirrorState
from copytrade.core.reasons import ReasonCode
from copytrade.core.sizing import SizedOrder, Skip

LOT = 65
K = ActionKind


def leader(status: str = "PENDING", *, quantity: int = 130, traded: int = 0,
           order_type: str = "LIMIT", price: float = 100.0, trigger: float = 0.0,
           reason: str = "") -> OrderReport:
    return OrderReport(
        order_id="L1", status=status, exchange_segment="NSE_FNO", security_id="52175",
        transaction_type="BUY", product_type="MARGIN", order_type=order_type,
        validity="DAY", quantity=quantity, traded_quantity=traded, price=price,
        trigger_price=trigger, reason=reason, lot_size=LOT,
        updated_at=datetime(2025, 1, 6, 9, 15))


def mirror(state: MirrorState = MirrorState.ACCEPTED, *, quantity: int = 130, filled: int = 0,
           price: float = 100.0, trigger: float = 0.0, order_type: str = "LIMIT",
           modifications: int = 0, sliced: bool = False) -> MirrorView:
    return MirrorView(state, quantity, filled, price, trigger, order_type, modifications,
                      sliced)


def sized(quantity: int = 130, *, disclosed: int = 0, slice_: bool = False) -> SizedOrder:
    return SizedOrder(quantity, quantity // LOT, disclosed, slice_)


def run(report: OrderReport, view: MirrorView | None = None, *,
        size: SizedOrder | Skip | None = None, mirror_on_transit: bool = False) -> list[Action]:
    """decide, checking `needs_size` agrees: a size is given exactly where one is used (no
    size given where one is needed raises)."""
    if size is not None:
        assert needs_size(report, view, mirror_on_transit=mirror_on_transit)
    return decide(report, view, mirror_on_transit=mirror_on_transit, sized=size)


# ---- no mirror yet: the first decision ----------------------------------------------------------


def test_a_leader_order_in_transit_waits() -> None:
    assert run(leader("TRANSIT")) == []  # and does not even size it


def test_mirror_on_transit_places_at_once() -> None:
    actions = run(leader("TRANSIT"), size=sized(130), mirror_on_transit=True)
    assert actions == [Action(K.PLACE, quantity=130, price=100.0, order_type="LIMIT")]


@pytest.mark.parametrize("status", ["PENDING", "TRIGGERED", "PART_TRADED", "TRADED"])
def test_the_first_exchange_accepted_state_places(status: str) -> None:
    traded = {"PART_TRADED": 65, "TRADED": 130}.get(status, 0)
    actions = run(leader(status, traded=traded), size=sized(260))
    assert actions == [Action(K.PLACE, quantity=260, price=100.0, trigger_price=0.0,
                              order_type="LIMIT")]


@pytest.mark.parametrize(("order_type", "price", "trigger"), [
    ("LIMIT", 101.5, 0.0),  # trigger dropped
    ("MARKET", 0.0, 0.0),  # price and trigger dropped
    ("STOP_LOSS", 101.5, 101.0),
    ("STOP_LOSS_MARKET", 0.0, 101.0),  # price dropped
])
def test_a_place_copies_order_type_price_and_trigger(order_type: str, price: float,
                                                     trigger: float) -> None:
    # The leader's report carries both figures; only the meaningful ones are sent.
    report = leader(order_type=order_type, price=101.5, trigger=101.0)
    (action,) = run(report, size=sized(195, disclosed=65, slice_=True))
    assert action == Action(K.PLACE, quantity=195, price=price, trigger_price=trigger,
                            order_type=order_type, disclosed_quantity=65, slice=True)


def test_effective_price_and_trigger() -> None:
    assert effective_price("MARKET", 99.0) == effective_price("STOP_LOSS_MARKET", 99.0) == 0.0
    assert effective_price("LIMIT", 99.0) == effective_price("STOP_LOSS", 99.0) == 99.0
    assert effective_trigger("LIMIT", 98.0) == effective_trigger("MARKET", 98.0) == 0.0
    assert effective_trigger("STOP_LOSS", 98.0) == effective_trigger("STOP_LOSS_MARKET",
                                                                     98.0) == 98.0


@pytest.mark.parametrize("on_transit", [False, True])
def test_a_leader_rejection_first_seen_is_skipped_with_its_reason(on_transit: bool) -> None:
    actions = run(leader("REJECTED", reason="RMS: margin exceeds"),
                  mirror_on_transit=on_transit)
    assert actions == [Action(K.SKIP, reason="leader order rejected: RMS: margin exceeds")]
    assert run(leader("REJECTED")) == [Action(K.SKIP, reason="leader order rejected")]


@pytest.mark.parametrize("status", ["CANCELLED", "EXPIRED"])
def test_a_leader_order_ended_before_it_was_seen_is_skipped(status: str) -> None:
    word = status.lower()
    assert run(leader(status)) == [
        Action(K.SKIP, reason=f"leader order {word} before it could be mirrored")]
    assert run(leader(status, traded=65)) == [
        Action(K.SKIP, reason=f"leader order {word} after trading 65 before it could be "
                              "mirrored")]


def test_a_sizing_skip_is_recorded_with_its_reason() -> None:
    actions = run(leader(), size=Skip("0.5 lots after multiplier 0.5: below one lot"))
    assert actions == [Action(K.SKIP, reason="0.5 lots after multiplier 0.5: below one lot")]


# ---- a mirror exists ----------------------------------------------------------------------


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES | {MirrorState.PENDING_CANCEL}))
@pytest.mark.parametrize("status", ["PENDING", "PART_TRADED", "CANCELLED", "TRADED"])
def test_a_terminal_or_cancelling_mirror_gets_nothing(state: MirrorState, status: str) -> None:
    changed = leader(status, quantity=260, price=105.0)  # even with new parameters
    assert run(changed, mirror(state)) == []


@pytest.mark.parametrize("state", sorted(OPEN_STATES - {MirrorState.PENDING_CANCEL}))
@pytest.mark.parametrize("status", ["CANCELLED", "EXPIRED", "REJECTED"])
def test_a_leader_order_ended_without_fill_cancels_the_open_mirror(state: MirrorState,
                                                                   status: str) -> None:
    assert run(leader(status), mirror(state, filled=65 if state.name.startswith("PART")
                                      else 0)) == [
        Action(K.CANCEL, reason=f"leader order {status.lower()}")]


def test_a_traded_leader_unchanged_leaves_the_follower_order_standing() -> None:
    assert run(leader("TRADED", traded=130), mirror(), size=sized(130)) == []


def test_a_change_first_seen_in_the_traded_report_is_still_followed() -> None:
    actions = run(leader("TRADED", quantity=195, traded=195), mirror(), size=sized(195))
    assert [(a.kind, a.quantity) for a in actions] == [(K.MODIFY, 195)]


@pytest.mark.parametrize("status", ["PENDING", "TRIGGERED", "PART_TRADED"])
def test_no_change_means_no_action(status: str) -> None:
    report = leader(status, traded=65 if status == "PART_TRADED" else 0)
    assert run(report, mirror(), size=sized(130)) == []


def test_a_market_order_price_change_is_no_change() -> None:
    # MARKET orders are sent unpriced: a new price on the leader's report changes nothing.
    report = leader(order_type="MARKET", price=101.0, trigger=99.0)
    assert run(report, mirror(price=0.0, order_type="MARKET"), size=sized(130)) == []


@pytest.mark.parametrize(("change", "view", "expected"), [
    ("quantity", dict(quantity=130), dict(quantity=195)),
    ("price", dict(price=99.0), dict(price=100.0)),
    ("trigger", dict(order_type="STOP_LOSS", trigger=98.0), dict(order_type="STOP_LOSS")),
    ("order type", dict(order_type="LIMIT"), dict(order_type="STOP_LOSS")),
])
def test_a_parameter_change_modifies_to_the_resized_total(change: str, view: dict,
                                                          expected: dict) -> None:
    report = leader(order_type=expected.get("order_type", view.get("order_type", "LIMIT")),
                    trigger=99.0)
    new_quantity = expected.get("quantity", 130)
    actions = run(report, mirror(**view), size=sized(new_quantity, disclosed=65))
    order_type = report.order_type
    assert actions == [Action(K.MODIFY, quantity=new_quantity, price=100.0,
                              trigger_price=effective_trigger(order_type, 99.0),
                              order_type=order_type, disclosed_quantity=65)], change


def test_a_modify_sends_the_total_never_below_what_is_filled() -> None:
    # Leader 3 -> 2 lots; the follower filled 1 of its 3: total 130, not "minus one lot".
    actions = run(leader(quantity=130), mirror(MirrorState.PARTIALLY_FILLED, quantity=195,
                                                filled=65), size=sized(130))
    assert actions == [Action(K.MODIFY, quantity=130, price=100.0, order_type="LIMIT")]


def test_a_modify_on_a_part_traded_leader() -> None:
    actions = run(leader("PART_TRADED", quantity=260, traded=65), mirror(), size=sized(260))
    assert [a.kind for a in actions] == [K.MODIFY]
    assert actions[0].quantity == 260


@pytest.mark.parametrize("done", [MAX_MODIFICATIONS, MAX_MODIFICATIONS + 3])
def test_past_25_modifications_the_follower_order_is_replaced(done: int) -> None:
    actions = run(leader(quantity=195), mirror(modifications=done), size=sized(195))
    assert actions == [Action(K.REPLACE, quantity=195, price=100.0, order_type="LIMIT",
                              reason="past 25 modifications")]


def test_the_25th_modification_is_still_a_modify() -> None:
    actions = run(leader(quantity=195), mirror(modifications=MAX_MODIFICATIONS - 1),
                  size=sized(195))
    assert [a.kind for a in actions] == [K.MODIFY]


def test_a_sliced_mirror_is_replaced_on_any_change() -> None:
    actions = run(leader(quantity=195, price=101.0),
                  mirror(quantity=3900, sliced=True), size=sized(5850, slice_=True))
    assert [(a.kind, a.quantity, a.price, a.slice) for a in actions] == [
        (K.REPLACE, 5850, 101.0, True)]


def test_a_sliced_mirror_without_change_gets_nothing() -> None:
    assert run(leader(), mirror(sliced=True), size=sized(130, slice_=True)) == []


def test_a_sliced_replace_says_why() -> None:
    (action,) = run(leader(price=101.0), mirror(sliced=True), size=sized(130, slice_=True))
    assert action.reason != "past 25 modifications"


def test_a_resize_to_what_is_already_filled_cancels_the_rest() -> None:
    # Leader 3 -> 1 lot after the follower filled 2 of its 3: nothing more to buy.
    view = mirror(MirrorState.PARTIALLY_FILLED, quantity=195, filled=130)
    for new_total in (65, 130):
        actions = run(leader(quantity=65), view, size=sized(new_total))
        assert actions == [Action(K.CANCEL, reason="leader reduced the order to what the "
                                                   "follower already filled",
                                  code=ReasonCode.REDUCED_TO_FILLED)]


def test_a_resize_below_one_lot_cancels_the_mirror() -> None:
    actions = run(leader(quantity=65), mirror(),
                  size=Skip("0.5 lots after multiplier 0.5: below one lot"))
    assert actions == [Action(K.CANCEL, reason="leader modified: 0.5 lots after "
                                               "multiplier 0.5: below one lot",
                              code=ReasonCode.RESIZED_AWAY)]


def test_decide_is_a_pure_function_of_its_inputs() -> None:
    report, view = leader(quantity=195, price=101.0), mirror(modifications=3)
    first = run(report, view, size=sized(195))
    assert first == run(report, view, size=sized(195)) == [
        Action(K.MODIFY, quantity=195, price=101.0, order_type="LIMIT")]


def test_a_mirror_placed_on_transit_follows_a_change_still_in_transit() -> None:
    actions = run(leader("TRANSIT", quantity=195), mirror(), size=sized(195),
                  mirror_on_transit=True)
    assert [(a.kind, a.quantity) for a in actions] == [(K.MODIFY, 195)]


# ---- needs_size: when a size is used ----------------------------------------------------------


@pytest.mark.parametrize(("report", "view", "used"), [
    (leader("TRANSIT"), None, False),
    (leader("REJECTED"), None, False),
    (leader("CANCELLED"), None, False),
    (leader(), None, True),
    (leader(), mirror(MirrorState.PENDING_CANCEL), False),
    (leader("CANCELLED"), mirror(), False),
    (leader(), mirror(), True),
    (leader(), mirror(MirrorState.FILLED), False),  # not reopenable: ended for good
])
def test_needs_size_says_where_a_size_is_used(report: OrderReport, view: MirrorView | None,
                                              used: bool) -> None:
    assert needs_size(report, view, mirror_on_transit=False) is used


def test_a_decision_that_needs_a_size_refuses_to_go_without() -> None:
    with pytest.raises(ValueError, match="needs a size"):
        decide(leader(), None, mirror_on_transit=False, sized=None)
