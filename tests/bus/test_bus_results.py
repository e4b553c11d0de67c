"""Results, agent -> leader (engine/bus_results.py, engine/bus_results_in.py) against a real
nats-server: the agent publishes its record of its follower, the leader stores it.

Every row about the follower reaches the results stream once (a publisher restarted behind
its cursor adds no copy; a server killed -9 mid-burst and restarted loses none), and the
leader keeps each mirror's newest snapshot and one audit row per result, with `bus init`'s
users (the agent may publish only its own results; the leader reads them). Forged results
are recorded as rejected. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from natsserver import NatsServer
from waiting import eventually

from copytrade.config.bus import BusConfig
from copytrade.config.bus_init import plan_bus_init, write_bus_init
from copytrade.config.load import load_config
from copytrade.core.bus_results import AgentResult, ResultMirror, result_bytes, result_msg_id
from copytrade.core.events import OrderReport, OrderStatus, ReportSource
from copytrade.core.ist import ist_today
from copytrade.core.orders import MirrorState, Trigger
from copytrade.engine.bus_publish import ensure_consumer, ensure_streams
from copytrade.engine.bus_results import ResultsPublisher, start_results_publisher
from copytrade.engine.bus_results_in import ResultsConsumer, start_results_consumer
from copytrade.store import results_queries
from copytrade.store.db import open_store
from copytrade.store.repo import Store
from copytrade.store.reports import mapping_rows

RESULTS = "COPYTRADE_RESULTS"
TODAY = ist_today(datetime.now(UTC)).isoformat()


# ---- the two stores -----------------------------------------------------------------------------


def new_store(path: Path) -> Store:
    return Store(open_store(path), lambda: datetime.now(UTC))


def leader_order(store: Store, order_id: str, status: str = OrderStatus.TRADED) -> None:
    store.save_leader(OrderReport(
        order_id=order_id, status=status, exchange_segment="NSE_EQ", security_id="1333",
        transaction_type="BUY", product_type="CNC", order_type="LIMIT", validity="DAY",
        quantity=5, traded_quantity=5 if status == OrderStatus.TRADED else 0, price=100.0,
        symbol="HDFCBANK", source=ReportSource.STREAM), (), TODAY)


def mirror_an_order(store: Store, order_id: str, follower: str = "f2") -> None:
    """What an agent records for one leader order: the order, its mirror placed (an intent
    and its outcome), accepted and filled, and an audit event naming the follower."""
    with store.write():
        leader_order(store, order_id)
        mirror = store.create_mirror(
            leader_order=order_id, follower=follower, correlation_id=f"CT{order_id}{follower}",
            state=MirrorState.PLANNED.value, quantity=5, security_id="1333",
            transaction_type="BUY", product_type="CNC", order_type="LIMIT", price=100.0)
        intent = store.add_intent(mirror, "PLACE", {"order": {"quantity": 5}})
        store.apply_trigger(mirror, Trigger.SUBMIT)
        store.finish_intent(intent, "DONE", "order 5100000001 placed")
        store.update_mirror(mirror, follower_order_id=f"9{order_id}")
        store.apply_trigger(mirror, Trigger.ACK)
        store.update_mirror(mirror, filled_quantity=5, average_price=100.05)
        store.apply_trigger(mirror, Trigger.FILL)
        store.audit("note", f"follower {follower} (1000000003) filled", follower=follower,
                    leader_order_id=order_id)


def rows_about(store: Store, follower: str) -> list[int]:
    return [row[0] for row in store.db.execute_sql(
        "SELECT t.id FROM trail t LEFT JOIN mirrororder m ON m.id = t.mirror_id WHERE "
        "t.follower = ? OR m.follower = ? ORDER BY t.id", (follower, follower)).fetchall()]


# ---- reading the server -------------------------------------------------------------------------


async def _results(url: str, options: dict | None = None) -> list[tuple[str, str, dict]]:
    nc = await nats.connect(**(options or {"servers": [url]}), connect_timeout=2,
                            max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(RESULTS)).state
        found = []
        for seq in range(state.first_seq, state.last_seq + 1):
            message = await js.get_msg(RESULTS, seq)
            found.append((message.subject, message.headers["Nats-Msg-Id"],
                          json.loads(message.data)))
        return found
    finally:
        await nc.close()


async def _publish(url: str, messages: list[tuple[str, bytes, str | None]]) -> None:
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        await ensure_streams(js, BusConfig(mode="nats", url=url, role="leader"))
        for subject, data, msg_id in messages:
            await js.publish(subject, data, headers={"Nats-Msg-Id": msg_id} if msg_id else None)
    finally:
        await nc.close()


def results_on_server(url: str, options: dict | None = None) -> list[str]:
    return [msg_id for _subject, msg_id, _payload in asyncio.run(_results(url, options))]


def assert_each_once(msg_ids: list[str], expected: list[str]) -> None:
    assert not [i for i, n in Counter(msg_ids).items() if n > 1]
    assert sorted(msg_ids) == sorted(expected)


# ---- configurations ---------------------------------------------------------------------------


def write_configs(tmp: Path, url: str, creds: Path | None = None) -> tuple[Path, Path]:
    """The leader's (f1 local, f2 and f3 remote) and f2's agent's copytrade.toml."""
    def bus(role: str, user: str) -> str:
        lines = f'[bus]\nmode = "nats"\nurl = "{url}"\nrole = "{role}"\n'
        if role == "agent":
            lines += 'follower = "f2"\n'
        return lines + (f'creds_file = "{creds / f"{user}.creds"}"\n' if creds else "")

    followers = "".join(f'[[followers]]\nname = "{name}"\nclient_id = "100000000{n}"\n'
                        f"multiplier = 1.0\n{extra}\n"
                        for name, n, extra in (("f1", 2, ""), ("f2", 3, "remote = true"),
                                               ("f3", 4, "remote = true")))
    leader = tmp / "leader.toml"
    leader.write_text(f'[leader]\nclient_id = "1000000001"\n\n{followers}'
                      + bus("leader", "leader"))
    agent = tmp / "agent.toml"
    agent.write_text('[leader]\nclient_id = "1000000001"\n\n[[followers]]\nname = "f2"\n'
                     'client_id = "1000000003"\nmultiplier = 1.0\n\n'
                     + bus("agent", "agent-f2"))
    return leader, agent


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    agent, leader = new_store(tmp_path / "agent.db"), new_store(tmp_path / "leader.db")
    try:
        yield agent, leader
    finally:
        agent.db.close()
        leader.db.close()


def expected_ids(agent: Store, follower: str = "f2") -> list[str]:
    store_id = results_queries.store_id(agent.db)
    return [f"{follower}:{store_id}:{trail_id}" for trail_id in rows_about(agent, follower)]


def remote_audits(store: Store) -> list[tuple]:
    return store.db.execute_sql("SELECT kind, follower, leader_order_id, message FROM "
                                "auditevent WHERE kind LIKE 'remote%' ORDER BY id").fetchall()


# ---- the tests --------------------------------------------------------------------------------


def test_with_bus_init_users_every_result_reaches_the_leader_once(
        tmp_path: Path, stores: tuple[Store, Store]) -> None:
    agent, leader = stores
    directory = tmp_path / "bus"
    write_bus_init(plan_bus_init(["f2", "f3"], directory=directory))
    for order_id in ("1001", "1002", "1003"):
        mirror_an_order(agent, order_id)
        with leader.write():
            leader_order(leader, order_id)
    mirror_an_order(agent, "1004", follower="other")  # not f2's: never published
    with agent.write():
        agent.audit("bus_unavailable", "not about a follower")  # nor this
    expected = expected_ids(agent)
    with NatsServer(tmp_path / "nats",
                    config_text=(directory / "nats-server.conf").read_text()) as server:
        leader_config, agent_config = write_configs(tmp_path, server.url, directory)
        consumer = start_results_consumer(load_config(leader_config), leader, lag_seconds=0.05)
        publisher = start_results_publisher(load_config(agent_config), agent)
        assert consumer is not None and publisher is not None
        try:
            eventually(lambda: consumer.stored == len(expected), timeout=10)
            assert publisher.lag() == 0 and consumer.rejected == 0
            assert set(consumer.consumer_lag()) == {"f2", "f3"}
        finally:
            assert publisher.stop(5) and consumer.stop(5)
        leader_options = {"servers": [server.url], "user": "leader",
                          "password": _password(directory / "leader.creds")}
        assert_each_once(results_on_server(server.url, leader_options), expected)
    # the leader's record: every result once, the mirrors' newest state
    audits = remote_audits(leader)
    assert len(audits) == len(expected)
    assert {kind for kind, *_rest in audits} >= {"remote_intent", "remote_intent_done",
                                                 "remote_transition", "remote_note"}
    assert all(follower == "f2" for _kind, follower, _order, _message in audits)
    assert not any("1000000003" in message for *_rest, message in audits)  # masked
    rows = [r for r in mapping_rows(leader.db, trading_date=TODAY) if r.follower == "f2"]
    assert [(r.leader_order_id, r.state, r.filled, r.remote) for r in rows] == [
        (order_id, "FILLED", 5, True) for order_id in ("1001", "1002", "1003")]
    assert rows[0].follower_order_ids == ("91001",)


def _password(creds: Path) -> str:
    import tomllib

    return tomllib.loads(creds.read_text())["password"]


def test_a_publisher_restarted_behind_its_cursor_adds_no_copy(
        nats_server: NatsServer, stores: tuple[Store, Store]) -> None:
    agent, _leader = stores
    asyncio.run(_publish(nats_server.url, []))  # the leader's streams
    for order_id in ("2001", "2002"):
        mirror_an_order(agent, order_id)
    expected = expected_ids(agent)
    bus = BusConfig(mode="nats", url=nats_server.url, role="agent", follower="f2")
    for run in range(2):
        publisher = ResultsPublisher(bus, agent, "f2", options={"servers": [nats_server.url]})
        publisher.start()
        try:
            eventually(lambda p=publisher: p.published == len(expected), timeout=10)
            assert publisher.duplicates == (len(expected) if run else 0)
        finally:
            assert publisher.stop(5)
        with agent.write():  # as if the cursor was never saved
            agent.db.execute_sql("DELETE FROM buscursor")
    assert_each_once(results_on_server(nats_server.url), expected)


def test_a_server_killed_mid_burst_gets_every_result_once(
        nats_server: NatsServer, stores: tuple[Store, Store]) -> None:
    agent, leader = stores
    asyncio.run(_publish(nats_server.url, []))
    for number in range(12):
        mirror_an_order(agent, str(3000 + number))
        with leader.write():
            leader_order(leader, str(3000 + number))
    bus = BusConfig(mode="nats", url=nats_server.url, role="agent", follower="f2")
    publisher = ResultsPublisher(bus, agent, "f2", options={"servers": [nats_server.url]},
                                 batch=5, publish_timeout=1.0)
    consumer = ResultsConsumer(BusConfig(mode="nats", url=nats_server.url, role="leader"),
                               leader, ["f2"], options={"servers": [nats_server.url]})
    publisher.start()
    consumer.start()
    try:
        eventually(lambda: publisher.published >= 5, timeout=10, interval=0.001)
        nats_server.kill()
        for number in range(12, 15):  # while the server is down
            mirror_an_order(agent, str(3000 + number))
            with leader.write():
                leader_order(leader, str(3000 + number))
        publisher.wake()
        eventually(lambda: _kinds(agent).count("bus_unavailable") == 1, timeout=10)
        assert publisher.lag() > 0
        nats_server.start()
        expected = expected_ids(agent)
        eventually(lambda: publisher.lag() == 0, timeout=20)
        eventually(lambda: _kinds(agent).count("bus_recovered") == 1, timeout=5)
        eventually(lambda: consumer.stored == len(expected), timeout=20)
        assert _kinds(agent).count("bus_unavailable") == 1
    finally:
        assert publisher.stop(5) and consumer.stop(5)
    assert_each_once(results_on_server(nats_server.url), expected)
    assert len(remote_audits(leader)) == len(expected)
    assert {r.state for r in mapping_rows(leader.db, trading_date=TODAY)
            if r.follower == "f2"} == {"FILLED"}


def _kinds(store: Store) -> list[str]:
    return [row[0] for row in store.db.execute_sql("SELECT kind FROM auditevent").fetchall()]


def _result(trail_id: int, state: str, follower: str = "f2", filled: int = 0) -> AgentResult:
    mirror = ResultMirror(
        leg=1, attempt=1, correlation_id="CT4001f2", state=state, reason="", reason_code="",
        quantity=5, carried_quantity=0, filled_quantity=filled, average_price=0.0,
        follower_order_id="94001", price=100.0, trigger_price=0.0, order_type="LIMIT",
        security_id="1333", transaction_type="BUY", product_type="CNC", lag_ms=2.5,
        fill_lag_ms=None, updated_at=datetime.now(UTC))
    return AgentResult(follower, "abcdef0123456789", trail_id, "transition",
                       datetime.now(UTC), "4001", f"to {state}", mirror)


def test_the_leader_keeps_the_newest_snapshot_and_records_forgeries(
        nats_server: NatsServer, stores: tuple[Store, Store]) -> None:
    _agent, leader = stores
    with leader.write():
        leader_order(leader, "4001")
    newer, older = _result(9, "FILLED", filled=5), _result(4, "ACCEPTED")
    forged = _result(10, "CANCELED", follower="f9")
    messages = [("copytrade.results.f2", result_bytes(r), result_msg_id(r))
                for r in (newer, older)]
    messages += [("copytrade.results.f9", result_bytes(forged), result_msg_id(forged)),
                 ("copytrade.results.f3", result_bytes(newer), "f2:x:1"),  # not its subject
                 ("copytrade.results.f2", b"\xff{not json", None)]
    asyncio.run(_publish(nats_server.url, messages))
    consumer = ResultsConsumer(BusConfig(mode="nats", url=nats_server.url, role="leader"),
                               leader, ["f2", "f3"], options={"servers": [nats_server.url]},
                               lag_seconds=0.05)
    consumer.start()
    try:
        eventually(lambda: consumer.stored + consumer.rejected == 5, timeout=10)
        eventually(lambda: consumer.consumer_lag() == {"f2": None, "f3": None}, timeout=5)
    finally:
        assert consumer.stop(5)
    assert (consumer.stored, consumer.rejected) == (2, 3)
    [outcome] = results_queries.remote_outcomes(leader.db, "4001")
    assert (outcome["state"], outcome["filled_quantity"], outcome["trail_id"]) == (
        "FILLED", 5, 9)
    reasons = [json.loads(row[0])["reason"] for row in leader.db.execute_sql(
        "SELECT data FROM auditevent WHERE kind = 'bus_result_rejected'").fetchall()]
    assert len(reasons) == 3 and all("\n" not in reason for reason in reasons)
    assert any("f9" in reason for reason in reasons)
    assert any("subject" in reason for reason in reasons)
    assert any("not JSON" in reason for reason in reasons)


def test_the_consumer_reads_each_agents_lag(nats_server: NatsServer,
                                            stores: tuple[Store, Store]) -> None:
    _agent, leader = stores
    bus = BusConfig(mode="nats", url=nats_server.url, role="leader")

    async def agent_consumer_and_two_events() -> None:
        nc = await nats.connect(nats_server.url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            js = nc.jetstream()
            await ensure_streams(js, bus)
            await ensure_consumer(js, bus, "f2")
            for seq in (1, 2):
                await js.publish("copytrade.leader.20261130.5001", b"{}",
                                 headers={"Nats-Msg-Id": f"20261130:5001:{seq}"})
        finally:
            await nc.close()

    asyncio.run(agent_consumer_and_two_events())
    consumer = ResultsConsumer(bus, leader, ["f2", "f3"],
                               options={"servers": [nats_server.url]}, lag_seconds=0.05)
    consumer.start()
    try:
        eventually(lambda: consumer.consumer_lag() == {"f2": 2, "f3": None}, timeout=10)
        nats_server.kill()
        eventually(lambda: consumer.consumer_lag() == {"f2": None, "f3": None}, timeout=10)
    finally:
        assert consumer.stop(5)


def test_nothing_starts_outside_its_role(tmp_path: Path, stores: tuple[Store, Store]) -> None:
    agent, leader = stores
    leader_config, agent_config = write_configs(tmp_path, "nats://127.0.0.1:4222")
    assert start_results_publisher(load_config(leader_config), leader) is None
    assert start_results_consumer(load_config(agent_config), agent) is None
    embedded = tmp_path / "embedded.toml"
    embedded.write_text('[leader]\nclient_id = "1000000001"\n')
    assert start_results_publisher(load_config(embedded), agent) is None
    assert start_results_consumer(load_config(embedded), leader) is None
