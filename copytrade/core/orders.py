"""The mirror-order state machine: a transition table as data (DESIGN.md), and Dhan's
status words mapped onto its triggers by quantities, not by the word alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class MirrorState(StrEnum):
    PLANNED = "PLANNED"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    SKIPPED = "SKIPPED"


class Trigger(StrEnum):
    SUBMIT = "SUBMIT"
    SKIP = "SKIP"
    ACK = "ACK"
    PARTIAL_FILL = "PARTIAL_FILL"
    FILL = "FILL"
    REQUEST_CANCEL = "REQUEST_CANCEL"
    CANCEL_REJECTED = "CANCEL_REJECTED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    NOT_FOUND = "NOT_FOUND"


S, T = MirrorState, Trigger
TERMINAL_STATES = frozenset({S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED, S.SKIPPED})
OPEN_STATES = frozenset({S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.PENDING_CANCEL})

TRANSITIONS: dict[tuple[MirrorState, Trigger], MirrorState] = {
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
    (S.CANCELED, T.PARTIAL_FILL): S.CANCELED,  # a late fill report of a cancelled remainder
    (S.CANCELED, T.FILL): S.FILLED,  # the cancel lost the race: it filled first
}

# Reports that may arrive late or twice: in these states they are ignored, never an error.
_STALE: dict[MirrorState, frozenset[Trigger]] = {
    S.ACCEPTED: frozenset(),
    S.PARTIALLY_FILLED: frozenset({T.ACK}),
    S.PENDING_CANCEL: frozenset({T.ACK}),
    S.FILLED: frozenset({T.ACK, T.PARTIAL_FILL, T.FILL, T.REQUEST_CANCEL, T.CANCELED,
                         T.EXPIRED}),
    S.CANCELED: frozenset({T.ACK, T.CANCELED, T.REQUEST_CANCEL, T.EXPIRED}),
    S.REJECTED: frozenset({T.ACK, T.REJECTED, T.REQUEST_CANCEL, T.NOT_FOUND}),
    S.EXPIRED: frozenset({T.ACK, T.EXPIRED, T.REQUEST_CANCEL, T.PARTIAL_FILL}),
    S.SKIPPED: frozenset({T.SKIP, T.REQUEST_CANCEL}),
}


class InvalidTransition(ValueError):
    pass


@dataclass(frozen=True)
class Transition:
    state: MirrorState
    changed: bool  # False: a repeated or stale report, nothing to record


def transition(state: MirrorState, trigger: Trigger) -> Transition:
    """Next state; a stale or repeated report leaves the state as it is; any other pair
    that the table does not name raises."""
    target = TRANSITIONS.get((state, trigger))
    if target is not None:
        return Transition(target, target != state or trigger in (T.PARTIAL_FILL,))
    if trigger in _STALE.get(state, frozenset()):
        return Transition(state, False)
    raise InvalidTransition(f"{trigger} is not allowed in state {state}")


def cancel_rejected(previous: MirrorState) -> Transition:
    """PENDING_CANCEL + CANCEL_REJECTED returns to the state before the cancel request."""
    return Transition(previous, True)


_OPEN_WORDS = frozenset({"TRANSIT", "PENDING", "TRIGGERED", "MODIFIED", "CONFIRM",
                         "PART_TRADED"})
_ENDED_WORDS = frozenset({"TRADED", "CANCELLED", "REJECTED", "EXPIRED", "CLOSED"})


def trigger_for_legs(legs: Mapping[str, Sequence], target: int) -> Trigger:
    """THE map from what the broker reports to a mirror's trigger: every follower order of
    the mirror (one, or the slices of a sliced order) as (status, traded, quantity), and
    the units the mirror wants. Fills are decided from quantities, never from the word:
    enough traded is a FILL whatever the statuses say; all ended without enough is an
    EXPIRED (any expired), a CANCELED (any cancelled, closed or traded short: the rest
    will not come) or a REJECTED; otherwise still working (PARTIAL_FILL or ACK). A word
    outside Dhan's vocabulary counts as working."""
    traded = sum(int(leg[1]) for leg in legs.values())
    if target > 0 and traded >= target:
        return T.FILL
    words = [str(leg[0]).upper() for leg in legs.values()]
    if words and all(word in _ENDED_WORDS for word in words):
        if "EXPIRED" in words:
            return T.EXPIRED
        if {"CANCELLED", "CLOSED", "TRADED"} & set(words):
            return T.CANCELED
        return T.REJECTED
    return T.PARTIAL_FILL if traded > 0 else T.ACK


def trigger_for(status: str, traded: int, quantity: int) -> Trigger | None:
    """One report's trigger (trigger_for_legs of that one order); None for a word outside
    Dhan's vocabulary, which the caller records as an anomaly and re-reads."""
    if status.upper() not in _OPEN_WORDS | _ENDED_WORDS:
        return None
    return trigger_for_legs({"": (status, traded, quantity)}, quantity)
