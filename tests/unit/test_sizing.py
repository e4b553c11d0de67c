"""Sizing rules (DESIGN.md "Sizing") and the shipped freeze-limit table."""

from __future__ import annotations

import math
from importlib.resources import files

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from copytrade.core.events import OrderReport
from copytrade.core.freeze import (
    freeze_limit_for,
    load_freeze_limits,
    parse_freeze_rows,
    underlying_of,
)
from copytrade.core.sizing import (
    Capital,
    Caps,
    LeaderOrder,
    NetPositions,
    Side,
    SizedOrder,
    SizingMode,
    SizingRule,
    Skip,
    resize_total,
    size_order,
)

NIFTY_LOT = 65
NIFTY_FUT = "52175"


def nifty(quantity: int, side: str = "BUY", *, price: float = 100.0, disclosed: int = 0,
          segment: str = "NSE_FNO", product: str = "MARGIN",
          security: str = NIFTY_FUT) -> LeaderOrder:
    return LeaderOrder(security, segment, product, Side(side), quantity, price, disclosed)


def lots(n: int | float) -> int:
    return int(n * NIFTY_LOT)


def times(value: float) -> SizingRule:
    return SizingRule(SizingMode.MULTIPLIER, value)


def sized(result: SizedOrder | Skip) -> SizedOrder:
    assert isinstance(result, SizedOrder), result
    return result


def skipped(result: SizedOrder | Skip) -> str:
    assert isinstance(result, Skip), result
    return result.reason


# ---- configuration ------------------------------------------------------------------


def test_rule_accepts_the_mode_as_text() -> None:
    assert SizingRule("fixed_lots", 2).mode is SizingMode.FIXED_LOTS  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "value"), [
    ("multiplier", 0), ("multiplier", -1), ("multiplier", math.nan), ("multiplier", math.inf),
    ("fixed_lots", 1.5), ("fixed_lots", 0), ("capital_ratio", 0), ("percent", 1),
])
def test_bad_rules_are_refused_when_configured(mode: str, value: float) -> None:
    with pytest.raises(ValueError):
        SizingRule(mode, value)  # type: ignore[arg-type]


@pytest.mark.parametrize("caps", [
    {"max_quantity": 0}, {"max_quantity": -65}, {"max_order_value": 0},
    {"max_order_value": math.inf}, {"max_order_value": math.nan},
])
def test_bad_caps_are_refused_when_configured(caps: dict) -> None:
    with pytest.raises(ValueError):
        Caps(**caps)


def test_side_is_normalised_and_checked() -> None:
    assert nifty(65, "BUY").transaction_type is Side.BUY
    assert LeaderOrder("1", "NSE_EQ", "CNC", "sell", 1).transaction_type is Side.SELL  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LeaderOrder("1", "NSE_EQ", "CNC", "HOLD", 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(("order_type", "price"), [
    ("LIMIT", 101.5), ("STOP_LOSS", 101.5), ("MARKET", 0.0), ("STOP_LOSS_MARKET", 0.0)])
def test_leader_order_from_a_report_drops_the_price_of_unpriced_orders(
        order_type: str, price: float) -> None:
    report = OrderReport("1", "PENDING", "NSE_FNO", NIFTY_FUT, "SELL", "MARGIN", order_type,
                         "DAY", 130, 0, price=101.5, disclosed_quantity=65)
    assert LeaderOrder.from_report(report) == nifty(130, "SELL", price=price, disclosed=65)


# ---- refusals before sizing ---------------------------------------------------------


@pytest.mark.parametrize("lot_size", [None, 0, -65])
def test_unknown_lot_size_is_never_guessed(lot_size: int | None) -> None:
    assert skipped(size_order(times(1), nifty(lots(2)), lot_size)) == (
        "lot size unknown for 52175")


@pytest.mark.parametrize("quantity", [0, -65])
def test_an_empty_leader_order_is_skipped(quantity: int) -> None:
    assert "nothing to mirror" in skipped(size_order(times(1), nifty(quantity), NIFTY_LOT))


@pytest.mark.parametrize(("caps", "reason"), [
    (Caps(denied_segments=frozenset({"NSE_FNO"})), "segment NSE_FNO is on the segment deny list"),
    (Caps(allowed_segments=frozenset({"NSE_EQ"})),
     "segment NSE_FNO is not on the segment allow list"),
    (Caps(denied_products=frozenset({"MARGIN"})), "product MARGIN is on the product deny list"),
    (Caps(allowed_products=frozenset({"INTRADAY"})),
     "product MARGIN is not on the product allow list"),
    (Caps(denied_securities=frozenset({NIFTY_FUT})),
     "security 52175 is on the security deny list"),
    (Caps(allowed_securities=frozenset({"52174"})),
     "security 52175 is not on the security allow list"),
])
def test_allow_and_deny_lists_skip_naming_the_list(caps: Caps, reason: str) -> None:
    assert skipped(size_order(times(1), nifty(lots(2)), NIFTY_LOT, caps=caps)) == reason


def test_lists_match_case_insensitively_and_accept_any_iterable() -> None:
    caps = Caps(allowed_segments=["nse_fno"], allowed_products=("margin",))  # type: ignore[arg-type]
    assert sized(size_order(times(1), nifty(lots(2)), NIFTY_LOT, caps=caps)).lots == 2
    deny = Caps(denied_products={"Margin"})  # type: ignore[arg-type]
    assert "deny list" in skipped(size_order(times(1), nifty(lots(2)), NIFTY_LOT, caps=deny))


def test_a_single_name_is_one_entry_not_its_characters() -> None:
    caps = Caps(denied_securities=NIFTY_FUT)  # type: ignore[arg-type]
    assert caps.denied_securities == {NIFTY_FUT}


def test_an_empty_allow_list_restricts_nothing() -> None:
    caps = Caps(allowed_segments=frozenset(), allowed_securities=frozenset())
    assert sized(size_order(times(1), nifty(lots(2)), NIFTY_LOT, caps=caps)).lots == 2


def test_the_deny_list_wins_over_the_allow_list_and_over_an_unknown_lot_size() -> None:
    caps = Caps(allowed_securities=frozenset({NIFTY_FUT}),
                denied_securities=frozenset({NIFTY_FUT}))
    assert "deny list" in skipped(size_order(times(1), nifty(lots(2)), None, caps=caps))


def test_lists_apply_to_exits_too() -> None:
    caps = Caps(denied_securities=frozenset({NIFTY_FUT}))
    result = size_order(times(1), nifty(lots(2), "SELL"), NIFTY_LOT, caps=caps,
                        positions=NetPositions(lots(2), lots(2)))
    assert "deny list" in skipped(result)


# ---- entries ------------------------------------------------------------------------


@pytest.mark.parametrize(("leader_lots", "multiplier", "follower_lots"), [
    (2, 1, 2), (2, 1.5, 3), (3, 0.5, 1), (10, 0.3, 3), (10, 0.7, 7), (7, 0.1, 0),
    (4, 2.25, 9), (1, 1, 1),
])
def test_multiplier_scales_leader_lots_and_floors(leader_lots: int, multiplier: float,
                                                  follower_lots: int) -> None:
    result = size_order(times(multiplier), nifty(lots(leader_lots)), NIFTY_LOT)
    if follower_lots == 0:
        assert isinstance(result, Skip)
    else:
        assert sized(result) == SizedOrder(lots(follower_lots), follower_lots)


def test_below_one_lot_is_skipped_with_what_was_computed() -> None:
    assert skipped(size_order(times(0.2), nifty(lots(2)), NIFTY_LOT)) == (
        "0.4 lots after multiplier 0.2: below one lot")


def test_the_multiplier_is_applied_to_the_exact_leader_lots_and_floored_once() -> None:
    # 97 units = 1.49 lots; x2 = 2.98 lots -> 2 lots (not 1 lot x 2, not rounded to 3).
    assert sized(size_order(times(2), nifty(97), NIFTY_LOT)).lots == 2
    # 97 units x 0.5 = 0.75 lots: below one lot, said with the exact figure.
    assert skipped(size_order(times(0.5), nifty(97), NIFTY_LOT)) == (
        "0.7462 lots after multiplier 0.5: below one lot")


def test_equities_have_a_lot_of_one() -> None:
    order = LeaderOrder("1333", "NSE_EQ", "CNC", Side.BUY, 7, 1650.0)
    assert sized(size_order(times(0.5), order, 1)) == SizedOrder(3, 3)


@pytest.mark.parametrize("leader_lots", [1, 2, 27, 200])
def test_fixed_lots_ignore_the_leaders_size(leader_lots: int) -> None:
    rule = SizingRule(SizingMode.FIXED_LOTS, 3)
    assert sized(size_order(rule, nifty(lots(leader_lots)), NIFTY_LOT)) == SizedOrder(195, 3)


@pytest.mark.parametrize(("leader_funds", "follower_funds", "factor", "follower_lots"), [
    (100_000, 50_000, 1, 2), (100_000, 100_000, 1, 4), (100_000, 250_000, 1, 10),
    (100_000, 50_000, 0.5, 1), (300_000, 100_000, 1, 1), (123_456.78, 61_728.39, 1, 2),
])
def test_capital_ratio_scales_by_available_funds(leader_funds: float, follower_funds: float,
                                                 factor: float, follower_lots: int) -> None:
    rule = SizingRule(SizingMode.CAPITAL_RATIO, factor)
    result = size_order(rule, nifty(lots(4)), NIFTY_LOT,
                        capital=Capital(leader_funds, follower_funds))
    assert sized(result).lots == follower_lots


def test_capital_ratio_below_one_lot_says_what_it_computed() -> None:
    rule = SizingRule(SizingMode.CAPITAL_RATIO)
    result = size_order(rule, nifty(lots(2)), NIFTY_LOT, capital=Capital(100_000, 25_000))
    assert skipped(result) == ("0.5 lots after capital ratio 0.25 (follower funds 25000 / "
                               "leader funds 100000): below one lot")
    halved = size_order(SizingRule(SizingMode.CAPITAL_RATIO, 0.5), nifty(lots(2)), NIFTY_LOT,
                        capital=Capital(100_000, 50_000))
    assert skipped(halved) == ("0.5 lots after capital ratio 0.25 (follower funds 50000 / "
                               "leader funds 100000 x 0.5): below one lot")


@pytest.mark.parametrize(("capital", "reason"), [
    (Capital(0, 50_000), "leader capital is 0: capital ratio needs it positive"),
    (Capital(-10, 50_000), "leader capital is -10: capital ratio needs it positive"),
    (None, "capital ratio needs both accounts' available funds"),
    (Capital(math.nan, 50_000), "capital ratio needs both accounts' available funds"),
    (Capital(100_000, math.inf), "capital ratio needs both accounts' available funds"),
])
def test_capital_ratio_without_usable_funds_is_skipped(capital: Capital | None,
                                                       reason: str) -> None:
    rule = SizingRule(SizingMode.CAPITAL_RATIO)
    assert skipped(size_order(rule, nifty(lots(2)), NIFTY_LOT, capital=capital)) == reason


def test_a_follower_with_no_funds_sizes_below_one_lot() -> None:
    rule = SizingRule(SizingMode.CAPITAL_RATIO)
    result = size_order(rule, nifty(lots(2)), NIFTY_LOT, capital=Capital(100_000, 0))
    assert skipped(result).startswith("0 lots after capital ratio 0")


# ---- caps on entries ----------------------------------------------------------------


def test_max_quantity_reduces_to_whole_lots_under_the_cap() -> None:
    result = sized(size_order(times(1), nifty(lots(10)), NIFTY_LOT,
                              caps=Caps(max_quantity=400)))
    assert (result.quantity, result.lots) == (390, 6)
    assert result.notes == ("reduced from 650 to 390 units by max_quantity 400",)


def test_max_quantity_at_the_size_changes_nothing() -> None:
    result = sized(size_order(times(1), nifty(lots(2)), NIFTY_LOT, caps=Caps(max_quantity=130)))
    assert result == SizedOrder(130, 2)


def test_max_quantity_below_one_lot_skips() -> None:
    result = size_order(times(1), nifty(lots(2)), NIFTY_LOT, caps=Caps(max_quantity=50))
    assert skipped(result) == "max_quantity 50 is below one lot (65 units)"


def test_max_order_value_reduces_to_whole_lots_within_the_value() -> None:
    # 10 lots at 100 = 65 000 rupees; 30 000 buys 300 units = 4 lots (260 units).
    result = sized(size_order(times(1), nifty(lots(10), price=100.0), NIFTY_LOT,
                              caps=Caps(max_order_value=30_000)))
    assert (result.quantity, result.lots) == (260, 4)
    assert result.notes == ("reduced from 650 to 260 units by max_order_value 30000 "
                            "at price 100",)


def test_max_order_value_is_exact_at_the_boundary() -> None:
    # 30 units at 0.1 is exactly 3 rupees: allowed (binary floats would say 3.0000000000000004).
    order = LeaderOrder("1", "NSE_EQ", "CNC", Side.BUY, 30, 0.1)
    assert sized(size_order(times(1), order, 1, caps=Caps(max_order_value=3))).quantity == 30


def test_one_lot_worth_more_than_max_order_value_skips() -> None:
    result = size_order(times(1), nifty(lots(2), price=250.0), NIFTY_LOT,
                        caps=Caps(max_order_value=10_000))
    assert skipped(result) == ("one lot (65 units at 250) is worth 16250, above "
                               "max_order_value 10000")


def test_an_unpriced_order_is_valued_at_the_reference_price() -> None:
    market = nifty(lots(10), price=0.0)
    result = sized(size_order(times(1), market, NIFTY_LOT, caps=Caps(max_order_value=30_000),
                              reference_price=100.0))
    assert result.quantity == 260


def test_an_unpriced_order_without_a_reference_price_fails_closed() -> None:
    result = size_order(times(1), nifty(lots(1), price=0.0), NIFTY_LOT,
                        caps=Caps(max_order_value=30_000))
    assert skipped(result) == ("order value unknown (no limit price and no reference price): "
                               "cannot check max_order_value 30000")


def test_an_unpriced_order_needs_no_price_when_no_value_cap_is_set() -> None:
    assert sized(size_order(times(1), nifty(lots(1), price=0.0), NIFTY_LOT)).lots == 1


def test_both_caps_apply_and_both_are_noted() -> None:
    result = sized(size_order(times(3), nifty(lots(10), price=200.0), NIFTY_LOT,
                              caps=Caps(max_quantity=1000, max_order_value=150_000)))
    assert result.quantity == 715  # 975 by quantity, then 150 000 / 200 = 750 -> 11 lots
    assert len(result.notes) == 2


# ---- exits --------------------------------------------------------------------------


def test_a_partial_exit_is_proportional_to_the_followers_actual_position() -> None:
    # Leader holds 4 lots, sells 1; follower actually holds 8 lots -> sells 2.
    result = size_order(times(0.1), nifty(lots(1), "SELL"), NIFTY_LOT,
                        positions=NetPositions(lots(4), lots(8)))
    assert sized(result).lots == 2


def test_an_exit_ignores_the_sizing_mode() -> None:
    rule = SizingRule(SizingMode.FIXED_LOTS, 5)
    result = size_order(rule, nifty(lots(2), "SELL"), NIFTY_LOT,
                        positions=NetPositions(lots(4), lots(3)))
    assert sized(result).lots == 1  # 3 x 2/4 = 1.5 -> 1, not 5


def test_a_partial_exit_below_one_lot_waits_for_the_next() -> None:
    result = size_order(times(1), nifty(lots(1), "SELL"), NIFTY_LOT,
                        positions=NetPositions(lots(4), lots(1)))
    assert skipped(result) == ("0.25 lots after proportional exit (leader exits 65 of 260, "
                               "follower holds 65): below one lot")


def test_the_leaders_last_exit_takes_the_follower_flat() -> None:
    result = sized(size_order(times(0.1), nifty(lots(1), "SELL"), NIFTY_LOT,
                              positions=NetPositions(lots(1), lots(3))))
    assert result.lots == 3
    assert result.notes == ("leader closes its whole position: follower closes 195 of 195",)


def test_short_positions_are_exited_by_buys() -> None:
    result = size_order(times(1), nifty(lots(2), "BUY"), NIFTY_LOT,
                        positions=NetPositions(-lots(4), -lots(6)))
    assert sized(result).lots == 3


@pytest.mark.parametrize("follower_net", [0, -lots(2)])
def test_a_follower_with_nothing_to_exit_is_skipped(follower_net: int) -> None:
    result = size_order(times(1), nifty(lots(2), "SELL"), NIFTY_LOT,
                        positions=NetPositions(lots(4), follower_net))
    assert skipped(result) == "follower has no open position to exit"


def test_a_follower_holding_less_than_a_lot_cannot_exit_it() -> None:
    result = size_order(times(1), nifty(lots(2), "SELL"), NIFTY_LOT,
                        positions=NetPositions(lots(2), 30))
    assert skipped(result) == "follower holds 30 units, less than one lot (65)"


def test_caps_do_not_shrink_an_exit() -> None:
    # A capped exit would leave the follower holding what the leader has closed.
    result = size_order(times(1), nifty(lots(5), "SELL", price=100.0), NIFTY_LOT,
                        positions=NetPositions(lots(5), lots(5)),
                        caps=Caps(max_quantity=65, max_order_value=1000))
    assert sized(result).lots == 5


def test_adding_to_an_open_position_is_an_entry() -> None:
    result = size_order(times(0.5), nifty(lots(2), "BUY"), NIFTY_LOT,
                        positions=NetPositions(lots(4), 0))
    assert sized(result).lots == 1


def test_a_reversal_flattens_then_enters_the_rest() -> None:
    # Leader long 2 lots sells 6: 2 lots exit (follower flat: 3 lots), 4 lots entry x 0.5.
    result = sized(size_order(times(0.5), nifty(lots(6), "SELL"), NIFTY_LOT,
                              positions=NetPositions(lots(2), lots(3))))
    assert result.lots == 3 + 2


def test_caps_limit_only_the_entry_part_of_a_reversal() -> None:
    result = sized(size_order(times(1), nifty(lots(6), "SELL"), NIFTY_LOT,
                              positions=NetPositions(lots(2), lots(3)),
                              caps=Caps(max_quantity=lots(1))))
    assert result.lots == 3 + 1


def test_a_reversal_whose_entry_is_below_one_lot_still_flattens() -> None:
    result = sized(size_order(times(0.2), nifty(lots(3), "SELL"), NIFTY_LOT,
                              positions=NetPositions(lots(2), lots(2))))
    assert result.lots == 2
    assert "not mirrored: reversal: 0.2 lots after multiplier 0.2: below one lot" in result.notes


def test_a_reversal_with_nothing_to_mirror_names_both_parts() -> None:
    result = size_order(times(0.2), nifty(lots(3), "SELL"), NIFTY_LOT,
                        positions=NetPositions(lots(2), 0))
    assert skipped(result) == ("exit: follower has no open position to exit; "
                               "reversal: 0.2 lots after multiplier 0.2: below one lot")


# ---- disclosed quantity and slicing -------------------------------------------------


def test_disclosed_quantity_keeps_the_leaders_fraction_in_whole_lots() -> None:
    # Leader discloses 4 of 10 lots (40 %); follower trades 5 lots: 2 lots, rounded up.
    result = sized(size_order(times(0.5), nifty(lots(10), disclosed=lots(4)), NIFTY_LOT))
    assert result.disclosed_quantity == lots(2)


def test_disclosed_quantity_rounds_up_so_the_30_percent_rule_holds() -> None:
    # 35 % of 7 lots is 2.45 lots: flooring to 2 lots (28.6 %) would break Dhan's rule.
    result = sized(size_order(times(0.7), nifty(lots(10), disclosed=lots(3.5)), NIFTY_LOT))
    assert (result.lots, result.disclosed_quantity) == (7, lots(3))


def test_disclosed_quantity_not_above_30_percent_is_dropped() -> None:
    order = nifty(lots(10), disclosed=lots(3))  # the leader's own 30 %: not "more than"
    result = sized(size_order(times(1), order, NIFTY_LOT))
    assert result.disclosed_quantity == 0
    assert result.notes == ("disclosed quantity 195 is not above 30% of 650: dropped to 0",)


def test_disclosed_quantity_that_rounds_up_to_the_whole_order_is_dropped() -> None:
    result = sized(size_order(times(0.5), nifty(lots(2), disclosed=lots(1)), NIFTY_LOT))
    assert (result.lots, result.disclosed_quantity) == (1, 0)


def test_no_disclosure_stays_no_disclosure() -> None:
    assert sized(size_order(times(2), nifty(lots(3)), NIFTY_LOT)).disclosed_quantity == 0


@pytest.mark.parametrize(("follower_lots", "freeze", "expected"), [
    (27, 1755, False), (28, 1755, True), (40, None, False), (1, 1, True)])
def test_orders_above_the_freeze_limit_are_sliced(follower_lots: int, freeze: int | None,
                                                  expected: bool) -> None:
    result = size_order(SizingRule(SizingMode.FIXED_LOTS, follower_lots), nifty(lots(1)),
                        NIFTY_LOT, freeze_limit=freeze)
    assert sized(result).slice is expected


# ---- modifications ------------------------------------------------------------------


def test_resize_follows_the_leaders_new_total() -> None:
    assert sized(resize_total(times(0.5), nifty(lots(8)), NIFTY_LOT, 0)).lots == 4
    assert sized(resize_total(times(0.5), nifty(lots(4)), NIFTY_LOT, lots(1))).lots == 2


def test_resize_never_goes_below_what_the_follower_filled() -> None:
    result = sized(resize_total(times(0.5), nifty(lots(2)), NIFTY_LOT, lots(3)))
    assert (result.quantity, result.lots) == (lots(3), 3)
    assert result.notes == ("leader total 130 sizes to 65 units, below the 195 already "
                            "filled: clamped to filled",)


def test_resize_to_nothing_after_fills_clamps_and_keeps_the_reason() -> None:
    result = sized(resize_total(times(0.2), nifty(lots(2)), NIFTY_LOT, lots(1)))
    assert result.quantity == lots(1)
    assert result.notes == ("0.4 lots after multiplier 0.2: below one lot; the 65 units "
                            "already filled stand: clamped to filled",)


def test_resize_to_nothing_before_any_fill_is_a_skip() -> None:
    assert skipped(resize_total(times(0.2), nifty(lots(2)), NIFTY_LOT, 0)) == (
        "0.4 lots after multiplier 0.2: below one lot")


def test_resize_applies_caps_like_an_entry() -> None:
    result = resize_total(times(1), nifty(lots(10)), NIFTY_LOT, 0, caps=Caps(max_quantity=200))
    assert sized(result).lots == 3


def test_resize_refuses_a_negative_fill() -> None:
    with pytest.raises(ValueError):
        resize_total(times(1), nifty(lots(1)), NIFTY_LOT, -1)


# ---- properties ---------------------------------------------------------------------

lot_sizes = st.sampled_from([1, 15, 25, 30, 50, 65, 75, 100, 1800])
multipliers = st.floats(min_value=0.01, max_value=20, allow_nan=False)
prices = st.floats(min_value=0.05, max_value=100_000, allow_nan=False)


@st.composite
def entries(draw: st.DrawFn) -> tuple[SizingRule, LeaderOrder, int]:
    lot_size = draw(lot_sizes)
    quantity = draw(st.integers(1, 500)) * lot_size + draw(st.sampled_from([0, 0, 0, 7]))
    mode = draw(st.sampled_from(list(SizingMode)))
    value = (draw(st.integers(1, 50)) if mode is SizingMode.FIXED_LOTS else draw(multipliers))
    order = LeaderOrder("1", "NSE_FNO", "MARGIN", draw(st.sampled_from(list(Side))), quantity,
                        draw(st.sampled_from([0.0, 1.0])) * draw(prices),
                        draw(st.integers(0, quantity)))
    return SizingRule(mode, value), order, lot_size


capitals = st.builds(Capital, st.floats(1, 1e9), st.floats(0, 1e9))
caps = st.builds(Caps, max_quantity=st.none() | st.integers(1, 100_000),
                 max_order_value=st.none() | st.floats(1, 1e9))


@given(entries(), capitals, caps, st.none() | prices, st.none() | st.integers(1, 50_000))
def test_every_entry_is_whole_lots_within_its_caps(entry: tuple, capital: Capital, cap: Caps,
                                                   reference: float | None,
                                                   freeze: int | None) -> None:
    rule, order, lot_size = entry
    result = size_order(rule, order, lot_size, capital=capital, caps=cap,
                        reference_price=reference, freeze_limit=freeze)
    if isinstance(result, Skip):
        assert result.reason
        return
    assert result.quantity % lot_size == 0
    assert result.lots == result.quantity // lot_size >= 1
    if cap.max_quantity is not None:
        assert result.quantity <= cap.max_quantity
    price = order.price or reference
    if cap.max_order_value is not None:
        assert price is not None
        assert result.quantity * price <= cap.max_order_value * (1 + 1e-12)
    assert result.slice == (freeze is not None and result.quantity > freeze)
    disclosed = result.disclosed_quantity
    assert disclosed == 0 or (disclosed % lot_size == 0 and 0.3 * result.quantity < disclosed
                              < result.quantity)


@given(lot_sizes, st.integers(1, 200), st.integers(1, 200), st.integers(0, 400), multipliers,
       st.sampled_from(list(Side)))
def test_an_exit_never_sells_more_than_the_follower_holds(
        lot_size: int, leader_open_lots: int, exit_lots: int, follower_lots: int,
        multiplier: float, side: Side) -> None:
    sign = 1 if side is Side.SELL else -1  # a SELL exits a long, a BUY exits a short
    assume(exit_lots <= leader_open_lots)
    positions = NetPositions(sign * leader_open_lots * lot_size, sign * follower_lots * lot_size)
    order = LeaderOrder("1", "NSE_FNO", "MARGIN", side, exit_lots * lot_size)
    result = size_order(times(multiplier), order, lot_size, positions=positions,
                        caps=Caps(max_quantity=lot_size))
    follower_open = follower_lots * lot_size
    if isinstance(result, Skip):
        assert exit_lots < leader_open_lots or follower_lots == 0
        return
    assert result.quantity <= follower_open
    assert result.quantity % lot_size == 0
    if exit_lots == leader_open_lots:
        assert result.quantity == follower_open  # the last exit takes it flat


@given(lot_sizes, st.integers(1, 200), st.integers(1, 400), st.integers(1, 400),
       st.sampled_from(list(Side)))
def test_a_full_exit_always_flattens_the_follower(lot_size: int, leader_lots: int,
                                                  follower_lots: int, extra: int,
                                                  side: Side) -> None:
    sign = 1 if side is Side.SELL else -1
    positions = NetPositions(sign * leader_lots * lot_size, sign * follower_lots * lot_size)
    order = LeaderOrder("1", "NSE_FNO", "MARGIN", side, leader_lots * lot_size)
    assert sized(size_order(times(0.01), order, lot_size, positions=positions)).quantity == (
        follower_lots * lot_size)
    # A reversal (more than the leader held) flattens too, and adds at most its entry part.
    bigger = LeaderOrder("1", "NSE_FNO", "MARGIN", side, (leader_lots + extra) * lot_size)
    reversed_ = sized(size_order(times(1), bigger, lot_size, positions=positions))
    assert reversed_.quantity == (follower_lots + extra) * lot_size


@given(entries(), multipliers, multipliers, caps, prices)
def test_scaling_is_monotonic_in_the_multiplier(entry: tuple, low: float, high: float,
                                                cap: Caps, reference: float) -> None:
    _, order, lot_size = entry
    low, high = sorted((low, high))

    def units(multiplier: float) -> int:
        result = size_order(times(multiplier), order, lot_size, caps=cap,
                            reference_price=reference)
        return result.quantity if isinstance(result, SizedOrder) else 0

    assert units(low) <= units(high)


@given(entries(), st.integers(0, 100), capitals)
def test_resize_never_goes_below_the_filled_quantity(entry: tuple, filled_lots: int,
                                                     capital: Capital) -> None:
    rule, order, lot_size = entry
    result = resize_total(rule, order, lot_size, filled_lots * lot_size, capital=capital)
    if isinstance(result, Skip):
        assert filled_lots == 0
    else:
        assert result.quantity >= filled_lots * lot_size
        assert result.quantity % lot_size == 0


# ---- freeze limits ------------------------------------------------------------------


def test_the_freeze_table_ships_as_package_data() -> None:
    assert (files("copytrade") / "data" / "freeze_limits.csv").is_file()


@pytest.mark.parametrize(("key", "limit"), [
    ("NIFTY", 1755), ("BANKNIFTY", 600), ("FINNIFTY", 1800), ("MIDCPNIFTY", 2800),
    ("52175", 1755), ("52201", 1755), ("52202", 1755), ("52174", 600), ("52301", 600),
])
def test_the_shipped_freeze_limits(key: str, limit: int) -> None:
    assert load_freeze_limits()[key] == limit


def test_the_shipped_limits_are_whole_lots_of_the_index_lot_sizes() -> None:
    table = load_freeze_limits()
    assert table["NIFTY"] == 27 * 65 and table["BANKNIFTY"] == 20 * 30


def test_loading_returns_a_fresh_table_each_time() -> None:
    load_freeze_limits()["NIFTY"] = 1
    assert load_freeze_limits()["NIFTY"] == 1755


@pytest.mark.parametrize(("security", "symbol", "overrides", "expected"), [
    ("52175", None, {}, 1755),
    ("99999", "NIFTY-Dec2026-FUT", {}, 1755),
    ("99999", "NIFTY 29 DEC 26000 CALL", {}, 1755),
    ("99999", "banknifty", {}, 600),
    ("99999", "RELIANCE-Dec2026-FUT", {}, None),
    ("99999", None, {}, None),
    ("52175", None, {"52175": 650}, 650),
    ("52175", "NIFTY-Dec2026-FUT", {"nifty": 1300}, 1300),  # any override beats the table
    ("52175", "NIFTY-Dec2026-FUT", {"NIFTY": 1300, "52175": 650}, 650),  # id is most specific
    ("1333", "HDFCBANK", {"HDFCBANK": 10_000}, 10_000),
])
def test_freeze_limit_lookup(security: str, symbol: str | None, overrides: dict,
                             expected: int | None) -> None:
    assert freeze_limit_for(security, symbol, overrides, load_freeze_limits()) == expected


def test_underlying_is_the_leading_word_of_a_symbol() -> None:
    assert underlying_of("BANKNIFTY-Dec2026-58000-CE") == "BANKNIFTY"
    assert underlying_of(" nifty 29 DEC 26000 PUT") == "NIFTY"


@pytest.mark.parametrize("rows", [
    ["exchange_segment,underlying_or_security_id,freeze_quantity", "NSE_FNO,NIFTY,1755",
     "NSE_FNO,nifty,1800"],
    ["exchange_segment,underlying_or_security_id,freeze_quantity", "NSE_FNO,NIFTY,0"],
])
def test_inconsistent_freeze_data_is_an_error(rows: list[str]) -> None:
    with pytest.raises(ValueError):
        parse_freeze_rows(rows)


def test_freeze_rows_skip_comments_and_blank_lines() -> None:
    rows = ["# source", "exchange_segment,underlying_or_security_id,freeze_quantity", "",
            "NSE_FNO,NIFTY,1755", "NSE_FNO,NIFTY,1755"]
    assert parse_freeze_rows(rows) == {"NIFTY": 1755}
