"""Issue 7's table, the rows about what follow trusts: each plausible hostile input, end to
end (the real SDK and our stream client against the emulator on 127.0.0.1), must cost no
trade and leave a record.

Hostile frames are sent verbatim on an account's stream (`Emulator.send_raw_frame`),
built from the emulator's own frame of a real order with one field changed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from followtools import (
    LEADER_ID,
    LEADER_TOKEN,
    FollowRun,
    config_text,
    follower,
    running_follow,
    sdk,
)

from copytrade.errors import DegradedError
from copytrade.home import home_paths
from copytrade.sim.server import Emulator
from copytrade.store.db import open_store
from copytrade.store.models import LeaderOrder

F1 = follower("f1", "1000000002")
LOTS2 = follower("lots2", "1000000003", "fixed_lots = 2")
EQUITY = ("1333", "NSE_EQ", "CNC")  # lot 1
OPTION = ("52201", "NSE_FNO", "INTRADAY")  # lot 65
FAST = "reconcile_interval_seconds = 0.5"


def place(run: FollowRun, side: str, quantity: int, instrument=EQUITY,
          order_type: str = "MARKET", price: float = 0.0) -> str:
    security_id, segment, product = instrument
    reply = run.leader_api.place_order(security_id, segment, side, quantity, order_type,
                                       product, price)
    assert reply["status"] == "success", reply
    return str(reply["data"]["orderId"])


def hostile_frame(sim: Emulator, order_id: str, **changes: object) -> str:
    data = {**sim.book.orders[order_id].to_frame(), **changes}
    return json.dumps({"Type": "order_alert", "Data": data})


def net_position(sim: Emulator, client_id: str, security_id: str) -> int:
    rows = sim.snapshot()["accounts"].get(client_id, {}).get("positions", [])
    return sum(int(r["netQty"]) for r in rows if str(r["securityId"]) == security_id)


def filled(run: FollowRun, name: str, count: int) -> bool:
    states = run.mirror_states(name)
    return len(states) == count and all(s == "FILLED" for s in states)


def audit_kinds(run: FollowRun) -> list[str]:
    return [a.kind for a in run.audit()]


# ---- row 1: a follower frame claims a fill above its order's quantity ------------------------

def test_a_follower_fill_above_the_order_quantity_is_refused_and_the_exit_stays_right(
        live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1]) as run:
        place(run, "BUY", 10)
        run.wait_for(lambda: filled(run, "f1", 1))
        mirror = run.mirrors("f1")[0]
        lie = hostile_frame(live_sim, mirror.follower_order_id, TradedQty=500, Quantity=10)
        assert live_sim.send_raw_frame(F1.client_id, lie) == 1
        run.wait_for(lambda: any("traded quantity 500" in a.message
                                 for a in run.audit("malformed_frame")))
        place(run, "SELL", 10)
        run.wait_for(lambda: filled(run, "f1", 2))
        assert run.mirrors("f1")[1].quantity == 10
        assert net_position(live_sim, F1.client_id, "1333") == 0


def test_an_exit_larger_than_our_records_vouch_for_is_confirmed_from_broker_positions(
        live_sim: Emulator, tmp_path: Path) -> None:
    """A frame for an order we never placed claims the follower bought 500 more: the exit
    is sized from it, but the broker's positions (10 held) decide what is sent."""
    with running_follow(live_sim, tmp_path, [F1]) as run:
        place(run, "BUY", 10)
        run.wait_for(lambda: filled(run, "f1", 1))
        mirror = run.mirrors("f1")[0]
        phantom = hostile_frame(live_sim, mirror.follower_order_id, OrderNo="999000111",
                                Quantity=500, TradedQty=500, RemainingQuantity=0,
                                CorrelationId="")
        live_sim.send_raw_frame(F1.client_id, phantom)
        run.wait_for(lambda: run.engine.positions["f1"].net("1333", "CNC") == 510)
        place(run, "SELL", 10)
        run.wait_for(lambda: filled(run, "f1", 2))
        assert run.mirrors("f1")[1].quantity == 10
        assert net_position(live_sim, F1.client_id, "1333") == 0
        assert run.audit("exit_reduced"), audit_kinds(run)


# ---- row 2: the leader's own frame lies about its fill -------------------------------------

def test_a_leader_fill_above_the_order_quantity_does_not_corrupt_the_exit(
        live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1]) as run:
        bought = place(run, "BUY", 10)
        run.wait_for(lambda: filled(run, "f1", 1))
        live_sim.send_raw_frame(LEADER_ID, hostile_frame(live_sim, bought, TradedQty=100000))
        run.wait_for(lambda: any("traded quantity 100000" in a.message
                                 for a in run.audit("malformed_frame")))
        assert run.engine.leader_positions.net("1333", "CNC") == 10
        place(run, "SELL", 10)
        run.wait_for(lambda: filled(run, "f1", 2))
        assert net_position(live_sim, F1.client_id, "1333") == 0


# ---- row 3: a frame's lot size disagrees with the instrument list ----------------------------

def test_the_instrument_list_decides_the_lot_size(live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [LOTS2]) as run:
        live_sim.delay_frames(5, 1.0, LEADER_ID)  # the real frames come late
        order_id = place(run, "BUY", 65, OPTION)
        live_sim.send_raw_frame(LEADER_ID, hostile_frame(live_sim, order_id, LotSize=130))
        run.wait_for(lambda: filled(run, "lots2", 1))
        assert run.mirrors("lots2")[0].quantity == 130  # 2 lots of 65, not of 130
        mismatch = run.audit("lot_size_mismatch")
        assert len(mismatch) == 1 and "130" in mismatch[0].message


# ---- row 4: text that cannot be encoded -----------------------------------------------------

def test_a_lone_surrogate_in_a_symbol_is_cleaned_and_the_order_mirrored(
        live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1]) as run:
        live_sim.delay_frames(5, 1.0, LEADER_ID)
        order_id = place(run, "BUY", 7)
        frame = hostile_frame(live_sim, order_id, Symbol="RELI__")
        live_sim.send_raw_frame(LEADER_ID, frame.replace("RELI__", "RELI\\ud800"))
        run.wait_for(lambda: filled(run, "f1", 1))
        leader = LeaderOrder.get(LeaderOrder.order_id == order_id)
        leader.symbol.encode("utf-8")  # storable and printable
        assert run.mirrors("f1")[0].quantity == 7


# ---- row 7: the database lost between runs ---------------------------------------------------

def test_a_lost_database_adopts_our_orders_instead_of_placing_them_again(
        live_sim: Emulator, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with running_follow(live_sim, home, [F1]) as run:
        for quantity in (3, 4, 5):
            place(run, "BUY", quantity)
        run.wait_for(lambda: filled(run, "f1", 3))
        run.store.db.close()
    for name in ("copytrade.db", "copytrade.db-wal", "copytrade.db-shm"):
        if (home / name).exists():
            (home / name).rename(tmp_path / name)
    book_before = live_sim.snapshot()["accounts"][F1.client_id]["orders"]
    with running_follow(live_sim, home, [F1]) as run:
        run.wait_for(lambda: filled(run, "f1", 3))
        assert len(run.audit("adopted")) == 3
        place(run, "BUY", 2)  # and follow goes on as usual
        run.wait_for(lambda: filled(run, "f1", 4))
        run.store.db.close()
    book_after = live_sim.snapshot()["accounts"][F1.client_id]["orders"]
    assert len(book_after) == len(book_before) + 1  # only the new order was placed


# ---- row 8: one unreadable row in the leader's order book ------------------------------------

def test_an_unreadable_book_row_is_recorded_once_and_the_rest_of_the_book_used(
        live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1], settings=FAST) as run:
        odd = place(run, "BUY", 2)
        run.wait_for(lambda: filled(run, "f1", 1))
        order = live_sim.book.orders[odd]
        normal_row = order.to_rest
        order.to_rest = lambda: {**normal_row(), "exchangeSegment": "NSE_MARS"}
        live_sim.drop_stream(LEADER_ID)  # the next catch-up reads the odd book
        run.wait_for(lambda: run.engine.status.catch_ups >= 2)
        live_sim.stall_stream(LEADER_ID, seconds=3)  # only the periodic read can see this
        place(run, "BUY", 6)
        run.wait_for(lambda: filled(run, "f1", 2))
        run.wait_for(lambda: run.engine.status.loops["leader check"].failures == 0
                     and run.audit("unreadable_row"))
        assert len([a for a in run.audit("unreadable_row") if "NSE_MARS" in a.message]) == 1
        assert run.thread.is_alive()


# ---- row 9: a background loop meets an exception ---------------------------------------------

def test_a_failing_background_loop_survives_shows_degraded_and_exits_non_zero(
        live_sim: Emulator, tmp_path: Path) -> None:
    failures = {"left": 4}
    with running_follow(live_sim, tmp_path, [F1], settings=FAST) as run:
        leader = run.engine.leader
        real_book = leader.order_book

        def flaky_book():
            if failures["left"] > 0:
                failures["left"] -= 1
                raise OSError(28, "No space left on device")
            return real_book()

        leader.order_book = flaky_book
        run.wait_for(lambda: "leader check" in run.engine.status.degraded, timeout=30)
        live_sim.stall_stream(LEADER_ID, seconds=5)  # the recovered loop must catch this up
        place(run, "BUY", 3)
        run.wait_for(lambda: filled(run, "f1", 1), timeout=30)
        run.wait_for(lambda: "leader check" not in run.engine.status.degraded)
        run.wait_for(lambda: [a.kind for a in run.audit() if a.kind in
                              ("degraded", "recovered")] == ["degraded", "recovered"])
    failed = run.engine.status.loops["leader check"].failures
    assert 3 <= failed <= 4  # a reconnect's catch-up may have met one of the four
    assert run.failure and isinstance(run.failure[0], DegradedError)
    assert f"leader check failed {failed} time(s)" in run.failure[0].message
    assert "No space left on device" in run.failure[0].message


# ---- rows 7, 10: an empty or damaged database is refused -------------------------------------

@pytest.mark.parametrize("damage", ["empty", "garbage", "mid-file"])
def test_an_empty_or_damaged_database_is_refused(tmp_path: Path, damage: str) -> None:
    from copytrade.errors import StoreError
    from copytrade.store.db import open_store

    path = tmp_path / "copytrade.db"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"not a database" * 500)
    else:
        db = open_store(path)
        with db.atomic():
            for i in range(3000):
                db.execute_sql("INSERT INTO auditevent (at, kind, message, data) "
                               "VALUES ('2026-11-30', 'k', ?, '{}')", ("m" * 100 + str(i),))
        db.close()
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle:middle + 4096] = b"\x5a" * 4096
        path.write_bytes(bytes(data))
    before = path.read_bytes()
    with pytest.raises(StoreError) as refused:
        open_store(path)
    assert str(path) in refused.value.message and "\n" not in refused.value.message
    assert path.read_bytes() == before  # never silently replaced by a new database


def run_follow(config: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COPYTRADE_DEBUG"}
    env.update({"LEADER_TOKEN": LEADER_TOKEN, "TOKEN_F1": F1.token})
    return subprocess.run([sys.executable, "-m", "copytrade", "follow", "--config",
                           str(config), *extra], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def test_follow_itself_refuses_an_empty_database_with_exit_7(
        live_sim: Emulator, tmp_path: Path) -> None:
    config = tmp_path / "follow.toml"
    config.write_text(config_text(live_sim, [F1]))
    paths = home_paths()
    paths.create_dirs()
    paths.database_file.write_bytes(b"")
    result = run_follow(config, "--duration", "1")
    assert result.returncode == 7, result.stderr
    assert result.stderr.count("\n") == 1 and "empty (0 bytes)" in result.stderr
    assert str(paths.database_file) in result.stderr
    assert paths.database_file.read_bytes() == b""
    assert live_sim.snapshot()["accounts"].get(F1.client_id, {}).get("orders", []) == []


# ---- row 13: a home that cannot be written; an instrument list that cannot be fetched ---

def test_an_unwritable_home_is_exit_7_with_one_line(live_sim: Emulator, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the home should be")
    monkeypatch.setenv("COPYTRADE_HOME", str(blocked / "home"))
    config = tmp_path / "follow.toml"
    config.write_text(config_text(live_sim, [F1]))
    result = run_follow(config, "--duration", "1")
    assert result.returncode == 7, result.stderr
    assert result.stderr.count("\n") == 1 and "writable" in result.stderr


def test_an_unreachable_instrument_list_is_exit_5_then_the_cached_copy_is_used(
        live_sim: Emulator, tmp_path: Path) -> None:
    config = tmp_path / "follow.toml"
    good = config_text(live_sim, [F1])
    unreachable = good.replace(live_sim.scrip_master_url, "http://127.0.0.1:9/scrip.csv")
    config.write_text(unreachable)
    first = run_follow(config, "--duration", "1")
    assert first.returncode == 5, first.stderr
    assert first.stderr.count("\n") == 1 and "instrument list" in first.stderr
    config.write_text(good)  # one good download caches the list
    assert run_follow(config, "--duration", "1").returncode == 0
    from copytrade.store.models import Setting

    db = open_store(home_paths().database_file)
    Setting.update(value="2000-01-01").where(
        Setting.key == "instruments_date").execute()  # yesterday's copy, or older
    db.close()
    config.write_text(unreachable)
    third = run_follow(config, "--duration", "1")
    assert third.returncode == 0, third.stderr
    assert "instruments_stale" in third.stdout


# ---- row 15: each run prints only its own events --------------------------------------------

def test_a_second_run_does_not_reprint_the_first_runs_events(
        live_sim: Emulator, tmp_path: Path) -> None:
    config = tmp_path / "follow.toml"
    config.write_text(config_text(live_sim, [F1]))
    leader = sdk(live_sim, LEADER_ID, LEADER_TOKEN)
    reply = leader.place_order("1333", "NSE_EQ", "BUY", 4, "MARKET", "CNC", 0)
    assert reply["status"] == "success"
    order_id = str(reply["data"]["orderId"])
    first = run_follow(config, "--duration", "3")
    assert first.returncode == 0, first.stderr
    # the order placed before the start was mirrored
    assert re.search(rf" f1 +{order_id} .*  placed\n", first.stdout), first.stdout
    assert re.search(r"\nf1 +1 +1 ", first.stdout), first.stdout  # and summed up
    second = run_follow(config, "--duration", "1")
    assert second.returncode == 0, second.stderr
    assert order_id not in second.stdout  # no line of the first run, nor in the summary
    assert re.search(r"\nf1 +0 +0 +0 +0 +0\n", second.stdout), second.stdout
    assert second.stdout.strip().splitlines()[0].endswith("started")


# ---- row 12: a flood of frames; every close on the record ------------------------------------

def test_a_flood_of_frames_keeps_the_stream_and_every_close_is_recorded(
        live_sim: Emulator, tmp_path: Path) -> None:
    with running_follow(live_sim, tmp_path, [F1]) as run:
        first = place(run, "BUY", 2)
        run.wait_for(lambda: filled(run, "f1", 1))
        frame = hostile_frame(live_sim, first)
        for _ in range(5000):  # repeats of a real frame, as fast as the emulator sends
            live_sim.send_raw_frame(LEADER_ID, frame)
        place(run, "BUY", 3)
        run.wait_for(lambda: filled(run, "f1", 2), timeout=30)
        assert run.engine.replicator.stats.duplicates >= 5000 or run.audit("stream_closed")
        for clean in (False, True):
            run.wait_for(run.connected, timeout=15)
            # follow says connected when the socket opens; the emulator counts the
            # connection once the login is read: drop when there is one to drop
            run.wait_for(lambda clean=clean: live_sim.drop_stream(LEADER_ID, clean=clean) == 1,
                         timeout=15)
            code = "1001" if clean else "1006"
            run.wait_for(lambda code=code: any(a.kind == "stream_closed" and code in a.message
                                               for a in run.audit()), timeout=15)
        closes = [json.loads(a.data)["code"] for a in run.audit("stream_closed")]
        assert all(isinstance(code, int) for code in closes), closes


# ---- an exit decided while its entry is still on its way (a burst) --------------------------

def test_an_exit_decided_while_the_entry_is_still_queued_closes_the_follower(
        live_sim: Emulator, tmp_path: Path) -> None:
    """The follower's entry meets a 429 and waits; the leader buys and sells meanwhile. The
    exit must not be skipped for 'no open position': it goes after the entry, once the
    broker shows the holding."""
    with running_follow(live_sim, tmp_path, [F1]) as run:
        live_sim.fail_next("429", "/orders", method="POST", client_id=F1.client_id, count=2)
        place(run, "BUY", 10)
        place(run, "SELL", 10)
        run.wait_for(lambda: filled(run, "f1", 2), timeout=20)
        assert [m.transaction_type for m in run.mirrors("f1")] == ["BUY", "SELL"]
        assert net_position(live_sim, F1.client_id, "1333") == 0
