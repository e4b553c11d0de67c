"""How many units a follower trades for one leader order (pure; DESIGN.md "Sizing").

Followers are configured in lots, never units. The rules, in the order applied:

1. Allow/deny lists (segment, product, security) -> Skip naming the list. Checked first:
   they do not depend on size, and "denied" is the more useful reason to read.
2. Lot size unknown (None or < 1) -> Skip; a lot size is never guessed.
3. Entry or exit, from signed net positions (`NetPositions`, Dhan's `netQty` sign:
   + long, - short). A SELL reduces a long, a BUY reduces a short; the part of the
   order up to the leader's open quantity is an exit, anything beyond it (a reversal,
   e.g. long 100 then SELL 150) is an entry. No positions given -> all entry.
4. Entry: leader lots = units / lot size as an exact fraction (a leader quantity that
   is not a whole number of lots is not floored first: the mode's factor is applied to
   the exact ratio and the result is floored once), then
     multiplier:    floor(leader_lots * value)
     fixed_lots:    value (a whole number of lots, whatever the leader traded)
     capital_ratio: floor(leader_lots * follower_funds / leader_funds * value)
   Below one lot -> Skip saying what was computed; never rounded up.
   Arithmetic is exact (`Fraction` of each float's shortest repr), so 0.3 * 10 lots is
   3 lots, not 2.999... floored to 2.
5. Entry caps: above max_quantity or max_order_value -> reduced to the cap, floored to
   whole lots (noted on the result); a cap below one lot -> Skip. Order value is price *
   units; an unpriced order (MARKET, SL-M) uses the caller's reference price, and with
   neither the value cannot be checked -> Skip (fail closed).
6. Exit: the follower's open quantity on the same side, scaled by the leader's
   exit / open before, floored to lots: never more than the follower holds. An exit of
   the leader's whole position closes the follower's whole position (floored to lots,
   which in F&O is all of it). Quantity caps do NOT apply to exits: a capped exit would
   leave the follower holding what the leader has closed, which is the larger risk.
7. Disclosed quantity keeps the leader's fraction, rounded UP to whole lots: never a
   smaller fraction than the leader's, so Dhan's "> 30 % of quantity" rule holds
   whenever the leader's did. Still <= 30 %, or the whole order -> 0 (no disclosure).
8. Above the freeze limit -> `slice=True`: the caller uses Dhan's slicing endpoint.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from fractions import Fraction

from copytrade.core.events import OrderReport
from copytrade.core.reasons import ReasonCode

UNPRICED_ORDER_TYPES = frozenset({"MARKET", "STOP_LOSS_MARKET"})
DISCLOSED_MIN_FRACTION = Fraction(3, 10)  # Dhan: disclosed must be MORE than 30 %


class SizingMode(StrEnum):
    MULTIPLIER = "multiplier"
    FIXED_LOTS = "fixed_lots"
    CAPITAL_RATIO = "capital_ratio"


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


@dataclass(frozen=True)
class SizingRule:
    """A follower's sizing: `value` is the multiplier, the number of lots, or (for
    capital_ratio) a factor on the funds ratio, 1.0 meaning "in proportion"."""

    mode: SizingMode
    value: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", SizingMode(self.mode))
        if not math.isfinite(self.value) or self.value <= 0:
            raise ValueError(f"{self.mode} value must be a positive number, got {self.value}")
        if self.mode is SizingMode.FIXED_LOTS and self.value != int(self.value):
            raise ValueError(f"fixed_lots must be a whole number of lots, got {self.value}")


@dataclass(frozen=True)
class LeaderOrder:
    """The leader order as sizing needs it. `quantity` is in units; `price` is the limit
    price, 0 for unpriced orders (MARKET, STOP_LOSS_MARKET)."""

    security_id: str
    exchange_segment: str
    product_type: str
    transaction_type: Side
    quantity: int
    price: float = 0.0
    disclosed_quantity: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "transaction_type", Side(self.transaction_type.upper()))

    @classmethod
    def from_report(cls, report: OrderReport) -> LeaderOrder:
        unpriced = report.order_type.upper() in UNPRICED_ORDER_TYPES
        return cls(report.security_id, report.exchange_segment, report.product_type,
                   Side(report.transaction_type.upper()), report.quantity,
                   0.0 if unpriced else report.price, report.disclosed_quantity)


@dataclass(frozen=True)
class Capital:
    """Available funds of each account, in rupees (Dhan's fund limits, refreshed)."""

    leader: float
    follower: float


@dataclass(frozen=True)
class NetPositions:
    """Signed net quantities in the order's security and product (Dhan's `netQty`:
    + long, - short): the leader's just BEFORE this order, the follower's as it actually
    stands now (never inferred from the leader's)."""

    leader_before: int
    follower: int


def _names(values: Iterable[str] | str) -> frozenset[str]:
    if isinstance(values, str):  # one name, not its characters
        values = [values]
    return frozenset(str(value).strip().upper() for value in values or ())


@dataclass(frozen=True)
class Caps:
    """Per-follower limits. An empty allow list means "no allow list" (everything passes
    it), so a config that leaves the key out cannot silently block every order."""

    max_quantity: int | None = None  # units per order
    max_order_value: float | None = None  # rupees per order
    allowed_segments: frozenset[str] = field(default_factory=frozenset)
    denied_segments: frozenset[str] = field(default_factory=frozenset)
    allowed_products: frozenset[str] = field(default_factory=frozenset)
    denied_products: frozenset[str] = field(default_factory=frozenset)
    allowed_securities: frozenset[str] = field(default_factory=frozenset)
    denied_securities: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for name in ("allowed_segments", "denied_segments", "allowed_products",
                     "denied_products", "allowed_securities", "denied_securities"):
            object.__setattr__(self, name, _names(getattr(self, name)))
        if self.max_quantity is not None and self.max_quantity <= 0:
            raise ValueError(f"max_quantity must be positive, got {self.max_quantity}")
        if self.max_order_value is not None and not 0 < self.max_order_value < math.inf:
            raise ValueError(f"max_order_value must be positive, got {self.max_order_value}")


NO_CAPS = Caps()


@dataclass(frozen=True)
class SizedOrder:
    quantity: int  # units, a whole number of lots
    lots: int
    disclosed_quantity: int = 0
    slice: bool = False  # above the freeze limit: place through the slicing endpoint
    notes: tuple[str, ...] = ()  # what changed the size on the way (caps, exits), for audit


@dataclass(frozen=True)
class Skip:
    reason: str
    code: ReasonCode = ReasonCode.NONE


@dataclass(frozen=True)
class _Part:
    """One part of an order (its exit or its entry) as sized: units, or why none."""

    units: int = 0
    notes: tuple[str, ...] = ()
    reason: str = ""
    label: str = ""  # "exit" / "reversal" when an order has both parts
    below_one_lot: bool = False  # the reason is a size below one lot


def size_order(rule: SizingRule, order: LeaderOrder, lot_size: int | None, *,
               capital: Capital | None = None, positions: NetPositions | None = None,
               caps: Caps = NO_CAPS, freeze_limit: int | None = None,
               reference_price: float | None = None) -> SizedOrder | Skip:
    """The follower's order for one leader order; see the module docstring for the rules.

    `reference_price` prices unpriced orders for the max_order_value cap (e.g. the last
    traded price, or the trigger price of an SL-M order).
    """
    refusal = _list_refusal(order, caps) or _quantity_refusal(order)
    if refusal:
        return Skip(refusal)
    if lot_size is None or lot_size < 1:
        return Skip(f"lot size unknown for {order.security_id}")
    exit_units, entry_units = _split_exit_entry(order, positions)
    parts: list[_Part] = []
    if exit_units:
        assert positions is not None  # exit units come only from positions
        parts.append(_size_exit(order.transaction_type, exit_units, positions, lot_size))
    if entry_units:
        parts.append(_size_entry(rule, entry_units, lot_size, capital, caps,
                                 _value_price(order, reference_price)))
    if len(parts) == 2:
        parts = [replace(parts[0], label="exit"), replace(parts[1], label="reversal")]
    return _combine(parts, order, lot_size, freeze_limit)


def resize_total(rule: SizingRule, order: LeaderOrder, lot_size: int | None,
                 follower_filled: int, *, capital: Capital | None = None,
                 positions: NetPositions | None = None, caps: Caps = NO_CAPS,
                 freeze_limit: int | None = None,
                 reference_price: float | None = None) -> SizedOrder | Skip:
    """The follower's new TOTAL quantity after the leader changed its total to
    `order.quantity`: the same rules as `size_order` (pass the positions as they stood
    before the leader order, so an exit keeps its proportion), but never below what the
    follower already filled. Below it (or sized to nothing) -> clamped to the filled
    quantity, with a note saying so: the caller cancels the remainder. Nothing filled
    and nothing sized -> Skip. `lots` is 0 on a clamp when the lot size is unknown.
    """
    if follower_filled < 0:
        raise ValueError(f"follower_filled must be >= 0, got {follower_filled}")
    sized = size_order(rule, order, lot_size, capital=capital, positions=positions,
                       caps=caps, freeze_limit=freeze_limit, reference_price=reference_price)
    if isinstance(sized, SizedOrder) and sized.quantity >= follower_filled:
        return sized
    if follower_filled == 0:
        return sized
    why = (f"{sized.reason}; the {follower_filled} units already filled stand"
           if isinstance(sized, Skip) else
           f"leader total {order.quantity} sizes to {sized.quantity} units, below the "
           f"{follower_filled} already filled")
    return SizedOrder(follower_filled, follower_filled // lot_size if lot_size else 0, 0,
                      False, (f"{why}: clamped to filled",))


# ---- refusals -------------------------------------------------------------------------


def _list_refusal(order: LeaderOrder, caps: Caps) -> str:
    checks = (("segment", order.exchange_segment, caps.allowed_segments, caps.denied_segments),
              ("product", order.product_type, caps.allowed_products, caps.denied_products),
              ("security", order.security_id, caps.allowed_securities,
               caps.denied_securities))
    for kind, value, allowed, denied in checks:
        name = str(value).strip().upper()
        if name in denied:
            return f"{kind} {value} is on the {kind} deny list"
        if allowed and name not in allowed:
            return f"{kind} {value} is not on the {kind} allow list"
    return ""


def _quantity_refusal(order: LeaderOrder) -> str:
    if order.quantity <= 0:
        return f"leader order quantity is {order.quantity}: nothing to mirror"
    return ""


# ---- exit and entry -------------------------------------------------------------------


def _open_against(side: Side, net: int) -> int:
    """Units of a signed net position that an order on `side` reduces."""
    return max(net, 0) if side is Side.SELL else max(-net, 0)


def _split_exit_entry(order: LeaderOrder, positions: NetPositions | None) -> tuple[int, int]:
    if positions is None:
        return 0, order.quantity
    exit_units = min(order.quantity, _open_against(order.transaction_type,
                                                   positions.leader_before))
    return exit_units, order.quantity - exit_units


def _size_exit(side: Side, leader_exit: int, positions: NetPositions, lot_size: int) -> _Part:
    leader_open = _open_against(side, positions.leader_before)
    follower_open = _open_against(side, positions.follower)
    if follower_open == 0:
        return _Part(reason="follower has no open position to exit")
    if leader_exit >= leader_open:  # the leader goes flat: so does the follower
        units = _floor_to_lots(follower_open, lot_size)
        if units == 0:
            return _Part(reason=f"follower holds {follower_open} units, less than one lot "
                                f"({lot_size})")
        return _Part(units, (f"leader closes its whole position: follower closes "
                             f"{units} of {follower_open}",))
    exact = Fraction(follower_open * leader_exit, leader_open)
    units = _floor_to_lots(exact, lot_size)
    if units == 0:
        return _Part(reason=f"{_fmt(exact / lot_size)} lots after proportional exit (leader "
                            f"exits {leader_exit} of {leader_open}, follower holds "
                            f"{follower_open}): below one lot", below_one_lot=True)
    return _Part(units, (f"proportional exit: {units} of the follower's {follower_open}",))


def _size_entry(rule: SizingRule, units: int, lot_size: int, capital: Capital | None,
                caps: Caps, value_price: Fraction | None) -> _Part:
    scaled = _scaled_lots(rule, Fraction(units, lot_size), capital)
    if isinstance(scaled, str):
        return _Part(reason=scaled)
    exact_lots, how = scaled
    lots = math.floor(exact_lots)
    if lots < 1:
        return _Part(reason=f"{_fmt(exact_lots)} lots after {how}: below one lot",
                     below_one_lot=True)
    return _apply_caps(lots * lot_size, lot_size, caps, value_price)


def _scaled_lots(rule: SizingRule, leader_lots: Fraction,
                 capital: Capital | None) -> tuple[Fraction, str] | str:
    """Exact follower lots and a phrase saying how they were computed, or a refusal."""
    value = _exact(rule.value)
    if rule.mode is SizingMode.MULTIPLIER:
        return leader_lots * value, f"multiplier {_fmt(value)}"
    if rule.mode is SizingMode.FIXED_LOTS:
        return value, "fixed lots"
    return _capital_ratio_lots(leader_lots, value, capital)


def _capital_ratio_lots(leader_lots: Fraction, factor: Fraction,
                        capital: Capital | None) -> tuple[Fraction, str] | str:
    if capital is None or not (math.isfinite(capital.leader)
                               and math.isfinite(capital.follower)):
        return "capital ratio needs both accounts' available funds"
    if capital.leader <= 0:
        return f"leader capital is {_fmt(capital.leader)}: capital ratio needs it positive"
    ratio = _exact(capital.follower) / _exact(capital.leader) * factor
    scaled = f" x {_fmt(factor)}" if factor != 1 else ""
    how = (f"capital ratio {_fmt(ratio)} (follower funds {_fmt(capital.follower)} / "
           f"leader funds {_fmt(capital.leader)}{scaled})")
    return leader_lots * ratio, how


# ---- caps -----------------------------------------------------------------------------


def _value_price(order: LeaderOrder, reference_price: float | None) -> Fraction | None:
    for price in (order.price, reference_price):
        if price is not None and math.isfinite(price) and price > 0:
            return _exact(price)
    return None


def _apply_caps(units: int, lot_size: int, caps: Caps, value_price: Fraction | None) -> _Part:
    notes: list[str] = []
    if caps.max_quantity is not None and units > caps.max_quantity:
        capped = _floor_to_lots(caps.max_quantity, lot_size)
        if capped == 0:
            return _Part(reason=f"max_quantity {caps.max_quantity} is below one lot "
                                f"({lot_size} units)", below_one_lot=True)
        notes.append(f"reduced from {units} to {capped} units by max_quantity "
                     f"{caps.max_quantity}")
        units = capped
    if caps.max_order_value is None:
        return _Part(units, tuple(notes))
    return _cap_value(units, lot_size, _exact(caps.max_order_value), value_price, notes)


def _cap_value(units: int, lot_size: int, max_value: Fraction, price: Fraction | None,
               notes: list[str]) -> _Part:
    """Reduce to what max_value buys at price; `notes` carries the max_quantity note."""
    if price is None:
        return _Part(reason=f"order value unknown (no limit price and no reference price): "
                            f"cannot check max_order_value {_fmt(max_value)}")
    if units * price <= max_value:
        return _Part(units, tuple(notes))
    affordable = _floor_to_lots(max_value / price, lot_size)
    if affordable == 0:
        return _Part(reason=f"one lot ({lot_size} units at {_fmt(price)}) is worth "
                            f"{_fmt(lot_size * price)}, above max_order_value "
                            f"{_fmt(max_value)}")
    notes.append(f"reduced from {units} to {affordable} units by max_order_value "
                 f"{_fmt(max_value)} at price {_fmt(price)}")
    return _Part(affordable, tuple(notes))


# ---- result ---------------------------------------------------------------------------


def _combine(parts: list[_Part], order: LeaderOrder, lot_size: int,
             freeze_limit: int | None) -> SizedOrder | Skip:
    units = sum(part.units for part in parts)
    reasons = [f"{part.label}: {part.reason}" if part.label else part.reason
               for part in parts if part.reason]
    if units == 0:
        below = any(part.below_one_lot for part in parts)
        return Skip("; ".join(reasons), ReasonCode.BELOW_ONE_LOT if below else ReasonCode.NONE)
    notes = [note for part in parts for note in part.notes]
    notes += [f"not mirrored: {reason}" for reason in reasons]  # one part of a reversal
    disclosed, disclosed_note = _disclosed(order, units, lot_size)
    if disclosed_note:
        notes.append(disclosed_note)
    above_freeze = freeze_limit is not None and units > freeze_limit
    return SizedOrder(units, units // lot_size, disclosed, above_freeze, tuple(notes))


def _disclosed(order: LeaderOrder, units: int, lot_size: int) -> tuple[int, str]:
    if order.disclosed_quantity <= 0:
        return 0, ""
    exact = Fraction(order.disclosed_quantity * units, order.quantity)
    disclosed = math.ceil(exact / lot_size) * lot_size
    if disclosed >= units:  # disclosing the whole order is no disclosure at all
        return 0, f"disclosed quantity rounds up to the whole order ({units}): dropped to 0"
    if disclosed <= DISCLOSED_MIN_FRACTION * units:
        return 0, (f"disclosed quantity {disclosed} is not above 30% of {units}: "
                   "dropped to 0")
    return disclosed, ""


def _floor_to_lots(units: int | Fraction, lot_size: int) -> int:
    return math.floor(units / lot_size) * lot_size


def _exact(number: float) -> Fraction:
    """The decimal the user wrote, exactly: Fraction(0.3) is 0.29999..., this is 3/10."""
    return Fraction(repr(float(number)))


def _fmt(number: Fraction | float) -> str:
    """Short and human: 2, 0.4, 0.7462, 1234.56, 0.0001234."""
    if number == int(number):
        return str(int(number))
    if abs(number) < 1:  # keep small figures visible: never "0 lots" for 0.00001 lots
        return f"{float(number):.4g}"
    return f"{float(number):.4f}".rstrip("0").rstrip(".")
