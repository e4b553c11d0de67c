"""Reconciliation kernels (core/reconcile.py): stored mirrors + a follower's order book ->
divergences -> fixes per policy; and the leader book filter. Every divergence kind, both
policies, then properties: a store built from the book is consistent, "alert" never
changes an order, and nothing depends on the order of the inputs."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from copytrade.core.events import OPEN_STATUSES, OrderReport, ReportSource
from copytrade.core.ids import correlation_id
from copytrade.core.orders import MirrorState, Trigger, trigger_for_legs
from copytrade.core.reconcile import (
    ORDER_CHANGING,
    Divergence,
    DivergenceKind,
    Fix,
    FixKind,
    StoredMirror,
    confirmed,
    diff_follower,
    diff_leader,
    fingerprint,
    index_book,
    is_cancelled_outside,
    plan_fixes,
    settled_rows,
)
from copytrade.dhan.frames import parse_frame, report_from_rest

DAY = date(2025, 1, 6)
T0 = datetime(2025, 1, 6, 9, 15, 0)
FOLLOWER = "f1"
GRACE = 5.0
K, F, S = DivergenceKind, FixKind, MirrorState
SETTINGS = settings(max_examples=200, deadline=None)


def cid(leader: str = "L1", attempt: int = 1, follower: str = FOLLOWER) -> str:
    return correlation_id(DAY, leader, follower, 1, attempt)


def report(order_id: str, status: str = "PENDING", *, quantity: int = 50, traded: int = 0,
           price: float = 100.0, trigger: float = 0.0, order_type: str = "LIMIT",
           corr: str = "", updated_at: datetime | None = None) -> OrderReport:
    return OrderReport(
        order_id=order_id, status=status, exchange_segment="NSE_FNO", security_id="52175",
        transaction_type="BUY", product_type="MARGIN", order_type=order_type,
        validity="DAY", quantity=quantity, traded_quantity=traded, price=price,
        trigger_price=trigger, correlation_id=corr, updated_at=updated_at,
        source=ReportSource.REST)


def mirror(mirror_id: int = 1, *, leader: str = "L1", attempt: int = 1,
           state: S = S.ACCEPTED, quantity: int = 50, filled: int = 0,
           legs: dict | None = None, price: float = 100.0, trigger: float = 0.0,
           order_type: str = "LIMIT", age: float | None = 10.0,
           follower: str = FOLLOWER) -> StoredMirror:
    return StoredMirror(
        mirror_id=mirror_id, leader_order_id=leader, follower=follower,
        correlation_id=cid(leader, attempt, follower), state=state.value, quantity=quantity,
        filled=filled, legs=legs if legs is not None else {}, price=price,
        trigger_price=trigger, order_type=order_type, submitted_age_seconds=age)


def diff(stored, reported, grace: float = GRACE) -> list[Divergence]:
    return diff_follower(stored, reported, follower=FOLLOWER, grace_seconds=grace)


def kinds(found) -> list:
    return [d.kind for d in found]


def fix_kinds(fixes: list[Fix]) -> list[FixKind]:
    return [f.kind for f in fixes]


# ---- consistent inputs and noise -----------------------------------------------------------


def test_empty_inputs() -> None:
    assert diff([], []) == []
    assert plan_fixes([], policy="alert") == []
    assert plan_fixes([], policy="resync") == []
    assert diff_leader({}, []) == []
    assert confirmed([], []) == []


def test_a_consistent_mirror_has_no_divergence() -> None:
    m = mirror(legs={"F1": ("PENDING", 0, 50)})
    assert diff([m], [report("F1", corr=m.correlation_id)]) == []


def test_the_followers_own_orders_are_ignored() -> None:
    own = [
        report("X1", "PENDING", corr=""),
        report("X2", "TRADED", traded=50, corr="my-strategy-7"),
        report("X3", "CANCELLED", corr="ct" + "a" * 20),  # our prefix, not our shape
        report("X4", "PENDING", quantity=1, price=5.0, corr="CT" + "a" * 20 + "-1"),
    ]
    assert diff([], own) == []
    m = mirror(legs={"F1": ("PENDING", 0, 50)})
    assert diff([m], [*own, report("F1", corr=m.correlation_id)]) == []


def test_a_mirror_of_another_follower_is_refused() -> None:
    with pytest.raises(ValueError, match="belongs to"):
        diff([mirror(follower="f2")], [])


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="policy"):
        plan_fixes([], policy="fix-everything")  # type: ignore[arg-type]


# ---- MISSING_ON_BROKER -------------------------------------------------------------------


def test_missing_on_broker_after_the_grace_period() -> None:
    m = mirror(legs={"F1": ("PENDING", 0, 50)}, age=10.0)
    found = diff([m], [])
    assert kinds(found) == [K.MISSING_ON_BROKER]
    assert found[0].mirror_id == 1 and found[0].follower_order_id == "F1"
    assert found[0].follower == FOLLOWER and found[0].leader_order_id == "L1"
    for policy in ("alert", "resync"):
        fixes = plan_fixes(found, policy=policy)
        assert fix_kinds(fixes) == [F.LOOKUP]
        assert fixes[0].follower_order_id == "F1" and fixes[0].cause is K.MISSING_ON_BROKER


@pytest.mark.parametrize(("age", "expected"), [
    (0.0, []), (4.999, []), (GRACE, []), (GRACE + 1e-6, [K.MISSING_ON_BROKER]),
    (None, []),
])
def test_missing_on_broker_grace_boundary(age: float | None, expected: list) -> None:
    m = mirror(legs={"F1": ("TRANSIT", 0, 0)}, age=age)
    assert kinds(diff([m], [])) == expected


@pytest.mark.parametrize("state", [S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED])
def test_an_ended_mirror_is_not_missing(state: S) -> None:
    assert diff([mirror(state=state, legs={"F1": ("PENDING", 0, 50)})], []) == []


def test_a_leg_the_store_has_as_ended_is_not_missing() -> None:
    m = mirror(state=S.PARTIALLY_FILLED, quantity=50, filled=25,
               legs={"S1": ("TRADED", 25, 25), "S2": ("PENDING", 0, 25)})
    found = diff([m], [report("S2", quantity=25, corr=m.correlation_id)])
    assert found == []


# ---- STUCK_SUBMITTED -----------------------------------------------------------------------


@pytest.mark.parametrize(("age", "expected"), [
    (0.0, []), (GRACE, []), (GRACE + 0.001, [K.STUCK_SUBMITTED]), (600.0, [K.STUCK_SUBMITTED]),
    (None, []),
])
def test_stuck_submitted_grace_boundary(age: float | None, expected: list) -> None:
    m = mirror(state=S.SUBMITTED, age=age)
    found = diff([m], [])
    assert kinds(found) == expected
    if expected:
        assert found[0].follower_order_id is None
        assert "SUBMITTED" in found[0].detail
        for policy in ("alert", "resync"):
            assert fix_kinds(plan_fixes(found, policy=policy)) == [F.LOOKUP]


def test_a_submitted_mirror_whose_order_is_in_the_book_is_adopted_not_stuck() -> None:
    m = mirror(state=S.SUBMITTED, age=60.0)
    found = diff([m], [report("F9", corr=m.correlation_id)])
    assert kinds(found) == [K.STATE_BEHIND]
    assert (found[0].mirror_id, found[0].follower_order_id) == (1, "F9")
    assert fix_kinds(plan_fixes(found, policy="alert")) == [F.APPLY_REPORT]


def test_a_submitted_mirror_with_an_order_is_not_stuck() -> None:
    # Not stuck; but adopting an order acknowledges it (ACCEPTED), so the row is behind.
    m = mirror(state=S.SUBMITTED, legs={"F1": ("TRANSIT", 0, 0)}, age=60.0)
    found = diff([m], [report("F1", "TRANSIT", corr=m.correlation_id)])
    assert kinds(found) == [K.STATE_BEHIND]
    assert "ACCEPTED" in found[0].detail


# ---- CANCELLED_OUTSIDE -----------------------------------------------------------------------


def test_cancelled_in_the_app() -> None:
    m = mirror(legs={"F1": ("PENDING", 0, 50)})
    found = diff([m], [report("F1", "CANCELLED", corr=m.correlation_id)])
    assert kinds(found) == [K.CANCELLED_OUTSIDE]
    assert found[0].quantity == 50
    assert fix_kinds(plan_fixes(found, policy="alert")) == [F.APPLY_REPORT]
    fixes = plan_fixes(found, policy="resync")
    assert fix_kinds(fixes) == [F.APPLY_REPORT, F.REPLACE]
    assert fixes[1].quantity == 50 and fixes[1].mirror_id == 1


def test_cancelled_in_the_app_after_a_partial_fill_replaces_the_remainder() -> None:
    m = mirror(state=S.PARTIALLY_FILLED, filled=20, legs={"F1": ("PART_TRADED", 20, 50)})
    found = diff([m], [report("F1", "CANCELLED", traded=20, corr=m.correlation_id)])
    assert kinds(found) == [K.CANCELLED_OUTSIDE]
    replace = [f for f in plan_fixes(found, policy="resync") if f.kind is F.REPLACE]
    assert [f.quantity for f in replace] == [30]


def test_a_cancel_we_asked_for_is_only_behind() -> None:
    m = mirror(state=S.PENDING_CANCEL, legs={"F1": ("PENDING", 0, 50)})
    found = diff([m], [report("F1", "CANCELLED", corr=m.correlation_id)])
    assert kinds(found) == [K.STATE_BEHIND]
    assert fix_kinds(plan_fixes(found, policy="resync")) == [F.APPLY_REPORT]


def test_a_recorded_cancel_is_not_news() -> None:
    m = mirror(state=S.CANCELED, legs={"F1": ("CANCELLED", 0, 50)})
    assert diff([m], [report("F1", "CANCELLED", corr=m.correlation_id)]) == []


def test_is_cancelled_outside() -> None:
    assert is_cancelled_outside("ACCEPTED", "CANCELLED", "PENDING")
    assert is_cancelled_outside("SUBMITTED", "CANCELLED", "TRANSIT")
    assert not is_cancelled_outside("PENDING_CANCEL", "CANCELLED", "PENDING")
    assert not is_cancelled_outside("ACCEPTED", "CANCELLED", "CANCELLED")
    assert not is_cancelled_outside("ACCEPTED", "EXPIRED", "PENDING")
    assert not is_cancelled_outside("FILLED", "CANCELLED", "PENDING")


# ---- slices ----------------------------------------------------------------------------------


def sliced(state: S = S.ACCEPTED, **legs) -> StoredMirror:
    legs = legs or {"S1": ("PENDING", 0, 25), "S2": ("PENDING", 0, 25)}
    return mirror(state=state, quantity=sum(q for _, _, q in legs.values()), legs=legs)


def test_a_sliced_mirror_with_one_slice_cancelled_outside() -> None:
    m = sliced()
    book = [report("S1", "CANCELLED", quantity=25, corr=m.correlation_id),
            report("S2", "PENDING", quantity=25, corr=m.correlation_id)]
    found = diff([m], book)
    assert kinds(found) == [K.CANCELLED_OUTSIDE]
    assert (found[0].follower_order_id, found[0].quantity) == ("S1", 25)
    fixes = plan_fixes(found, policy="resync")
    assert [(f.kind, f.follower_order_id, f.quantity) for f in fixes] == [
        (F.APPLY_REPORT, "S1", None), (F.REPLACE, "S1", 25)]


def test_a_slice_modified_in_the_app_is_modified_back_to_its_share() -> None:
    m = sliced()
    book = [report("S1", quantity=25, corr=m.correlation_id),
            report("S2", quantity=20, corr=m.correlation_id)]
    found = diff([m], book)
    assert [(d.kind, d.follower_order_id, d.quantity) for d in found] == [
        (K.WRONG_QUANTITY, "S2", 25)]
    assert [(f.kind, f.quantity) for f in plan_fixes(found, policy="resync")] == [
        (F.MODIFY_ORDER, 25)]


def test_slices_that_no_longer_add_up_are_reported_not_fixed() -> None:
    # The stream recorded the app's change on the slice, so no one slice is to blame.
    m = mirror(quantity=50, legs={"S1": ("PENDING", 0, 25), "S2": ("PENDING", 0, 20)})
    book = [report("S1", quantity=25, corr=m.correlation_id),
            report("S2", quantity=20, corr=m.correlation_id)]
    found = diff([m], book)
    assert [(d.kind, d.follower_order_id) for d in found] == [(K.WRONG_QUANTITY, None)]
    assert plan_fixes(found, policy="resync") == []


def test_a_slice_not_yet_in_the_legs_is_adopted() -> None:
    m = mirror(quantity=50, legs={"S1": ("PENDING", 0, 25)})
    book = [report("S1", quantity=25, corr=m.correlation_id),
            report("S2", quantity=25, corr=m.correlation_id)]
    found = diff([m], book)
    # S1 alone is 25 of the 50 wanted, but it is not blamed (a resync would modify it to
    # 50 and double the order) while another order of the mirror is still unrecorded.
    assert [(d.kind, d.follower_order_id) for d in found] == [(K.STATE_BEHIND, "S2")]
    assert fix_kinds(plan_fixes(found, policy="resync")) == [F.APPLY_REPORT]
    adopted = mirror(quantity=50, legs={"S1": ("PENDING", 0, 25), "S2": ("PENDING", 0, 25)})
    assert diff([adopted], book) == []
    # A price put back meanwhile keeps the slice's own quantity.
    repriced = [report("S1", quantity=25, price=101.0, corr=m.correlation_id), book[1]]
    fixes = plan_fixes(diff([m], repriced), policy="resync")
    assert [(f.kind, f.follower_order_id, f.quantity) for f in fixes] == [
        (F.APPLY_REPORT, "S2", None), (F.MODIFY_ORDER, "S1", 25)]


# ---- STATE_BEHIND --------------------------------------------------------------------------


def test_a_filled_order_the_store_has_as_accepted() -> None:
    m = mirror(state=S.ACCEPTED, legs={"F1": ("PENDING", 0, 50)})
    found = diff([m], [report("F1", "TRADED", traded=50, corr=m.correlation_id)])
    assert kinds(found) == [K.STATE_BEHIND]
    assert "TRADED 50/50" in found[0].detail
    for policy in ("alert", "resync"):
        fixes = plan_fixes(found, policy=policy)
        assert [(f.kind, f.mirror_id, f.follower_order_id) for f in fixes] == [
            (F.APPLY_REPORT, 1, "F1")]


def test_a_missed_partial_fill_is_behind() -> None:
    m = mirror(legs={"F1": ("PENDING", 0, 50)})
    found = diff([m], [report("F1", "PART_TRADED", traded=10, corr=m.correlation_id)])
    assert kinds(found) == [K.STATE_BEHIND]


def test_legs_up_to_date_but_the_mirror_state_behind() -> None:
    m = mirror(state=S.ACCEPTED, filled=50, legs={"F1": ("TRADED", 50, 50)})
    found = diff([m], [report("F1", "TRADED", traded=50, corr=m.correlation_id)])
    assert kinds(found) == [K.STATE_BEHIND]
    assert "FILLED" in found[0].detail


def test_legs_up_to_date_but_the_filled_quantity_behind() -> None:
    m = mirror(state=S.PARTIALLY_FILLED, filled=5, legs={"F1": ("PART_TRADED", 10, 50)})
    found = diff([m], [report("F1", "PART_TRADED", traded=10, corr=m.correlation_id)])
    assert kinds(found) == [K.STATE_BEHIND]
    assert "traded 10" in found[0].detail


@pytest.mark.parametrize(("state", "leg", "broker"), [
    (S.FILLED, ("TRADED", 50, 50), ("PENDING", 0)),
    (S.PARTIALLY_FILLED, ("PART_TRADED", 20, 50), ("PENDING", 0)),
    (S.CANCELED, ("CANCELLED", 0, 50), ("PENDING", 0)),
    (S.ACCEPTED, ("PENDING", 0, 50), ("TRANSIT", 0)),
])
def test_the_store_ahead_of_a_stale_snapshot_is_not_a_divergence(state, leg, broker) -> None:
    m = mirror(state=state, filled=leg[1], legs={"F1": leg})
    status, traded = broker
    assert diff([m], [report("F1", status, traded=traded, corr=m.correlation_id)]) == []


def test_a_late_fill_after_our_cancel_is_behind() -> None:
    m = mirror(state=S.CANCELED, legs={"F1": ("CANCELLED", 0, 50)})
    found = diff([m], [report("F1", "TRADED", traded=50, corr=m.correlation_id)])
    assert kinds(found) == [K.STATE_BEHIND]


# ---- WRONG_QUANTITY / WRONG_PRICE --------------------------------------------------------------


def test_wrong_quantity() -> None:
    m = mirror(legs={"F1": ("PENDING", 0, 50)})
    found = diff([m], [report("F1", quantity=25, corr=m.correlation_id)])
    assert [(d.kind, d.quantity) for d in found] == [(K.WRONG_QUANTITY, 50)]
    assert plan_fixes(found, policy="alert") == []
    fixes = plan_fixes(found, policy="resync")
    assert [(f.kind, f.follower_order_id, f.quantity) for f in fixes] == [
        (F.MODIFY_ORDER, "F1", 50)]


@pytest.mark.parametrize("changes", [
    {"price": 101.0},
    {"order_type": "MARKET", "price": 0.0},
    {"order_type": "STOP_LOSS", "trigger": 99.0},
])
def test_wrong_price(changes: dict) -> None:
    m = mirror(legs={"F1": ("PENDING", 0, 50)})
    found = diff([m], [report("F1", corr=m.correlation_id, **changes)])
    assert kinds(found) == [K.WRONG_PRICE]
    assert plan_fixes(found, policy="alert") == []
    fixes = plan_fixes(found, policy="resync")
    assert [(f.kind, f.quantity) for f in fixes] == [(F.MODIFY_ORDER, 50)]


def test_wrong_quantity_and_price_make_one_modify() -> None:
    m = mirror(legs={"F1": ("PENDING", 0, 50)})
    found = diff([m], [report("F1", quantity=25, price=101.0, corr=m.correlation_id)])
    assert kinds(found) == [K.WRONG_QUANTITY, K.WRONG_PRICE]
    fixes = plan_fixes(found, policy="resync")
    assert [(f.kind, f.quantity) for f in fixes] == [(F.MODIFY_ORDER, 50)]
    assert "25 units" in fixes[0].detail and "101" in fixes[0].detail


@pytest.mark.parametrize(("mirror_type", "broker_type", "broker_price", "broker_trigger"), [
    ("MARKET", "LIMIT", 104.5, 0.0),  # Dhan's market price protection
    ("STOP_LOSS_MARKET", "STOP_LOSS", 98.0, 99.0),
    ("MARKET", "MARKET", 104.5, 0.0),  # a price on a market order does not take effect
    ("LIMIT", "LIMIT", 100.0, 42.0),  # nor a trigger on a limit order
])
def test_prices_are_compared_as_they_take_effect(mirror_type, broker_type, broker_price,
                                                 broker_trigger) -> None:
    m = mirror(order_type=mirror_type, price=100.0 if mirror_type == "LIMIT" else 0.0,
               trigger=99.0 if mirror_type == "STOP_LOSS_MARKET" else 0.0,
               legs={"F1": ("PENDING", 0, 50)})
    book = [report("F1", order_type=broker_type, price=broker_price, trigger=broker_trigger,
                   corr=m.correlation_id)]
    assert diff([m], book) == []


def test_a_changed_trigger_on_a_converted_stop_loss_market_is_wrong() -> None:
    m = mirror(order_type="STOP_LOSS_MARKET", price=0.0, trigger=99.0,
               legs={"F1": ("PENDING", 0, 50)})
    book = [report("F1", order_type="STOP_LOSS", price=98.0, trigger=97.0,
                   corr=m.correlation_id)]
    assert kinds(diff([m], book)) == [K.WRONG_PRICE]


@pytest.mark.parametrize("state", [S.PENDING_CANCEL, S.FILLED, S.CANCELED])
def test_no_wrong_parameters_unless_the_mirror_is_working(state: S) -> None:
    m = mirror(state=state, legs={"F1": ("PENDING", 0, 50)})
    book = [report("F1", quantity=25, price=101.0, corr=m.correlation_id)]
    assert not {K.WRONG_QUANTITY, K.WRONG_PRICE} & set(kinds(diff([m], book)))


def test_no_wrong_parameters_on_an_ended_order() -> None:
    m = mirror(state=S.FILLED, filled=25, quantity=50, legs={"F1": ("TRADED", 25, 25)})
    book = [report("F1", "TRADED", quantity=25, traded=25, price=101.0, corr=m.correlation_id)]
    assert not {K.WRONG_QUANTITY, K.WRONG_PRICE} & set(kinds(diff([m], book)))


# ---- UNKNOWN_OURS --------------------------------------------------------------------------


def test_a_given_up_attempt_that_appeared_beside_a_live_retry_is_a_duplicate() -> None:
    given_up = mirror(1, attempt=1, state=S.REJECTED)
    retry = mirror(2, attempt=2, legs={"F2": ("PENDING", 0, 50)})
    book = [report("F2", corr=retry.correlation_id),
            report("F1", corr=given_up.correlation_id)]
    found = diff([given_up, retry], book)
    assert [(d.kind, d.mirror_id, d.follower_order_id, d.duplicate, d.live)
            for d in found] == [(K.UNKNOWN_OURS, 1, "F1", True, True)]
    assert found[0].leader_order_id == "L1" and "mirror(s) 2" in found[0].detail
    assert plan_fixes(found, policy="alert") == []
    fixes = plan_fixes(found, policy="resync")
    assert [(f.kind, f.follower_order_id) for f in fixes] == [(F.CANCEL_ORDER, "F1")]


def test_a_later_filled_attempt_makes_it_a_duplicate() -> None:
    given_up = mirror(1, attempt=1, state=S.REJECTED)
    retry = mirror(2, attempt=2, state=S.FILLED, filled=50, legs={"F2": ("TRADED", 50, 50)})
    book = [report("F2", "TRADED", traded=50, corr=retry.correlation_id),
            report("F1", corr=given_up.correlation_id)]
    found = diff([given_up, retry], book)
    assert [(d.kind, d.duplicate) for d in found] == [(K.UNKNOWN_OURS, True)]
    assert fix_kinds(plan_fixes(found, policy="resync")) == [F.CANCEL_ORDER]


def test_an_earlier_filled_attempt_does_not_make_a_top_up_a_duplicate() -> None:
    filled = mirror(1, attempt=1, state=S.FILLED, filled=50, legs={"F1": ("TRADED", 50, 50)})
    top_up = mirror(2, attempt=2, state=S.REJECTED, quantity=50)  # given up: NOT_FOUND
    book = [report("F1", "TRADED", traded=50, corr=filled.correlation_id),
            report("F2", corr=top_up.correlation_id)]
    found = diff([filled, top_up], book)
    assert [(d.kind, d.mirror_id, d.duplicate) for d in found] == [(K.UNKNOWN_OURS, 2, False)]
    for policy in ("alert", "resync"):
        fixes = plan_fixes(found, policy=policy)
        assert [(f.kind, f.mirror_id, f.follower_order_id) for f in fixes] == [
            (F.APPLY_REPORT, 2, "F2")]
        assert fixes[0].cause is K.UNKNOWN_OURS and fixes[0].detail.startswith("adopt")


def test_an_abandoned_attempt_that_appeared_alone_is_adopted() -> None:
    given_up = mirror(1, attempt=1, state=S.REJECTED)
    found = diff([given_up], [report("F1", "PART_TRADED", traded=10,
                                     corr=given_up.correlation_id)])
    assert [(d.kind, d.duplicate, d.live) for d in found] == [(K.UNKNOWN_OURS, False, True)]
    assert fix_kinds(plan_fixes(found, policy="alert")) == [F.APPLY_REPORT]


def test_a_duplicate_that_already_traded_is_left_to_a_human() -> None:
    given_up = mirror(1, attempt=1, state=S.REJECTED)
    retry = mirror(2, attempt=2, legs={"F2": ("PENDING", 0, 50)})
    book = [report("F2", corr=retry.correlation_id),
            report("F1", "TRADED", traded=50, corr=given_up.correlation_id)]
    found = diff([given_up, retry], book)
    assert [(d.kind, d.duplicate, d.live) for d in found] == [(K.UNKNOWN_OURS, True, False)]
    assert plan_fixes(found, policy="resync") == []


def test_an_id_no_mirror_shares_a_stem_with_is_an_orphan() -> None:
    found = diff([], [report("F1", corr=cid("L-elsewhere", 3))])
    assert [(d.kind, d.mirror_id, d.leader_order_id) for d in found] == [
        (K.UNKNOWN_OURS, None, None)]
    assert plan_fixes(found, policy="resync") == []


def test_an_attempt_without_a_row_is_known_by_its_stem() -> None:
    first = mirror(1, attempt=1, state=S.REJECTED)
    found = diff([first], [report("F7", corr=cid("L1", 2))])
    assert [(d.kind, d.mirror_id, d.leader_order_id) for d in found] == [
        (K.UNKNOWN_OURS, None, "L1")]
    fixes = plan_fixes(found, policy="alert")
    assert [(f.kind, f.mirror_id, f.leader_order_id) for f in fixes] == [
        (F.APPLY_REPORT, None, "L1")]


@pytest.mark.parametrize("status", ["REJECTED", "CANCELLED", "EXPIRED"])
def test_an_unknown_order_that_ended_empty_is_ignored(status: str) -> None:
    given_up = mirror(1, attempt=1, state=S.REJECTED)
    assert diff([given_up], [report("F1", status, corr=given_up.correlation_id)]) == []
    assert diff([], [report("F1", status, corr=cid("L9"))]) == []


# ---- ordering, confirmation ----------------------------------------------------------------


def test_output_is_sorted_by_mirror_then_order() -> None:
    a = mirror(3, leader="L3", legs={"F3": ("PENDING", 0, 50)})
    b = mirror(1, leader="L1", legs={"F1": ("PENDING", 0, 50)})
    c = mirror(2, leader="L2", state=S.SUBMITTED, age=60.0)
    book = [report("F3", "CANCELLED", corr=a.correlation_id),
            report("F1", "TRADED", traded=50, corr=b.correlation_id),
            report("F9", corr=cid("L9"))]
    found = diff([a, b, c], book)
    assert [(d.mirror_id, d.kind) for d in found] == [
        (1, K.STATE_BEHIND), (2, K.STUCK_SUBMITTED), (3, K.CANCELLED_OUTSIDE),
        (None, K.UNKNOWN_OURS)]
    fixes = plan_fixes(found, policy="resync")
    # Store-only fixes first, then the order-changing ones.
    assert [(f.kind, f.mirror_id) for f in fixes] == [
        (F.APPLY_REPORT, 1), (F.LOOKUP, 2), (F.APPLY_REPORT, 3), (F.REPLACE, 3)]


def test_confirmed_keeps_what_two_rounds_agree_on() -> None:
    m = mirror(state=S.SUBMITTED)
    first = diff([m], [], grace=GRACE)
    later = diff([mirror(state=S.SUBMITTED, age=20.0)], [])
    assert first[0].detail != later[0].detail
    assert confirmed(first, later) == later
    assert confirmed([], later) == []
    wrong = diff([mirror(legs={"F1": ("PENDING", 0, 50)})],
                 [report("F1", quantity=25, corr=cid())])
    assert confirmed(first, wrong) == []


# ---- incremental rounds: what a later round may skip --------------------------------------


def test_index_book_keeps_the_furthest_row_and_who_carries_each_id() -> None:
    old, new = report("F1", "PENDING", corr=cid()), report("F1", "TRADED", traded=50, corr=cid())
    book = index_book([new, report("F2", corr=cid()), old, report("X1", corr="")])
    assert book.rows["F1"] is new and sorted(book.rows) == ["F1", "F2", "X1"]
    assert sorted(book.carrying[cid()]) == ["F1", "F2"] and "" not in book.carrying


def test_a_fingerprint_changes_with_what_the_kernels_compare() -> None:
    row = report("F1", corr=cid())
    assert fingerprint(row) == fingerprint(report("F1", corr=cid()))
    for changed in (report("F1", "TRADED", traded=50, corr=cid()), report("F2", corr=cid()),
                    report("F1", quantity=25, corr=cid()), report("F1", price=101.0, corr=cid()),
                    report("F1", corr=cid(attempt=2))):
        assert fingerprint(changed) != fingerprint(row)


def test_only_quiet_rows_are_settled() -> None:
    ended = mirror(1, leader="L1", state=S.FILLED, filled=50, legs={"F1": ("TRADED", 50, 50)})
    working = mirror(2, leader="L2", legs={"F2": ("PENDING", 0, 50)})
    given_up = mirror(3, leader="L3", state=S.REJECTED)
    book = [report("F1", "TRADED", traded=50, corr=ended.correlation_id),
            report("F2", corr=working.correlation_id),
            report("F3", "TRADED", traded=50, corr=given_up.correlation_id),
            report("X1", corr="manual")]
    stored = [ended, working, given_up]
    found = diff([*stored], book)
    assert [(d.kind, d.follower_order_id) for d in found] == [(K.UNKNOWN_OURS, "F3")]
    settled = settled_rows(found, stored, book)
    # the ended mirror's row and the follower's own: yes; an open mirror's row, or one a
    # divergence names: looked at every round
    assert settled == {fingerprint(book[0]), fingerprint(book[3])}
    # a row listed by an ended mirror but carrying an open mirror's id is not quiet either
    odd = report("F1", "TRADED", traded=50, corr=working.correlation_id)
    assert settled_rows([], stored, [odd]) == set()


# ---- diff_leader ---------------------------------------------------------------------------


def leader_report(order_id: str = "L1", status: str = "PENDING", *, traded: int = 0,
                  quantity: int = 50, price: float = 100.0, at: int = 0) -> OrderReport:
    return report(order_id, status, quantity=quantity, traded=traded, price=price,
                  updated_at=T0 + timedelta(seconds=at))


def test_diff_leader_keeps_only_news() -> None:
    known = {"L1": leader_report("L1", "PENDING", at=0),
             "L2": leader_report("L2", "TRADED", traded=50, at=5),
             "L3": leader_report("L3", "PENDING", price=100.0, at=10)}
    book = [
        leader_report("L1", "PENDING", at=0),  # unchanged
        leader_report("L2", "PENDING", at=1),  # a snapshot older than the stream
        leader_report("L3", "PENDING", price=99.0, at=8),  # older parameters
    ]
    assert diff_leader(known, book) == []
    news = [
        leader_report("L1", "PART_TRADED", traded=10, at=3),
        leader_report("L3", "PENDING", price=101.0, at=10),  # modified in the same second
        leader_report("L4", "TRANSIT", at=1),  # new
    ]
    assert diff_leader(known, [*book[1:], *news]) == sorted(
        news, key=lambda r: (r.updated_at, r.order_id))
    assert [r.order_id for r in diff_leader(known, news)] == ["L4", "L1", "L3"]


def test_diff_leader_passes_a_terminal_race_on() -> None:
    known = {"L1": leader_report("L1", "CANCELLED", traded=0, at=5)}
    won = leader_report("L1", "TRADED", traded=50, at=5)
    assert diff_leader(known, [won]) == [won]
    assert diff_leader({"L1": won}, [leader_report("L1", "CANCELLED", at=4)]) == []


def test_diff_leader_takes_the_furthest_of_repeated_rows() -> None:
    rows = [leader_report("L1", "PENDING", at=0), leader_report("L1", "TRADED", traded=50,
                                                                 at=2)]
    assert diff_leader({}, rows) == [rows[1]] == diff_leader({}, rows[::-1])


# ---- properties ----------------------------------------------------------------------------

ORDER_TYPES = ("LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_MARKET")
PRICES = (99.5, 100.0, 100.05)
ALL_STATUSES = ("TRANSIT", "PENDING", "PART_TRADED", "TRADED", "CANCELLED", "REJECTED",
                "EXPIRED", "TRIGGERED")
_STATE_FOR = {Trigger.ACK: S.ACCEPTED, Trigger.PARTIAL_FILL: S.PARTIALLY_FILLED,
              Trigger.FILL: S.FILLED, Trigger.CANCELED: S.CANCELED,
              Trigger.REJECTED: S.REJECTED, Trigger.EXPIRED: S.EXPIRED}


@st.composite
def leg_truth(draw) -> tuple[str, int, int]:
    """A follower order's (status, traded, quantity) as the broker can report it."""
    quantity = draw(st.integers(1, 200))
    status = draw(st.sampled_from(ALL_STATUSES))
    if status == "TRADED":
        traded = quantity
    elif status in ("PART_TRADED",) and quantity > 1:
        traded = draw(st.integers(1, quantity - 1))
    elif status in ("CANCELLED", "EXPIRED", "PENDING", "TRIGGERED"):
        traded = draw(st.integers(0, quantity - 1))
    else:
        traded = 0
        status = "PENDING" if status == "PART_TRADED" else status
    return status, traded, quantity


@st.composite
def consistent_world(draw) -> tuple[list[StoredMirror], list[OrderReport]]:
    """A follower's order book, and the store exactly as it would be built from it."""
    stored: list[StoredMirror] = []
    book: list[OrderReport] = []
    ages = st.one_of(st.none(), st.floats(0, 1000, allow_nan=False))
    for index in range(draw(st.integers(0, 5))):
        leader, attempt = f"L{index}", draw(st.integers(1, 3))
        corr = cid(leader, attempt)
        order_type = draw(st.sampled_from(ORDER_TYPES))
        price, trigger = draw(st.sampled_from(PRICES)), draw(st.sampled_from(PRICES))
        legs = {f"F{index}-{n}": draw(leg_truth()) for n in range(draw(st.integers(0, 3)))}
        if legs:
            quantity = sum(q for _, _, q in legs.values())
            state = _STATE_FOR[trigger_for_legs(legs, quantity)]
            if state in (S.ACCEPTED, S.PARTIALLY_FILLED) and draw(st.booleans()):
                state = S.PENDING_CANCEL
            age = draw(ages)
        else:  # nothing at the broker: in flight within the grace, or ended without one
            quantity = draw(st.integers(1, 200))
            state = draw(st.sampled_from([S.SUBMITTED, S.REJECTED, S.SKIPPED, S.CANCELED]))
            age = (draw(st.one_of(st.none(), st.floats(0, GRACE))) if state is S.SUBMITTED
                   else draw(ages))
        stored.append(StoredMirror(
            mirror_id=index + 1, leader_order_id=leader, follower=FOLLOWER,
            correlation_id=corr, state=state.value, quantity=quantity,
            filled=sum(t for _, t, _ in legs.values()), legs=legs, price=price,
            trigger_price=trigger, order_type=order_type, submitted_age_seconds=age))
        for order_id, (status, traded, leg_quantity) in legs.items():
            book.append(report(order_id, status, quantity=leg_quantity, traded=traded,
                               price=price, trigger=trigger, order_type=order_type,
                               corr=corr))
    # The follower's own orders, and ours that ended empty long ago: noise to ignore.
    for n in range(draw(st.integers(0, 3))):
        status, traded, quantity = draw(leg_truth())
        book.append(report(f"X{n}", status, quantity=quantity, traded=traded,
                           corr=draw(st.sampled_from(["", "manual", "ct-not-ours-1"]))))
    for n in range(draw(st.integers(0, 2))):
        book.append(report(f"D{n}", draw(st.sampled_from(["REJECTED", "CANCELLED"])),
                           corr=cid(f"GONE{n}", draw(st.integers(1, 3)))))
    return stored, book


@SETTINGS
@given(consistent_world(), st.randoms())
def test_a_store_built_from_the_book_has_no_divergence(world, rnd: random.Random) -> None:
    stored, book = world
    assert diff(stored, book) == []
    rnd.shuffle(stored)
    rnd.shuffle(book)
    assert diff(stored, book) == []


@st.composite
def messy_world(draw) -> tuple[list[StoredMirror], list[OrderReport]]:
    """Store and book drawn from a small shared pool of ids: anything may disagree."""
    order_ids = [f"F{n}" for n in range(6)]
    pairs = draw(st.lists(st.tuples(st.sampled_from(["L0", "L1", "L2"]), st.integers(1, 3)),
                          unique=True, max_size=5))
    stored = []
    for mirror_id, (leader, attempt) in enumerate(pairs, start=1):
        legs = draw(st.dictionaries(st.sampled_from(order_ids), leg_truth(), max_size=3))
        stored.append(StoredMirror(
            mirror_id=mirror_id, leader_order_id=leader, follower=FOLLOWER,
            correlation_id=cid(leader, attempt), state=draw(st.sampled_from(list(S))).value,
            quantity=draw(st.integers(0, 300)), filled=draw(st.integers(0, 300)), legs=legs,
            price=draw(st.sampled_from(PRICES)), trigger_price=draw(st.sampled_from(PRICES)),
            order_type=draw(st.sampled_from(ORDER_TYPES)),
            submitted_age_seconds=draw(st.one_of(st.none(), st.sampled_from([0.0, GRACE,
                                                                              60.0])))))
    cids = ["", "manual", *(cid(leader, attempt) for leader in ("L0", "L1", "L2", "L3")
                            for attempt in (1, 2, 3))]
    book = []
    for _ in range(draw(st.integers(0, 8))):
        status, traded, quantity = draw(leg_truth())
        book.append(report(
            draw(st.sampled_from([*order_ids, "F6", "F7"])), status, quantity=quantity,
            traded=traded, price=draw(st.sampled_from(PRICES)),
            trigger=draw(st.sampled_from(PRICES)), order_type=draw(st.sampled_from(ORDER_TYPES)),
            corr=draw(st.sampled_from(cids)),
            updated_at=T0 + timedelta(seconds=draw(st.integers(0, 3)))))
    return stored, book


@SETTINGS
@given(messy_world(), st.randoms())
def test_results_do_not_depend_on_the_order_of_the_inputs(world, rnd: random.Random) -> None:
    stored, book = world
    found = diff(stored, book)
    fixes = {policy: plan_fixes(found, policy=policy) for policy in ("alert", "resync")}
    for _ in range(3):
        stored2, book2, found2 = list(stored), list(book), list(found)
        rnd.shuffle(stored2)
        rnd.shuffle(book2)
        rnd.shuffle(found2)
        assert diff(stored2, book2) == found
        for policy in ("alert", "resync"):
            assert plan_fixes(found2, policy=policy) == fixes[policy]
        known = {r.order_id: r for r in book2[: len(book2) // 2]}
        assert diff_leader(known, book2) == diff_leader(known, book)
    for d in found:  # every finding names this follower and says something
        assert d.follower == FOLLOWER and d.detail and "\n" not in d.detail


divergences = st.builds(
    Divergence, kind=st.sampled_from(list(DivergenceKind)),
    mirror_id=st.one_of(st.none(), st.integers(1, 5)), follower=st.sampled_from(["f1", "f2"]),
    follower_order_id=st.one_of(st.none(), st.sampled_from(["F1", "F2", "F3"])),
    detail=st.sampled_from(["a", "b"]),
    leader_order_id=st.one_of(st.none(), st.sampled_from(["L1", "L2"])),
    quantity=st.one_of(st.none(), st.integers(0, 100)), live=st.booleans(),
    duplicate=st.booleans())


@SETTINGS
@given(st.lists(divergences, max_size=12), st.randoms())
def test_alert_never_changes_an_order(found: list[Divergence], rnd: random.Random) -> None:
    alert = plan_fixes(found, policy="alert")
    resync = plan_fixes(found, policy="resync")
    assert not {f.kind for f in alert} & ORDER_CHANGING
    assert alert == [f for f in resync if f.kind not in ORDER_CHANGING]
    changing = [f.kind in ORDER_CHANGING for f in resync]
    assert changing == sorted(changing)  # store-only fixes first
    rnd.shuffle(found)
    assert plan_fixes(found, policy="resync") == resync


@SETTINGS
@given(messy_world())
def test_alert_never_changes_an_order_for_real_findings(world) -> None:
    stored, book = world
    found = diff(stored, book)
    assert not {f.kind for f in plan_fixes(found, policy="alert")} & ORDER_CHANGING


def test_open_statuses_cover_what_a_live_order_reports() -> None:
    # WRONG_* looks at orders in these statuses only; a sanity check on the vocabulary.
    assert {"TRANSIT", "PENDING", "PART_TRADED", "TRIGGERED"} == set(OPEN_STATUSES)


# ---- diff_leader: only what both dialects report alike (issue 9) ---------------------------

# A plain order on Dhan's stream (its sample: DiscQuantity equal to Quantity, Remarks "NR",
# ReasonDescription "CONFIRMED", a year-1 expiry) and in a captured live order-book row
# (disclosedQuantity 0, legName "NA", filled_qty, exchangeTime "0000-00-00 00:00:00").
LIVE_FRAME = {"Type": "order_alert", "Data": {
    "Exchange": "NSE", "Segment": "D", "Source": "P", "SecurityId": "52175",
    "OrderNo": "L1", "ExchOrderNo": "0", "Product": "M", "TxnType": "B", "OrderType": "LMT",
    "Validity": "DAY", "Quantity": 50, "DiscQuantity": 50, "DiscQtyRem": 50,
    "RemainingQuantity": 50, "TradedQty": 0, "Price": 100.0, "TriggerPrice": 0,
    "AvgTradedPrice": 0, "OffMktFlag": "0", "LegNo": 1, "Status": "Pending",
    "OrderDateTime": "2025-01-06 09:30:00", "ExchOrderTime": "0000-00-00 00:00:00",
    "LastUpdatedTime": "2025-01-06 09:30:00", "Remarks": "NR", "ReasonDescription": "CONFIRMED",
    "ExpiryDate": "0001-01-01 00:00:00", "LotSize": 50, "CorrelationId": "", "Symbol": "X"}}
LIVE_ROW = {
    "dhanClientId": "1000000001", "orderId": "L1", "correlationId": "", "orderStatus": "PENDING",
    "transactionType": "BUY", "exchangeSegment": "NSE_FNO", "productType": "MARGIN",
    "orderType": "LIMIT", "validity": "DAY", "tradingSymbol": "X", "securityId": "52175",
    "quantity": 50, "disclosedQuantity": 0, "price": 100.0, "triggerPrice": 0.0,
    "afterMarketOrder": False, "legName": "NA", "createTime": "2025-01-06 09:30:00",
    "updateTime": "2025-01-06 09:30:00", "exchangeTime": "0000-00-00 00:00:00",
    "exchangeOrderId": "0", "omsErrorCode": "0", "omsErrorDescription": "CONFIRMED",
    "drvExpiryDate": "0001-01-01", "drvOptionType": "NA", "averageTradedPrice": 0,
    "filled_qty": 0}


def _wire(frame: dict | None = None, row: dict | None = None) -> tuple[OrderReport, OrderReport]:
    stream = parse_frame(json.dumps(frame or LIVE_FRAME))
    assert stream is not None
    return stream, report_from_rest(row or LIVE_ROW)


def test_diff_leader_finds_no_news_in_the_dialects_differences() -> None:
    stream, rest = _wire()
    assert diff_leader({"L1": stream}, [rest]) == []
    # however the stream's disclosed quantity got through, it is not compared
    assert diff_leader({"L1": replace(stream, disclosed_quantity=50)}, [rest]) == []
    assert diff_leader({"L1": replace(stream, reason="NR")}, [rest]) == []


def test_diff_leader_without_an_update_time_compares_what_is_alike() -> None:
    stream, rest = _wire(row={**LIVE_ROW, "updateTime": "0000-00-00 00:00:00"})
    assert rest.updated_at is None
    assert diff_leader({"L1": stream}, [rest]) == []


def test_diff_leader_still_finds_real_news_in_a_live_row() -> None:
    stream, _ = _wire()
    _, filled = _wire(row={**LIVE_ROW, "orderStatus": "PART_TRADED", "filled_qty": 20,
                           "updateTime": "2025-01-06 09:30:05"})
    _, modified = _wire(row={**LIVE_ROW, "price": 99.5})
    assert diff_leader({"L1": stream}, [filled]) == [filled]
    assert diff_leader({"L1": stream}, [modified]) == [modified]


def test_a_follower_row_in_the_live_dialect_matches_its_mirror() -> None:
    m = mirror(legs={"F1": ("PENDING", 0, 50)})
    row = {**LIVE_ROW, "orderId": "F1", "correlationId": m.correlation_id}
    assert diff([m], [report_from_rest(row)]) == []
