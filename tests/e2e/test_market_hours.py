"""Issue 10 point 3 in follow: a leader order is sent only while the follower's segment
takes orders (India's trading calendar); an AMO is still sent as an AMO; the reason of a
skip names the state. The clock is the real one shifted to a chosen IST moment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from followtools import FollowRun, follower, running_follow
from simtools import sim_dialect

from copytrade.core.ist import IST
from copytrade.sim.server import Emulator

F1 = follower("f1", "1000000002")
HOURS = "market_hours = true"


@pytest.fixture
def sim() -> Iterator[Emulator]:
    with Emulator(seed=7, dialect=sim_dialect()) as emulator:
        yield emulator


def shifted_to(moment: datetime) -> Callable[[], datetime]:
    """The wall clock moved to `moment`: time still passes."""
    offset = moment - datetime.now(UTC)
    return lambda: datetime.now(UTC) + offset


def place(run: FollowRun, *, amo: bool = False) -> str:
    reply = run.leader_api.place_order("1333", "NSE_EQ", "BUY", 2, "LIMIT", "CNC", 1600.0,
                                       after_market_order=amo, amo_time="OPEN")
    assert reply["status"] == "success", reply
    return str(reply["data"]["orderId"])


def test_on_a_sunday_a_leader_order_is_skipped_with_the_reason_and_an_amo_is_sent(
        sim: Emulator, tmp_path: Path) -> None:
    sunday = datetime(2026, 12, 6, 11, 0, tzinfo=IST)
    with running_follow(sim, tmp_path, [F1], settings=HOURS,
                        context_options={"now": shifted_to(sunday)}) as run:
        place(run)
        run.wait_for(lambda: run.mirror_states("f1") == ["SKIPPED"])
        [skipped] = run.mirrors("f1")
        assert skipped.reason.startswith("NSE_EQ is closed (weekend) at 11:0")
        assert skipped.reason.endswith("IST: not sent")
        place(run, amo=True)
        run.wait_for(lambda: run.mirror_states("f1") == ["SKIPPED", "ACCEPTED"])
    [order] = run.follower_book(F1)
    assert order["afterMarketOrder"] is True


def test_in_market_hours_orders_are_sent(sim: Emulator, tmp_path: Path) -> None:
    tuesday = datetime(2026, 12, 8, 10, 30, tzinfo=IST)
    with running_follow(sim, tmp_path, [F1], settings=HOURS,
                        context_options={"now": shifted_to(tuesday)}) as run:
        place(run)
        run.wait_for(lambda: run.mirror_states("f1") == ["ACCEPTED"])


def test_follow_refuses_to_start_past_the_calendar(sim: Emulator, tmp_path: Path) -> None:
    from copytrade.errors import CalendarError

    past = datetime(2028, 1, 3, 10, 0, tzinfo=IST)
    with pytest.raises(CalendarError, match="valid through 2027-12-31"), running_follow(
            sim, tmp_path, [F1], settings=HOURS, context_options={"now": shifted_to(past)}):
        pass
