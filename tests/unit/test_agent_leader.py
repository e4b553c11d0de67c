"""An agent's handling of each leader event (copytrade/engine/agent.py): applied once in
order, repeats and stale or refused events recorded and acknowledged, nothing applied while
the follower is stopped or when the decision could not be committed. The replicator is a
stand-in that records what it is handed; the end-to-end runs are in tests/bus/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from copytrade.core.bus_decode import LeaderEvent, Rejected
from copytrade.core.events import OrderReport, ReportSource
from copytrade.engine.agent import AgentLeader
from copytrade.engine.bus_consume import Verdict
from copytrade.store import bus_queries
from copytrade.store.db import open_store
from copytrade.store.repo import Store

DAY = date(2026, 11, 30)


@dataclass
class _Stats:
    failures: int = 0


@dataclass
class RecordingReplicator:
    """What the agent hands on; `fail` makes the next report count as not recorded."""

    agent: AgentLeader
    handed: list[tuple[str, int]] = field(default_factory=list)
    stats: _Stats = field(default_factory=_Stats)
    fail: bool = False

    def on_leader_report(self, report: OrderReport) -> None:
        if self.fail:
            self.stats.failures += 1
            return
        self.handed.append((report.order_id, self.agent.position_before(report)))


def event(order_id: str = "L1", seq: int = 1, *, day: date = DAY,
          position: int | None = 0) -> LeaderEvent:
    report = OrderReport(order_id, "PENDING", "NSE_EQ", "1333", "BUY", "CNC", "MARKET", "DAY",
                         5, 0, source=ReportSource.STREAM)
    return LeaderEvent(day, order_id, seq, ReportSource.STREAM, report, position)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = open_store(tmp_path / "agent.db")
    ticks = iter(range(10**6))
    yield Store(db, lambda: datetime(2026, 11, 30, 4, tzinfo=UTC) + timedelta(
        milliseconds=next(ticks)))
    db.close()


def agent_for(store: Store, *, stopped: bool = False) -> tuple[AgentLeader, RecordingReplicator]:
    agent = AgentLeader(store, "f2", lambda: DAY, stopped=lambda: stopped)
    replicator = RecordingReplicator(agent)
    agent.replicator = replicator  # type: ignore[assignment]
    return agent, replicator


def kinds(store: Store) -> list[str]:
    return [row[0] for row in store.db.execute_sql(
        "SELECT kind FROM auditevent ORDER BY id").fetchall()]


def test_each_event_is_applied_once_with_the_leaders_position(store: Store) -> None:
    agent, replicator = agent_for(store)
    assert agent.apply(event("L1", 1, position=-50)) is Verdict.APPLIED
    assert agent.apply(event("L1", 2, position=-50)) is Verdict.APPLIED
    assert agent.apply(event("L2", 1, position=7)) is Verdict.APPLIED
    assert replicator.handed == [("L1", -50), ("L1", -50), ("L2", 7)]
    assert bus_queries.applied_seqs(store.db) == {("2026-11-30", "L1"): 2,
                                                  ("2026-11-30", "L2"): 1}


def test_a_repeat_or_an_older_event_changes_nothing_even_after_a_restart(store: Store) -> None:
    agent, replicator = agent_for(store)
    agent.apply(event("L1", 1))
    agent.apply(event("L1", 2))
    assert agent.apply(event("L1", 2)) is Verdict.DONE  # the server delivered it again
    restarted, after_restart = agent_for(store)  # what the store kept, not memory
    assert restarted.apply(event("L1", 1)) is Verdict.DONE
    assert restarted.apply(event("L1", 3)) is Verdict.APPLIED
    assert replicator.handed == [("L1", 0), ("L1", 0)]
    assert after_restart.handed == [("L1", 0)]
    assert kinds(store) == ["bus_event_duplicate", "bus_event_duplicate"]


def test_an_event_of_an_earlier_day_is_recorded_as_skipped_for_the_follower(
        store: Store) -> None:
    agent, replicator = agent_for(store)
    assert agent.apply(event("L9", 1, day=DAY - timedelta(days=1))) is Verdict.DONE
    assert replicator.handed == []
    [row] = store.db.execute_sql("SELECT kind, follower, leader_order_id, message "
                                 "FROM auditevent").fetchall()
    assert row[:3] == ("skipped", "f2", "L9")
    assert "leader event of 2026-11-29 arrived on 2026-11-30" in row[3]
    # recorded as applied: a repeat of it is not skipped twice
    assert agent.apply(event("L9", 1, day=DAY - timedelta(days=1))) is Verdict.DONE
    assert kinds(store) == ["skipped", "bus_event_duplicate"]


def test_a_malformed_event_or_one_without_the_leaders_position_is_refused(
        store: Store) -> None:
    agent, replicator = agent_for(store)
    assert agent.apply(Rejected("bad seq: '3'", '{"v":1,"seq":"3"')) is Verdict.DONE
    assert agent.apply(event("L1", 1, position=None)) is Verdict.DONE
    assert replicator.handed == []
    rows = store.db.execute_sql("SELECT kind, message, data FROM auditevent").fetchall()
    assert [r[0] for r in rows] == ["bus_event_rejected", "bus_event_rejected"]
    assert "bad seq" in rows[0][1] and '"excerpt"' in rows[0][2]
    assert "does not say the leader's position" in rows[1][1]


def test_nothing_is_applied_nor_acknowledged_while_the_follower_is_stopped(
        store: Store) -> None:
    agent, replicator = agent_for(store, stopped=True)
    assert agent.apply(event("L1", 1)) is Verdict.RETRY
    assert replicator.handed == [] and bus_queries.applied_seqs(store.db) == {}


def test_a_decision_that_could_not_be_committed_is_delivered_again(store: Store) -> None:
    agent, replicator = agent_for(store)
    replicator.fail = True
    assert agent.apply(event("L1", 1)) is Verdict.RETRY
    assert bus_queries.applied_seqs(store.db) == {}  # so the repeat is not mistaken for one
    replicator.fail = False
    assert agent.apply(event("L1", 1)) is Verdict.APPLIED
    assert replicator.handed == [("L1", 0)]


def test_at_start_the_orders_it_recorded_are_known_again(store: Store) -> None:
    from copytrade.core.leader import merge

    recorded = event("L1", 2, position=-30).report
    with store.write():
        store.save_leader(recorded, (), DAY.isoformat(), position_before=-30)
        store.save_leader(event("OLD", 1).report, (), "2026-11-29", position_before=5)
    agent, replicator = agent_for(store)
    replicator.leaders = {}  # type: ignore[attr-defined]
    assert agent.remember_known() == 1  # today's only
    assert replicator.leaders == {recorded.key: merge(None, recorded)}  # type: ignore[attr-defined]
    assert agent.position_before(recorded) == -30
