"""Intents: the state-changing calls committed before they are sent.

Kinds and statuses are closed vocabularies, and how a status may move is a table, as the
mirror state machine is: an intent is SENDING until exactly one outcome finishes it.
"""

from __future__ import annotations

from enum import StrEnum


class IntentAction(StrEnum):
    PLACE = "PLACE"
    MODIFY = "MODIFY"
    CANCEL = "CANCEL"


class IntentStatus(StrEnum):
    SENDING = "SENDING"  # committed; the call may or may not have left
    DONE = "DONE"  # the broker did it (or we found it done)
    REFUSED = "REFUSED"  # a definitive no, or not sent for a recorded reason
    THROTTLED = "THROTTLED"  # still throttled after every retry
    UNKNOWN = "UNKNOWN"  # no answer, and lookups did not find it
    NOT_FOUND = "NOT_FOUND"  # the order to change does not exist at the broker
    AUTH = "AUTH"  # the account's token was refused: resumed once it is renewed
    SKIPPED = "SKIPPED"  # nothing to send any more (the mirror moved on)
    CHECKED = "CHECKED"  # a cancel that met ended orders: read back, nothing left open


FINISHED = frozenset(IntentStatus) - {IntentStatus.SENDING}
# from -> the statuses it may move to; a finished intent never moves again.
ALLOWED_MOVES: dict[IntentStatus, frozenset[IntentStatus]] = {
    IntentStatus.SENDING: FINISHED,
    **{status: frozenset() for status in FINISHED},
}


class InvalidIntentMove(ValueError):
    pass


def check_move(before: IntentStatus, after: IntentStatus) -> None:
    if after not in ALLOWED_MOVES[before]:
        raise InvalidIntentMove(f"intent cannot move from {before} to {after}")
