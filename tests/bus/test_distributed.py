"""Distributed mode end to end on one machine (issue 12, point 5): a leader and an agent, each
a real `copytrade follow` with its own home, through a real nats-server configured by `bus
init`, against the emulator. Through every failure here (agent kill -9 mid-burst, an agent
killed between its send and its ack, leader kill -9, server kill -9, a partition of the
agent, events delivered twice) each follower ends with exactly one order of ours per leader
order, every leader order is mirrored or recorded as skipped, and quantities are right.

The harness is tests/bus/distributed.py. The consumer's ack wait (30 s by contract) is
shortened to 2 s where an agent may hold unacknowledged events when it dies, so that their
redelivery fits a short test; the soak (tests/soak/test_distributed_soak.py) keeps 30 s.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import LOCAL, REMOTE, Cluster, assert_exactly_once, decided_orders
from simtools import eventually, sim_dialect
from tcpproxy import TcpProxy

from copytrade.sim.server import Emulator

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def sim() -> Iterator[Emulator]:
    """The emulator on the wall clock, with funds for every burst."""
    with Emulator(seed=12, dialect=sim_dialect()) as emulator:
        for client_id in ("1000000001", LOCAL.client_id, REMOTE.client_id):
            emulator.set_funds(client_id, 1e12)
        yield emulator


def follower_orders(cluster: Cluster, client_id: str) -> list[tuple[str, str, int]]:
    """(correlation id, status, quantity) of every order in a follower's book."""
    book = cluster.sim.snapshot()["accounts"].get(client_id, {}).get("orders", [])
    return sorted((o["correlationId"], o["orderStatus"], o["quantity"]) for o in book)


def decided(cluster: Cluster) -> tuple[int, int]:
    """Leader orders decided so far: (by the leader for f1, by the agent for f2)."""
    return (len(decided_orders(cluster.leader, LOCAL.name)),
            len(decided_orders(cluster.agent, REMOTE.name)))


def quantity_in_book(cluster: Cluster, client_id: str, quantity: int) -> bool:
    return any(q == quantity and status == "PENDING"
               for _tag, status, q in follower_orders(cluster, client_id))


# ---- the proxy itself ------------------------------------------------------------------------


def test_the_proxy_passes_bytes_drops_on_cut_refuses_or_holds_and_heals() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, \
            TcpProxy(server.getsockname()[1]) as proxy:
        server.settimeout(5)

        def echo_once() -> None:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
                peer, _ = server.accept()
                with peer:
                    client.sendall(b"ping")
                    assert peer.recv(4) == b"ping"
                    peer.sendall(b"pong")
                    assert client.recv(4) == b"pong"

        echo_once()
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        peer, _ = server.accept()
        with client, peer:
            eventually(lambda: proxy.open_connections == 1, timeout=5)
            proxy.cut()
            assert client.recv(4) == b""  # dropped: the client sees its connection end
            assert peer.recv(4) == b""  # and so does the server
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as refused:
            assert refused.recv(4) == b""  # accepted, closed at once
        assert proxy.refused == 1
        proxy.cut(hold=True)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as held:
            eventually(lambda: proxy.held == 1, timeout=5)  # taken from the backlog
            held.settimeout(0.3)
            with pytest.raises(TimeoutError):
                held.recv(4)  # a black hole: nothing, not even an end
            proxy.heal()
            held.settimeout(5)
            assert held.recv(4) == b""  # closed at the heal: its client connects anew
        echo_once()  # healed: bytes pass again
        assert proxy.cuts == 2 and proxy.accepted >= 2


# ---- the cluster ------------------------------------------------------------------------------


def test_happy_path_with_a_modify_and_a_cancel_then_duplicate_deliveries_change_nothing(
        sim: Emulator, tmp_path: Path) -> None:
    with Cluster.up(sim, tmp_path) as cluster:
        cluster.place_market(3)
        resting = cluster.place_resting(quantity=5)
        eventually(lambda: all(quantity_in_book(cluster, f.client_id, 5)
                               for f in (LOCAL, REMOTE)), timeout=20, interval=0.05)
        cluster.modify(resting, quantity=8, price=3010.0)
        eventually(lambda: all(quantity_in_book(cluster, f.client_id, 8)
                               for f in (LOCAL, REMOTE)), timeout=20, interval=0.05)
        cluster.cancel(resting)
        figures = cluster.wait_settled(timeout=30)
        assert_exactly_once(figures)
        assert figures["follower orders (f2)"] == figures["follower orders (f1)"] == 4
        assert figures["skipped (recorded)"] == 0
        remote_book = follower_orders(cluster, REMOTE.client_id)
        assert [s for _t, s, _q in remote_book].count("CANCELLED") == 1
        assert [s for _t, s, _q in remote_book].count("TRADED") == 3

        # Duplicate deliveries: every event again, under its own Nats-Msg-Id, after the
        # duplicate window (shrunk to 1 s here; 10 min by contract) — as a leader that lost
        # its cursor would send them after a long outage. The stream stores the copies, the
        # agent receives each and must change nothing.
        events = cluster.stream_messages()
        agent_mirrors = cluster.agent.rows("SELECT * FROM mirrororder ORDER BY id")
        duplicates_before = len(cluster.agent.audit("bus_event_duplicate"))
        cluster.set_duplicate_window(1.0)
        for event in events:
            eventually(lambda event=event: cluster.publish_again([event]) == 1, timeout=10,
                       interval=0.2)
        cluster.set_duplicate_window(600.0)
        eventually(cluster.consumer_drained, timeout=20, interval=0.1)
        eventually(lambda: len(cluster.agent.audit("bus_event_duplicate"))
                   == duplicates_before + len(events), timeout=10, interval=0.1)
        assert follower_orders(cluster, REMOTE.client_id) == remote_book
        assert cluster.agent.rows("SELECT * FROM mirrororder ORDER BY id") == agent_mirrors
        assert_exactly_once(cluster.wait_settled(timeout=10))
        assert cluster.agent.alive and cluster.leader.alive
        assert cluster.agent.stop() == 0 and cluster.leader.stop() == 0


def test_agent_killed_between_send_and_ack_then_mid_burst_and_the_leader_killed(
        sim: Emulator, tmp_path: Path) -> None:
    with Cluster.up(sim, tmp_path, start=False) as cluster:
        cluster.leader.start()
        cluster.wait_consumer()
        cluster.shorten_ack_wait()
        # 1. The agent kills itself (-9) right after sending its first order to Dhan: the
        # intent is committed, the order at the broker, the event not acknowledged. Its
        # restart finds the order under its correlation id (it does not send it again), and
        # the event, delivered again, changes nothing.
        cluster.start_agent(fault_point="after_send")
        cluster.place_market(1)
        assert cluster.agent.process is not None
        cluster.agent.process.wait(timeout=30)
        assert cluster.agent.process.returncode == -9, cluster.agent.tail()
        assert len(follower_orders(cluster, REMOTE.client_id)) == 1
        cluster.start_agent()
        # 2. The agent killed -9 mid-burst, orders flowing on while it is down.
        cluster.place_market(8)
        eventually(lambda: decided(cluster)[1] >= 4, timeout=20, interval=0.02)
        cluster.agent.kill()
        cluster.place_market(3)
        cluster.start_agent()
        # 3. The leader killed -9 mid-burst: it re-publishes from its cursor at its restart
        # (the server drops the copies) and catches up with the orders of its downtime.
        published = cluster.stream_count()
        cluster.place_market(6)
        eventually(lambda: cluster.stream_count() >= published + 2, timeout=20,
                   interval=0.02)
        cluster.leader.kill()
        cluster.place_market(2)
        cluster.leader.start()
        figures = cluster.wait_settled(timeout=60)
        assert_exactly_once(figures)
        assert figures["leader orders"] == 20
        placed = {k: v for k, v in figures.items() if k.startswith(("placed", "unplaced"))}
        assert (figures["placed or skipped (f1)"], figures["placed or skipped (f2)"]) == (
            20, 20), placed
        ids = [headers["Nats-Msg-Id"] for _s, headers, _d in cluster.stream_messages()]
        assert len(ids) == len(set(ids))  # nothing doubled on the bus either
        assert cluster.agent.stop() == 0 and cluster.leader.stop() == 0


def test_server_killed_mid_burst_then_the_agent_partitioned(
        sim: Emulator, tmp_path: Path) -> None:
    with Cluster.up(sim, tmp_path) as cluster:
        cluster.shorten_ack_wait()
        # 1. The server killed -9 mid-burst and restarted (same store): the leader keeps
        # mirroring f1 meanwhile and publishes what waited; the agent reconnects.
        cluster.place_market(6)
        eventually(lambda: cluster.stream_count() >= 2, timeout=20, interval=0.02)
        cluster.kill_server()
        cluster.place_market(4)
        eventually(lambda: decided(cluster)[0] == 10, timeout=20, interval=0.05)
        cluster.server.start()
        cluster.shorten_ack_wait()  # the leader brought it back to 30 s on reconnecting
        eventually(lambda: decided(cluster)[1] == 10, timeout=30, interval=0.05)
        after_restart = outages(cluster)
        # 2. The agent's host cut off from the server for several seconds (three refused
        # reconnections), while the leader goes on mirroring f1 and publishing; then healed.
        cluster.partition()
        cluster.place_market(4)
        eventually(lambda: decided(cluster)[0] == 14 and cluster.stream_count() >= 14
                   and cluster.agent_link.refused >= 3, timeout=30, interval=0.05)
        assert decided(cluster)[1] == 10  # nothing reached the agent meanwhile
        cluster.agent_link.heal()
        figures = cluster.wait_settled(timeout=60)
        assert_exactly_once(figures)
        placed = {k: v for k, v in figures.items() if k.startswith(("placed", "unplaced"))}
        assert (figures["placed or skipped (f1)"], figures["placed or skipped (f2)"]) == (
            14, 14), placed
        # The agent's record: each outage once, and its end (as on the leader's host).
        try:
            eventually(lambda: outages(cluster) == (2, 2), timeout=10, interval=0.1)
        except AssertionError:
            raise AssertionError(f"(bus_unavailable, bus_recovered) after the restart "
                                 f"{after_restart}, after the partition {outages(cluster)}; "
                                 "expected (1, 1) and (2, 2)") from None
        assert after_restart == (1, 1)
        assert cluster.agent.stop() == 0 and cluster.leader.stop() == 0


def outages(cluster: Cluster) -> tuple[int, int]:
    """(bus_unavailable, bus_recovered) on the agent's record."""
    return (len(cluster.agent.audit("bus_unavailable")),
            len(cluster.agent.audit("bus_recovered")))
