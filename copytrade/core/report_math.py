"""The arithmetic of `mappings` and `stats`, pure: a mapping row (a leader order leg and
one follower's mirror of it), average fill prices across slices and attempts, slippage
against the leader's fills, percentiles, per-follower statistics, grouping of reasons, and
the day a report is for.

Lag: from the leader event (when copytrade received the leader report that decided the
mirror, the start of `lag_ms` too) to the follower's acknowledgement (when its broker was
first seen holding the order: ACCEPTED, PARTIALLY_FILLED or FILLED), both copytrade's clock.

Slippage sign: positive is worse for the follower (it paid more on a buy, got less on a
sell, than the leader's average fill); negative is better.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

DAY_WORDS = "YYYY-MM-DD, today or yesterday (IST)"


def weighted_average(fills: Iterable[tuple[int, float]]) -> float:
    """The average price of (units, average price) fills, weighted by units; fills with
    no units or no price are left out. 0.0 when nothing is left."""
    units = value = 0.0
    for quantity, price in fills:
        if quantity > 0 and price > 0:
            units += quantity
            value += quantity * price
    return round(value / units, 4) if units else 0.0


@dataclass(frozen=True)
class Slippage:
    rupees: float  # per unit, positive = worse for the follower
    percent: float  # of the leader's average fill


def slippage(side: str, leader_average: float, follower_average: float) -> Slippage | None:
    """The follower's fill against the leader's; None unless both filled at a known price."""
    if not (leader_average > 0 and follower_average > 0):
        return None
    paid_more = follower_average - leader_average
    rupees = paid_more if side.upper() == "BUY" else -paid_more
    return Slippage(round(rupees, 4), round(rupees / leader_average * 100, 4))


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (a value that was observed, never an interpolation):
    the smallest value with at least `share` of the values at or below it. None for no
    values; share in (0, 1]."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], not {share}")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(round(len(ordered) * share, 9)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


def latency_summary(values: Sequence[float]) -> LatencySummary:
    return LatencySummary(len(values), percentile(values, 0.50), percentile(values, 0.95),
                          percentile(values, 0.99), max(values) if values else None)


@dataclass(frozen=True)
class SlippageSummary:
    orders: int  # orders with both averages known
    rupees: float  # total over the units filled: what the follower lost (+) or gained (-)
    percent: float | None  # rupees against the value at the leader's prices
    worst_percent: float | None  # the largest per-order slippage


def slippage_summary(fills: Iterable[tuple[str, int, float, float]]) -> SlippageSummary:
    """(side, units filled, leader average, follower average) per order -> totals."""
    orders, rupees, value, worst = 0, 0.0, 0.0, None
    for side, units, leader_average, follower_average in fills:
        slip = slippage(side, leader_average, follower_average)
        if slip is None or units <= 0:
            continue
        orders += 1
        rupees += slip.rupees * units
        value += leader_average * units
        worst = slip.percent if worst is None else max(worst, slip.percent)
    percent = round(rupees / value * 100, 4) if value else None
    return SlippageSummary(orders, round(rupees, 2), percent, worst)


_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def reason_key(code: str, text: str) -> str:
    """What reasons are counted by: the code when there is one, else the text with its
    numbers taken out (so "0.4 lots ..." and "0.6 lots ..." count as one reason)."""
    if code:
        return code
    return " ".join(_NUMBER.sub("#", text).split())[:120] or "no reason recorded"


def report_date(text: str | None, today: date) -> date:
    """`--date`: YYYY-MM-DD, `today` or `yesterday` (calendar days in IST; `today` is
    given); None means today. ValueError with a one-line message otherwise."""
    if text is None:
        return today
    word = text.strip().lower()
    if word == "today":
        return today
    if word == "yesterday":
        return today - timedelta(days=1)
    if not _ISO_DAY.fullmatch(word):
        return _bad_date(text)
    try:
        return date.fromisoformat(word)
    except ValueError:  # 2026-02-30
        return _bad_date(text)


def _bad_date(text: str) -> date:
    shown = " ".join(text.split())[:40]
    raise ValueError(f"cannot read the date {shown!r}: use {DAY_WORDS}")


# ---- mapping rows and per-follower statistics ---------------------------------------------

SKIPPED, REJECTED, FILLED = "SKIPPED", "REJECTED", "FILLED"
LEG_LABELS = {1: "entry", 2: "stop_loss", 3: "target"}


@dataclass(frozen=True)
class MappingRow:
    """A leader order leg and one follower's mirror of it (its latest attempt, with the
    fills of every attempt), or the leader order alone when no follower has a mirror."""

    trading_date: str
    leader_order_id: str
    leg: int  # 1 entry; 2 stop-loss, 3 target: a BO's/CO's exit legs
    symbol: str
    side: str  # BUY / SELL: this leg's
    product: str
    order_type: str  # the leader's
    leader_status: str
    leader_quantity: int
    leader_filled: int
    leader_average: float  # 0.0: not filled, or not known (exit legs)
    leader_seen_at: datetime | None = None  # first seen, our clock
    follower: str | None = None
    follower_order_ids: tuple[str, ...] = ()
    follower_order_type: str = ""
    state: str | None = None
    quantity: int = 0  # asked, every attempt: this one's order plus what earlier ones filled
    filled: int = 0  # every attempt's fills
    follower_average: float = 0.0  # weighted across slices and attempts
    attempt: int = 0
    reason: str = ""
    reason_code: str = ""
    shadow: bool = False
    seen_at: datetime | None = None  # the leader event that decided this attempt
    acked_at: datetime | None = None  # its broker first showed it accepted
    send_lag_ms: float | None = None  # leader event -> follower request sent
    fill_lag_ms: float | None = None  # leader fully traded -> follower fully traded
    remote: bool = False  # mirrored by the follower's agent on its host (as it reported)

    @property
    def leg_label(self) -> str:
        return LEG_LABELS.get(self.leg, str(self.leg))

    @property
    def slippage(self) -> Slippage | None:
        return slippage(self.side, self.leader_average, self.follower_average)

    @property
    def ack_lag_ms(self) -> float | None:
        """Leader event -> follower acknowledgement, in milliseconds."""
        if self.seen_at is None or self.acked_at is None:
            return None
        return round((_aware(self.acked_at) - _aware(self.seen_at)).total_seconds() * 1000, 3)


def _aware(moment: datetime) -> datetime:
    """The store keeps naive UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class FollowerStats:
    follower: str
    orders: int  # leader orders this follower has a mirror of
    mirrored: int  # sent to its broker and not rejected (open, filled, cancelled, ...)
    filled: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason_key -> count
    rejected: dict[str, int] = field(default_factory=dict)
    latency: LatencySummary = LatencySummary(0, None, None, None, None)
    slippage: SlippageSummary = SlippageSummary(0, 0.0, None, None)


def follower_stats(rows: Iterable[MappingRow]) -> list[FollowerStats]:
    """Per follower, by name, over the entries of the rows (exit legs are Dhan's, made
    with their entry: neither counted nor timed apart)."""
    by_follower: dict[str, list[MappingRow]] = {}
    for row in rows:
        if row.follower is not None and row.leg == 1:
            by_follower.setdefault(row.follower, []).append(row)
    return [_stats_of(name, by_follower[name]) for name in sorted(by_follower)]


def _stats_of(name: str, rows: list[MappingRow]) -> FollowerStats:
    skipped = Counter(reason_key(r.reason_code, r.reason) for r in rows if r.state == SKIPPED)
    rejected = Counter(reason_key(r.reason_code, r.reason) for r in rows if r.state == REJECTED)
    lags = [lag for lag in (r.ack_lag_ms for r in rows) if lag is not None]
    return FollowerStats(
        name, len(rows), sum(r.state not in (SKIPPED, REJECTED) for r in rows),
        sum(r.state == FILLED for r in rows), dict(skipped.most_common()),
        dict(rejected.most_common()), latency_summary(lags),
        slippage_summary((r.side, r.filled, r.leader_average, r.follower_average)
                         for r in rows))
