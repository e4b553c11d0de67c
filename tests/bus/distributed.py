"""Distributed mode on one machine, for the failure tests and the soak: two homes, two
processes, a real nats-server, and a proxy to cut the agent off.

    with Cluster.up(sim, tmp_path) as cluster:       # server, leader and agent running
        cluster.place_market(5)
        cluster.agent.kill(); cluster.agent.start()   # kill -9 and restart
        cluster.server.kill(); cluster.server.start()
        cluster.agent_link.cut(); ...; cluster.agent_link.heal()   # a partition
        figures = cluster.wait_settled()
        assert_exactly_once(figures)

- one emulator (the caller's: leader and follower accounts);
- a nats-server started with the configuration `copytrade bus init f2` writes (its users,
  passwords and permissions), on 127.0.0.1;
- the leader's home: the leader, one local follower (f1) and f2 with `remote = true` (no
  token for it); the agent's home: `[leader] client_id` only and f2 with its token; each a
  real `copytrade follow` subprocess (COPYTRADE_HOME, --config, tokens in its environment);
- the agent reaches the server through a TcpProxy (tests/tcpproxy.py), so a test can cut it;
- the checks, from the emulator's books (the broker's truth) and each host's store: for each
  follower and leader order, exactly one follower order of ours per attempt (correlation
  ids), at most one that holds; every leader order mirrored or recorded as skipped (f1 in
  the leader's store, f2 in the agent's); quantities as the leader's; a cancelled leader
  order's follower order cancelled too.

Every wait is bounded. Helpers that talk to the server connect as the leader user (the one
`bus init` lets manage the streams), never as an agent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from natsserver import NatsServer
from tcpproxy import TcpProxy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from followtools import LEADER_ID, LEADER_TOKEN, Follower, follower
from simtools import eventually

from copytrade.config.bus import BusConfig, connect_options, consumer_name
from copytrade.config.bus_init import plan_bus_init, write_bus_init
from copytrade.core.ids import correlation_id, is_ours
from copytrade.engine.bus_publish import ACK_WAIT_SECONDS
from copytrade.engine.follow import trading_date_now
from copytrade.sim.server import Emulator

LOCAL = follower("f1", "1000000002")  # mirrored by the leader's host
REMOTE = follower("f2", "1000000003")  # mirrored by its agent
STREAM = "COPYTRADE"
START_TIMEOUT = 30.0  # seconds for a follow process to log in to the emulator
STOP_TIMEOUT = 30.0
BUS_TIMEOUT = 5.0  # seconds for one request to the server
CONTRACT_ACK_WAIT = ACK_WAIT_SECONDS  # the agent's consumer's ack wait, as the leader sets it
SHORT_ACK_WAIT = 2.0  # what the short tests shorten it to (see Cluster.shorten_ack_wait)
# Follower order statuses that hold (are or may become a position).
HOLDING = frozenset({"TRANSIT", "PENDING", "PART_TRADED", "TRADED"})
# Mirror states that are still on their way (decided, not yet answered by the broker).
MIRRORS_IN_FLIGHT = ("PLANNED", "SUBMITTED", "PENDING_CANCEL")
# How an agent records a leader order it decided not to mirror, beside a SKIPPED mirror: an
# event of an older trading date (`bus_event_stale` in the contracts; the agent as built
# writes `skipped`, with the follower and the leader order).
RECORDED_SKIP_KINDS = ("skipped",)

MARKET = {"transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
          "orderType": "MARKET", "validity": "DAY", "securityId": "1333", "quantity": 2,
          "price": 0.0}
RESTING = {"transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
           "orderType": "LIMIT", "validity": "DAY", "securityId": "11536", "quantity": 5,
           "price": 3000.0}  # below the market: stays open until modified or cancelled


# ---- one `copytrade follow` process -----------------------------------------------------------


@dataclass
class FollowProcess:
    """A real `copytrade follow`, on its own home and configuration, killed at will. Each
    run's output is appended to `<name>.out` beside the home."""

    name: str
    sim: Emulator
    home: Path
    config: Path
    tokens: dict[str, str]  # environment variable -> token: only this host's
    client_ids: tuple[str, ...]  # the accounts whose order stream it opens
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0

    @property
    def output_path(self) -> Path:
        return self.home.parent / f"{self.name}.out"

    @property
    def database(self) -> Path:
        return self.home / "copytrade.db"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *, wait: bool = True, fault_point: str | None = None) -> FollowProcess:
        """Start it; with wait, until the emulator counts its logins (bounded)."""
        assert not self.alive, f"{self.name} is already running"
        env = {k: v for k, v in os.environ.items() if not k.startswith("COPYTRADE_")}
        env.update({"COPYTRADE_HOME": str(self.home), **self.tokens})
        if fault_point:
            env["COPYTRADE_FAULT_POINT"] = fault_point
        self.starts += 1
        with self.output_path.open("ab") as output:
            output.write(f"\n==== start {self.starts} ====\n".encode())
            output.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "copytrade", "follow", "--config", str(self.config)],
                env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready(armed=fault_point is not None)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT, *, armed: bool = False) -> None:
        """Until it has logged in; armed (a fault point set), a kill -9 at that point may
        come first, and ends the wait."""
        def ready() -> bool:
            assert self.process is not None
            if armed and self.process.poll() == -signal.SIGKILL:
                return True
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}: "
                                     f"{self.tail()}")
            connections = self.sim.stream.stats()["connections"]
            return all(connections.get(cid, 0) >= 1 for cid in self.client_ids)
        eventually(ready, timeout=timeout, interval=0.05)

    def kill(self) -> None:
        """SIGKILL (a crash), then until the emulator has seen its connections close."""
        assert self.process is not None and self.alive, f"{self.name} is not running"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)
        self.kills += 1
        eventually(lambda: all(self.sim.stream.stats()["connections"].get(cid, 0) == 0
                               for cid in self.client_ids), timeout=10, interval=0.02)

    def stop(self) -> int:
        """Ctrl-C, as a person stops it; its exit code."""
        assert self.process is not None
        if self.alive:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(f"{self.name} did not stop within {STOP_TIMEOUT}s") from None

    def reap(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)

    def tail(self, lines: int = 25) -> str:
        if not self.output_path.exists():
            return ""
        text = self.output_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        """Rows of its store, read-only (the process may be writing; WAL lets us read)."""
        if not self.database.exists():
            return []
        with closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True,
                                     timeout=10)) as db:
            db.row_factory = sqlite3.Row
            try:
                return [dict(row) for row in db.execute(sql, args)]
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # not migrated yet
                    return []
                raise

    def audit(self, kind: str) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM auditevent WHERE kind = ? ORDER BY id", (kind,))


# ---- the configurations -----------------------------------------------------------------------


def _account_lines(sim: Emulator, each: Follower, extra: str = "") -> str:
    return f'''[[followers]]
name = "{each.name}"
client_id = "{each.client_id}"
access_token_env = "TOKEN_{each.name.upper()}"
{each.sizing}
api_url = "{sim.rest_url}"
order_ws_url = "{sim.ws_url}"
{extra}
'''


def leader_config(sim: Emulator, url: str, creds: Path, settings: str = "") -> str:
    """The leader's host: the leader with its token, f1 local, f2 remote (no token here)."""
    return f'''[leader]
client_id = "{LEADER_ID}"
access_token_env = "LEADER_TOKEN"
api_url = "{sim.rest_url}"
order_ws_url = "{sim.ws_url}"

[settings]
instruments_url = "{sim.scrip_master_url}"
market_hours = false
{settings}

[bus]
mode = "nats"
role = "leader"
url = "{url}"
creds_file = "{creds}"

{_account_lines(sim, LOCAL)}
{_account_lines(sim, REMOTE, "remote = true")}'''


def agent_config(sim: Emulator, url: str, creds: Path, settings: str = "") -> str:
    """f2's host: the leader named by its client id only; f2 with its own token."""
    return f'''[leader]
client_id = "{LEADER_ID}"

[settings]
instruments_url = "{sim.scrip_master_url}"
market_hours = false
{settings}

[bus]
mode = "nats"
role = "agent"
follower = "{REMOTE.name}"
url = "{url}"
creds_file = "{creds}"

{_account_lines(sim, REMOTE)}'''


# ---- the cluster ------------------------------------------------------------------------------


@dataclass
class Cluster:
    sim: Emulator
    root: Path
    bus_dir: Path  # what `bus init f2` wrote
    server: NatsServer
    agent_link: TcpProxy  # the agent's way to the server
    leader: FollowProcess
    agent: FollowProcess
    placed: list[str] = field(default_factory=list)  # leader order ids, in order placed
    server_kills: int = 0
    partitions: int = 0

    @classmethod
    @contextmanager
    def up(cls, sim: Emulator, root: Path, *, leader_settings: str = "",
           agent_settings: str = "", start: bool = True) -> Iterator[Cluster]:
        """Server, leader and agent started (unless start=False); everything reaped on exit,
        whatever happened, with the processes' output tails in the failure."""
        bus_dir = root / "bus"
        write_bus_init(plan_bus_init([REMOTE.name], directory=bus_dir))
        server = NatsServer(root / "nats",
                            config_text=(bus_dir / "nats-server.conf").read_text())
        server.start()
        link = TcpProxy(server.port or 0).start()
        leader_home, agent_home = root / "leader-home", root / "agent-home"
        for home in (leader_home, agent_home):
            home.mkdir(mode=0o700)
        (root / "leader.toml").write_text(leader_config(
            sim, server.url, bus_dir / "leader.creds", leader_settings))
        (root / "agent.toml").write_text(agent_config(
            sim, link.url(), bus_dir / f"agent-{REMOTE.name}.creds", agent_settings))
        leader = FollowProcess("leader", sim, leader_home, root / "leader.toml",
                               {"LEADER_TOKEN": LEADER_TOKEN, "TOKEN_F1": LOCAL.token},
                               (LEADER_ID, LOCAL.client_id))
        agent = FollowProcess("agent", sim, agent_home, root / "agent.toml",
                              {"TOKEN_F2": REMOTE.token}, (REMOTE.client_id,))
        cluster = cls(sim, root, bus_dir, server, link, leader, agent)
        try:
            if start:
                leader.start()
                cluster.wait_consumer()  # the leader creates it; the agent binds it
                cluster.start_agent()
            yield cluster
        finally:
            for each in (agent, leader):
                each.reap()
            link.close()
            server.kill()

    def start_agent(self, *, fault_point: str | None = None) -> None:
        """Start the agent; wait until it pulls from its consumer (its order stream's login
        comes before its bus connection: a test must not fail the server before that)."""
        self.agent.start(fault_point=fault_point)
        eventually(self.agent_pulling, timeout=START_TIMEOUT, interval=0.05)

    def agent_pulling(self) -> bool:
        assert self.agent.alive, f"the agent exited: {self.agent.tail()}"
        try:
            return self.consumer().num_waiting >= 1
        except Exception:  # the server is down
            return False

    # ---- the leader's app --------------------------------------------------------------------

    def place(self, body: dict[str, Any]) -> str:
        [order_id] = self.sim.app_place(LEADER_ID, body)
        self.placed.append(order_id)
        return order_id

    def place_market(self, count: int = 1, quantity: int = 2) -> list[str]:
        return [self.place({**MARKET, "quantity": quantity}) for _ in range(count)]

    def place_resting(self, quantity: int = 5) -> str:
        return self.place({**RESTING, "quantity": quantity})

    def modify(self, order_id: str, quantity: int, price: float) -> None:
        self.sim.app_modify(LEADER_ID, order_id, {"orderType": "LIMIT", "quantity": quantity,
                                                  "price": price, "validity": "DAY"})

    def cancel(self, order_id: str) -> None:
        self.sim.app_cancel(LEADER_ID, order_id)

    # ---- failures ----------------------------------------------------------------------------

    def kill_server(self) -> None:
        self.server.kill()
        self.server_kills += 1

    def partition(self, *, hold: bool = False) -> None:
        """The agent's host loses the server: its connections dropped, new ones refused
        (or, hold=True, held unanswered)."""
        self.agent_link.cut(hold=hold)
        self.partitions += 1

    # ---- the bus, seen by the leader user ----------------------------------------------------

    def bus_options(self) -> dict[str, Any]:
        bus = BusConfig(mode="nats", role="leader", url=self.server.url,
                        creds_file=self.bus_dir / "leader.creds")
        return connect_options(bus)

    def on_bus(self, work: Callable[[Any], Any]) -> Any:
        """Run `await work(js)` on a fresh connection as the leader user."""
        async def run() -> Any:
            nc = await nats.connect(**self.bus_options(), connect_timeout=2,
                                    max_reconnect_attempts=0, allow_reconnect=False)
            try:
                return await asyncio.wait_for(work(nc.jetstream()), BUS_TIMEOUT * 4)
            finally:
                await nc.close()
        return asyncio.run(run())

    def consumer(self) -> Any:
        """The agent's consumer's info (num_pending, num_ack_pending, config, ...)."""
        return self.on_bus(lambda js: js.consumer_info(STREAM, consumer_name(REMOTE.name)))

    def wait_consumer(self, timeout: float = 20.0) -> None:
        def exists() -> bool:
            try:
                self.consumer()
            except Exception:  # no server yet, no stream or consumer yet
                return False
            return True
        eventually(exists, timeout=timeout, interval=0.05)

    def consumer_drained(self) -> bool:
        """Every event delivered to the agent and acknowledged."""
        try:
            info = self.consumer()
        except Exception:  # the server is down or restarting
            return False
        return info.num_pending == 0 and info.num_ack_pending == 0

    def set_ack_wait(self, seconds: float) -> None:
        """Shorten the agent's consumer's ack wait (ACK_WAIT_SECONDS, as the leader sets
        it), so that an event a killed agent never acknowledged is redelivered within a
        short test. The leader brings it back at its next start or reconnection."""
        async def update(js: Any) -> None:
            info = await js.consumer_info(STREAM, consumer_name(REMOTE.name))
            await js.add_consumer(STREAM, info.config.evolve(ack_wait=seconds))
        self.on_bus(update)

    def shorten_ack_wait(self, seconds: float = SHORT_ACK_WAIT) -> None:
        """set_ack_wait once the leader has set the consumer up: after its start, or after
        it reconnected to a restarted server, it brings the ack wait back (first seen here
        as the leader's again), and a shortening made before that would be undone."""
        def as_the_leader_left_it() -> bool:
            try:
                return self.consumer().config.ack_wait == CONTRACT_ACK_WAIT
            except Exception:  # the server is restarting
                return False
        eventually(as_the_leader_left_it, timeout=20, interval=0.05)
        self.set_ack_wait(seconds)

    def set_duplicate_window(self, seconds: float) -> None:
        async def update(js: Any) -> None:
            info = await js.stream_info(STREAM)
            await js.update_stream(info.config.evolve(duplicate_window=seconds))
        self.on_bus(update)

    def stream_messages(self) -> list[tuple[str, dict[str, str], bytes]]:
        """(subject, headers, data) of every leader event the stream holds."""
        async def read(js: Any) -> list[tuple[str, dict[str, str], bytes]]:
            state = (await js.stream_info(STREAM)).state
            found = []
            for seq in range(state.first_seq, state.last_seq + 1):
                message = await js.get_msg(STREAM, seq)
                found.append((message.subject, dict(message.headers or {}), message.data))
            return found
        return self.on_bus(read)

    def publish_again(self, messages: list[tuple[str, dict[str, str], bytes]]) -> int:
        """Publish copies of these events, each under its own Nats-Msg-Id (as a leader
        that lost its cursor would, after the duplicate window): how many the stream
        stored (a copy inside the window is dropped by the server)."""
        async def publish(js: Any) -> int:
            stored = 0
            for subject, headers, data in messages:
                ack = await js.publish(subject, data, headers={
                    "Nats-Msg-Id": headers["Nats-Msg-Id"]}, timeout=BUS_TIMEOUT)
                stored += not ack.duplicate
            return stored
        return self.on_bus(publish)

    def stream_count(self) -> int:
        try:
            return self.on_bus(lambda js: js.stream_info(STREAM)).state.messages
        except Exception:
            return -1

    # ---- the checks -------------------------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        """The exactly-once figures now (see module doc)."""
        return exactly_once_figures(self.sim, {LOCAL: self.leader, REMOTE: self.agent})

    def settled(self) -> dict[str, Any] | None:
        """The figures once nothing is left to happen: every leader order decided for both
        followers, nothing in flight on either host or on the bus, the books agreeing. A
        duplicate never settles away: it fails at once."""
        figures = self.figures()
        if figures["duplicate follower orders"] or figures["orders of ours per attempt > 1"]:
            raise AssertionError(f"duplicates: {figures}")
        if (figures["leader orders neither mirrored nor recorded"]
                or figures["wrong quantities"] or figures["wrong states"]
                or figures["intents in flight"] or figures["mirrors in flight"]):
            return None
        published = self.stream_count() >= len(self.placed)
        return figures if published and self.consumer_drained() else None

    def wait_settled(self, timeout: float = 60.0,
                     on_agent_death: Callable[[], None] | None = None) -> dict[str, Any]:
        """settled(), waited for. An agent armed to kill itself at a fault point may do so
        only now, at the first event after the run (say, one held by a partition): with
        `on_agent_death`, it is told and the agent started again (unarmed), as the run did."""
        def settled() -> dict[str, Any] | None:
            if on_agent_death is not None and not self.agent.alive:
                on_agent_death()
                self.agent.start()
            return self.settled()

        try:
            return eventually(settled, timeout=timeout, interval=0.2)  # type: ignore[return-value]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nfigures: {self.figures()}\n{self.diagnosis()}") from None

    def mirror_states(self) -> dict[str, list[dict[str, Any]]]:
        """Each host's mirrors by state, and its recorded skips (for a failure's message)."""
        sql = ("SELECT follower, state, reason, COUNT(*) AS n FROM mirrororder "
               "GROUP BY follower, state, reason")
        return {host.name: host.rows(sql) + host.audit("skipped")
                for host in (self.leader, self.agent)}

    def diagnosis(self) -> str:
        try:
            consumer = self.consumer()
            bus = f"pending {consumer.num_pending}, unacked {consumer.num_ack_pending}"
        except Exception as exc:
            bus = f"unreadable: {exc!r}"
        return (f"consumer agent-f2: {bus}\n--- leader output ---\n{self.leader.tail()}\n"
                f"--- agent output ---\n{self.agent.tail()}\n--- nats-server ---\n"
                f"{self.server.log_tail(10)}")


def exactly_once_figures(sim: Emulator, hosts: dict[Follower, FollowProcess]) -> dict[str, Any]:
    """For each follower (mirrored by `hosts[follower]`): its orders of ours in the
    emulator's book matched to leader orders by correlation id stem (not by the store's
    rows), against the leader's book."""
    # The stores first, then the broker's books: a mirror the store already shows past
    # SUBMITTED is in the book read after it (read the other way round, an order placed in
    # between is in the store and not yet in the book read before it).
    recorded = {each: (decided_orders(host, each.name), decided_skips(host, each.name))
                for each, host in hosts.items()}
    in_flight = {each: _in_flight(host, each.name) for each, host in hosts.items()}
    accounts = sim.snapshot()["accounts"]
    leader_book = {o["orderId"]: o for o in accounts.get(LEADER_ID, {}).get("orders", [])
                   if o.get("legName") in (None, "", "ENTRY_LEG")}
    today = trading_date_now()
    figures: Counter[str] = Counter()
    figures["leader orders"] = len(leader_book)
    for each, host in hosts.items():
        stems = {correlation_id(today, leader_id, each.name, 1, 1).rsplit("-", 1)[0]: leader_id
                 for leader_id in leader_book}
        per_attempt: Counter[str] = Counter()
        holding: dict[str, list[dict]] = defaultdict(list)
        ours: dict[str, list[dict]] = defaultdict(list)
        for order in accounts.get(each.client_id, {}).get("orders", []):
            tag = order.get("correlationId") or ""
            if not is_ours(tag):
                continue
            per_attempt[tag] += 1
            leader_id = stems.get(tag.rsplit("-", 1)[0])
            if leader_id is None:
                figures["follower orders of ours for no leader order"] += 1
                continue
            ours[leader_id].append(order)
            if order["orderStatus"] in HOLDING:
                holding[leader_id].append(order)
        figures["orders of ours per attempt > 1"] += sum(n - 1 for n in per_attempt.values())
        figures[f"follower orders ({each.name})"] = sum(len(o) for o in ours.values())
        for leader_id, leader in leader_book.items():
            held = holding.get(leader_id, [])
            figures["duplicate follower orders"] += max(0, len(held) - 1)
            if leader["orderStatus"] == "CANCELLED":
                figures["wrong states"] += bool(held) and any(
                    o["orderStatus"] != "TRADED" for o in held)
            elif leader["orderStatus"] in HOLDING and held:
                figures["wrong quantities"] += sum(o["quantity"] for o in held) != (
                    leader["quantity"])
        decided, skips = recorded[each]
        missed = [o for o in leader_book if o not in decided]
        figures[f"leader orders decided ({each.name})"] = len(leader_book) - len(missed)
        figures["leader orders neither mirrored nor recorded"] += len(missed)
        figures["skipped (recorded)"] += len(skips)
        # each leader order: an order of ours at the broker, or a recorded skip (say, a
        # market order first seen filled, its price since gone beyond the follower's drift)
        figures[f"placed or skipped ({each.name})"] = len(set(ours) | skips)
        unplaced = sorted(set(leader_book) - set(ours) - skips)
        if unplaced:  # a diagnosis for a failure's message: the store's rows of them
            figures[f"unplaced ({each.name})"] = [(oid, host.rows(
                "SELECT state, reason, attempt, correlation_id FROM mirrororder WHERE "
                "leader_order_id = ? AND follower = ?", (oid, each.name))) for oid in unplaced]
        figures["intents in flight"] += in_flight[each][0]
        figures["mirrors in flight"] += in_flight[each][1]
    for name in ("duplicate follower orders", "orders of ours per attempt > 1",
                 "leader orders neither mirrored nor recorded", "wrong quantities",
                 "wrong states", "follower orders of ours for no leader order",
                 "intents in flight", "mirrors in flight", "skipped (recorded)"):
        figures.setdefault(name, 0)
    return dict(figures)


def _in_flight(host: FollowProcess, name: str) -> tuple[int, int]:
    """(intents still SENDING, mirrors not yet answered by the broker) of a follower."""
    intents = len(host.rows(
        "SELECT i.id FROM intent i JOIN mirrororder m ON m.id = i.mirror_id "
        "WHERE i.status = 'SENDING' AND m.follower = ?", (name,)))
    marks = ",".join("?" * len(MIRRORS_IN_FLIGHT))
    mirrors = len(host.rows(
        f"SELECT id FROM mirrororder WHERE follower = ? AND state IN ({marks})",
        (name, *MIRRORS_IN_FLIGHT)))
    return intents, mirrors


def decided_orders(host: FollowProcess, name: str) -> set[str]:
    """Leader orders the host decided for this follower: a mirror (any state, SKIPPED
    included) or a recorded skip on its audit trail."""
    mirrored = {row["leader_order_id"] for row in host.rows(
        "SELECT DISTINCT leader_order_id FROM mirrororder WHERE follower = ?", (name,))}
    return mirrored | decided_skips(host, name)


def decided_skips(host: FollowProcess, name: str) -> set[str]:
    marks = ",".join("?" * len(RECORDED_SKIP_KINDS))
    return {row["leader_order_id"] for row in host.rows(
        f"SELECT DISTINCT leader_order_id FROM auditevent WHERE kind IN ({marks}) AND "
        "follower = ? AND leader_order_id IS NOT NULL", (*RECORDED_SKIP_KINDS, name))}


def assert_exactly_once(figures: dict[str, Any]) -> None:
    zero = ("duplicate follower orders", "orders of ours per attempt > 1",
            "leader orders neither mirrored nor recorded", "wrong quantities", "wrong states",
            "follower orders of ours for no leader order")
    assert {name: figures[name] for name in zero} == dict.fromkeys(zero, 0), figures

