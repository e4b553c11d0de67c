"""The trading calendar in follow: is a follower's segment taking orders now, and if not,
why (the reason a leader order is not sent). Fails closed: past the calendar's
valid-through date nothing is sent, and follow refuses to start (see `check_calendar`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from copytrade.core.calendar import (
    Calendar,
    CalendarCoverageError,
    CalendarDataError,
    UnknownSegmentError,
    expires_within,
    is_open_for_orders,
    status,
)
from copytrade.core.ist import ist_clock
from copytrade.errors import CalendarError

EXPIRY_WARNING_DAYS = 30
SETTING_HINT = "set market_hours = false in [settings] to send at any hour (paper trading)"


class MarketHours:
    def __init__(self, calendar: Calendar,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.calendar = calendar
        self.clock = clock

    def closed_reason(self, segment: str) -> str:
        """"" while `segment` takes orders (pre-open order entry or the normal market);
        else why not, as the reason a leader order is not sent."""
        now = self.clock()
        try:
            if is_open_for_orders(self.calendar, segment, now):
                return ""
            state = status(self.calendar, segment, now)
        except UnknownSegmentError:
            return f"{segment} is not in the trading calendar: not sent"
        except CalendarCoverageError:
            return (f"the trading calendar covers up to {self.calendar.valid_through}: not "
                    "sent (upgrade copytrade for a newer calendar)")
        return (f"{segment} is {state.state.value} ({state.label}) at {ist_clock(now)}: not "
                "sent")

    def expiry_warning(self) -> str | None:
        """A warning while the calendar runs out within EXPIRY_WARNING_DAYS."""
        if not expires_within(self.calendar, self.clock(), EXPIRY_WARNING_DAYS):
            return None
        return (f"the trading calendar is valid through {self.calendar.valid_through}: "
                "upgrade copytrade before then, or follow will send nothing")


def check_calendar(load: Callable[[], Calendar],
                   clock: Callable[[], datetime]) -> MarketHours:
    """The calendar for follow, or CalendarError (exit 13) if it is unreadable or has run
    out: follow fails closed rather than guessing the market's hours."""
    try:
        calendar = load()
    except CalendarDataError as exc:
        raise CalendarError(f"the trading calendar cannot be read: {exc}; "
                            f"{SETTING_HINT}") from None
    now = clock()
    if now >= calendar.ends:
        raise CalendarError(f"the trading calendar is valid through {calendar.valid_through}"
                            f" and it is past that: upgrade copytrade, or {SETTING_HINT}")
    return MarketHours(calendar, clock)
