"""The leader's publisher (copytrade/engine/bus_publish.py) against a real nats-server and
the emulator: follow in leader role with one local follower (f1) and one remote (f2).

What an agent would read (its durable consumer `agent-f2`) holds every change of every
leader order the leader recorded, exactly once, in per-order sequence, with the payload of
the contract; f1 is mirrored as before and f2 is not mirrored by the leader at all. A server
killed (-9) mid-burst and restarted, and a follow killed (-9) and restarted, end with every
event in the stream exactly once. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from natsserver import NatsServer

# the end-to-end helpers, as tests/hostile and tests/soak use them
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from followtools import (
    LEADER_ID,
    LEADER_TOKEN,
    FollowRun,
    config_text,
    follower,
    running_follow,
)
from simtools import eventually, sim_dialect

from copytrade.config.bus import BusConfig, connect_options
from copytrade.config.bus_init import plan_bus_init, write_bus_init
from copytrade.config.load import load_config
from copytrade.core.bus_events import change_msg_id
from copytrade.core.events import OrderReport
from copytrade.engine.bus_publish import (
    BusPublisher,
    ensure_consumer,
    ensure_streams,
    start_bus_publisher,
)
from copytrade.engine.follow import trading_date_now
from copytrade.sim.server import Emulator
from copytrade.store import bus_queries
from copytrade.store.db import open_reader, open_store
from copytrade.store.repo import Store

F1 = follower("f1", "1000000002")  # mirrored here
F2 = follower("f2", "1000000003", extra="remote = true")  # served by an agent
STREAM = "COPYTRADE"
ORDER_FIELDS = {f.name for f in fields(OrderReport)}
LIMIT = {"transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
         "orderType": "LIMIT", "validity": "DAY", "securityId": "11536", "quantity": 5,
         "price": 3000.0}  # below the market: stays open
MARKET = {"transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
          "orderType": "MARKET", "validity": "DAY", "securityId": "1333", "quantity": 2,
          "price": 0.0}


def settings(server: NatsServer) -> str:
    return f'market_hours = false\n\n[bus]\nmode = "nats"\nurl = "{server.url}"\nrole = "leader"'


@pytest.fixture
def sim() -> Iterator[Emulator]:
    """The emulator on the wall clock (follow's limits and backoffs see time pass)."""
    with Emulator(seed=7, dialect=sim_dialect()) as emulator:
        yield emulator


@contextmanager
def follow_with_bus(sim: Emulator, home: Path, server: NatsServer) -> Iterator[
        tuple[FollowRun, BusPublisher]]:
    """follow in-process, wired as the CLI wires it: the publisher woken by the engine."""
    with running_follow(sim, home, [F1, F2], settings=settings(server), start=False) as run:
        publisher = start_bus_publisher(load_config(home / "copytrade.toml"), run.store)
        assert publisher is not None
        try:
            run.engine.on_leader_recorded = publisher.wake
            run.engine.prepare()
            run.thread.start()
            run.wait_for(run.connected)
            yield run, publisher
        finally:
            run.engine.stop()
            run.thread.join(30)
            assert publisher.stop(10), "the publisher did not stop within 10 s"


# ---- reading the bus as an agent would --------------------------------------------------------


async def _consume(url: str, durable: str, want: int, timeout: float,
                   options: dict | None = None) -> list[nats.aio.msg.Msg]:
    nc = await nats.connect(**(options or {"servers": [url]}), connect_timeout=2,
                            max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe_bind(durable, STREAM)
        got: list = []
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            try:  # one at a time: the consumer hands out one event until it is acked
                batch = await sub.fetch(1, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for message in batch:
                await message.ack_sync(timeout=5)
                got.append(message)
        with suppress(nats.errors.TimeoutError):  # and nothing more
            got += await sub.fetch(1, timeout=0.3)
        return got
    finally:
        await nc.close()


async def _stream(url: str) -> list[tuple[str, str, dict]]:
    """Every message the stream holds: (subject, msg id, payload), by stream sequence."""
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(STREAM)).state
        found = []
        for seq in range(state.first_seq, state.last_seq + 1):
            message = await js.get_msg(STREAM, seq)
            found.append((message.subject, message.headers["Nats-Msg-Id"],
                          json.loads(message.data)))
        return found
    finally:
        await nc.close()


def stream_count(server: NatsServer) -> int:
    async def count() -> int:
        nc = await nats.connect(server.url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            return (await nc.jetstream().stream_info(STREAM)).state.messages
        finally:
            await nc.close()
    try:
        return asyncio.run(count())
    except Exception:  # not up, or no stream yet
        return -1


def expected_ids(db_path: Path) -> list[str]:
    """The msg id of every leader event the leader's store recorded, in trail order."""
    db = open_reader(db_path)
    try:
        return [change_msg_id(c) for c in bus_queries.leader_changes(db, 0, 100_000).changes]
    finally:
        db.close()


def assert_each_event_once_in_order(messages: list[tuple[str, str, dict]],
                                    expected: list[str]) -> None:
    ids = [msg_id for _subject, msg_id, _payload in messages]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates, f"in the stream more than once: {duplicates}"
    assert sorted(ids) == sorted(expected), (sorted(set(expected) - set(ids)),
                                             sorted(set(ids) - set(expected)))
    per_order: dict[str, list[int]] = {}
    for _subject, _msg_id, payload in messages:
        per_order.setdefault(payload["order_id"], []).append(payload["seq"])
    for order_id, seqs in per_order.items():
        assert seqs == list(range(1, len(seqs) + 1)), (order_id, seqs)


def no_secrets(body: str) -> bool:
    return not any(text in body for text in (F1.token, F2.token, F1.client_id, F2.client_id,
                                             LEADER_TOKEN, "token"))


# ---- the tests ---------------------------------------------------------------------------------


def test_every_leader_change_reaches_the_agents_consumer_once_in_order(
        sim: Emulator, tmp_path: Path, nats_server: NatsServer) -> None:
    home = tmp_path / "home"
    with follow_with_bus(sim, home, nats_server) as (run, publisher):
        assert [f.name for f in run.engine.followers] == ["f1"]  # f2 is its agent's
        [resting] = sim.app_place(LEADER_ID, LIMIT)
        [filled] = sim.app_place(LEADER_ID, MARKET)
        run.wait_for(lambda: sorted(m.state for m in run.mirrors("f1")) ==
                     ["ACCEPTED", "FILLED"])
        sim.app_modify(LEADER_ID, resting, {"orderType": "LIMIT", "quantity": 8,
                                            "price": 3010.0, "validity": "DAY"})
        run.wait_for(lambda: any(i.action == "MODIFY" and i.status == "DONE"
                                 for i in run.intents("f1")))
        sim.app_cancel(LEADER_ID, resting)
        run.wait_for(lambda: sorted(m.state for m in run.mirrors("f1")) ==
                     ["CANCELED", "FILLED"])
        run.wait_for(lambda: publisher.lag() == 0)
        assert run.mirrors("f2") == [] and run.follower_book(F2) == []
        assert run.audit("bus_unavailable") == []
    expected = expected_ids(home / "copytrade.db")
    # the resting order: seen, modified, cancelled (its TRANSIT too, if a frame said it);
    # the market order: at least its fill (it may be first seen filled)
    assert len(expected) >= 4
    delivered = asyncio.run(_consume(nats_server.url, "agent-f2", len(expected), 10))
    messages = [(m.subject, m.headers["Nats-Msg-Id"], json.loads(m.data)) for m in delivered]
    # once each; one order's in its sequence (orders interleave: a batch is in flight
    # together, each order's next event sent once the one before it is acknowledged)
    assert_each_event_once_in_order(messages, expected)
    for subject, msg_id, payload in messages:
        date, order_id, seq = msg_id.split(":")
        assert subject == f"copytrade.leader.{date}.{order_id}"
        assert set(payload) == {"v", "trading_date", "order_id", "seq", "source",
                                "position_before", "order"}
        assert payload["position_before"] == 0  # the leader's account starts flat
        assert (payload["v"], payload["order_id"], str(payload["seq"])) == (1, order_id, seq)
        assert payload["trading_date"].replace("-", "") == date
        assert payload["source"] in ("stream", "rest")
        assert set(payload["order"]) == ORDER_FIELDS
        assert payload["order"]["order_id"] == order_id
    assert {p["order_id"] for _s, _i, p in messages} == {resting, filled}
    last = {p["order_id"]: p["order"] for _s, _i, p in messages}
    assert last[resting]["status"] == "CANCELLED" and last[resting]["quantity"] == 8
    assert last[filled]["status"] == "TRADED" and last[filled]["traded_quantity"] == 2
    assert all(no_secrets(m.data.decode()) for m in delivered)


def test_a_server_killed_mid_burst_gets_every_event_once_after_it_restarts(
        sim: Emulator, tmp_path: Path, nats_server: NatsServer) -> None:
    home = tmp_path / "home"
    with follow_with_bus(sim, home, nats_server) as (run, publisher):
        for _ in range(6):
            sim.app_place(LEADER_ID, MARKET)
        run.wait_for(lambda: publisher.published >= 3, timeout=10)
        nats_server.kill()
        for _ in range(4):  # while the server is down: f1 is mirrored all the same
            sim.app_place(LEADER_ID, MARKET)
        run.wait_for(lambda: [m.state for m in run.mirrors("f1")] == ["FILLED"] * 10,
                     timeout=20)
        run.wait_for(lambda: run.audit("bus_unavailable"), timeout=10)
        assert publisher.lag() > 0
        nats_server.start()
        run.wait_for(lambda: publisher.lag() == 0, timeout=20)
        run.wait_for(lambda: run.audit("bus_recovered"), timeout=5)
        assert len(run.audit("bus_unavailable")) == 1  # once per outage
    expected = expected_ids(home / "copytrade.db")
    assert_each_event_once_in_order(asyncio.run(_stream(nats_server.url)), expected)
    delivered = asyncio.run(_consume(nats_server.url, "agent-f2", len(expected), 10))
    assert sorted(m.headers["Nats-Msg-Id"] for m in delivered) == sorted(expected)


def test_a_publisher_that_restarts_behind_its_cursor_adds_no_copy(
        sim: Emulator, tmp_path: Path, nats_server: NatsServer) -> None:
    """A crash after publishing but before the cursor was saved: the next run publishes
    the same events again, under the same ids, and the stream keeps one of each."""
    home = tmp_path / "home"
    with follow_with_bus(sim, home, nats_server) as (run, publisher):
        for _ in range(3):
            sim.app_place(LEADER_ID, MARKET)
        run.wait_for(lambda: [m.state for m in run.mirrors("f1")] == ["FILLED"] * 3)
        run.wait_for(lambda: publisher.lag() == 0)
    expected = expected_ids(home / "copytrade.db")
    assert stream_count(nats_server) == len(expected)
    with closing(sqlite3.connect(home / "copytrade.db")) as db, db:
        db.execute("UPDATE buscursor SET trail_id = 0")  # as if never saved
    store = Store(open_store(home / "copytrade.db"), lambda: datetime.now(UTC))
    again = start_bus_publisher(load_config(home / "copytrade.toml"), store)
    assert again is not None
    try:
        eventually(lambda: again.published == len(expected), timeout=10)
        assert again.duplicates == len(expected)  # each one dropped by the duplicate window
    finally:
        assert again.stop(5)
        store.db.close()
    assert stream_count(nats_server) == len(expected)
    assert_each_event_once_in_order(asyncio.run(_stream(nats_server.url)), expected)


def test_a_server_down_at_start_is_recorded_once_and_fed_when_it_comes(
        tmp_path: Path, nats_server: NatsServer) -> None:
    """No follow needed: a leader change recorded while the server was never reachable
    waits in the store, and stop() returns in time meanwhile."""
    config_path = tmp_path / "copytrade.toml"
    config_path.write_text(config_text_for_store(nats_server))
    nats_server.stop()
    store = Store(open_store(tmp_path / "copytrade.db"), lambda: datetime.now(UTC))
    leader = OrderReport("100000000009", "PENDING", "NSE_EQ", "11536", "BUY", "CNC", "LIMIT",
                         "DAY", 3, 0, price=3000.0)
    try:
        first = start_bus_publisher(load_config(config_path), store)
        assert first is not None
        with store.write():
            store.save_leader(leader, (), trading_date_now().isoformat())
        first.wake()
        eventually(lambda: audits(store, "bus_unavailable"), timeout=10)
        assert first.lag() == 1 and not first.available
        started = time.monotonic()
        assert first.stop(2) and time.monotonic() - started < 3
        again = start_bus_publisher(load_config(config_path), store)
        assert again is not None
        try:
            nats_server.start()
            eventually(lambda: again.lag() == 0, timeout=10)
            eventually(lambda: audits(store, "bus_recovered"), timeout=5)
            assert len(audits(store, "bus_unavailable")) == 1
        finally:
            assert again.stop(5)
    finally:
        store.db.close()
    [(_subject, msg_id, payload)] = asyncio.run(_stream(nats_server.url))
    assert msg_id.endswith(":100000000009:1") and payload["order"]["status"] == "PENDING"


def test_the_leader_user_bus_init_writes_may_do_all_the_publisher_does(
        tmp_path: Path) -> None:
    """Against the server configuration `bus init` writes: the publisher connects as the
    leader, sets up the streams and agent-f2, publishes; the agent reads it with its own."""
    directory = tmp_path / "bus"
    write_bus_init(plan_bus_init(["f2"], directory=directory))
    config_path = tmp_path / "copytrade.toml"
    with NatsServer(tmp_path / "nats",
                    config_text=(directory / "nats-server.conf").read_text()) as server:
        config_path.write_text(config_text_for_store(
            server, f'creds_file = "{directory / "leader.creds"}"') + f"""
[[followers]]
name = "f2"
client_id = "{F2.client_id}"
multiplier = 1.0
remote = true
""")
        store = Store(open_store(tmp_path / "copytrade.db"), lambda: datetime.now(UTC))
        try:
            publisher = start_bus_publisher(load_config(config_path), store)
            assert publisher is not None
            try:
                with store.write():
                    store.save_leader(OrderReport("100000000007", "PENDING", "NSE_EQ",
                                                  "11536", "BUY", "CNC", "LIMIT", "DAY", 3, 0),
                                      (), trading_date_now().isoformat())
                publisher.wake()
                eventually(lambda: publisher.lag() == 0, timeout=10)
                assert audits(store, "bus_unavailable") == []  # no permission refused
            finally:
                assert publisher.stop(5)
        finally:
            store.db.close()
        agent = connect_options(BusConfig(mode="nats", url=server.url, role="agent",
                                          follower="f2",
                                          creds_file=directory / "agent-f2.creds"))
        [message] = asyncio.run(_consume(server.url, "agent-f2", 1, 10, agent))
    assert message.headers["Nats-Msg-Id"].endswith(":100000000007:1")


def test_the_stream_and_consumers_are_brought_in_line_and_set_up_again_idempotently(
        nats_server: NatsServer) -> None:
    from nats.js.api import ConsumerConfig, StreamConfig

    bus = BusConfig(mode="nats", url=nats_server.url, role="leader")

    async def run() -> tuple:
        nc = await nats.connect(nats_server.url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            js = nc.jetstream()
            # as an older copytrade (or a person) left them
            await js.add_stream(StreamConfig(name=STREAM, subjects=["copytrade.leader.>"],
                                             duplicate_window=60, max_age=3600))
            await js.add_consumer(STREAM, ConsumerConfig(
                durable_name="agent-f2", filter_subject="copytrade.leader.>", ack_wait=5,
                max_deliver=3))
            for _ in range(2):  # twice: nothing changes the second time
                await ensure_streams(js, bus)
                await ensure_consumer(js, bus, "f2")
                await ensure_consumer(js, bus, "f3")
            stream = (await js.stream_info(STREAM)).config
            results = (await js.stream_info("COPYTRADE_RESULTS")).config
            kept = (await js.consumer_info(STREAM, "agent-f2")).config
            new = (await js.consumer_info(STREAM, "agent-f3")).config
            return stream, results, kept, new
        finally:
            await nc.close()

    stream, results, kept, new = asyncio.run(run())
    assert (stream.duplicate_window, stream.max_age) == (600.0, 7 * 24 * 3600.0)
    assert results.subjects == ["copytrade.results.>"] and results.duplicate_window == 600.0
    for consumer in (kept, new):
        assert (consumer.ack_wait, consumer.max_deliver, consumer.filter_subject,
                consumer.max_ack_pending) == (10.0, -1, "copytrade.leader.>", 1)
        assert consumer.ack_policy == "explicit"
    assert kept.deliver_policy == "all" and new.deliver_policy == "new"


def config_text_for_store(server: NatsServer, bus_lines: str = "") -> str:
    return (f'[leader]\nclient_id = "{LEADER_ID}"\naccess_token_env = "LEADER_TOKEN"\n\n'
            f"[bus]\nmode = \"nats\"\nurl = \"{server.url}\"\nrole = \"leader\"\n"
            f"{bus_lines}\n")


def audits(store: Store, kind: str) -> list[tuple]:
    return store.db.execute_sql("SELECT message FROM auditevent WHERE kind = ?",
                                (kind,)).fetchall()


# ---- the real process, killed -9 ---------------------------------------------------------------


@contextmanager
def follow_process(config: Path, home: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("COPYTRADE_DEBUG", "COPYTRADE_FAULT_POINT")}
    env.update({"COPYTRADE_HOME": str(home), "LEADER_TOKEN": LEADER_TOKEN,
                "TOKEN_F1": F1.token})  # no token for f2: its agent holds it
    out = home.parent / f"{name}.out"
    with out.open("wb") as output:
        proc = subprocess.Popen([sys.executable, "-m", "copytrade", "follow", "--config",
                                 str(config)], env=env, stdin=subprocess.DEVNULL,
                                stdout=output, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def logged_in(sim: Emulator, proc: subprocess.Popen[bytes], out: Path) -> bool:
    assert proc.poll() is None, out.read_text()[-3000:]
    connections = sim.snapshot()["stream"]["connections"]
    return all(connections.get(cid, 0) >= 1 for cid in (LEADER_ID, F1.client_id))


def test_follow_killed_and_restarted_loses_no_event_and_adds_no_copy(
        sim: Emulator, tmp_path: Path, nats_server: NatsServer) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    config = tmp_path / "follow.toml"
    config.write_text(config_text(sim, [F1, F2], settings(nats_server)))
    database = home / "copytrade.db"
    with follow_process(config, home, "first") as proc:
        eventually(lambda: logged_in(sim, proc, home.parent / "first.out"), timeout=30,
                   interval=0.05)
        for _ in range(8):
            sim.app_place(LEADER_ID, MARKET)
        eventually(lambda: stream_count(nats_server) >= 4, timeout=15, interval=0.02)
        proc.kill()
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    for _ in range(2):  # while follow is down: caught up, and published, at the restart
        sim.app_place(LEADER_ID, MARKET)
    with follow_process(config, home, "second") as proc:
        def all_published() -> bool:
            assert proc.poll() is None, (home.parent / "second.out").read_text()[-3000:]
            traded = _rows(database, "SELECT COUNT(*) AS n FROM leaderorder WHERE "
                                     "status = 'TRADED'")[0]["n"]
            return traded == 10 and stream_count(nats_server) == len(expected_ids(database))
        eventually(all_published, timeout=30, interval=0.1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert proc.returncode == 0, (home.parent / "second.out").read_text()[-3000:]
    expected = expected_ids(database)
    assert_each_event_once_in_order(asyncio.run(_stream(nats_server.url)), expected)
    assert {m["follower"] for m in _rows(database, "SELECT follower FROM mirrororder")} == {"f1"}
    assert sim.snapshot()["accounts"].get(F2.client_id, {}).get("orders", []) == []


def _rows(database: Path, sql: str) -> list[dict]:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql)]
