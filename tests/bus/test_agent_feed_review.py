"""Review of the agent's leader feed (engine/bus_consume.py) against a real nats-server: what
becomes of an event the pipeline fails on, or takes longer than APPLY_SECONDS over, and of
an event handed back for redelivery. The pipeline is a stand-in (each event's Future is the
test's to settle); the bus is real. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import nats
import pytest
from natsserver import NatsServer
from waiting import eventually

from copytrade.config.bus import BusConfig, connect_options, consumer_name
from copytrade.core.bus_decode import LeaderEvent, Rejected
from copytrade.core.bus_events import (
    MSG_ID_HEADER,
    LeaderChange,
    change_msg_id,
    change_subject,
    event_bytes,
)
from copytrade.core.events import OrderReport, ReportSource
from copytrade.engine import bus_consume
from copytrade.engine.bus_consume import BusLeaderFeed, Verdict
from copytrade.engine.bus_publish import ensure_consumer, ensure_streams
from copytrade.store.db import open_store
from copytrade.store.repo import Store

DAY = date(2026, 11, 30)


def _change(order_id: str, seq: int) -> LeaderChange:
    report = OrderReport(order_id, "PENDING", "NSE_EQ", "1333", "BUY", "CNC", "MARKET", "DAY",
                         5, 0, source=ReportSource.STREAM)
    return LeaderChange(seq, DAY, seq, report, 0)


async def _call(url: str, work: Callable[[Any], Any]) -> Any:
    nc = await nats.connect(url)
    try:
        return await work(nc.jetstream(timeout=5.0))
    finally:
        await nc.close()


@dataclass
class Bus:
    server: NatsServer
    config: BusConfig

    def setup(self) -> None:
        async def work(js: Any) -> None:
            await ensure_streams(js, self.config)
            await ensure_consumer(js, self.config, "f2")
        asyncio.run(_call(self.server.url, work))

    def publish(self, *changes: LeaderChange) -> None:
        async def work(js: Any) -> None:
            for change in changes:
                await js.publish(change_subject(self.config.subject_prefix, change),
                                 event_bytes(change), stream=self.config.stream,
                                 headers={MSG_ID_HEADER: change_msg_id(change)})
        asyncio.run(_call(self.server.url, work))

    def unacked(self) -> int:
        """Events of the agent's consumer not acknowledged yet (pending + in flight)."""
        async def work(js: Any) -> int:
            info = await js.consumer_info(self.config.stream, consumer_name("f2"))
            return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        return int(asyncio.run(_call(self.server.url, work)))


@dataclass
class Pipeline:
    """follow's leader-report pipeline as the feed sees it: each event's Future, settled by
    `answer` (a verdict, or an exception to raise), or left to the test when it is None."""

    answer: Callable[[int, LeaderEvent | Rejected], Verdict | BaseException | None]
    handed: list[tuple[str, int]] = field(default_factory=list)
    futures: list[Future[Verdict]] = field(default_factory=list)

    def __call__(self, event: LeaderEvent | Rejected) -> Future[Verdict]:
        assert isinstance(event, LeaderEvent)
        future: Future[Verdict] = Future()
        self.handed.append((event.order_id, event.seq))
        self.futures.append(future)
        future.set_running_or_notify_cancel()  # the pipeline has taken it in hand
        outcome = self.answer(len(self.handed), event)
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        elif outcome is not None:
            future.set_result(outcome)
        return future


@pytest.fixture
def bus(nats_server: NatsServer) -> Bus:
    config = BusConfig(mode="nats", url=nats_server.url, role="agent", follower="f2")
    bus = Bus(nats_server, config)
    bus.setup()
    return bus


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = open_store(tmp_path / "agent.db")
    yield Store(db, lambda: datetime.now(UTC))
    db.close()


@pytest.fixture
def feeds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BusLeaderFeed]]:
    monkeypatch.setattr(bus_consume, "FETCH_SECONDS", 0.5)  # a stop waits out one fetch
    monkeypatch.setattr(bus_consume, "REDELIVER_SECONDS", 0.2)
    started: list[BusLeaderFeed] = []
    yield started
    for feed in started:
        assert feed.stop(timeout=10.0), "the feed did not stop"


def start_feed(bus: Bus, store: Store, pipeline: Pipeline, feeds: list[BusLeaderFeed],
               states: list[tuple[str, str]] | None = None) -> BusLeaderFeed:
    feed = BusLeaderFeed(bus.config, store, options=connect_options(bus.config))
    record = states.append if states is not None else None
    feeds.append(feed.start(pipeline, on_state=lambda state, detail: record and record(
        (state, detail))))
    return feed


def audit_kinds(store: Store) -> list[str]:
    return [row[0] for row in store.db.execute_sql(
        "SELECT kind FROM auditevent ORDER BY id").fetchall()]


# ---- an event the pipeline failed on ----------------------------------------------------------


def test_an_event_the_pipeline_raised_on_comes_again_and_the_feed_goes_on(
        bus: Bus, store: Store, feeds: list[BusLeaderFeed]) -> None:
    """A store error raised out of AgentLeader.apply (recording the applied seq, or the
    audit row of a repeat, on a busy or full disk) must not end the feed: the event is not
    acknowledged, comes again, and the events behind it follow (DESIGN: a background loop
    retries; fault 17, 27)."""
    import sqlite3

    def answer(n: int, event: LeaderEvent | Rejected) -> Verdict | BaseException:
        return sqlite3.OperationalError("database is locked") if n == 1 else Verdict.APPLIED

    pipeline = Pipeline(answer)
    states: list[tuple[str, str]] = []
    bus.publish(_change("L1", 1), _change("L2", 1))
    feed = start_feed(bus, store, pipeline, feeds, states)
    eventually(lambda: len(pipeline.handed) >= 3, timeout=10.0)
    assert pipeline.handed == [("L1", 1), ("L1", 1), ("L2", 1)]
    eventually(lambda: bus.unacked() == 0, timeout=10.0)
    assert feed._thread.is_alive()
    # the live view and `status` showed it degraded while it failed, connected after
    failing = [detail for state, detail in states if state == "backoff"]
    assert len(failing) == 1 and "could not be applied (database is locked)" in failing[0]
    assert states[-1][0] == "connected"
    assert "bus_unavailable" not in audit_kinds(store)  # the bus was never the problem


# ---- an event the pipeline takes longer than APPLY_SECONDS over --------------------------------


def test_a_slow_apply_is_waited_for_in_order_and_acknowledged_once(
        bus: Bus, store: Store, feeds: list[BusLeaderFeed], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The pipeline still has the first event in hand after APPLY_SECONDS (a long decide, a
    busy database): the feed must neither take the next event past it (order), nor call it
    a bus outage, nor leave it unacknowledged once it is applied."""
    monkeypatch.setattr(bus_consume, "APPLY_SECONDS", 0.2)
    monkeypatch.setattr(bus_consume, "IN_PROGRESS_SECONDS", 0.1)
    pipeline = Pipeline(lambda n, event: None if n == 1 else Verdict.APPLIED)
    bus.publish(_change("L1", 1), _change("L2", 1))
    start_feed(bus, store, pipeline, feeds)
    eventually(lambda: len(pipeline.handed) > 1 or "still being applied" in caplog.text,
               timeout=10.0)
    assert pipeline.handed == [("L1", 1)]  # L2 waits behind L1
    pipeline.futures[0].set_result(Verdict.APPLIED)  # the pipeline is done with L1 at last
    eventually(lambda: bus.unacked() == 0, timeout=10.0)
    assert pipeline.handed == [("L1", 1), ("L2", 1)]  # L1 acknowledged, never handed again
    assert "bus_unavailable" not in audit_kinds(store)


# ---- an event handed back (the follower stopped, a decision not committed) ----------------------


def test_an_event_handed_back_comes_again_before_the_ones_behind_it(
        bus: Bus, store: Store, feeds: list[BusLeaderFeed]) -> None:
    """Handed back (the follower stopped, a decision not committed), an event must still come
    before the ones published after it: an exit decided before its entry would be sized
    from a position the follower does not hold yet. (On a nak the server may hand out the
    next event first: a race, so L1 is handed back a few times.)"""
    pipeline = Pipeline(lambda n, event: Verdict.RETRY if n <= 4 else Verdict.APPLIED)
    bus.publish(_change("L1", 1), _change("L2", 1), _change("L3", 1))
    start_feed(bus, store, pipeline, feeds)
    eventually(lambda: bus.unacked() == 0, timeout=10.0)
    assert pipeline.handed == [("L1", 1)] * 5 + [("L2", 1), ("L3", 1)]


# ---- an agent restarted with an event unacknowledged ------------------------------------------


def test_after_an_agent_restart_its_unacknowledged_event_still_comes_first(bus: Bus) -> None:
    """The agent dies (kill -9) with L1 delivered and not acknowledged (before its decision
    was committed). At its restart L1 must come before L2 (else an exit could be decided
    before its entry): the leader creates `agent-<follower>` with max_ack_pending 1, so
    nothing is delivered until L1 comes back after its ack wait."""
    from nats.errors import TimeoutError as NatsTimeout

    bus.publish(_change("L1", 1), _change("L2", 1))

    async def first_agent(js: Any) -> str:
        subscription = await js.pull_subscribe_bind(consumer_name("f2"), stream="COPYTRADE")
        [message] = await subscription.fetch(1, timeout=2.0)
        return str(message.subject)  # never acknowledged: the connection dies with it

    async def restarted_agent(js: Any) -> str | None:
        subscription = await js.pull_subscribe_bind(consumer_name("f2"), stream="COPYTRADE")
        try:
            [message] = await subscription.fetch(1, timeout=0.5)
        except (TimeoutError, NatsTimeout):
            return None  # nothing yet: L1 comes back first, after its ack wait
        return str(message.subject)

    assert asyncio.run(_call(bus.server.url, first_agent)).endswith(".L1")
    delivered = asyncio.run(_call(bus.server.url, restarted_agent))
    assert delivered is None or delivered.endswith(".L1"), f"{delivered} overtook L1"
