"""Distributed soak: a few hundred leader orders through a leader and an agent (two homes, two
`copytrade follow` processes, a real nats-server configured by `bus init`), with the agent
killed -9 again and again (and, armed by COPYTRADE_FAULT_POINT, killing itself right after
committing an intent or sending an order, before its ack), the server killed -9 once, the
leader killed -9 once, and the agent cut off from the server for 30 seconds. Market
orders, and resting limit orders that are modified or cancelled later.

Not part of the default run: `python -m pytest -m soak -s tests/soak/test_distributed_soak.py`.
It prints its figures and asserts, for the local follower (f1, mirrored by the leader's host)
and the remote one (f2, by its agent): zero duplicate follower orders, zero leader orders
neither mirrored nor recorded as skipped, zero wrong quantities. The consumer keeps the
contract's 30 s ack wait (the default suite's tests shorten it).
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from simtools import sim_dialect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bus"))
from distributed import LOCAL, REMOTE, RESTING, Cluster, assert_exactly_once

from copytrade.sim.server import Emulator

pytestmark = [pytest.mark.soak, pytest.mark.timeout(1800)]

ORDERS = int(os.environ.get("DSOAK_ORDERS", "300"))
AGENT_KILLS = int(os.environ.get("DSOAK_AGENT_KILLS", "6"))
PARTITION_SECONDS = float(os.environ.get("DSOAK_PARTITION_SECONDS", "30"))
PACE_SECONDS = 0.15  # between leader orders: about seven a second
SETTLE_SECONDS = 240.0
INSTRUMENTS = [("1333", "NSE_EQ", "CNC", 1), ("2885", "NSE_EQ", "INTRADAY", 1),
               ("52175", "NSE_FNO", "MARGIN", 65), ("52174", "NSE_FNO", "MARGIN", 30)]
# Where in the run each failure starts (a share of ORDERS).
SERVER_KILL_AT, SERVER_DOWN_FOR = 0.25, 0.05
LEADER_KILL_AT, LEADER_DOWN_FOR = 0.45, 0.03
PARTITION_AT = 0.65


def place(cluster: Cluster, rng: random.Random) -> tuple[str, bool]:
    """A leader order: 85 % market (fills at once), else a limit order far below the
    market (rests, to be modified or cancelled later). (order id, resting)"""
    security, segment, product, lot = rng.choice(INSTRUMENTS)
    quantity = lot * rng.randint(1, 3)
    if rng.random() < 0.85:
        return cluster.place({"transactionType": "BUY", "exchangeSegment": segment,
                              "productType": product, "orderType": "MARKET",
                              "validity": "DAY", "securityId": security,
                              "quantity": quantity, "price": 0.0}), False
    return cluster.place({**RESTING, "quantity": rng.randint(1, 9)}), True


def change_a_resting_order(cluster: Cluster, rng: random.Random, resting: list[str],
                           counts: Counter) -> None:
    """Modify (new quantity and price, still resting) or cancel one of the open ones."""
    if not resting or rng.random() < 0.5:
        return
    order_id = resting.pop(rng.randrange(len(resting)))
    if rng.random() < 0.5:
        cluster.modify(order_id, quantity=rng.randint(1, 9),
                       price=RESTING["price"] + rng.randint(1, 20) * 0.05)
        counts["leader modifications"] += 1
    else:
        cluster.cancel(order_id)
        counts["leader cancellations"] += 1


def test_distributed_soak(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("DSOAK_SEED", "20261130")))
    counts: Counter = Counter()
    started = time.monotonic()
    kill_agent_at = set(rng.sample(range(10, ORDERS - 10), AGENT_KILLS))
    server_kill = (int(ORDERS * SERVER_KILL_AT), int(ORDERS * (SERVER_KILL_AT +
                                                                SERVER_DOWN_FOR)))
    leader_kill = (int(ORDERS * LEADER_KILL_AT), int(ORDERS * (LEADER_KILL_AT +
                                                                LEADER_DOWN_FOR)))
    partition_at = int(ORDERS * PARTITION_AT)
    cut_since: float | None = None
    fault_points = itertools.cycle([None, "after_intent_commit", None, "after_send"])
    scale = "order_rate_scale = 10"
    with Emulator(order_rate_scale=10, dialect=sim_dialect()) as sim:
        for client_id in ("1000000001", LOCAL.client_id, REMOTE.client_id):
            sim.set_funds(client_id, 1e13)
        with Cluster.up(sim, tmp_path, leader_settings=scale, agent_settings=scale) as cluster:
            resting: list[str] = []
            for index in range(ORDERS):
                order_id, rests = place(cluster, rng)
                if rests:
                    resting.append(order_id)
                change_a_resting_order(cluster, rng, resting, counts)
                if not cluster.agent.alive:  # it killed itself at its armed fault point
                    counts["agent deaths at a fault point (-9)"] += 1
                    cluster.agent.start()
                if index in kill_agent_at:
                    cluster.agent.kill()
                    # its bus may be cut: wait for its login only. Every other restart is
                    # armed to kill itself at the next commit of an intent or send to Dhan.
                    cluster.agent.start(fault_point=next(fault_points))
                if index == server_kill[0]:
                    cluster.kill_server()
                elif index == server_kill[1]:
                    cluster.server.start()
                if index == leader_kill[0]:
                    cluster.leader.kill()
                elif index == leader_kill[1]:
                    cluster.leader.start()
                if index == partition_at:
                    cluster.partition(hold=True)
                    cut_since = time.monotonic()
                if cut_since is not None and time.monotonic() - cut_since >= PARTITION_SECONDS:
                    cluster.agent_link.heal()
                    counts["partition seconds"] = round(time.monotonic() - cut_since)
                    cut_since = None
                time.sleep(PACE_SECONDS)  # pacing, as the embedded soak
            if cut_since is not None:  # the run ended first: the partition lasts its 30 s
                time.sleep(max(0.0, PARTITION_SECONDS - (time.monotonic() - cut_since)))
                cluster.agent_link.heal()
                counts["partition seconds"] = round(time.monotonic() - cut_since)
            def died_at_a_fault_point() -> None:
                counts["agent deaths at a fault point (-9)"] += 1

            figures = cluster.wait_settled(timeout=SETTLE_SECONDS,
                                           on_agent_death=died_at_a_fault_point)
            figures.update(counts)
            figures["leader orders placed"] = len(cluster.placed)
            figures["kill -9 of the agent"] = cluster.agent.kills
            figures["kill -9 of the leader"] = cluster.leader.kills
            figures["kill -9 of nats-server"] = cluster.server_kills
            figures["partitions"] = cluster.partitions
            figures["events in the stream"] = cluster.stream_count()
            figures["agent: repeats that changed nothing"] = len(
                cluster.agent.audit("bus_event_duplicate"))
            figures["agent: outages recorded"] = len(cluster.agent.audit("bus_unavailable"))
            figures["agent: recoveries recorded"] = len(cluster.agent.audit("bus_recovered"))
            figures["leader: outages recorded"] = len(cluster.leader.audit("bus_unavailable"))
            assert cluster.agent.stop() == 0, cluster.agent.tail()
            assert cluster.leader.stop() == 0, cluster.leader.tail()
    figures["seconds"] = round(time.monotonic() - started)
    print("\ndistributed soak figures:")
    for name, value in sorted(figures.items()):
        print(f"  {name}: {value}")
    assert figures["leader orders"] == ORDERS
    assert_exactly_once(figures)
