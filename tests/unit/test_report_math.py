"""The arithmetic of `mappings` and `stats` (copytrade.core.report_math): pure."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from copytrade.core.report_math import (
    MappingRow,
    Slippage,
    follower_stats,
    latency_summary,
    percentile,
    reason_key,
    report_date,
    slippage,
    slippage_summary,
    weighted_average,
)

TODAY = date(2026, 11, 30)
T0 = datetime(2026, 11, 30, 3, 45, tzinfo=UTC)
lags = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1,
                max_size=200)
prices = st.floats(min_value=0.05, max_value=1e6, allow_nan=False)


# ---- weighted average ---------------------------------------------------------------------

def test_the_average_of_slices_is_weighted_by_their_fills() -> None:
    assert weighted_average([(100, 10.0), (300, 12.0)]) == 11.5


def test_fills_without_units_or_price_are_left_out() -> None:
    assert weighted_average([(0, 99.0), (5, 0.0), (2, 20.0)]) == 20.0
    assert weighted_average([]) == 0.0
    assert weighted_average([(0, 0.0)]) == 0.0


@given(st.lists(st.tuples(st.integers(1, 10**6), prices), min_size=1, max_size=20))
def test_a_weighted_average_lies_between_the_cheapest_and_dearest_fill(
        fills: list[tuple[int, float]]) -> None:
    average = weighted_average(fills)
    low, high = min(p for _, p in fills), max(p for _, p in fills)
    assert low - 1e-3 <= average <= high + 1e-3


# ---- slippage -----------------------------------------------------------------------------

def test_paying_more_on_a_buy_is_positive_slippage() -> None:
    assert slippage("BUY", 100.0, 101.0) == Slippage(1.0, 1.0)
    assert slippage("buy", 100.0, 99.5) == Slippage(-0.5, -0.5)


def test_getting_less_on_a_sell_is_positive_slippage() -> None:
    assert slippage("SELL", 200.0, 198.0) == Slippage(2.0, 1.0)
    assert slippage("SELL", 200.0, 201.0) == Slippage(-1.0, -0.5)


def test_no_slippage_without_both_fills() -> None:
    assert slippage("BUY", 0.0, 101.0) is None
    assert slippage("BUY", 100.0, 0.0) is None


@given(prices, prices)
def test_a_buy_and_a_sell_at_the_same_prices_slip_in_opposite_directions(
        leader: float, follower: float) -> None:
    buy, sell = slippage("BUY", leader, follower), slippage("SELL", leader, follower)
    assert buy is not None and sell is not None
    assert buy.rupees == -sell.rupees
    assert math.copysign(1, buy.rupees) == math.copysign(1, follower - leader) or \
        buy.rupees == 0


def test_the_summary_weighs_slippage_by_units_and_value() -> None:
    summary = slippage_summary([("BUY", 10, 100.0, 101.0), ("SELL", 30, 50.0, 50.5),
                                ("BUY", 5, 100.0, 0.0), ("BUY", 0, 100.0, 90.0)])
    # 10 x +1 and 30 x -0.5 = -5 rupees over a value of 1000 + 1500
    assert summary.orders == 2 and summary.rupees == -5.0
    assert summary.percent == -0.2 and summary.worst_percent == 1.0


def test_a_summary_of_nothing_filled_says_so() -> None:
    summary = slippage_summary([("BUY", 0, 100.0, 0.0)])
    assert (summary.orders, summary.rupees, summary.percent, summary.worst_percent) == (
        0, 0.0, None, None)


# ---- percentiles --------------------------------------------------------------------------

def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, s) for s in (0.5, 0.95, 0.99, 1.0)] == [50, 95, 99, 100]
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([], 0.5) is None


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_a_share_outside_the_unit_interval_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        percentile([1.0], share)


@given(lags, st.floats(min_value=0.001, max_value=1.0))
def test_a_percentile_is_an_observed_value_with_enough_values_below_it(
        values: list[float], share: float) -> None:
    found = percentile(values, share)
    assert found in values
    at_or_below = sum(v <= found for v in values)
    assert at_or_below >= share * len(values) - 1e-9
    # and it is the smallest such value
    assert sum(v < found for v in values) < share * len(values) + 1e-9


@given(lags)
def test_percentiles_never_decrease_and_end_at_the_maximum(values: list[float]) -> None:
    summary = latency_summary(values)
    assert summary.count == len(values)
    assert summary.p50 <= summary.p95 <= summary.p99 <= summary.max == max(values)


def test_a_latency_summary_of_nothing() -> None:
    assert latency_summary([]) == latency_summary(())
    assert latency_summary([]).p50 is None and latency_summary([]).max is None


# ---- reasons and dates --------------------------------------------------------------------

def test_reasons_are_counted_by_code_or_by_wording_without_numbers() -> None:
    assert reason_key("below_one_lot", "0.4 lots after multiplier 0.2") == "below_one_lot"
    assert reason_key("", "RMS:Margin Exceeds, Available: 12.50, Required: 3399") == \
        reason_key("", "RMS:Margin Exceeds, Available: 0.00, Required: 17")
    assert reason_key("", "") == "no reason recorded"
    assert "\n" not in reason_key("", "two\nlines")


@pytest.mark.parametrize(("text", "expected"), [
    (None, TODAY), ("today", TODAY), (" Yesterday ", TODAY - timedelta(days=1)),
    ("2026-11-25", date(2026, 11, 25)), ("TODAY", TODAY)])
def test_report_dates(text: str | None, expected: date) -> None:
    assert report_date(text, TODAY) == expected


@pytest.mark.parametrize("text", ["", "tomorrow", "2026-02-30", "20261125", "2026-W48-1",
                                  "25/11/2026", "2026-11-25T09:15", "١٢٣٤-١١-٢٥",
                                  "x" * 500])
def test_a_bad_date_is_one_line_naming_the_forms(text: str) -> None:
    with pytest.raises(ValueError) as raised:
        report_date(text, TODAY)
    message = str(raised.value)
    assert "YYYY-MM-DD, today or yesterday" in message
    assert "\n" not in message and len(message) < 160


# ---- rows and per-follower statistics -----------------------------------------------------

def row(follower: str | None, state: str | None, *, leg: int = 1, reason: str = "",
        code: str = "", lag_ms: float | None = None, side: str = "BUY",
        filled: int = 0, leader_average: float = 0.0,
        follower_average: float = 0.0) -> MappingRow:
    return MappingRow(
        "2026-11-30", "L1", leg, "TCS", side, "CNC", "LIMIT", "TRADED", 10, 10,
        leader_average, follower=follower, state=state, quantity=10, filled=filled,
        follower_average=follower_average, reason=reason, reason_code=code,
        seen_at=T0 if lag_ms is not None else None,
        acked_at=T0 + timedelta(milliseconds=lag_ms) if lag_ms is not None else None)


def test_the_ack_lag_runs_from_the_leader_event_to_the_acknowledgement() -> None:
    assert row("f1", "FILLED", lag_ms=12.5).ack_lag_ms == 12.5
    assert row("f1", "SKIPPED").ack_lag_ms is None
    naive = MappingRow("d", "L1", 1, "", "BUY", "", "", "", 0, 0, 0.0,
                       seen_at=T0, acked_at=(T0 + timedelta(seconds=1)).replace(tzinfo=None))
    assert naive.ack_lag_ms == 1000.0  # the store's naive times are UTC


def test_a_row_slips_by_its_side() -> None:
    assert row("f1", "FILLED", side="SELL", leader_average=100.0,
               follower_average=99.0).slippage == Slippage(1.0, 1.0)
    assert row("f1", "FILLED").slippage is None
    assert (row("f1", "FILLED", leg=2).leg_label, row("f1", "FILLED", leg=3).leg_label) == (
        "stop_loss", "target")


def test_follower_stats_count_time_and_price_each_follower_apart() -> None:
    rows = [
        row("f1", "FILLED", lag_ms=10, filled=10, leader_average=100, follower_average=101),
        row("f1", "ACCEPTED", lag_ms=30),
        row("f1", "FILLED", leg=2, lag_ms=999),  # an exit leg: not counted, not timed
        row("f2", "SKIPPED", reason="0.4 lots: below one lot", code="below_one_lot"),
        row("f2", "SKIPPED", reason="0.6 lots: below one lot", code="below_one_lot"),
        row("f2", "REJECTED", reason="RMS: margin 12.5", lag_ms=5),
        row("f2", "REJECTED", reason="RMS: margin 7"),
        row(None, None),  # a leader order nobody mirrored
    ]
    f1, f2 = follower_stats(rows)
    assert (f1.follower, f1.orders, f1.mirrored, f1.filled) == ("f1", 2, 2, 1)
    assert (f1.skipped, f1.rejected) == ({}, {})
    assert (f1.latency.count, f1.latency.p50, f1.latency.max) == (2, 10, 30)
    assert (f1.slippage.orders, f1.slippage.rupees, f1.slippage.percent) == (1, 10.0, 1.0)
    assert (f2.orders, f2.mirrored, f2.filled) == (4, 0, 0)
    assert f2.skipped == {"below_one_lot": 2}
    assert f2.rejected == {"RMS: margin #": 2}
    assert f2.latency.count == 1 and f2.slippage.orders == 0


def test_no_rows_no_followers() -> None:
    assert follower_stats([]) == []
    assert follower_stats([row(None, None)]) == []


@given(st.lists(st.tuples(st.sampled_from(["f1", "f2", "f3"]),
                          st.sampled_from(["FILLED", "SKIPPED", "REJECTED", "ACCEPTED",
                                           "CANCELED"])), max_size=40))
def test_every_entry_is_counted_once_per_follower(pairs: list[tuple[str, str]]) -> None:
    stats = follower_stats([row(name, state) for name, state in pairs])
    assert sum(s.orders for s in stats) == len(pairs)
    for s in stats:
        assert s.orders == s.mirrored + sum(s.skipped.values()) + sum(s.rejected.values())
