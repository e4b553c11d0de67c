"""Hostile-input suite: each row of issue 7's table, end to end against the emulator.

Shares the end-to-end helpers (tests/e2e: simtools, followtools) and fixtures."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

from simtools import suite_dialect  # found through the path set above

from copytrade.sim.clock import ManualClock
from copytrade.sim.server import Emulator


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock, request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """The emulator on a manual clock (rate windows move only when a test says so)."""
    with Emulator(clock=clock, seed=7, dialect=suite_dialect(request.module.__name__)) as emulator:
        yield emulator


@pytest.fixture
def live_sim(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """The emulator on the wall clock, bound to 127.0.0.1."""
    with Emulator(seed=7, dialect=suite_dialect(request.module.__name__)) as emulator:
        yield emulator
