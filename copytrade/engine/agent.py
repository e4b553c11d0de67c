"""What an agent does with each leader event off the bus (issue 12), on follow's
leader-report pipeline: the same replicator as a leader's own reports, behind three checks.

- A repeat (a seq at or below the highest applied for its order, kept in the store) is
  recorded and changes nothing: the server delivers again what was not acknowledged, and
  a leader that re-publishes after the duplicate window sends the same event twice.
- An event of an earlier trading day is recorded as skipped: orders are mirrored on their
  own day only.
- The leader's position before the order comes with the event (an agent cannot read the
  leader's positions); an event without it is refused, never sized as if flat.
While the follower is stopped (its token refused), events are left unacknowledged: they
wait on the server, so a restart in between loses none (a leader re-reads its book; an
agent has only the bus).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date

from copytrade.core.bus_decode import LeaderEvent, Rejected
from copytrade.core.events import OrderReport
from copytrade.core.leader import merge
from copytrade.engine.bus_consume import Verdict
from copytrade.engine.replicator import Replicator
from copytrade.store import bus_queries
from copytrade.store.repo import Store

log = logging.getLogger(__name__)


class AgentLeader:
    """The leader as an agent knows it: its events, applied once each, in order."""

    def __init__(self, store: Store, follower: str, trading_date: Callable[[], date], *,
                 stopped: Callable[[], bool] = lambda: False) -> None:
        self.store = store
        self.follower = follower
        self.trading_date = trading_date
        # The follower is stopped (its token refused): events are left unacknowledged, so
        # they wait on the server until it is back, and none is lost at a restart.
        self.stopped = stopped
        self.replicator: Replicator | None = None  # set by the engine once prepared
        # (trading date, order id) -> the highest seq applied: read once, kept current
        self._applied = bus_queries.applied_seqs(store.db)
        self._positions: dict[str, int] = {}  # order id -> the leader's position before it

    def remember_known(self) -> int:
        """At start, before any event: today's leader orders this agent recorded, known to
        the replicator again as they were last recorded (a leader re-reads its book; an
        agent has only its store), so a follower order cancelled outside copytrade is
        replaced for an order that sends no new event. How many."""
        replicator = self.replicator
        assert replicator is not None
        known = bus_queries.known_leader_orders(self.store.db, self.trading_date())
        for report, position in known:
            if position is not None:
                self._positions[report.order_id] = position
            replicator.leaders[report.key] = merge(None, report)
        return len(known)

    def position_before(self, report: OrderReport) -> int:
        """The replicator's figure for the leader's position before `report`'s order."""
        return self._positions[report.order_id]

    def apply(self, event: LeaderEvent | Rejected) -> Verdict:
        """One event, on the leader-report pipeline: recorded and decided, or refused."""
        if isinstance(event, Rejected):
            return self._refuse(f"a leader event was refused: {event.reason}",
                                {"excerpt": event.excerpt})
        day = event.trading_date.isoformat()
        key = (day, event.order_id)
        applied = self._applied.get(key, 0)
        if event.seq <= applied:
            self._audit("bus_event_duplicate", f"leader event {event.seq} of order "
                        f"{event.order_id} again (applied up to {applied}): changes nothing",
                        event.order_id, follower=None)
            return Verdict.DONE
        today = self.trading_date()
        if event.trading_date != today:
            self._audit("skipped", f"leader event of {day} arrived on {today.isoformat()}: "
                        "orders are mirrored on their own trading day only, not this one",
                        event.order_id, follower=self.follower, data={"no_mirror": True})
            self._applied_up_to(key, event.seq)
            return Verdict.DONE
        if event.position_before is None:
            return self._refuse(f"leader event {event.seq} of order {event.order_id} does not "
                                "say the leader's position before the order (recorded by a "
                                "leader before schema 7): not mirrored", {},
                                order_id=event.order_id)
        if self.stopped():
            return Verdict.RETRY
        replicator = self.replicator
        assert replicator is not None
        failures = replicator.stats.failures
        self._positions[event.order_id] = event.position_before
        replicator.on_leader_report(event.report)
        if replicator.stats.failures > failures:
            return Verdict.RETRY  # nothing was committed: the server delivers it again
        if self.stopped():
            # Stopped meanwhile: the replicator recorded nothing for the follower. A leader
            # catches such orders up from its book at the next start; an agent has only
            # this event, so it stays unacknowledged until the follower is back.
            return Verdict.RETRY
        self._applied_up_to(key, event.seq)
        return Verdict.APPLIED

    def _applied_up_to(self, key: tuple[str, str], seq: int) -> None:
        bus_queries.record_applied(self.store, key[0], key[1], seq)
        self._applied[key] = max(seq, self._applied.get(key, 0))

    def _refuse(self, message: str, data: dict, *, order_id: str | None = None) -> Verdict:
        log.warning("%s", message)
        self._audit("bus_event_rejected", message, order_id, follower=self.follower,
                    data=data)
        return Verdict.DONE

    def _audit(self, kind: str, message: str, order_id: str | None, *,
               follower: str | None, data: dict | None = None) -> None:
        with self.store.write():
            self.store.audit(kind, message, leader_order_id=order_id, follower=follower,
                             data=data)
