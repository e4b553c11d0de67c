"""Bracket (BO) and cover (CO) orders: Dhan's checks on them and their exit legs.

A BO or CO is one order id with legs (dhan-api.md): leg 1, the entry, is the order as
placed; once the entry ends with something traded, leg 2 (stop-loss) and, for a BO, leg 3
(target) are placed to close that position. The exit legs are one-cancels-other: what one
closes, the other no longer has to close, so together they never close more than the
entry opened.

The pure functions here decide what the legs are and what may be done to them; `Brackets`
drives their lifecycle through the book's own status, fill and match steps, so legs are
published, filled and margined like any order.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from copytrade.sim.errors import bad_input, order_error
from copytrade.sim.instruments import on_tick
from copytrade.sim.orders import ENTRY_LEG, SimOrder
from copytrade.sim.validation import (
    TRIGGERED_TYPES,
    ModifyRequest,
    PlaceRequest,
    check_prices,
)

if TYPE_CHECKING:
    from copytrade.sim.book import Book

STOP_LOSS_LEG = "STOP_LOSS_LEG"
TARGET_LEG = "TARGET_LEG"
BRACKET_SEGMENTS = ("NSE_EQ", "BSE_EQ", "NSE_FNO", "BSE_FNO")
ENTRY_ORDER_TYPES = ("LIMIT", "MARKET")
# What a modify may turn each exit leg into; MARKET means "exit now".
EXIT_ORDER_TYPES = {
    STOP_LOSS_LEG: ("STOP_LOSS_MARKET", "STOP_LOSS", "MARKET"),
    TARGET_LEG: ("LIMIT", "MARKET"),
}
OPPOSITE_SIDE = {"BUY": "SELL", "SELL": "BUY"}


# ---- place and modify checks ---------------------------------------------------------------

def check_place(request: PlaceRequest, last_price: float) -> None:
    """Dhan's rules for a BO/CO entry beyond the generic ones (validation.parse_place)."""
    product, segment = request.product_type, request.instrument.segment
    if segment not in BRACKET_SEGMENTS:
        raise order_error(f"{product} orders are not allowed on {segment}; only on "
                          f"{', '.join(BRACKET_SEGMENTS)}")
    check_entry_type(product, request.order_type)
    if request.after_market_order:
        raise bad_input(f"{product} orders cannot be after market orders (AMO)")
    if product == "CO":
        check_cover_trigger(request.transaction_type, request.trigger_price,
                            request.price or last_price)


def check_entry_type(product: str, order_type: str) -> None:
    if order_type not in ENTRY_ORDER_TYPES:
        raise bad_input(f"Invalid orderType {order_type} for a {product} order; expected "
                        f"{' or '.join(ENTRY_ORDER_TYPES)}")


def check_cover_trigger(side: str, trigger: float, entry_price: float) -> None:
    """A CO's stop-loss trigger lies on the losing side of its entry price."""
    if trigger <= 0:
        raise bad_input("triggerPrice is required for CO orders: the stop-loss trigger, "
                        "more than 0")
    if side == "BUY" and trigger >= entry_price:
        raise bad_input(f"triggerPrice {trigger} of a BUY CO must be below the entry price "
                        f"{entry_price}")
    if side == "SELL" and trigger <= entry_price:
        raise bad_input(f"triggerPrice {trigger} of a SELL CO must be above the entry price "
                        f"{entry_price}")


def check_entry_modify(entry: SimOrder, request: ModifyRequest, last_price: float) -> None:
    check_entry_type(entry.product_type, request.order_type)
    if entry.product_type == "CO":
        check_cover_trigger(entry.transaction_type, request.trigger_price,
                            request.price or last_price)


def check_exit_modify(leg: SimOrder, request: ModifyRequest) -> None:
    allowed = EXIT_ORDER_TYPES[leg.leg_name]
    if request.order_type not in allowed:
        raise bad_input(f"Invalid orderType {request.order_type} for the {leg.leg_name}; "
                        f"expected one of {', '.join(allowed)}")
    # An exit leg closes what the entry opened: its size follows the position, not the user.
    if request.quantity != leg.quantity:
        raise bad_input(f"Quantity {request.quantity} of the {leg.leg_name} cannot change "
                        f"from {leg.quantity}")
    check_prices(request.order_type, leg.transaction_type, request.price, request.trigger_price)
    for price in (request.price, request.trigger_price):
        if request.order_type != "MARKET" and price and not on_tick(
                price, leg.instrument.tick_size):
            raise bad_input(f"Price {price} is not a multiple of the tick size")


# ---- the legs ---------------------------------------------------------------------------

def tick_away(price: float, tick: float, *, up: bool) -> float:
    """`price` on the tick, rounded up or down (callers round away from the entry price, so
    a leg never sits closer to the entry than asked), and at least one tick."""
    ticks = math.ceil(price / tick - 1e-9) if up else math.floor(price / tick + 1e-9)
    return round(max(ticks, 1) * tick, 6)


def stop_loss_trigger(entry: SimOrder) -> float:
    if entry.product_type == "CO":
        return entry.trigger_price
    long = entry.transaction_type == "BUY"
    distance = entry.bo_stop_loss_value or 0.0
    level = entry.average_price - distance if long else entry.average_price + distance
    return tick_away(level, entry.instrument.tick_size, up=not long)


def target_price(entry: SimOrder) -> float:
    long = entry.transaction_type == "BUY"
    distance = entry.bo_profit_value or 0.0
    level = entry.average_price + distance if long else entry.average_price - distance
    return tick_away(level, entry.instrument.tick_size, up=long)


def exit_leg(entry: SimOrder, leg_name: str, exchange_order_id: str, now: datetime) -> SimOrder:
    """Leg 2 or 3 of an ended entry: the opposite side, for what the entry traded, PENDING;
    same order id, correlation id, product and BO values."""
    stop = leg_name == STOP_LOSS_LEG
    return replace(
        entry, exchange_order_id=exchange_order_id, leg_name=leg_name,
        transaction_type=OPPOSITE_SIDE[entry.transaction_type],
        order_type="STOP_LOSS_MARKET" if stop else "LIMIT", validity="DAY",
        quantity=entry.filled_quantity, disclosed_quantity=0,
        price=0.0 if stop else target_price(entry),
        trigger_price=stop_loss_trigger(entry) if stop else 0.0,
        after_market_order=False, amo_time="", created=now, updated=now, status="PENDING",
        filled_quantity=0, average_price=0.0, last_fill_price=0.0, triggered=False,
        modifications=0, reason="", oms_error_code="",
        trades=[], exit_legs=[],  # fresh lists: replace() would share the entry's
    )


def exit_leg_names(entry: SimOrder) -> tuple[str, ...]:
    return (STOP_LOSS_LEG, TARGET_LEG) if entry.product_type == "BO" else (STOP_LOSS_LEG,)


def leg_named(entry: SimOrder, leg_name: str) -> SimOrder:
    """The leg a modify addresses; DH-906 when it does not exist (yet)."""
    for leg in entry.legs:
        if leg.leg_name == leg_name:
            return leg
    raise order_error(f"Order {entry.order_id} has no {leg_name} to modify")


def sibling_of(entry: SimOrder, leg: SimOrder) -> SimOrder | None:
    return next((other for other in entry.exit_legs if other is not leg), None)


class Brackets:
    """The lifecycle of exit legs, run by the book under its lock."""

    def __init__(self, book: Book) -> None:
        self.book = book

    def on_status(self, order: SimOrder) -> None:
        """An entry that ended with something traded gets its exit legs, for that quantity
        (TRADED, or CANCELLED / EXPIRED / REJECTED after a partial fill)."""
        if (order.leg_name != ENTRY_LEG or order.is_open or not order.filled_quantity
                or order.exit_legs):
            return
        book = self.book
        now = book.clock.now()
        order.exit_legs = [exit_leg(order, name, book._new_exchange_order_id(), now)
                           for name in exit_leg_names(order)]
        for leg in order.exit_legs:
            book._publish(leg)
        for leg in order.exit_legs:  # a placement is a match opportunity, as for any order
            book._match(leg)

    def on_exit_fill(self, leg: SimOrder, quantity: int) -> None:
        """One-cancels-other: a full fill cancels the sibling, a partial one shrinks it."""
        sibling = sibling_of(self.book.orders[leg.order_id], leg)
        if sibling is None or not sibling.is_open:
            return
        if leg.remaining:
            sibling.quantity = max(sibling.filled_quantity, sibling.quantity - quantity)
        if leg.remaining and sibling.remaining:
            self.book._set_status(sibling, sibling.status)  # a frame with the new Quantity
        else:
            self.book._finish(sibling, "CANCELLED", f"Cancelled as the {leg.leg_name} traded")

    def modify_exit_leg(self, leg: SimOrder, request: ModifyRequest, source: str) -> SimOrder:
        check_exit_modify(leg, request)
        leg.modifications += 1
        leg.source = source
        if request.order_type == "MARKET":
            leg.order_type, leg.price, leg.trigger_price = "MARKET", 0.0, 0.0
            self.book._set_status(leg, leg.status)
            self.exit_now(leg)
            return leg
        leg.order_type = request.order_type
        leg.price = request.price
        triggered_type = request.order_type in TRIGGERED_TYPES
        leg.trigger_price = request.trigger_price if triggered_type else 0.0
        if not triggered_type:
            leg.triggered = False
        self.book._set_status(leg, leg.status)
        self.book._match(leg)
        return leg

    def has_open_exit(self, entry: SimOrder) -> bool:
        return any(leg.is_open for leg in entry.exit_legs)

    def exit(self, entry: SimOrder, source: str) -> SimOrder:
        """Cancel of a BO/CO whose entry is done: its position is closed at once by the
        stop-loss leg (the target is then cancelled by OCO); the leg that exited."""
        leg = next(leg for leg in entry.exit_legs if leg.is_open)
        leg.source = source
        self.exit_now(leg)
        return leg

    def exit_now(self, leg: SimOrder) -> None:
        """All that is left of the leg fills at the last price, whatever the fill size."""
        self.book._fill(leg, leg.remaining, self.book.prices[leg.instrument.security_id])
