"""An agent's results publisher ([bus] mode = "nats", role = "agent"; issue 12): its record of
its follower, back to the leader, on `P.results.<follower>` (stream S_RESULTS).

The leader's publisher (engine/bus_publish.py) with another outbox: the agent's audit trail
rows about its follower (store/results_queries.py), each with its mirror as it is now,
after a cursor kept in `buscursor` under the results stream's name. Everything else is the
publisher's own: a thread with its own asyncio loop and nats-py connection, woken by
`wake()` (an Event.set) with a one-second backstop, a batch in flight at a time, the cursor
moved only past acknowledged results, the same Nats-Msg-Id for a result sent again
(`<follower>:<store id>:<trail id>`, dropped by the server's duplicate window), reconnecting
for ever, and `bus_unavailable` / `bus_recovered` once per outage. The agent sets up
nothing on the server (its user may not): the leader creates the results stream.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING, Any

from copytrade.config.bus import BusConfig, connect_options
from copytrade.config.model import Config
from copytrade.core.bus_events import MSG_ID_HEADER
from copytrade.core.bus_results import AgentResult, result_bytes, result_msg_id, results_subject
from copytrade.engine.bus_consume import record_outage_once
from copytrade.engine.bus_publish import (
    PUBLISH_TIMEOUT,
    BusPublisher,
    BusUnavailable,
)
from copytrade.store import bus_queries, results_queries

if TYPE_CHECKING:
    from copytrade.store.repo import Store

log = logging.getLogger(__name__)


class ResultsPublisher(BusPublisher):
    """BusPublisher's machinery over the agent's results outbox (see the module's text).
    `bus` is the agent's [bus]; the cursor is kept under its results stream's name."""

    def __init__(self, bus: BusConfig, store: Store, follower: str, *,
                 options: dict[str, Any], publish_timeout: float = PUBLISH_TIMEOUT,
                 **kwargs: Any) -> None:
        super().__init__(replace(bus, stream=bus.results_stream), store, (),
                         options={**options, "name": f"copytrade-agent-{follower}"},
                         trading_date=date.today, **kwargs)
        self.follower = follower
        self.subject = results_subject(bus.subject_prefix, follower)
        self._thread.name = "bus-results"
        self._store_id = ""
        # a PubAck lost with the connection is waited for this long before it is sent again
        self.publish_timeout = publish_timeout

    def lag(self) -> int:
        """Results recorded but not yet acknowledged by JetStream."""
        acked = self._acked
        if acked is None:
            acked = bus_queries.read_cursor(self.store.db, self.bus.stream) or 0
        return results_queries.pending_results(self.store.db, self.follower, acked)

    # ---- the outbox -------------------------------------------------------------------------

    def _start_cursor(self) -> int:
        db = self.store.db
        self._outage_since = self._outage_since or bus_queries.open_outage(db)
        self._store_id = results_queries.store_id(db)
        cursor = bus_queries.read_cursor(db, self.bus.stream) or 0  # first start: everything
        self._saved = cursor
        return cursor

    async def _setup(self) -> None:
        self._needs_setup = False  # the leader makes the stream; an agent's user may not

    async def _publish_pending(self) -> int:
        assert self._acked is not None
        sent = 0
        while True:
            outbox = results_queries.results_after(self.store.db, self.follower,
                                                   self._store_id, self._acked, self.batch)
            sent += await self._publish_results(outbox.results)
            if len(outbox.results) < self.batch:
                self._acked = max(self._acked, outbox.head)
                return sent

    async def _publish_results(self, results: list[AgentResult]) -> int:
        """The batch in flight together (the leader tells an older snapshot by its trail
        id, so their order on the stream does not matter); the cursor moves over the
        acknowledged ones in trail order up to the first failure, which is raised."""
        tasks = [asyncio.ensure_future(self._publish_one(result)) for result in results]
        sent = 0
        try:
            for result, task in zip(results, tasks, strict=True):
                ack = await task
                self._acked = result.trail_id
                self.published += 1
                self.duplicates += bool(ack.duplicate)
                sent += 1
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return sent

    async def _publish_one(self, result: AgentResult) -> Any:
        if self._js is None or self._nc is None or not self._nc.is_connected:
            raise BusUnavailable("disconnected")
        return await self._js.publish(self.subject, result_bytes(result),
                                      timeout=self.publish_timeout, stream=self.bus.stream,
                                      headers={MSG_ID_HEADER: result_msg_id(result)})

    # ---- outages: once per outage, whichever of the agent's connections saw it first ----------

    ITEMS = "result"

    def _meanwhile(self) -> str:
        return (f"follow goes on mirroring {self.follower} from the events it has; its "
                "results wait in the store and are sent when it is back")

    def _record_outage(self, kind: str, message: str, data: dict[str, Any]) -> None:
        """Unless the agent's leader feed recorded it (bus_consume.record_outage_once)."""
        try:
            record_outage_once(self.store, kind, message, data)
        except Exception:
            log.warning("bus: recording %s failed", kind, exc_info=True)


def start_results_publisher(config: Config, store: Store, **options: Any
                            ) -> ResultsPublisher | None:
    """The agent's results publisher for follow, started; None unless [bus] mode = "nats"
    with role = "agent". ConfigError (exit 3) when the credentials file cannot be read; a
    server that is down is not an error (the thread retries)."""
    bus = config.bus
    if not bus.is_agent or not bus.follower:
        return None
    publisher = ResultsPublisher(bus, store, bus.follower, options=connect_options(bus),
                                 **options)
    log.info("bus: publishing %s's results to %s (%s)", bus.follower, publisher.where,
             publisher.subject)
    return publisher.start()
