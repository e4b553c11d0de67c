"""End-to-end fixtures: the emulator on 127.0.0.1 and the real dhanhq SDK pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from dhanhq import DhanContext, dhanhq
from recorded import recorded_day  # noqa: F401 (a store filled by a follow run)
from simtools import LEADER_ID, LEADER_TOKEN, suite_dialect

from copytrade.sim.clock import ManualClock
from copytrade.sim.server import Emulator


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock, request: pytest.FixtureRequest) -> Iterator[Emulator]:
    with Emulator(clock=clock, seed=7, dialect=suite_dialect(request.module.__name__)) as emulator:
        yield emulator


@pytest.fixture
def make_api(sim: Emulator) -> Callable[..., dhanhq]:
    def build(client_id: str = LEADER_ID, token: str = LEADER_TOKEN,
              timeout: float = 5.0) -> dhanhq:
        context = DhanContext(client_id, token)
        http = context.get_dhan_http()
        http.base_url = sim.rest_url
        http.timeout = timeout
        return dhanhq(context)

    return build


@pytest.fixture
def api(make_api: Callable[..., dhanhq]) -> dhanhq:
    return make_api()




@pytest.fixture
def live_sim(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """The emulator on the wall clock: for follow tests, whose rate limits and backoffs
    must see time pass."""
    with Emulator(seed=7, dialect=suite_dialect(request.module.__name__)) as emulator:
        yield emulator
