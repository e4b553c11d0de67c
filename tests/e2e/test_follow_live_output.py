"""follow's output as a trader reads it, end to end: the engine on the emulator, run by the
CLI's own `run_engine` (piped: one line per event), while the leader places, modifies and
cancels an order in Dhan's app; then the stop summary, and the live view of the same
store on an 80-column terminal with three followers.

run_engine is called on this (the main) thread: it sets the signal handlers. A helper
thread plays the leader and stops the engine; every wait is bounded.
"""

from __future__ import annotations

import io
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

from followtools import LEADER_ID, LEADER_TOKEN, TEST_STREAM_OPTIONS, config_text, follower
from rich.console import Console
from simtools import eventually

from copytrade.cli.context import Context
from copytrade.cli.follow import live_view_of, run_engine
from copytrade.engine.follow import FollowEngine
from copytrade.home import HomePaths
from copytrade.sim.server import Emulator
from copytrade.store.models import Intent, MirrorOrder
from copytrade.store.queries import last_event_ids

FOLLOWERS = [follower("f1", "1000000002"), follower("f2", "1000000003", "multiplier = 0.5"),
             follower("f3", "1000000004", "fixed_lots = 2")]
TCS = {"transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
       "orderType": "LIMIT", "validity": "DAY", "securityId": "11536", "quantity": 5,
       "price": 3000.0}
EVENT = re.compile(r"\d{2}:\d{2}:\d{2} IST  ")


def engine_on(sim: Emulator, home: Path) -> FollowEngine:
    """The CLI's composition root on a fresh home, as `copytrade follow` builds it."""
    home.mkdir(mode=0o700)
    config = home / "copytrade.toml"
    config.write_text(config_text(sim, FOLLOWERS))
    environ = {"LEADER_TOKEN": LEADER_TOKEN,
               **{f"TOKEN_{f.name.upper()}": f.token for f in FOLLOWERS}}
    context = Context.load(config, environ=environ,
                           paths=HomePaths.from_dirs(home, home, home / "logs"),
                           background_checkpoints=True)
    return context.follow_engine(stream_options=TEST_STREAM_OPTIONS)


def states(order_id: str) -> list[str]:
    return [m.state for m in MirrorOrder.select().where(MirrorOrder.leader_order == order_id)
            .order_by(MirrorOrder.follower)]


def settled() -> bool:
    return not Intent.select().where(Intent.status == "SENDING").exists()


def play_leader(sim: Emulator, engine: FollowEngine, placed: list[str],
                failure: list[BaseException]) -> None:
    """Place, modify and cancel an order as Dhan's app would; then stop follow."""
    try:
        eventually(lambda: engine.status.leader_stream.state == "connected" and all(
            s.state == "connected" for s in engine.status.follower_streams.values())
            and len(engine.status.follower_streams) == 3, timeout=20, interval=0.02)
        [order_id] = sim.app_place(LEADER_ID, TCS)
        placed.append(order_id)
        eventually(lambda: states(order_id) == ["ACCEPTED"] * 3, timeout=10, interval=0.02)
        sim.app_modify(LEADER_ID, order_id, {"orderType": "LIMIT", "quantity": 8,
                                             "price": 3010.0, "validity": "DAY"})
        eventually(lambda: Intent.select().where(Intent.action == "MODIFY").count() == 3
                   and settled(), timeout=10, interval=0.02)
        sim.app_cancel(LEADER_ID, order_id)
        eventually(lambda: states(order_id) == ["CANCELED"] * 3 and settled(), timeout=10,
                   interval=0.02)
    except BaseException as exc:  # surfaced on the test's thread
        failure.append(exc)
    finally:
        engine.stop()


def test_piped_follow_prints_each_event_once_then_the_summary(live_sim: Emulator,
                                                              tmp_path: Path) -> None:
    engine = engine_on(live_sim, tmp_path / "home")
    cursor = last_event_ids()
    engine.prepare()
    out = io.StringIO()
    placed: list[str] = []
    failure: list[BaseException] = []
    leader = threading.Thread(target=play_leader, args=(live_sim, engine, placed, failure),
                              name="leader", daemon=True)
    leader.start()
    started = datetime.now(UTC)
    run_engine(engine, Console(file=out, width=120), 60, printed_up_to=cursor)
    leader.join(10)
    assert not failure, failure
    [order_id] = placed
    lines = out.getvalue().splitlines()
    assert "\x1b[" not in out.getvalue()
    assert lines[0] == "copytrade follow: started"
    stop = lines.index(next(line for line in lines if line.startswith("copytrade follow stopped")))
    events = lines[1:stop]
    assert events and all(EVENT.match(line) for line in events), events

    def about(who: str) -> list[str]:
        return [line[len("00:00:00 IST  "):].split(None, 2)[2] for line in events
                if line.split()[2:4] == [who, order_id]]

    leader = about("leader")
    assert leader[0].startswith("TCS BUY 5  seen: LIMIT @ 3000.00, "), leader
    assert leader.count("TCS BUY 8  modified: price 3000.00 -> 3010.00, qty 5 -> 8") == 1
    assert leader[-1] == "TCS BUY 8  cancelled"
    changed = {"f1": "price 3000.00 -> 3010.00, qty 5 -> 8",
               "f2": "price 3000.00 -> 3010.00, qty 2 -> 4", "f3": "price 3000.00 -> 3010.00"}
    # each line says the quantity as of its event, whenever it is printed
    placed_qty = {"f1": 5, "f2": 2, "f3": 2}
    quantity = {"f1": 8, "f2": 4, "f3": 2}
    for name, change in changed.items():
        told = about(name)
        assert told[0] == f"TCS BUY {placed_qty[name]}  placed", told
        assert f"TCS BUY {quantity[name]}  modified: {change}" in told
        assert told.count(f"TCS BUY {quantity[name]}  modified: {change}") == 1
        assert any(re.fullmatch(rf"TCS BUY {placed_qty[name]}  accepted \(order \d+\)", t)
                   for t in told), told
        assert told[-1].startswith(f"TCS BUY {quantity[name]}  cancelled"), told
    # the stop summary: this run's one leader order, mirrored by all three and cancelled
    summary = lines[stop:]
    assert summary[1].split() == ["follower", "seen", "mirrored", "filled", "skipped",
                                  "rejected", "lag", "p50", "lag", "p99"]
    for row, name in zip(summary[2:5], ("f1", "f2", "f3"), strict=True):
        assert row.split()[:6] == [name, "1", "1", "0", "0", "0"]
        assert re.fullmatch(r"[\d.]+m?s", row.split()[6]), row
    assert "copytrade's own part, leader event -> request sent: p50" in summary[-1]

    # One refresh of the live view on an 80-column terminal: nothing crushed.
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None,
                      record=True)
    console.print(live_view_of(engine, title="copytrade follow", started=started,
                               now=datetime.now(UTC), width=80, height=40))
    screen = console.export_text().splitlines()
    assert all(len(line.rstrip()) <= 80 for line in screen)
    headings = [screen[i - 1] for i, line in enumerate(screen) if line.startswith("───")]
    assert headings[0].split()[:3] == ["account", "stream", "token"]
    columns = headings[1].split()
    assert [c for c in columns if c in ("symbol", "side", "qty", "f1", "f2", "f3")] == [
        "symbol", "side", "qty", "f1", "f2", "f3"], screen
    assert not any("…" in heading for heading in headings)
    [row] = [line for line in screen if " TCS " in f" {line} "]
    assert re.search(r" TCS +BUY +0/8 .*cancelled 0/8 +cancelled 0/4 +cancelled 0/2", row), row
