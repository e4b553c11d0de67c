"""kill -9 of the real `copytrade follow` process, then a restart: nothing duplicated,
nothing lost (DESIGN.md "Identity and exactly-once"; faults 15 and 16).

Each test runs `python -m copytrade follow` against an emulator in this test process on
127.0.0.1 and has it die by SIGKILL: at one of the named fault points
(COPYTRADE_FAULT_POINT, copytrade/engine/faultpoints.py) or, in the burst test, at a
random moment chosen by the test. A second `follow` on the same home, without the fault
point, must then finish the job: every follower holds exactly one order per leader order
(found by the correlation id's stem, computed here from copytrade.core.ids), of the right
quantity, and the store has no intent left SENDING and one mirror per (leader order,
follower) that did not end in failure.

Every wait is bounded: polls have deadlines, subprocesses have timeouts.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from followtools import LEADER_ID, LEADER_TOKEN, config_text, follower
from simtools import eventually, sim_dialect

from copytrade.core.ids import correlation_id
from copytrade.engine import faultpoints
from copytrade.engine.follow import trading_date_now
from copytrade.sim.server import Emulator
from copytrade.store.db import open_store
from copytrade.store.models import Intent, MirrorOrder

F1 = follower("f1", "1000000002")  # multiplier 1.0: the leader's quantity
F2 = follower("f2", "1000000003", "fixed_lots = 2")  # 2 units of an equity (lot 1)
FOLLOWERS = (F1, F2)
ALL_ACCOUNTS = (LEADER_ID, F1.client_id, F2.client_id)
EXIT_WAIT = 30  # the longest a follow process may take to exit once it should
FAILED = frozenset({"REJECTED", "CANCELED", "EXPIRED"})  # a mirror that ended without an order
LIVE_OR_DONE = frozenset({"TRANSIT", "PENDING", "PART_TRADED", "TRADED"})


# ---- the process ---------------------------------------------------------------------------

@dataclass
class Follow:
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def output(self) -> str:
        return (f"stdout:\n{self.out.read_text()[-3000:]}\n"
                f"stderr:\n{self.err.read_text()[-3000:]}")


def follow_env(home: Path, fault_point: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COPYTRADE_DEBUG", None)
    env.pop("COPYTRADE_FAULT_POINT", None)
    env.update({"COPYTRADE_HOME": str(home), "LEADER_TOKEN": LEADER_TOKEN,
                "TOKEN_F1": F1.token, "TOKEN_F2": F2.token})
    if fault_point is not None:
        env["COPYTRADE_FAULT_POINT"] = fault_point
    return env


@contextmanager
def follow_process(config: Path, home: Path, name: str,
                   fault_point: str | None = None) -> Iterator[Follow]:
    """`copytrade follow` in the background, its output in files (a pipe nobody reads
    could fill and block it); killed (bounded) if the test leaves it running."""
    out, err = home.parent / f"{name}.out", home.parent / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "copytrade", "follow", "--config", str(config)],
            env=follow_env(home, fault_point), stdin=subprocess.DEVNULL, stdout=stdout,
            stderr=stderr)
        try:
            yield Follow(proc, out, err)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=EXIT_WAIT)


def connections(sim: Emulator) -> dict[str, int]:
    return sim.snapshot()["stream"]["connections"]


def wait_logged_in(sim: Emulator, run: Follow, timeout: float = 30) -> None:
    """Until every stream of the process is logged in (and so its signal handlers set)."""
    def ready() -> bool:
        assert run.proc.poll() is None, (f"follow exited early with {run.proc.returncode}\n"
                                         f"{run.output()}")
        return all(connections(sim).get(cid, 0) >= 1 for cid in ALL_ACCOUNTS)
    eventually(ready, timeout=timeout, interval=0.05)


def wait_killed(sim: Emulator, run: Follow, timeout: float = 20) -> None:
    """Until the process has died by SIGKILL and the emulator has seen its streams go."""
    try:
        run.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"follow still alive {timeout}s after the fault should have "
                             f"killed it\n{run.output()}") from None
    assert run.proc.returncode == -signal.SIGKILL, (run.proc.returncode, run.output())
    eventually(lambda: not any(connections(sim).values()), timeout=10, interval=0.05)


def stop_cleanly(run: Follow) -> None:
    run.proc.send_signal(signal.SIGINT)
    try:
        run.proc.wait(timeout=EXIT_WAIT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"follow did not stop on SIGINT\n{run.output()}") from None
    assert run.proc.returncode == 0, run.output()


# ---- what the broker and the store hold ----------------------------------------------------

def stem(cid: str) -> str:
    """A correlation id without its attempt: shared by every attempt at one mirror."""
    return cid.rsplit("-", 1)[0]


def expected_stem(leader_order_id: str, name: str) -> str:
    return stem(correlation_id(trading_date_now(), leader_order_id, name, 1, 1))


def book(sim: Emulator, client_id: str) -> list[dict]:
    return sim.snapshot()["accounts"].get(client_id, {}).get("orders", [])


def leader_quantities(sim: Emulator) -> dict[str, int]:
    return {o["orderId"]: o["quantity"] for o in book(sim, LEADER_ID)}


def want_quantity(who: str, leader_quantity: int) -> int:
    return leader_quantity if who == F1.name else 2


def read_store(home: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """A read-only look at the store of a live or dead process: a read-only connection
    neither checkpoints nor removes the WAL a killed process left behind."""
    uri = f"file:{home / 'copytrade.db'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
        return db.execute(sql, params).fetchall()


def sending(home: Path) -> list[tuple]:
    """(follower, leader order, action) of every intent still SENDING."""
    return read_store(home, "SELECT m.follower, m.leader_order_id, i.action FROM intent i "
                            "JOIN mirrororder m ON m.id = i.mirror_id "
                            "WHERE i.status = 'SENDING' ORDER BY i.id")


def caught_up(sim: Emulator, home: Path, leaders: dict[str, int]) -> bool:
    """Every follower's book has one order per leader order and the store is settled."""
    for who in FOLLOWERS:
        stems = [stem(o["correlationId"]) for o in book(sim, who.client_id)]
        if sorted(stems) != sorted(expected_stem(oid, who.name) for oid in leaders):
            return False
    rows = read_store(home, "SELECT COUNT(*) FROM mirrororder WHERE state IN "
                            "('ACCEPTED', 'PARTIALLY_FILLED', 'FILLED')")
    return rows[0][0] == len(leaders) * len(FOLLOWERS) and not sending(home)


def assert_exactly_once(sim: Emulator, home: Path, leaders: dict[str, int]) -> None:
    """The broker: one order per (leader order, follower), of the right size, nothing
    else. The store: nothing SENDING, one mirror that did not fail, pointing at it."""
    for who in FOLLOWERS:
        orders = book(sim, who.client_id)
        by_stem: dict[str, list[dict]] = {}
        for order in orders:
            by_stem.setdefault(stem(order["correlationId"]), []).append(order)
        wanted = {expected_stem(oid, who.name): oid for oid in leaders}
        assert set(by_stem) == set(wanted), (who.name, sorted(by_stem), wanted)
        for key, found in by_stem.items():
            leader_order = wanted[key]
            assert len(found) == 1, (who.name, leader_order, found)
            [order] = found
            assert order["quantity"] == want_quantity(who.name, leaders[leader_order]), (
                who.name, leader_order, order)
            assert order["orderStatus"] in LIVE_OR_DONE, order
    db = open_store(home / "copytrade.db")
    try:
        left = [(i.id, i.action, i.mirror.follower, i.mirror.leader_order_id)
                for i in Intent.select(Intent, MirrorOrder).join(MirrorOrder)
                .where(Intent.status == "SENDING")]
        assert left == [], f"intents left SENDING: {left}"
        for leader_order, _ in leaders.items():
            for who in FOLLOWERS:
                mirrors = list(MirrorOrder.select().where(
                    (MirrorOrder.leader_order == leader_order)
                    & (MirrorOrder.follower == who.name)).order_by(MirrorOrder.attempt))
                alive = [m for m in mirrors if m.state not in FAILED]
                assert len(alive) == 1, (who.name, leader_order,
                                         [(m.attempt, m.state, m.reason) for m in mirrors])
                [mirror] = alive
                [order] = [o for o in book(sim, who.client_id)
                           if o["correlationId"] == mirror.correlation_id]
                assert mirror.follower_order_id == order["orderId"], (mirror, order)
                assert mirror.state in ("ACCEPTED", "PARTIALLY_FILLED", "FILLED"), (
                    who.name, leader_order, mirror.state, mirror.reason)
    finally:
        db.close()


def restart_and_check(sim: Emulator, config: Path, home: Path, leaders: dict[str, int],
                      name: str = "second") -> None:
    """follow again without a fault point: it catches up, settles and stops on SIGINT."""
    with follow_process(config, home, name) as run:
        wait_logged_in(sim, run)
        skipped: list[tuple] = []

        def done() -> bool:
            assert run.proc.poll() is None, run.output()
            # a skip is for good: no use waiting for the mirror
            skipped[:] = read_store(home, "SELECT follower, leader_order_id, reason FROM "
                                          "mirrororder WHERE state = 'SKIPPED'")
            return bool(skipped) or caught_up(sim, home, leaders)
        try:
            eventually(done, timeout=20, interval=0.05)
        except AssertionError:
            books = {w.name: [(o["correlationId"], o["quantity"], o["orderStatus"])
                              for o in book(sim, w.client_id)] for w in FOLLOWERS}
            raise AssertionError(f"not caught up within 20 s; books {books}, sending "
                                 f"{sending(home)}\n{run.output()}") from None
        stop_cleanly(run)
    assert not skipped, f"leader orders not mirrored: {skipped}"
    assert_exactly_once(sim, home, leaders)


# ---- fixtures -----------------------------------------------------------------------------

@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(seed=11, dialect=sim_dialect()) as sim:
        yield sim


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def config(emulator: Emulator, tmp_path: Path) -> Path:
    path = tmp_path / "follow.toml"
    path.write_text(config_text(emulator, list(FOLLOWERS)))
    return path


def app_place(sim: Emulator, quantity: int, order_type: str = "MARKET",
              price: float = 0.0) -> str:
    [order_id] = sim.app_place(LEADER_ID, {
        "transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
        "orderType": order_type, "validity": "DAY", "securityId": "1333",
        "quantity": quantity, "price": price})
    return order_id


# ---- the named fault points ----------------------------------------------------------------

def _after_intent_commit(sim: Emulator, config: Path, home: Path) -> dict[str, int]:
    """Fault 16: the intents are committed, nothing has been sent; the restart sends each
    exactly once."""
    with follow_process(config, home, "first", "after_intent_commit") as run:
        wait_logged_in(sim, run)
        # The point is reached after every leader report that changes something, the
        # TRANSIT frame too, which commits no intent: let TRANSIT come late, so the first
        # report follow sees is the accepted one, whose intents are the ones committed.
        sim.delay_frames(1, 1.0, LEADER_ID)
        leader_order = app_place(sim, 7)
        wait_killed(sim, run)
    # Killed between the commit and the hand-over: both intents SENDING, nothing sent.
    assert sorted(sending(home)) == [("f1", leader_order, "PLACE"),
                                     ("f2", leader_order, "PLACE")]
    assert book(sim, F1.client_id) == [] and book(sim, F2.client_id) == []
    return {leader_order: 7}


def _after_intent_commit_then(home: Path) -> None:
    # sent by the restart, under the first attempt's id, never "adopted"
    rows = read_store(home, "SELECT m.follower, m.attempt, i.status, i.outcome FROM intent i "
                            "JOIN mirrororder m ON m.id = i.mirror_id ORDER BY m.follower")
    assert [(f, a, s) for f, a, s, _ in rows] == [("f1", 1, "DONE"), ("f2", 1, "DONE")]
    assert not any("adopted" in outcome for *_, outcome in rows), rows


def _after_send(sim: Emulator, config: Path, home: Path) -> dict[str, int]:
    """Fault 15: the broker has the order, the store does not know."""
    with follow_process(config, home, "first", "after_send") as run:
        wait_logged_in(sim, run)
        leader_order = app_place(sim, 5)
        wait_killed(sim, run)
    # at least one follower's place reached the broker while its intent is still SENDING
    assert {f for f, _, _ in sending(home)} & {w.name for w in FOLLOWERS
                                               if book(sim, w.client_id)}
    return {leader_order: 5}


def _after_send_then(home: Path, unknown_but_placed: set[str]) -> None:
    # the restart adopted those by correlation id: nothing was sent again
    outcomes = dict(read_store(home, "SELECT m.follower, i.outcome FROM intent i JOIN "
                                     "mirrororder m ON m.id = i.mirror_id"))
    for name in unknown_but_placed:
        assert outcomes[name] == "adopted on restart", outcomes


def _in_barrier(sim: Emulator, config: Path, home: Path) -> dict[str, int]:
    """Killed while the start-up catch-up feeds the leader's book through, after its
    first order (whose intents may or may not have been sent)."""
    leaders = {app_place(sim, 3): 3, app_place(sim, 4): 4,
               app_place(sim, 6, "LIMIT", 1600.0): 6}  # the last one rests
    with follow_process(config, home, "first", "in_barrier") as run:
        wait_killed(sim, run)
    # the first order fed through has its intents; the others were never decided
    decided = {leader for (leader,) in read_store(
        home, "SELECT leader_order_id FROM mirrororder")}
    assert len(decided) == 1 and decided <= set(leaders), decided
    return leaders


SCENARIOS = {"after_intent_commit": _after_intent_commit, "after_send": _after_send,
             "in_barrier": _in_barrier}


def test_every_fault_point_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(faultpoints.POINTS)


@pytest.mark.parametrize("point", faultpoints.POINTS)
def test_kill_at_fault_point_then_restart_is_exactly_once(
        emulator: Emulator, config: Path, home: Path, point: str) -> None:
    leaders = SCENARIOS[point](emulator, config, home)
    unknown_but_placed = ({f for f, _, _ in sending(home)}
                          & {w.name for w in FOLLOWERS if book(emulator, w.client_id)})
    restart_and_check(emulator, config, home, leaders)
    if point == "after_intent_commit":
        _after_intent_commit_then(home)
    elif point == "after_send":
        _after_send_then(home, unknown_but_placed)


# ---- kill -9 at a random moment ------------------------------------------------------------

def test_kill_at_a_random_moment_of_a_burst(emulator: Emulator, config: Path,
                                            home: Path) -> None:
    """SIGKILL from outside, somewhere in a burst of 10 leader market orders."""
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    # kill once this many follower orders exist on the broker (0: before any did)
    kill_at = rng.randint(0, 2 * 10 - 1)
    with follow_process(config, home, "first") as run:
        wait_logged_in(emulator, run)
        leaders = {}
        for index in range(10):
            quantity = index + 1
            leaders[app_place(emulator, quantity)] = quantity
        eventually(lambda: sum(len(book(emulator, w.client_id)) for w in FOLLOWERS)
                   >= kill_at, timeout=10, interval=0.005)
        run.proc.kill()
        wait_killed(emulator, run)
    placed = sum(len(book(emulator, w.client_id)) for w in FOLLOWERS)
    try:
        restart_and_check(emulator, config, home, leaders)
    except AssertionError as exc:
        raise AssertionError(f"CRASH_SEED={seed} (killed with {placed} of 20 follower "
                             f"orders placed): {exc}") from exc


def test_kill_before_a_burst_of_market_orders_is_decided(emulator: Emulator, config: Path,
                                                         home: Path) -> None:
    """Killed while the burst's frames were still on their way (the leader's stream is
    stalled): the restart's catch-up is the first to see 10 filled market orders, and
    the price has not moved, so every one must be mirrored. (Each needs a quote for the
    drift check: ten of them must not exceed the data-API limit and be skipped as "no
    price", as they were before quotes were paced and cached per instrument.)"""
    with follow_process(config, home, "first") as run:
        wait_logged_in(emulator, run)
        assert emulator.stall_stream(LEADER_ID, seconds=10) == 1
        leaders = {app_place(emulator, quantity): quantity for quantity in range(1, 11)}
        run.proc.kill()
        # a stalled connection does not read, so would not see the peer go: let it
        emulator.unstall_stream(LEADER_ID)
        wait_killed(emulator, run)
    assert read_store(home, "SELECT COUNT(*) FROM mirrororder") == [(0,)]
    restart_and_check(emulator, config, home, leaders)
