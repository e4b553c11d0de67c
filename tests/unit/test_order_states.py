"""The mirror-order state machine against DESIGN.md's table, and Dhan statuses -> triggers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from copytrade.core.orders import (
    OPEN_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    InvalidTransition,
    MirrorState,
    Transition,
    Trigger,
    cancel_rejected,
    transition,
    trigger_for,
)

S, T = MirrorState, Trigger

# DESIGN.md's table, transcribed independently of the code. PENDING_CANCEL +
# CANCEL_REJECTED ("the status before the cancel") is tested apart: it needs that status.
DESIGN_TABLE: dict[tuple[MirrorState, Trigger], MirrorState] = {
    (S.PLANNED, T.SUBMIT): S.SUBMITTED,
    (S.PLANNED, T.SKIP): S.SKIPPED,
    (S.PLANNED, T.REQUEST_CANCEL): S.SKIPPED,
    (S.SUBMITTED, T.ACK): S.ACCEPTED,
    (S.SUBMITTED, T.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.SUBMITTED, T.FILL): S.FILLED,
    (S.SUBMITTED, T.REJECTED): S.REJECTED,
    (S.SUBMITTED, T.CANCELED): S.CANCELED,
    (S.SUBMITTED, T.EXPIRED): S.EXPIRED,
    (S.SUBMITTED, T.NOT_FOUND): S.REJECTED,
    (S.SUBMITTED, T.REQUEST_CANCEL): S.PENDING_CANCEL,
    (S.ACCEPTED, T.ACK): S.ACCEPTED,
    (S.ACCEPTED, T.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.ACCEPTED, T.FILL): S.FILLED,
    (S.ACCEPTED, T.REQUEST_CANCEL): S.PENDING_CANCEL,
    (S.ACCEPTED, T.CANCELED): S.CANCELED,
    (S.ACCEPTED, T.REJECTED): S.REJECTED,
    (S.ACCEPTED, T.EXPIRED): S.EXPIRED,
    (S.PARTIALLY_FILLED, T.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, T.FILL): S.FILLED,
    (S.PARTIALLY_FILLED, T.REQUEST_CANCEL): S.PENDING_CANCEL,
    (S.PARTIALLY_FILLED, T.CANCELED): S.CANCELED,
    (S.PARTIALLY_FILLED, T.EXPIRED): S.EXPIRED,
    (S.PENDING_CANCEL, T.CANCELED): S.CANCELED,
    (S.PENDING_CANCEL, T.FILL): S.FILLED,
    (S.PENDING_CANCEL, T.EXPIRED): S.EXPIRED,
    (S.PENDING_CANCEL, T.PARTIAL_FILL): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, T.REQUEST_CANCEL): S.PENDING_CANCEL,
    (S.CANCELED, T.PARTIAL_FILL): S.CANCELED,
    (S.CANCELED, T.FILL): S.FILLED,
}

ALL_PAIRS = list(itertools.product(S, T))
OFF_TABLE = [pair for pair in ALL_PAIRS if pair not in DESIGN_TABLE]


# ---- the table ------------------------------------------------------------------------


@pytest.mark.parametrize(("pair", "target"), DESIGN_TABLE.items(),
                         ids=[f"{s}+{t}" for s, t in DESIGN_TABLE])
def test_every_design_row_moves_to_its_target(pair: tuple[MirrorState, Trigger],
                                              target: MirrorState) -> None:
    assert transition(*pair).state is target


def test_the_code_table_is_exactly_the_design_table() -> None:
    assert TRANSITIONS == DESIGN_TABLE


def test_terminal_and_open_states_are_the_designed_ones() -> None:
    assert {S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED, S.SKIPPED} == TERMINAL_STATES
    assert OPEN_STATES.isdisjoint(TERMINAL_STATES)


@pytest.mark.parametrize("pair", OFF_TABLE, ids=[f"{s}+{t}" for s, t in OFF_TABLE])
def test_every_other_pair_raises_or_is_a_stale_report(
        pair: tuple[MirrorState, Trigger]) -> None:
    state, trigger = pair
    try:
        result = transition(state, trigger)
    except InvalidTransition:
        return
    assert result == Transition(state, changed=False), "stale reports change nothing"


@pytest.mark.parametrize("trigger", list(T))
@pytest.mark.parametrize("state", [S.PLANNED, S.SUBMITTED])
def test_nothing_is_stale_before_the_broker_has_answered(state: MirrorState,
                                                         trigger: Trigger) -> None:
    # No report can be "old news" about an order the broker has not acknowledged yet.
    if (state, trigger) not in DESIGN_TABLE:
        with pytest.raises(InvalidTransition):
            transition(state, trigger)


@pytest.mark.parametrize(("state", "trigger"), [
    (S.FILLED, T.FILL), (S.FILLED, T.PARTIAL_FILL), (S.FILLED, T.ACK),
    (S.FILLED, T.CANCELED), (S.FILLED, T.REQUEST_CANCEL), (S.CANCELED, T.CANCELED),
    (S.CANCELED, T.ACK), (S.REJECTED, T.REJECTED), (S.REJECTED, T.NOT_FOUND),
    (S.EXPIRED, T.EXPIRED), (S.EXPIRED, T.PARTIAL_FILL), (S.SKIPPED, T.SKIP),
    (S.SKIPPED, T.REQUEST_CANCEL), (S.PARTIALLY_FILLED, T.ACK), (S.PENDING_CANCEL, T.ACK),
])
def test_repeated_and_late_reports_are_ignored(state: MirrorState, trigger: Trigger) -> None:
    assert transition(state, trigger) == Transition(state, changed=False)


@pytest.mark.parametrize(("state", "trigger"), [
    (S.FILLED, T.REJECTED), (S.FILLED, T.SUBMIT), (S.REJECTED, T.FILL),
    (S.SKIPPED, T.SUBMIT), (S.SKIPPED, T.FILL), (S.EXPIRED, T.FILL),
    (S.PLANNED, T.ACK), (S.PLANNED, T.FILL), (S.SUBMITTED, T.SUBMIT),
    (S.PARTIALLY_FILLED, T.REJECTED), (S.ACCEPTED, T.NOT_FOUND),
])
def test_impossible_reports_raise(state: MirrorState, trigger: Trigger) -> None:
    with pytest.raises(InvalidTransition, match=f"{trigger} is not allowed in state {state}"):
        transition(state, trigger)


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=[f"{s}+{t}" for s, t in ALL_PAIRS])
def test_terminal_states_never_move_backwards(pair: tuple[MirrorState, Trigger]) -> None:
    state, trigger = pair
    if state not in TERMINAL_STATES:
        return
    try:
        result = transition(state, trigger).state
    except InvalidTransition:
        return
    assert result is state or (state, result) == (S.CANCELED, S.FILLED)


@pytest.mark.parametrize(("state", "trigger", "changed"), [
    (S.ACCEPTED, T.ACK, False),  # TRANSIT -> PENDING, or the same report twice
    (S.PENDING_CANCEL, T.REQUEST_CANCEL, False),  # a second cancel request: nothing new
    (S.PARTIALLY_FILLED, T.PARTIAL_FILL, True),  # more units filled: record them
    (S.PENDING_CANCEL, T.PARTIAL_FILL, True),
    (S.CANCELED, T.PARTIAL_FILL, True),  # a late fill report of the cancelled remainder
    (S.SUBMITTED, T.ACK, True),
    (S.CANCELED, T.FILL, True),
])
def test_changed_says_whether_there_is_something_to_record(
        state: MirrorState, trigger: Trigger, changed: bool) -> None:
    assert transition(state, trigger).changed is changed


# ---- a rejected cancel ----------------------------------------------------------------


def test_cancel_rejected_needs_the_state_before_the_cancel() -> None:
    with pytest.raises(InvalidTransition):
        transition(S.PENDING_CANCEL, T.CANCEL_REJECTED)


@pytest.mark.parametrize("before", [S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED])
def test_cancel_rejected_returns_to_the_state_before_the_cancel(before: MirrorState) -> None:
    pending = transition(before, T.REQUEST_CANCEL).state
    assert pending is S.PENDING_CANCEL
    assert cancel_rejected(before) == Transition(before, changed=True)


# ---- Dhan status -> trigger -----------------------------------------------------------


@pytest.mark.parametrize(("status", "traded", "quantity", "expected"), [
    # Open words: ACK, unless units have traded (fills come from quantities, not words).
    ("TRANSIT", 0, 65, T.ACK),
    ("PENDING", 0, 65, T.ACK),
    ("TRIGGERED", 0, 65, T.ACK),
    ("MODIFIED", 0, 65, T.ACK),
    ("CONFIRM", 0, 65, T.ACK),
    ("PENDING", 65, 130, T.PARTIAL_FILL),
    ("TRIGGERED", 65, 130, T.PARTIAL_FILL),
    # Every unit traded is a fill whatever the word: the normaliser refuses a report whose
    # traded quantity exceeds the order's, so "all traded" can be believed (one map with
    # the mirrors' since issue 8: core.orders.trigger_for_legs).
    ("PENDING", 130, 130, T.FILL),
    # Fill words: partial or full from the quantities.
    ("PART_TRADED", 65, 130, T.PARTIAL_FILL),
    ("PART_TRADED", 130, 130, T.FILL),
    ("TRADED", 130, 130, T.FILL),
    ("TRADED", 65, 130, T.CANCELED),  # ended short: the rest will not come
    ("TRADED", 195, 130, T.FILL),
    ("TRADED", 0, 130, T.CANCELED),  # ended with nothing traded: not a fill of anything
    ("PART_TRADED", 0, 130, T.ACK),
    # Ends: the word decides, whatever traded before.
    ("CANCELLED", 0, 130, T.CANCELED),
    ("CANCELLED", 65, 130, T.CANCELED),
    ("REJECTED", 0, 130, T.REJECTED),
    ("EXPIRED", 0, 130, T.EXPIRED),
    ("EXPIRED", 65, 130, T.EXPIRED),
    # Super orders: CLOSED is a fill when everything traded, else a cancel.
    ("CLOSED", 130, 130, T.FILL),
    ("CLOSED", 65, 130, T.CANCELED),
    ("CLOSED", 0, 130, T.CANCELED),
    # The stream's title case.
    ("Cancelled", 0, 130, T.CANCELED),
    ("Traded", 130, 130, T.FILL),
    ("Pending", 0, 130, T.ACK),
    ("Part_Traded", 65, 130, T.PARTIAL_FILL),
])
def test_trigger_for_each_dhan_status(status: str, traded: int, quantity: int,
                                      expected: Trigger) -> None:
    assert trigger_for(status, traded, quantity) is expected


@pytest.mark.parametrize("status", ["", "OPEN", "UNKNOWN", "COMPLETE", "TRADED_PARTIALLY"])
def test_unknown_statuses_give_no_trigger(status: str) -> None:
    assert trigger_for(status, 0, 65) is None


# ---- a property over report sequences -------------------------------------------------


def _step(state: MirrorState, before_cancel: MirrorState,
          trigger: Trigger) -> tuple[MirrorState, MirrorState]:
    """Apply one report as the engine does: stale ones change nothing, invalid ones are
    skipped (recorded as anomalies), a rejected cancel returns to the state before it."""
    if state is S.PENDING_CANCEL and trigger is T.CANCEL_REJECTED:
        return cancel_rejected(before_cancel).state, before_cancel
    try:
        after = transition(state, trigger).state
    except InvalidTransition:
        return state, before_cancel
    if after is S.PENDING_CANCEL and state is not S.PENDING_CANCEL:
        before_cancel = state
    elif state is S.PENDING_CANCEL and trigger is T.PARTIAL_FILL:
        before_cancel = S.PARTIALLY_FILLED  # the engine's part: fills arrived meanwhile
    return after, before_cancel


@given(st.lists(st.sampled_from(list(T)), max_size=40))
@example([T.SUBMIT, T.ACK, T.REQUEST_CANCEL, T.PARTIAL_FILL, T.CANCEL_REJECTED, T.ACK])
@example([T.SUBMIT, T.REQUEST_CANCEL, T.CANCELED, T.PARTIAL_FILL, T.FILL, T.CANCELED])
def test_fills_and_ends_never_go_backwards(triggers: list[Trigger]) -> None:
    state = before_cancel = S.PLANNED
    filled_some = False
    for trigger in triggers:
        previous = state
        state, before_cancel = _step(state, before_cancel, trigger)
        if previous is S.FILLED:
            assert state is S.FILLED
        if previous in TERMINAL_STATES:
            assert state is previous or (previous, state) == (S.CANCELED, S.FILLED)
        filled_some |= state in (S.PARTIALLY_FILLED, S.FILLED) or (
            previous is S.PENDING_CANCEL and trigger is T.PARTIAL_FILL)
        if filled_some:
            assert state not in (S.PLANNED, S.SUBMITTED, S.ACCEPTED)
        if previous is not S.PLANNED:
            assert state is not S.PLANNED


def test_slices_are_one_mirror_for_the_map() -> None:
    from copytrade.core.orders import trigger_for_legs

    legs = {"1": ("TRADED", 1800, 1800), "2": ("PART_TRADED", 200, 700)}
    assert trigger_for_legs(legs, 2500) is T.PARTIAL_FILL
    assert trigger_for_legs({**legs, "2": ("CANCELLED", 200, 700)}, 2500) is T.CANCELED
    assert trigger_for_legs({**legs, "2": ("TRADED", 700, 700)}, 2500) is T.FILL
    # a super order closed short is cancelled, never a rejection of what traded
    assert trigger_for_legs({"1": ("CLOSED", 65, 130)}, 130) is T.CANCELED
