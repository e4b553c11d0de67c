"""Review of the agent's handling of leader events (engine/agent.py): an event decided while
its follower was being stopped, and the agent's outage record shared with its results
publisher. Stand-ins for the replicator; the store is real."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_agent_leader import DAY, _Stats, event, kinds

from copytrade.config.bus import BusConfig
from copytrade.core.events import OrderReport
from copytrade.engine.agent import AgentLeader
from copytrade.engine.bus_consume import BusLeaderFeed, Verdict
from copytrade.engine.bus_results import ResultsPublisher
from copytrade.store import bus_queries
from copytrade.store.db import open_store
from copytrade.store.repo import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = open_store(tmp_path / "agent.db")
    yield Store(db, lambda: datetime.now(UTC))
    db.close()


@dataclass
class StoppingReplicator:
    """The follower's token is refused while the event is being decided (its worker halts on
    another call): the real replicator's _decide_for then records nothing for it."""

    flag: list[bool]
    stats: _Stats = field(default_factory=_Stats)
    handed: list[str] = field(default_factory=list)

    def on_leader_report(self, report: OrderReport) -> None:
        self.handed.append(report.order_id)
        self.flag[0] = True  # stopped: nothing decided, nothing recorded for the follower


def test_an_event_decided_while_the_follower_stopped_is_not_acknowledged(store: Store) -> None:
    """Acknowledged, it would be lost at the next start: an agent has no leader book to catch
    the order up from (a leader re-reads its book), and the server would not deliver it
    again. Left unacknowledged, it is applied when the follower is back, or after a
    restart."""
    stopped = [False]
    agent = AgentLeader(store, "f2", lambda: DAY, stopped=lambda: stopped[0])
    agent.replicator = StoppingReplicator(stopped)  # type: ignore[assignment]
    assert agent.apply(event("L1", 1)) is Verdict.RETRY
    assert bus_queries.applied_seqs(store.db) == {}
    # after a restart with the token renewed, the event delivered again is decided
    restarted = AgentLeader(store, "f2", lambda: DAY, stopped=lambda: False)
    replicator = StoppingReplicator([False])
    restarted.replicator = replicator  # type: ignore[assignment]
    assert restarted.apply(event("L1", 1)) is Verdict.APPLIED
    assert replicator.handed == ["L1"]
    assert "bus_event_duplicate" not in kinds(store)


# ---- one outage, two connections ------------------------------------------------------------


def _both_at_once(monkeypatch: pytest.MonkeyPatch, *calls: Callable[[], object]) -> None:
    """Run `calls` on threads of their own, each held just after it read whether an outage
    is open until the others have read it too (or a short bound passes): the interleaving
    of the agent's feed and its results publisher seeing one server go at the same moment."""
    read_open = bus_queries.open_outage
    barrier = threading.Barrier(len(calls), timeout=0.3)

    def held(db: object) -> datetime | None:
        found = read_open(db)  # type: ignore[arg-type]
        # broken: the other is held back by the store's write lock (the fixed behaviour)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        return found

    monkeypatch.setattr(bus_queries, "open_outage", held)
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5.0)
    monkeypatch.setattr(bus_queries, "open_outage", read_open)


def test_one_outage_seen_by_the_feed_and_the_results_publisher_is_recorded_once(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    bus = BusConfig(mode="nats", url="nats://127.0.0.1:4222", role="agent", follower="f2")
    feed = BusLeaderFeed(bus, store, options={})
    publisher = ResultsPublisher(bus, store, "f2", options={})
    gone = ConnectionError("disconnected")
    _both_at_once(monkeypatch, lambda: feed._unavailable(gone),
                  lambda: publisher._unavailable(gone))
    assert kinds(store) == ["bus_unavailable"]
    _both_at_once(monkeypatch, feed._recovered, lambda: publisher._recovered(0))
    assert [k for k in kinds(store) if k.startswith("bus_")] == [
        "bus_unavailable", "bus_recovered"]
