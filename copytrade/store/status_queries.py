"""Reads for `copytrade status`: today's counts per follower (never writes; no database,
no counts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from copytrade.core.orders import OPEN_STATES, MirrorState
from copytrade.store.db import open_reader

# Each follower's latest attempt of each of today's leader orders (the entry leg).
_LATEST = (
    "SELECT m.follower, m.state, COUNT(*) FROM mirrororder m "
    "JOIN leaderorder l ON l.order_id = m.leader_order_id "
    "WHERE l.trading_date = ? AND m.leg = 1 AND NOT EXISTS (SELECT 1 FROM mirrororder later "
    "WHERE later.leader_order_id = m.leader_order_id AND later.follower = m.follower "
    "AND later.leg = m.leg AND later.attempt > m.attempt) GROUP BY m.follower, m.state")
# The same of the remote followers, as their agents reported (store/results_queries.py).
_REMOTE_LATEST = (
    "SELECT r.follower, r.state, COUNT(*) FROM remoteoutcome r "
    "JOIN leaderorder l ON l.order_id = r.leader_order_id "
    "WHERE l.trading_date = ? AND r.leg = 1 AND NOT EXISTS (SELECT 1 FROM remoteoutcome "
    "later WHERE later.leader_order_id = r.leader_order_id AND later.follower = r.follower "
    "AND later.leg = r.leg AND later.attempt > r.attempt) GROUP BY r.follower, r.state")
_OPEN = frozenset(state.value for state in OPEN_STATES)


@dataclass
class FollowerCounts:
    mirrored: int = 0  # placed and taken by the broker: filled, open, cancelled, expired
    filled: int = 0
    open: int = 0
    skipped: int = 0
    rejected: int = 0
    cancelled: int = 0
    remote: bool = False  # as its agent reported


@dataclass
class TodayCounts:
    trading_date: str
    leader_orders: int = 0
    followers: dict[str, FollowerCounts] = field(default_factory=dict)


def today_counts(database_file: Path, trading_date: str) -> TodayCounts | None:
    """Counts of `trading_date` (YYYY-MM-DD, IST); None when there is no database yet."""
    if not database_file.exists():
        return None
    db = open_reader(database_file)
    try:
        counts = TodayCounts(trading_date, db.execute_sql(
            "SELECT COUNT(*) FROM leaderorder WHERE trading_date = ?",
            (trading_date,)).fetchone()[0])
        for follower, state, number in db.execute_sql(_LATEST, (trading_date,)).fetchall():
            add(counts.followers.setdefault(follower, FollowerCounts()), state, number)
        for follower, state, number in db.execute_sql(_REMOTE_LATEST,
                                                      (trading_date,)).fetchall():
            add(counts.followers.setdefault(follower, FollowerCounts(remote=True)), state,
                number)
    finally:
        db.close()
    return counts


def add(counts: FollowerCounts, state: str, number: int) -> None:
    if state == MirrorState.SKIPPED:
        counts.skipped += number
        return
    if state == MirrorState.REJECTED:
        counts.rejected += number
        return
    counts.mirrored += number
    if state == MirrorState.FILLED:
        counts.filled += number
    elif state in (MirrorState.CANCELED, MirrorState.EXPIRED):
        counts.cancelled += number
    elif state in _OPEN:
        counts.open += number
