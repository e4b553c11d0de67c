"""The mirror-order state machine: a transition table as data (DESIGN.md), and Dhan's
status words mapped onto its triggers by quantities, not by the word alone."""

from __future__ import annotations

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


def trigger_for(status: str, traded: int, quantity: int) -> Trigger | None:
    """Dhan status + quantities -> trigger; None for a word we do not know (an anomaly)."""
    word = status.upper()
    if word in ("TRANSIT", "PENDING", "TRIGGERED", "MODIFIED", "CONFIRM"):
        return T.PARTIAL_FILL if 0 < traded < quantity else T.ACK
    if word in ("PART_TRADED", "TRADED"):
        if quantity and traded >= quantity:
            return T.FILL
        return T.PARTIAL_FILL if traded > 0 else T.ACK
    return {"CANCELLED": T.CANCELED, "REJECTED": T.REJECTED, "EXPIRED": T.EXPIRED,
            "CLOSED": T.FILL if quantity and traded >= quantity else T.CANCELED}.get(word)
