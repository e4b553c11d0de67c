"""follow's display loop (cli/follow.run_engine) around the engine's thread: whatever
stops the display, the engine is told to stop and its thread is waited for."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import threading

import pytest
from rich.console import Console

from copytrade.cli.follow import run_engine
from copytrade.store import queries
from copytrade.store.queries import EventCursor

RUN_BOUND = 10.0  # the fake engine ends by itself after this long, stopped or not


class FakeEngine:
    """Runs until stop(); records that it was stopped and that its run ended."""

    followers: tuple = ()

    def __init__(self) -> None:
        self.stop_asked = threading.Event()
        self.finished = threading.Event()

    async def run(self) -> None:
        await asyncio.to_thread(self.stop_asked.wait, RUN_BOUND)
        self.finished.set()

    def stop(self) -> None:
        self.stop_asked.set()

    def reload_tokens(self) -> None:
        pass


def test_a_failing_plain_display_still_stops_the_engine_and_waits_for_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(*_args: object) -> list:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(queries, "events_after", unreadable)  # the plain lines' read
    engine = FakeEngine()
    out = io.StringIO()
    with pytest.raises(sqlite3.OperationalError):
        run_engine(engine, Console(file=out), None,  # type: ignore[arg-type]
                   printed_up_to=EventCursor())
    assert out.getvalue().startswith("copytrade follow: started")
    assert engine.stop_asked.is_set()
    assert engine.finished.is_set()  # joined, not left running in a daemon thread
