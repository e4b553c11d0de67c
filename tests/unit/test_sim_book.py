"""The emulator's book without sockets: windows, positions, margin, slicing, price path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from copytrade.sim.accounts import ORDER_RATES, Account, Position
from copytrade.sim.book import Book
from copytrade.sim.clock import ManualClock
from copytrade.sim.errors import ApiError
from copytrade.sim.instruments import DEFAULT_INSTRUMENTS

HDFC = DEFAULT_INSTRUMENTS[0]
NIFTY_FUT = next(i for i in DEFAULT_INSTRUMENTS if i.security_id == "52175")


def order_body(**change: object) -> dict:
    body = {"transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
            "orderType": "MARKET", "validity": "DAY", "securityId": "1333", "quantity": 10,
            "price": 0}
    body.update(change)
    return body


def admitted(account: Account, timestamps_ms: list[int]) -> int:
    return sum(account.admit(account.order_bucket, t) for t in timestamps_ms)


def test_rate_windows_are_dhans_four() -> None:
    assert [(r.limit, r.interval) for r in ORDER_RATES] == [
        (10, 1_000), (250, 60_000), (1_000, 3_600_000), (7_000, 86_400_000)]


def test_hour_window_caps_at_1000() -> None:
    account = Account("1", 0)
    # 10 a second, 250 a minute: four minutes of 250 fill the hour's 1,000.
    stamps = [minute * 61_000 + second * 1_001 + i
              for minute in range(5) for second in range(25) for i in range(10)]
    assert admitted(account, stamps) == 1_000
    assert admitted(account, [3_600_000 + 10_000]) == 1  # the first hour's orders aged out


def test_day_window_caps_at_7000() -> None:
    account = Account("1", 0)
    stamps = [hour * 3_601_000 + minute * 61_000 + second * 1_001 + i
              for hour in range(8) for minute in range(4) for second in range(25)
              for i in range(10)]
    assert admitted(account, stamps) == 7_000


@given(st.lists(st.integers(min_value=0, max_value=5_000), max_size=60))
def test_never_more_than_10_in_any_second(offsets: list[int]) -> None:
    account = Account("1", 0)
    accepted = [t for t in sorted(offsets) if account.admit(account.order_bucket, t)]
    for start in accepted:
        assert sum(start <= t < start + 1_000 for t in accepted) <= 10


def test_position_profit_and_margin() -> None:
    position = Position(HDFC, "INTRADAY", buy_quantity=10, buy_value=16_000.0)
    assert position.unrealized_profit(1_650.0) == 500.0
    assert position.open_margin() == pytest.approx(16_000 * 0.2)
    position.sell_quantity, position.sell_value = 10, 17_000.0
    assert (position.net_quantity, position.realized_profit(), position.open_margin()) == (
        0, 1_000.0, 0.0)


def test_exit_order_blocks_no_margin() -> None:
    book = Book(clock=ManualClock(), funds=20_000)
    account = book.authenticate("1", "t")
    book.place(account, order_body(productType="INTRADAY", quantity=50))
    assert book.fund_limits(account)["utilizedAmount"] == pytest.approx(50 * 1650 * 0.2)
    [exit_order] = book.place(account, order_body(productType="INTRADAY", quantity=50,
                                                  transactionType="SELL"))
    assert exit_order.status == "TRADED"
    assert book.position_list(account)[0]["netQty"] == 0


def test_slicing_splits_at_the_freeze_limit_in_whole_lots() -> None:
    book = Book(clock=ManualClock(), funds=1e9)
    account = book.authenticate("1", "t")
    orders = book.place(account, order_body(exchangeSegment="NSE_FNO", securityId="52175",
                                            productType="MARGIN", quantity=65 * 60,
                                            disclosedQuantity=0), slicing=True)
    assert [o.quantity for o in orders] == [1755, 1755, 390]
    assert all(o.quantity % NIFTY_FUT.lot_size == 0 for o in orders)


def test_seeded_price_path_repeats_and_stays_on_ticks() -> None:
    first = Book(seed=42).step_prices(20)
    assert first == Book(seed=42).step_prices(20)
    for security_id, price in first.items():
        tick = next(i.tick_size for i in DEFAULT_INSTRUMENTS if i.security_id == security_id)
        assert abs(round(price / tick) * tick - price) < 1e-6


def test_token_of_another_account_is_refused() -> None:
    book = Book()
    book.authenticate("1", "shared")
    with pytest.raises(ApiError) as refused:
        book.authenticate("2", "shared")
    assert refused.value.code == "DH-901"


def test_tokens_kept_per_account_are_bounded() -> None:
    book = Book()
    for index in range(100):
        book.authenticate("1", f"token-{index}")
    assert len(book.accounts["1"].token_digests) <= 16
    book.authenticate("1", "token-99")  # the newest still works


def test_snapshot_holds_no_token() -> None:
    book = Book()
    book.authenticate("1", "very-secret-token")
    assert "very-secret-token" not in repr(book.snapshot())
