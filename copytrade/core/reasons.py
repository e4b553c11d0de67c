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
    # A leader market order first seen filled, chased with an IOC limit order bounded by
    # max_price_drift_percent: decided once, never modified; the exchange ends it.
    LATE_MARKET_IOC = "late_market_ioc"
    IOC_UNFILLED = "ioc_unfilled"  # that IOC ended with (some of) it unfilled


# A mirror ended with one of these takes a top-up when the leader grows its order.
REOPENABLE_SKIPS = frozenset({ReasonCode.BELOW_ONE_LOT})
REOPENABLE_CANCELS = frozenset({ReasonCode.REDUCED_TO_FILLED, ReasonCode.RESIZED_AWAY})
# Mirrors chasing a late market order with an IOC limit.
IOC_CHASES = frozenset({ReasonCode.LATE_MARKET_IOC, ReasonCode.IOC_UNFILLED})


def ioc_placed_text(limit: float, fill: float, drift_percent: float) -> str:
    return (f"leader's market order filled at {fill:g} before it was seen: IOC limit at "
            f"{limit:g} (max_price_drift_percent {drift_percent:g})")


def ioc_unfilled_text(limit: float, drift_percent: float, filled: int, quantity: int) -> str:
    """The IOC met no price inside the bound: the market moved past it."""
    what = ("was not filled" if filled == 0
            else f"filled {filled} of {quantity}; the rest was not")
    return (f"price moved more than {drift_percent:.1f} % since the leader's fill: the IOC "
            f"limit order at {limit:g} {what}")
