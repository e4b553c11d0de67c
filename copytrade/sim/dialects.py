"""Dialects: the ways real Dhan's wire is messier than the emulator's tidy shapes.

A `Dialect` is a set of flags, each one quirk that Dhan is documented or captured to have
(shared/dhan-api.md, "Where real Dhan is messier"). `clean` is none of them (the shapes of
Dhan's SDK fixtures); `realistic` is all of them. The emulator speaks one per run and can be
told to speak another per account, so one test can hold a tidy leader and a messy follower.

The book keeps one canonical order; the dialect only rewrites what leaves the emulator (REST
rows and stream frames) and decides the few behaviours that differ (MARKET conversion, data
plan, quote rate). Rewriting on the way out keeps the book's own logic dialect-free.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from copytrade.sim.orders import LEGGED_PRODUCTS

CLEAN = "clean"
REALISTIC = "realistic"
# Placeholders seen in captured rows for fields the exchange has not answered yet.
NO_EXCHANGE_TIME = "0000-00-00 00:00:00"
NO_EXCHANGE_ORDER_ID = "0"
NO_EXPIRY_DATE = "0001-01-01"
NO_EXPIRY_TIME = "0001-01-01 00:00:00"
CONFIRMED = "CONFIRMED"
MAX_PROTECTION = 0.2  # a band wider than 20% is no protection; keeps prices positive
MAX_QUOTES_PER_SECOND = 1_000
MAX_CAMEL_EVERY = 1_000


@dataclass(frozen=True)
class Dialect:
    """What the emulator says and does differently from the clean shapes (docs/sim.md)."""

    name: str = CLEAN
    # REST order rows: legName "NA" on plain (non BO/CO) orders.
    row_leg_na: bool = False
    # REST order rows: the fill count as `filled_qty`, with no `filledQty`.
    row_filled_qty: bool = False
    # REST rows: exchangeOrderId "0" and exchangeTime "0000-00-00 00:00:00" until the
    # exchange answers; omsErrorCode "0" and omsErrorDescription "CONFIRMED" without an
    # error; drvExpiryDate "0001-01-01" on non-derivatives.
    row_placeholders: bool = False
    # Stream: DiscQuantity = Quantity on a plain order, Remarks "NR", ReasonDescription
    # "CONFIRMED" when there is no reason, ExpiryDate "0001-01-01 00:00:00" on equity.
    frame_sample_fields: bool = False
    # Stream: every Nth frame of an account has camelCase keys (0 = never).
    camel_frames_every: int = 0
    # API MARKET orders become LIMIT orders priced this share beyond the last price
    # (0 = MARKET orders fill at the last price).
    market_protection: float = 0.0
    # Quote APIs (POST /marketfeed/ltp) need a Data API plan; without one: DH-902.
    data_plan: bool = True
    # Quote requests a second per account with a plan, beyond them DH-904 (0 = no quote
    # window, only the data-API 5/s one).
    quotes_per_second: int = 0

    def with_flags(self, flags: dict[str, Any]) -> Dialect:
        """This dialect with some flags changed; ValueError on an unknown name or bad value."""
        if not isinstance(flags, dict):
            raise ValueError("flags must be an object of flag names and values")
        known = {f.name: f.type for f in fields(self) if f.name != "name"}
        changes: dict[str, Any] = {}
        for key, value in flags.items():
            if key not in known:
                raise ValueError(f"unknown dialect flag {str(key)[:40]!r}; expected one of "
                                 f"{', '.join(sorted(known))}")
            changes[key] = _checked(key, value)
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    # ---- REST --------------------------------------------------------------------------

    def order_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """A clean order-book row as this dialect writes it."""
        # BO/CO rows name their real legs even in Dhan's messy rows.
        if self.row_leg_na and row.get("productType") not in LEGGED_PRODUCTS:
            row["legName"] = "NA"
        if self.row_filled_qty:
            row["filled_qty"] = row.pop("filledQty")
        if self.row_placeholders:
            self._placeholders(row)
            if not row.get("omsErrorCode"):
                row["omsErrorCode"] = "0"
                row["omsErrorDescription"] = row.get("omsErrorDescription") or CONFIRMED
        return row

    def trade_row(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.row_placeholders:
            self._placeholders(row)
        return row

    @staticmethod
    def _placeholders(row: dict[str, Any]) -> None:
        if not row.get("exchangeOrderId"):
            row["exchangeOrderId"] = NO_EXCHANGE_ORDER_ID
            row["exchangeTime"] = NO_EXCHANGE_TIME
        if row.get("drvExpiryDate") in ("NA", "", None):
            row["drvExpiryDate"] = NO_EXPIRY_DATE

    # ---- stream ------------------------------------------------------------------------

    def frame(self, data: dict[str, Any], sequence: int) -> dict[str, Any]:
        """A clean frame's Data as this dialect writes it; `sequence` counts the account's
        frames from 1, so which frames are camelCase is repeatable."""
        if self.frame_sample_fields:
            if not data.get("DiscQuantity") and data.get("Product") not in ("B", "V"):
                data["DiscQuantity"] = data["Quantity"]
            data["Remarks"] = "NR"
            data["ReasonDescription"] = data.get("ReasonDescription") or CONFIRMED
            if not data.get("ExpiryDate"):
                data["ExpiryDate"] = NO_EXPIRY_TIME
        if self.camel_frames_every and sequence % self.camel_frames_every == 0:
            return {key[:1].lower() + key[1:]: value for key, value in data.items()}
        return data

    # ---- MARKET conversion -------------------------------------------------------------

    def protected_price(self, buying: bool, last: float, tick: float) -> float:
        """The limit a MARKET order becomes: the band beyond the last price, on the tick
        inside the band (down for a BUY, up for a SELL), never below one tick."""
        edge = last * (1 + self.market_protection if buying else 1 - self.market_protection)
        ticks = math.floor(edge / tick + 1e-9) if buying else math.ceil(edge / tick - 1e-9)
        return round(max(ticks, 1) * tick, 6)


def _checked(key: str, value: Any) -> Any:
    if key in ("market_protection",):
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not (math.isfinite(value) and 0 <= value <= MAX_PROTECTION):
            raise ValueError(f"{key} must be a number from 0 to {MAX_PROTECTION}")
        return float(value)
    if key in ("camel_frames_every", "quotes_per_second"):
        limit = MAX_CAMEL_EVERY if key == "camel_frames_every" else MAX_QUOTES_PER_SECOND
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise ValueError(f"{key} must be a whole number from 0 to {limit}")
        return value
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false")
    return value


PRESETS: dict[str, Dialect] = {
    CLEAN: Dialect(),
    REALISTIC: Dialect(
        name=REALISTIC, row_leg_na=True, row_filled_qty=True, row_placeholders=True,
        frame_sample_fields=True, camel_frames_every=2, market_protection=0.03,
        data_plan=False, quotes_per_second=1,
    ),
}


def dialect_named(name: object) -> Dialect:
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown dialect {str(name)[:40]!r}; expected one of "
                         f"{', '.join(PRESETS)}")
    return PRESETS[name]


def as_dialect(value: str | Dialect) -> Dialect:
    return value if isinstance(value, Dialect) else dialect_named(value)
