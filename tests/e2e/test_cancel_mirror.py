"""cancel-mirror end to end: the engine function and the real `copytrade cancel-mirror`
process against the emulator (the real dhanhq SDK on 127.0.0.1), with follow running in
this process on the same home, and after it stopped.

Checked on both sides: what the broker holds (`run.follower_book(f)`) and what the store
recorded (mirror state and reason, CANCEL intents, `cancel_mirror` audit events). Every
wait is bounded: polls have deadlines, subprocesses have timeouts.

Instruments (docs/sim.md): 1333 HDFCBANK 1650, 2885 RELIANCE 1400, 11536 TCS 3200; a BUY
limit below the price stays open until the price is moved to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from followtools import LEADER_ID, LEADER_TOKEN, Follower, FollowRun, follower, running_follow

from copytrade.dhan.rest import DhanAccount
from copytrade.engine.cancel import (
    AUDIT_KIND,
    CANCEL_REASON,
    CancelResult,
    ResultKind,
    Selection,
    cancel_mirrors,
    plan_cancel,
)
from copytrade.sim.server import Emulator
from copytrade.store.models import AuditEvent, Intent, LeaderOrder, MirrorOrder

F1 = follower("f1", "1000000002")
F2 = follower("f2", "1000000003", "fixed_lots = 2")
OPEN = frozenset({"TRANSIT", "PENDING", "PART_TRADED", "TRIGGERED"})
CLI_TIMEOUT = 60


# ---- helpers ------------------------------------------------------------------------------

def order_id_of(reply: dict) -> str:
    assert reply["status"] == "success", reply
    return str(reply["data"]["orderId"])


def limit_buy(run: FollowRun, security_id: str, quantity: int, price: float) -> str:
    return order_id_of(run.leader_api.place_order(security_id, "NSE_EQ", "BUY", quantity,
                                                  "LIMIT", "CNC", price))


def mirrors_of(leader_order_id: str, name: str) -> list[MirrorOrder]:
    return list(MirrorOrder.select().where((MirrorOrder.leader_order == leader_order_id)
                                           & (MirrorOrder.follower == name))
                .order_by(MirrorOrder.attempt))


def the_mirror(leader_order_id: str, name: str) -> MirrorOrder:
    [mirror] = mirrors_of(leader_order_id, name)
    return mirror


def wait_state(run: FollowRun, leader_order_id: str, name: str, *states: str) -> MirrorOrder:
    def reached() -> MirrorOrder | None:
        found = mirrors_of(leader_order_id, name)
        return found[-1] if found and found[-1].state in states else None
    return run.wait_for(reached, timeout=10)  # type: ignore[return-value]


def settled(run: FollowRun) -> None:
    """No intent of anyone is still being sent."""
    run.wait_for(lambda: not Intent.select().where(Intent.status == "SENDING").exists())


def broker_status(run: FollowRun, who: Follower, leader_order_id: str) -> list[str]:
    """Statuses of the follower's broker orders mirroring one leader order."""
    correlation_ids = {m.correlation_id for m in mirrors_of(leader_order_id, who.name)}
    return [o["orderStatus"] for o in run.follower_book(who)
            if o["correlationId"] in correlation_ids]


def cancel_intents(mirror: MirrorOrder) -> list[Intent]:
    return list(Intent.select().where((Intent.mirror == mirror.id)
                                      & (Intent.action == "CANCEL")).order_by(Intent.id))


def audits(leader_order_id: str) -> list[AuditEvent]:
    return list(AuditEvent.select().where((AuditEvent.kind == AUDIT_KIND)
                                          & (AuditEvent.leader_order_id == leader_order_id))
                .order_by(AuditEvent.id))


def accounts(sim: Emulator, *followers: Follower) -> dict[str, DhanAccount]:
    """The followers' accounts as cancel-mirror builds them: its own, not follow's."""
    return {f.name: DhanAccount(f.client_id, f.token, api_url=sim.rest_url, timeout=5)
            for f in followers}


def kinds(results: list[CancelResult]) -> list[tuple[str, str | None, ResultKind]]:
    return [(r.leader_order_id, r.follower, r.kind) for r in results]


def assert_cancelled_here(leader_order_id: str, *names: str) -> None:
    """The mirror ended CANCELED by cancel-mirror, with its intent and audit recorded."""
    for name in names:
        mirror = the_mirror(leader_order_id, name)
        assert (mirror.state, mirror.reason) == ("CANCELED", CANCEL_REASON), name
        [intent] = cancel_intents(mirror)
        assert json.loads(intent.request) == {"reason": "cancel-mirror"}
        assert intent.status == "DONE", intent.outcome
        assert intent.completed_at is not None and intent.completed_at >= intent.created_at
    audited = [a.follower for a in audits(leader_order_id)]
    assert all(audited.count(name) == 1 for name in names), audited


def cli_env(*followers: Follower) -> dict[str, str]:
    env = dict(os.environ)  # COPYTRADE_HOME from the autouse fixture
    env.pop("COPYTRADE_DEBUG", None)
    env["LEADER_TOKEN"] = LEADER_TOKEN
    env.update({f"TOKEN_{f.name.upper()}": f.token for f in followers})
    return env


def cancel_mirror_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m copytrade cancel-mirror ...`, stdin not a terminal."""
    result = subprocess.run(
        [sys.executable, "-m", "copytrade", "cancel-mirror", *args,
         "--config", str(home / "copytrade.toml")],
        env=cli_env(F1, F2), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=CLI_TIMEOUT)
    output = result.stdout + result.stderr
    for secret in (LEADER_TOKEN, F1.token, F2.token):
        assert secret not in output
    assert "Traceback" not in output, output
    return result


def rows(stdout: str) -> list[list[str]]:
    """The plain table's rows (header dropped), split on runs of two or more spaces."""
    lines = stdout.splitlines()
    assert lines[0].split() == ["leader", "order", "follower", "follower", "order", "result"]
    return [[cell.strip() for cell in line.split("  ") if cell.strip()]
            for line in lines[1:-1]]


def row_for(stdout: str, leader_order_id: str, name: str) -> list[list[str]]:
    return [row for row in rows(stdout) if row[:2] == [leader_order_id, name]]


# ---- with follow running ------------------------------------------------------------------

def test_cancel_while_follow_runs_is_not_replaced_when_the_leader_modifies(
        live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        kept = limit_buy(run, "1333", 10, 1600)
        target = limit_buy(run, "2885", 10, 1350)
        placed_at = time.time()
        for order in (kept, target):
            for who in (F1, F2):
                wait_state(run, order, who.name, "ACCEPTED")
        settled(run)

        results = cancel_mirrors(run.store, accounts(live_sim, F1, F2), Selection((target,)))

        assert kinds(results) == [(target, "f1", ResultKind.CANCELLED),
                                  (target, "f2", ResultKind.CANCELLED)]
        assert [r.follower_order_id for r in results] == [
            the_mirror(target, name).follower_order_id for name in ("f1", "f2")]
        for who in (F1, F2):
            assert broker_status(run, who, target) == ["CANCELLED"]
            assert broker_status(run, who, kept) == ["PENDING"]
            assert the_mirror(kept, who.name).state == "ACCEPTED"
        assert_cancelled_here(target, "f1", "f2")

        # The leader changes both orders, the cancelled one first: once the kept order's
        # change has reached the followers, the other's has been decided on too.
        run.wait_for(lambda: int(time.time()) > int(placed_at), timeout=2)  # 1 s timestamps
        order_id_of(run.leader_api.modify_order(target, "LIMIT", "ENTRY_LEG", 20, 1355, 0, 0,
                                                "DAY"))
        order_id_of(run.leader_api.modify_order(kept, "LIMIT", "ENTRY_LEG", 12, 1605, 0, 0,
                                                "DAY"))
        run.wait_for(lambda: LeaderOrder.get_by_id(target).quantity == 20)
        for who in (F1, F2):
            run.wait_for(lambda w=who: [o["price"] for o in run.follower_book(w)
                                        if o["orderStatus"] in OPEN] == [1605.0])
        settled(run)
        for who in (F1, F2):
            assert len(run.follower_book(who)) == 2  # nothing placed anew
            assert broker_status(run, who, target) == ["CANCELLED"]
            assert [m.state for m in mirrors_of(target, who.name)] == ["CANCELED"]
        assert run.failure == []

        # Again: converged, reported, nothing sent or recorded twice.
        again = cancel_mirrors(run.store, accounts(live_sim, F1, F2), Selection((target,)))
        assert kinds(again) == [(target, "f1", ResultKind.ALREADY_CANCELLED),
                                (target, "f2", ResultKind.ALREADY_CANCELLED)]
        assert_cancelled_here(target, "f1", "f2")


def test_the_cli_while_follow_runs(live_sim: Emulator, copytrade_home: Path) -> None:
    """The real process, on the home follow is using: confirmation, --yes, terminal
    mirrors, unknown ids, --all-open with and without --follower."""
    home = copytrade_home
    with running_follow(live_sim, home, [F1, F2]) as run:
        first = limit_buy(run, "1333", 10, 1600)
        second = limit_buy(run, "2885", 10, 1350)
        filled = order_id_of(run.leader_api.place_order("11536", "NSE_EQ", "BUY", 3, "MARKET",
                                                        "CNC", 0))
        for who in (F1, F2):
            for order in (first, second):
                wait_state(run, order, who.name, "ACCEPTED")
            wait_state(run, filled, who.name, "FILLED")
        settled(run)

        refused = cancel_mirror_cli(home, first)  # no --yes, stdin not a terminal
        assert refused.returncode == 2, refused.stderr
        assert refused.stdout == ""
        [line] = refused.stderr.splitlines()
        assert line.startswith("error: refusing to cancel 2 follower orders") and "--yes" in line
        assert [broker_status(run, who, first) for who in (F1, F2)] == [["PENDING"]] * 2
        assert cancel_intents(the_mirror(first, "f1")) == []

        done = cancel_mirror_cli(home, first, "--yes")
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        for who in (F1, F2):
            order = the_mirror(first, who.name).follower_order_id
            assert row_for(done.stdout, first, who.name) == [[first, who.name, order,
                                                              "cancelled"]]
            assert broker_status(run, who, first) == ["CANCELLED"]
            assert broker_status(run, who, second) == ["PENDING"]
        assert done.stdout.splitlines()[-1] == "2 cancelled"
        assert "\x1b[" not in done.stdout  # not a terminal: plain columns
        assert_cancelled_here(first, "f1", "f2")

        ended = cancel_mirror_cli(home, first, filled, "--yes")
        assert ended.returncode == 0, ended.stderr
        for who in (F1, F2):
            assert row_for(ended.stdout, first, who.name)[0][3] == "already cancelled"
            assert row_for(ended.stdout, filled, who.name)[0][3] == "already filled"
        assert cancel_intents(the_mirror(filled, "f1")) == []
        assert_cancelled_here(first, "f1", "f2")  # no second intent, no second audit

        unknown = cancel_mirror_cli(home, "999999999", "--yes")
        assert unknown.returncode == 2
        assert row_for(unknown.stdout, "999999999", "-") == [
            ["999999999", "-", "-", "no mirror of this leader order"]]
        assert unknown.stderr == "error: no mirror of leader order 999999999\n"

        only_f1 = cancel_mirror_cli(home, "--all-open", "--follower", "F1", "--yes")
        assert only_f1.returncode == 0, only_f1.stderr
        assert [row[:2] for row in rows(only_f1.stdout)] == [[second, "f1"]]
        assert broker_status(run, F1, second) == ["CANCELLED"]
        assert broker_status(run, F2, second) == ["PENDING"]

        rest = cancel_mirror_cli(home, "--all-open", "--yes")
        assert rest.returncode == 0, rest.stderr
        assert [[row[0], row[1], row[3]] for row in rows(rest.stdout)] == [
            [second, "f2", "cancelled"]]
        assert broker_status(run, F2, second) == ["CANCELLED"]

        nothing = cancel_mirror_cli(home, "--all-open")  # nothing open: nothing to ask
        assert (nothing.returncode, nothing.stdout) == (0, "nothing to cancel: no open mirror\n")

        settled(run)
        for who in (F1, F2):
            for order in (first, second):
                assert the_mirror(order, who.name).state == "CANCELED"
            assert len(run.follower_book(who)) == 3  # follow placed nothing anew
        assert run.failure == []


def test_a_mirror_whose_place_is_in_flight_is_cancelled_once_its_order_exists(
        live_sim: Emulator, tmp_path: Path) -> None:
    """Chosen while follow's place request is still on its way (no follower order id
    yet): cancel-mirror waits (bounded) for the order to exist, then cancels it."""
    with running_follow(live_sim, tmp_path, [F1]) as run:
        live_sim.set_delay(1200)  # every REST reply: 0.6 s before the work, 0.6 s after
        [order] = live_sim.app_place(LEADER_ID, {  # the leader, in Dhan's app: no delay
            "transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
            "orderType": "LIMIT", "validity": "DAY", "securityId": "1333", "quantity": 10,
            "price": 1600})
        wait_state(run, order, "f1", "SUBMITTED")
        [target] = plan_cancel(Selection((order,)), run.store).targets
        assert target.order_ids == ()  # follow's place has not reached the broker yet

        results = cancel_mirrors(run.store, accounts(live_sim, F1), Selection((order,)))

        assert kinds(results) == [(order, "f1", ResultKind.CANCELLED)]
        settled(run)
        live_sim.set_delay(0)
        assert broker_status(run, F1, order) == ["CANCELLED"]
        run.wait_for(lambda: the_mirror(order, "f1").state == "CANCELED")
        assert_cancelled_here(order, "f1")
        assert run.failure == []


# ---- after follow stopped -----------------------------------------------------------------

def test_without_follow_cancels_are_confirmed_by_reading_back_and_stale_mirrors_converge(
        live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1]) as run:
        untouched = limit_buy(run, "1333", 10, 1600)
        partial = limit_buy(run, "2885", 10, 1390)
        stale = limit_buy(run, "11536", 5, 3100)
        for order in (untouched, partial, stale):
            wait_state(run, order, "f1", "ACCEPTED")
        live_sim.set_fill_size(4, "2885")
        live_sim.set_price("2885", 1390)  # one match: 4 units, leader and follower
        run.wait_for(lambda: the_mirror(partial, "f1").filled_quantity == 4)
        wait_state(run, partial, "f1", "PARTIALLY_FILLED")
        settled(run)
    # follow has stopped: no follower stream will report anything from here on
    live_sim.set_price("11536", 3100)  # fills while nobody watches: the store still says open
    assert broker_status(run, F1, stale) == ["TRADED"]
    assert the_mirror(stale, "f1").state == "ACCEPTED"

    results = cancel_mirrors(run.store, accounts(live_sim, F1), Selection(all_open=True))

    assert kinds(results) == [(untouched, "f1", ResultKind.CANCELLED),
                              (partial, "f1", ResultKind.CANCELLED),
                              (stale, "f1", ResultKind.ALREADY_FILLED)]
    assert results[1].text == "cancelled: 4 of 10 filled before"
    assert [broker_status(run, F1, o) for o in (untouched, partial, stale)] == [
        ["CANCELLED"], ["CANCELLED"], ["TRADED"]]
    # read back and applied, with no stream to say it
    assert_cancelled_here(untouched, "f1")
    assert_cancelled_here(partial, "f1")
    assert the_mirror(partial, "f1").filled_quantity == 4
    mirror = the_mirror(stale, "f1")
    assert (mirror.state, mirror.filled_quantity) == ("FILLED", 5)
    assert mirror.reason != CANCEL_REASON  # nothing of it was cancelled
    [intent] = cancel_intents(mirror)
    assert intent.status == "CHECKED" and "DH-906" in intent.outcome
    [audit] = audits(stale)
    assert "already filled" in audit.message

    again = cancel_mirrors(run.store, accounts(live_sim, F1),
                           Selection((untouched, partial, stale)))
    assert [r.kind for r in again] == [ResultKind.ALREADY_CANCELLED,
                                       ResultKind.ALREADY_CANCELLED, ResultKind.ALREADY_FILLED]
    assert cancel_mirrors(run.store, accounts(live_sim, F1), Selection(all_open=True)) == []
    assert len(cancel_intents(mirror)) == 1


def test_throttled_lost_and_failed_cancels_converge_and_a_refused_token_fails(
        live_sim: Emulator, tmp_path: Path) -> None:
    """A 429 is sent again after a backoff; a reply lost after the cancel took effect, and
    a DH-908, are answered by reading the order (never by guessing); a refused token
    (DH-901) leaves that follower's order open, reported as failed."""
    with running_follow(live_sim, tmp_path, [F1, F2]) as run:
        throttled = limit_buy(run, "1333", 10, 1600)
        lost = limit_buy(run, "2885", 10, 1350)
        server_error = limit_buy(run, "11536", 5, 3100)
        for order in (throttled, lost, server_error):
            for who in (F1, F2):
                wait_state(run, order, who.name, "ACCEPTED")
        settled(run)
    f1_order = {order: the_mirror(order, "f1").follower_order_id
                for order in (throttled, lost, server_error)}
    live_sim.set_hold(0.2)  # a lost reply: the connection closes 0.2 s after the work
    for order, kind in ((throttled, "429"), (lost, "accept_then_timeout"),
                        (server_error, "5xx")):
        live_sim.fail_next(kind, f"/orders/{f1_order[order]}", method="DELETE")
    assert live_sim.expire_token(F2.client_id) >= 1
    pauses: list[float] = []

    def pause(seconds: float) -> None:  # the backoff, recorded and kept short
        pauses.append(seconds)
        time.sleep(min(seconds, 0.02))

    results = cancel_mirrors(run.store, accounts(live_sim, F1, F2), Selection(all_open=True),
                             sleep=pause)

    by_follower = {(r.leader_order_id, r.follower): r for r in results}
    for index, order in enumerate((throttled, lost, server_error)):
        assert by_follower[(order, "f1")].kind is ResultKind.CANCELLED, by_follower
        assert broker_status(run, F1, order) == ["CANCELLED"]
        assert_cancelled_here(order, "f1")
        failed = by_follower[(order, "f2")]
        assert (failed.kind, failed.auth) == (ResultKind.FAILED, True)
        assert "DH-901" in failed.detail and F2.token not in failed.detail
        assert broker_status(run, F2, order) == ["PENDING"]
        mirror = the_mirror(order, "f2")
        assert (mirror.state, mirror.reason) == ("ACCEPTED", "")  # nothing cancelled
        # the first refusal stops calls to that account: the later mirrors send nothing
        assert [i.status for i in cancel_intents(mirror)] == (["AUTH"] if index == 0 else [])
    assert pauses and max(pauses) >= 1.0  # throttled: backed off at least a second
    outcomes = {order: cancel_intents(the_mirror(order, "f1"))[0].outcome
                for order in (lost, server_error)}
    assert "unknown" in outcomes[lost] and "-> CANCELLED" in outcomes[lost]
    assert "DH-908" in outcomes[server_error]
