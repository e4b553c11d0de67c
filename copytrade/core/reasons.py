"""Why a mirror ended the way it did, as codes stored beside the human text.

Behaviour keys on the code, never on the wording, so a reason can be reworded (or carry
a broker's text) without changing what follow does next.
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    NONE = ""
    BELOW_ONE_LOT = "below_one_lot"  # sizing: a larger leader order may make a lot
    REDUCED_TO_FILLED = "reduced_to_filled"  # leader cut its order to what we had filled
    RESIZED_AWAY = "resized_away"  # leader's new size sizes to nothing for this follower
    CANCELLED_OUTSIDE = "cancelled_outside"  # the follower cancelled it in Dhan's app


# A mirror ended with one of these takes a top-up when the leader grows its order.
REOPENABLE_SKIPS = frozenset({ReasonCode.BELOW_ONE_LOT})
REOPENABLE_CANCELS = frozenset({ReasonCode.REDUCED_TO_FILLED, ReasonCode.RESIZED_AWAY})
