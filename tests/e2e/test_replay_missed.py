"""`copytrade replay-missed` end to end: leader orders placed, filled and cancelled while
follow was NOT running (placed with the real dhanhq SDK before anything of copytrade runs),
then replayed against the emulator on 127.0.0.1, by the real `python -m copytrade` process
and in this process through the CLI's `run()`.

Checked on both sides: what the followers' broker books hold, and what the store recorded
(read with sqlite3, read-only). The emulator runs on the wall clock shifted by
`clock.offset`, so an order can be created "two hours ago". Every wait is bounded.

Instruments (docs/sim.md): 1333 HDFCBANK 1650, 2885 RELIANCE 1400, 11536 TCS 3200,
1594 INFY 1500; a BUY limit below the price stays open.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from followtools import LEADER_ID, LEADER_TOKEN, Follower, config_text, follower, sdk
from simtools import ShiftedClock, sim_dialect

from copytrade.cli.app import run
from copytrade.cli.context import Context
from copytrade.engine.lock import acquire_follow_lock
from copytrade.engine.replay import Progress, ReplayReport, ResultKind, replay_missed
from copytrade.sim.clock import IST
from copytrade.sim.server import Emulator

F1 = follower("f1", "1000000002")
F2 = follower("f2", "1000000003", "fixed_lots = 2")
CLI_TIMEOUT = 60
HEADER = ("leader order", "order", "follower", "result", "detail")


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
def sim(clock: ShiftedClock) -> Iterator[Emulator]:
    with Emulator(clock=clock, seed=7, dialect=sim_dialect()) as emulator:
        yield emulator


@pytest.fixture
def home(sim: Emulator, copytrade_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """copytrade.toml (leader, f1 x1.0, f2 two lots) in the home; tokens in the env."""
    (copytrade_home / "copytrade.toml").write_text(config_text(sim, [F1, F2]))
    for name, value in token_env().items():
        monkeypatch.setenv(name, value)
    return copytrade_home


# ---- helpers ------------------------------------------------------------------------------

def token_env() -> dict[str, str]:
    return {"LEADER_TOKEN": LEADER_TOKEN, "TOKEN_F1": F1.token, "TOKEN_F2": F2.token}


def ago(**delta: float) -> str:
    """An ISO 8601 time with its offset, `delta` before now."""
    return (datetime.now(IST) - timedelta(**delta)).isoformat(timespec="seconds")


def order_id_of(reply: dict) -> str:
    assert reply["status"] == "success", reply
    return str(reply["data"]["orderId"])


def buy(sim: Emulator, security_id: str, quantity: int, price: float = 0) -> str:
    """A leader BUY: a LIMIT at `price` through the SDK, or without one a MARKET order
    placed in Dhan's app (the API would turn it into a protected limit order)."""
    if not price:
        [order_id] = sim.app_place(LEADER_ID, {
            "transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
            "orderType": "MARKET", "validity": "DAY", "securityId": security_id,
            "quantity": quantity})
        return order_id
    return order_id_of(sdk(sim, LEADER_ID, LEADER_TOKEN).place_order(
        security_id, "NSE_EQ", "BUY", quantity, "LIMIT", "CNC", price))


def book(sim: Emulator, who: Follower) -> list[tuple[str, int, float, str]]:
    """The follower's orders at the broker: (status, quantity, price, security id)."""
    orders = sim.snapshot()["accounts"].get(who.client_id, {}).get("orders", [])
    return sorted((o["orderStatus"], o["quantity"], o["price"], o["securityId"])
                  for o in orders)


def query(home: Path, sql: str, *params: object) -> list[tuple]:
    with closing(sqlite3.connect(f"{(home / 'copytrade.db').as_uri()}?mode=ro",
                                 uri=True)) as db:
        return db.execute(sql, params).fetchall()


def mirrors(home: Path, leader_order_id: str) -> dict[str, tuple[str, int, str]]:
    """follower -> (state, quantity, reason) of its latest attempt."""
    rows = query(home, "SELECT follower, state, quantity, reason FROM mirrororder "
                 "WHERE leader_order_id = ? ORDER BY attempt", leader_order_id)
    return {name: (state, quantity, reason) for name, state, quantity, reason in rows}


def table(stdout: str) -> dict[tuple[str, str], tuple[str, str]]:
    """The plain table: (leader order, follower) -> (result, detail). Columns are cut
    where the header's titles start."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("leader order  "))
    header = lines[start]
    cuts: list[int | None] = []
    after = 0
    for title in HEADER:  # each title after the one before it ("order" is in "leader order")
        cuts.append(header.index(title, after))
        after = header.index(title, after) + len(title)
    cuts.append(None)
    rows = {}
    for line in lines[start + 1:-1]:
        cells = [line[a:b].strip() for a, b in pairwise(cuts)]
        rows[(cells[0], cells[2])] = (cells[3], cells[4])
    return rows


def replay_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The real `python -m copytrade replay-missed ...`, stdin and stdout not terminals."""
    env = {**os.environ, **token_env()}  # COPYTRADE_HOME from the autouse fixture
    env.pop("COPYTRADE_DEBUG", None)
    result = subprocess.run([sys.executable, "-m", "copytrade", "replay-missed", *args],
                            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=CLI_TIMEOUT)
    check_output(result.stdout + result.stderr)
    return result


def replay_here(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The same command through the CLI's run() in this process: (exit code, out, err)."""
    capsys.readouterr()
    code = run(["replay-missed", *args])
    out, err = capsys.readouterr()
    check_output(out + err)
    return code, out, err


def check_output(text: str) -> None:
    for secret in token_env().values():
        assert secret not in text
    assert "Traceback" not in text, text
    assert "\x1b[" not in text  # not a terminal: plain lines, no colour


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# ---- tests --------------------------------------------------------------------------------

def test_the_process_mirrors_what_follow_missed_and_a_second_run_places_nothing(
        sim: Emulator, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    since = ago(minutes=1)
    # No Data API plan (most accounts): a late market order is chased by an IOC limit
    # order bounded by max_price_drift_percent, never by a quote.
    sim.set_dialect(LEADER_ID, flags={"data_plan": False})
    open_order = buy(sim, "1333", 10, 1600)  # stays open
    filled = buy(sim, "2885", 5)  # filled at 1400; the price has not moved since
    drifted = buy(sim, "1594", 4)  # filled at 1500, then the price moves 2 %
    sim.set_price("1594", 1530)
    cancelled = buy(sim, "11536", 3, 3100)
    assert sdk(sim, LEADER_ID, LEADER_TOKEN).cancel_order(cancelled)["status"] == "success"

    first = replay_process("--since", since)

    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    rows = table(first.stdout)
    assert rows[(open_order, "f1")] == ("placed", rows[(open_order, "f1")][1])
    assert rows[(open_order, "f1")][1].startswith("10 LIMIT @ 1600 -> accepted 0/10")
    assert rows[(open_order, "f2")][1].startswith("2 LIMIT @ 1600 -> accepted 0/2")
    assert rows[(filled, "f1")][0] == "placed"
    assert rows[(filled, "f1")][1].startswith("5 LIMIT @ 1414 -> filled 5/5")
    assert rows[(filled, "f2")][1].startswith("2 LIMIT @ 1414 -> filled 2/2")
    for name in ("f1", "f2"):
        result, detail = rows[(drifted, name)]
        assert result == "not mirrored"  # 1500 + 1 % = 1515, and the price is 1530
        assert "IOC" in detail and "LIMIT @ 1515 -> canceled 0/" in detail
        assert "price moved more than 1.0 % since the leader's fill" in detail
        assert rows[(cancelled, name)] == (
            "skipped", "leader order cancelled before it could be mirrored")
    assert len(rows) == 8
    assert first.stdout.splitlines()[-1] == "4 placed, 2 skipped, 2 not mirrored"
    assert book(sim, F1) == [("CANCELLED", 4, 1515.0, "1594"), ("PENDING", 10, 1600.0, "1333"),
                             ("TRADED", 5, 1414.0, "2885")]
    assert book(sim, F2) == [("CANCELLED", 2, 1515.0, "1594"), ("PENDING", 2, 1600.0, "1333"),
                             ("TRADED", 2, 1414.0, "2885")]
    assert mirrors(home, open_order) == {"f1": ("ACCEPTED", 10, ""), "f2": ("ACCEPTED", 2, "")}
    assert {name: row[:2] for name, row in mirrors(home, filled).items()} == {
        "f1": ("FILLED", 5), "f2": ("FILLED", 2)}
    assert all("IOC limit at 1414" in row[2] for row in mirrors(home, filled).values())
    assert mirrors(home, cancelled)["f1"][0] == "SKIPPED"
    intents = query(home, "SELECT action, status FROM intent")
    assert intents == [("PLACE", "DONE")] * 6

    code, out, err = replay_here(capsys, "--since", since)  # again: nothing to do

    assert (code, err) == (0, "")
    again = table(out)
    assert set(again) == set(rows)
    assert {result for result, _ in again.values()} == {"already mirrored"}
    assert again[(filled, "f1")][1].startswith("filled 5/5, follower order ")
    assert again[(cancelled, "f2")][1] == (
        "skipped: leader order cancelled before it could be mirrored")
    assert out.splitlines()[-1] == "8 already mirrored"
    assert len(book(sim, F1)) == len(book(sim, F2)) == 3  # nothing placed again
    assert query(home, "SELECT COUNT(*) FROM intent") == [(6,)]


def test_until_excludes_later_orders_and_follower_limits_the_run(
        sim: Emulator, clock: ShiftedClock, home: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    clock.offset = timedelta(minutes=3)
    earlier = buy(sim, "1333", 10, 1600)  # created three minutes ago
    clock.offset = timedelta(0)
    later = buy(sim, "2885", 5, 1350)  # created now
    code, out, err = replay_here(capsys, "--since", ago(minutes=5), "--follower", "nobody")
    assert (code, out) == (2, "")
    assert one_error_line(err).startswith("error: no follower named 'nobody' in ")
    code, out, err = replay_here(capsys, "--since", ago(minutes=5), "--dry-run")
    assert (code, err) == (0, "")
    assert table(out)[(later, "f2")] == ("would place", "2 LIMIT @ 1350")
    assert not (home / "copytrade.db").exists()  # a dry run on a fresh home creates none

    code, out, err = replay_here(capsys, "--since", ago(minutes=5), "--until",
                                 ago(minutes=1), "--follower", "F1")

    assert (code, err) == (0, "")
    assert list(table(out)) == [(earlier, "f1")]
    assert table(out)[(earlier, "f1")][0] == "placed"
    assert book(sim, F1) == [("PENDING", 10, 1600.0, "1333")]
    assert book(sim, F2) == []  # untouched: no order, nothing recorded
    assert mirrors(home, earlier) == {"f1": ("ACCEPTED", 10, "")}
    assert mirrors(home, later) == {}

    # naive ISO 8601 means IST
    naive = (datetime.now(IST) - timedelta(minutes=5)).replace(tzinfo=None).isoformat()
    code, out, err = replay_here(capsys, "--since", naive)

    assert (code, err) == (0, "")
    assert {key: result for key, (result, _) in table(out).items()} == {
        (earlier, "f1"): "already mirrored", (earlier, "f2"): "placed",
        (later, "f1"): "placed", (later, "f2"): "placed"}
    assert book(sim, F1) == [("PENDING", 5, 1350.0, "2885"), ("PENDING", 10, 1600.0, "1333")]
    assert book(sim, F2) == [("PENDING", 2, 1350.0, "2885"), ("PENDING", 2, 1600.0, "1333")]


def test_dry_run_changes_nothing_and_max_age_catches_up_a_long_outage(
        sim: Emulator, clock: ShiftedClock, home: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    recent = buy(sim, "2885", 5, 1350)
    code, _out, err = replay_here(capsys, "--since", ago(minutes=10))
    assert (code, err) == (0, "")
    clock.offset = timedelta(hours=2)
    old = buy(sim, "1333", 10, 1600)  # created two hours ago, during the outage
    clock.offset = timedelta(0)
    database = home / "copytrade.db"
    files = {path: path.read_bytes() if path.exists() else b""
             for path in (database, Path(f"{database}-wal"))}
    books = book(sim, F1), book(sim, F2)

    dry = replay_process("--since", ago(hours=3), "--dry-run")

    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing is sent or recorded" in dry.stdout.splitlines()[0]
    rows = table(dry.stdout)
    assert rows[(recent, "f1")][0] == "already mirrored"
    for name in ("f1", "f2"):
        result, detail = rows[(old, name)]
        assert result == "would skip"
        assert "s old, beyond max_order_age_seconds 300: not chased" in detail
    assert dry.stdout.splitlines()[-1] == (
        "dry run, nothing sent or recorded: 2 would skip, 2 already mirrored")

    code, out, err = replay_here(capsys, "--since", ago(hours=3), "--dry-run",
                                 "--max-age", "10800")

    assert (code, err) == (0, "")
    assert table(out)[(old, "f1")] == ("would place", "10 LIMIT @ 1600")
    assert table(out)[(old, "f2")] == ("would place", "2 LIMIT @ 1600")
    # neither dry run wrote to the database or sent anything to a broker
    assert {path: path.read_bytes() if path.exists() else b"" for path in files} == files
    assert (book(sim, F1), book(sim, F2)) == books
    assert mirrors(home, old) == {}

    code, out, err = replay_here(capsys, "--since", ago(hours=3), "--max-age", "10800")

    assert (code, err) == (0, "")
    assert table(out)[(old, "f1")][0] == "placed"
    assert book(sim, F1) == [("PENDING", 5, 1350.0, "2885"), ("PENDING", 10, 1600.0, "1333")]
    assert book(sim, F2) == [("PENDING", 2, 1350.0, "2885"), ("PENDING", 2, 1600.0, "1333")]
    assert mirrors(home, old) == {"f1": ("ACCEPTED", 10, ""), "f2": ("ACCEPTED", 2, "")}
    # without --max-age: staleness only decides first sightings; the mirror exists
    code, out, _err = replay_here(capsys, "--since", ago(hours=3))
    assert code == 0
    assert table(out)[(old, "f2")][0] == "already mirrored"


def test_a_rejected_mirror_exits_5_and_an_unknown_outcome_is_looked_up_and_retried(
        sim: Emulator, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim.set_funds(F1.client_id, 1000)  # far below 10 x 1600: the broker's RMS rejects it
    order = buy(sim, "1333", 10, 1600)
    # f2's place answers HTTP 500 (DH-908) before the order exists: unknown, looked up by
    # its correlation id, not found, sent again as attempt 2
    sim.fail_next("5xx", "/orders", method="POST", client_id=F2.client_id, status=500)

    code, out, err = replay_here(capsys, "--since", ago(minutes=1))

    assert code == 5
    assert one_error_line(err) == (
        "error: 1 mirror(s) failed or stayed unknown (see the table)")
    rows = table(out)
    result, detail = rows[(order, "f1")]
    assert result == "failed"
    assert "rejected: RMS:Margin Exceeds for order" in detail
    assert rows[(order, "f2")][0] == "placed"
    assert book(sim, F1) == [("REJECTED", 10, 1600.0, "1333")]
    assert book(sim, F2) == [("PENDING", 2, 1600.0, "1333")]
    assert mirrors(home, order)["f1"][0] == "REJECTED"
    assert "RMS:Margin Exceeds" in mirrors(home, order)["f1"][2]
    assert mirrors(home, order)["f2"] == ("ACCEPTED", 2, "")
    assert query(home, "SELECT m.attempt, i.status FROM intent i JOIN mirrororder m "
                 "ON m.id = i.mirror_id WHERE m.follower = 'f2' ORDER BY i.id") == [
        (1, "UNKNOWN"), (2, "DONE")]

    code, out, err = replay_here(capsys, "--since", ago(minutes=1))  # nothing new fails

    assert (code, err) == (0, "")
    assert table(out)[(order, "f1")][1].startswith("rejected 0/10")
    assert len(book(sim, F1)) == len(book(sim, F2)) == 1


def test_a_refused_follower_token_exits_4_and_records_nothing_for_it(
        sim: Emulator, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert replay_here(capsys, "--since", ago(minutes=1))[0] == 0  # both tokens work
    assert sim.expire_token(F2.client_id) >= 1
    order = buy(sim, "1333", 10, 1600)

    code, out, err = replay_here(capsys, "--since", ago(minutes=1))

    assert code == 4
    line = one_error_line(err)
    assert "token refused (DH-901) for follower f2" in line and "web.dhan.co" in line
    rows = table(out)
    assert rows[(order, "f1")][0] == "placed"
    assert rows[(order, "f2")][0] == "failed"
    assert "token of follower f2 was refused" in rows[(order, "f2")][1]
    assert book(sim, F1) == [("PENDING", 10, 1600.0, "1333")]
    assert mirrors(home, order) == {"f1": ("ACCEPTED", 10, "")}  # f2 free for a later run


def test_calls_still_unanswered_fail_the_run_and_the_next_run_resumes_them(
        sim: Emulator, home: Path) -> None:
    """The engine function with a short wait: what is still queued when it ends stays
    committed (SENDING), is reported as failed, and the next run looks it up and sends it."""
    first, second = buy(sim, "1333", 10, 1600), buy(sim, "2885", 5, 1350)
    context = Context.load()  # the home's copytrade.toml, tokens from the environment

    def slow_once_deciding(progress: Progress) -> None:
        if progress.stage == "orders" and progress.done == 0:
            sim.set_delay(1500)  # every REST reply from now on: 0.75 s before, 0.75 s after

    def replay(**options: object) -> ReplayReport:
        return replay_missed(context.wiring, context.store, since=datetime.now(IST) -
                             timedelta(minutes=1), until=datetime.now(IST), follower="f1",
                             **options)  # type: ignore[arg-type]

    report = replay(on_progress=slow_once_deciding, settle_seconds=0.2)

    sim.set_delay(0)
    kinds = {row.leader_order_id: (row.kind, row.detail) for row in report.rows}
    assert kinds[first][0] is ResultKind.PLACED, kinds  # in flight at the end: finished
    assert kinds[second] == (ResultKind.FAILED, "no answer within 0.2 s: it stays pending, "
                             "and follow resolves it when it starts")
    assert book(sim, F1) == [("PENDING", 10, 1600.0, "1333")]
    assert query(home, "SELECT i.status FROM intent i JOIN mirrororder m "
                 "ON m.id = i.mirror_id WHERE m.leader_order_id = ?", second) == [("SENDING",)]

    again = replay()

    assert [(row.leader_order_id, row.kind) for row in again.rows] == [
        (first, ResultKind.ALREADY), (second, ResultKind.PLACED)]
    assert book(sim, F1) == [("PENDING", 5, 1350.0, "2885"), ("PENDING", 10, 1600.0, "1333")]
    assert mirrors(home, second) == {"f1": ("ACCEPTED", 5, "")}
    assert query(home, "SELECT kind FROM auditevent WHERE leader_order_id = ?", second) == [
        ("resumed",)]


def test_refuses_to_run_while_follow_runs(sim: Emulator, home: Path) -> None:
    buy(sim, "1333", 10, 1600)  # something to replay, were it allowed to
    lock = acquire_follow_lock(home / "follow.lock")  # what `copytrade follow` holds
    try:
        result = replay_process("--since", ago(minutes=1))
    finally:
        lock.close()

    assert result.returncode == 6, result.stderr
    assert result.stdout == ""
    line = one_error_line(result.stderr)
    assert "follow is running and catches up by itself" in line
    assert f"pid {os.getpid()}" in line
    assert book(sim, F1) == book(sim, F2) == []
    assert not (home / "copytrade.db").exists()


@pytest.mark.parametrize(("args", "words"), [
    (("--since", "tomorrow"), "--since: cannot read the time 'tomorrow': use an ISO 8601"),
    (("--since", "yesterday 15"), "--since: 'yesterday 15': yesterday takes a clock time"),
    (("--since", "09:15", "--until", "25:00"), "--until: '25:00' is not a clock time"),
    (("--since", "2026-11-25"), "--since: '2026-11-25' is a date without a time"),
    (("--since", "2026-11-25T10:00:00", "--until", "2026-11-25T09:00:00"),
     "since (2026-11-25 10:00:00 IST) must be before until (2026-11-25 09:00:00 IST)"),
])
def test_a_bad_time_exits_2_with_one_line(capsys: pytest.CaptureFixture[str],
                                          args: tuple[str, ...], words: str) -> None:
    code, out, err = replay_here(capsys, *args)  # checked before the configuration

    assert (code, out) == (2, "")
    line = one_error_line(err)
    assert line.startswith(f"error: {words}"), line
    if "must be before" not in words:
        assert "HH:MM or HH:MM:SS" in line
