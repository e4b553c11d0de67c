"""follow's status file (engine/status_file.py): written atomically and 0600, read back,
judged with the lock and the heartbeat's age; no wall clock, no sleeps."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from copytrade.engine import status_file
from copytrade.engine.follow import FollowStatus, StreamStatus
from copytrade.engine.lock import acquire_follow_lock
from copytrade.engine.status_file import (
    AccountState,
    FollowState,
    UnreadableStatus,
    judge,
    keep_written,
    lock_holder,
    read_status,
    snapshot,
    write_status,
)
from copytrade.secret import Secret

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)  # 09:30 IST


def account(name: str = "f1", **fields: object) -> AccountState:
    role = "leader" if name == "leader" else "follower"
    return AccountState(role, name, "100000000" + str(len(name)), **{  # type: ignore[arg-type]
        "stream": "connected", **fields})


def state(*accounts: AccountState, updated: datetime = NOW, running: bool = True,
          degraded: dict[str, str] | None = None) -> FollowState:
    return FollowState(4321, NOW - timedelta(minutes=20), updated, running,
                       accounts or (account("leader"), account("f1")), degraded or {},
                       {"frames": 12})


# ---- writing and reading -------------------------------------------------------------------


def test_written_0600_and_read_back(tmp_path: Path) -> None:
    path = status_file.status_path(tmp_path)
    written = state(account("leader", token_valid_until=NOW + timedelta(hours=5)),
                    account("f2", stream="backoff", stream_detail="1006 lost",
                            stopped="token refused", stopped_kind="token_refused",
                            token_refused=True, shadow=True),
                    degraded={"reconciliation": "OSError: disk full"})
    write_status(path, written)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_status(path) == written
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_a_replaced_file_is_whole_and_a_failed_write_leaves_the_old_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = status_file.status_path(tmp_path)
    write_status(path, state(updated=NOW))
    later = state(updated=NOW + timedelta(seconds=2))

    def fail(*_args: object) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_status(path, later)
    assert read_status(path) == state(updated=NOW)  # the old content, whole
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    monkeypatch.undo()
    write_status(path, later)
    assert read_status(path) == later


def test_no_file_reads_as_none(tmp_path: Path) -> None:
    assert read_status(tmp_path / "absent.json") is None


@pytest.mark.parametrize("text", [
    "", "{", "[]", "null", '"text"', "{}", '{"pid": 1}',
    json.dumps({"pid": True, "started_at": "2026-11-30T04:00:00+00:00",
                "updated_at": "2026-11-30T04:00:00+00:00", "running": True, "accounts": []}),
    json.dumps({"pid": 1, "started_at": "2026-11-30T04:00:00",  # naive: no offset
                "updated_at": "2026-11-30T04:00:00", "running": True, "accounts": []}),
    json.dumps({"pid": 1, "started_at": "yesterday", "updated_at": "x", "running": True,
                "accounts": []}),
    json.dumps({"pid": 1, "started_at": "2026-11-30T04:00:00+00:00",
                "updated_at": "2026-11-30T04:00:00+00:00", "running": True,
                "accounts": [{"role": "leader"}]}),
    json.dumps({"pid": 1, "started_at": "2026-11-30T04:00:00+00:00",
                "updated_at": "2026-11-30T04:00:00+00:00", "running": True, "accounts": [],
                "counters": {"frames": "many"}}),
])
def test_anything_else_is_unreadable(tmp_path: Path, text: str) -> None:
    path = tmp_path / "follow-status.json"
    path.write_text(text)
    with pytest.raises(UnreadableStatus):
        read_status(path)


def test_undecodable_bytes_are_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "follow-status.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UnreadableStatus):
        read_status(path)


# ---- the lock --------------------------------------------------------------------------------


def test_the_lock_probe_names_follow_and_leaves_it_alone(tmp_path: Path) -> None:
    path = status_file.lock_path(tmp_path)
    assert lock_holder(path) is None  # no lock file: nobody
    assert not path.exists()  # and the probe made none
    handle = acquire_follow_lock(path)
    try:
        before = path.read_text()
        assert lock_holder(path) == os.getpid()
        assert lock_holder(path) == os.getpid()  # asking twice changes nothing
        assert path.read_text() == before  # the holder's pid is untouched
    finally:
        handle.close()
    assert lock_holder(path) is None  # released: the file stays, nobody holds it
    acquire_follow_lock(path).close()  # and the probe never kept it


def test_a_holder_that_wrote_no_pid_is_still_a_holder(tmp_path: Path) -> None:
    import fcntl

    path = status_file.lock_path(tmp_path)
    path.write_text("not a pid")
    with path.open() as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert lock_holder(path) == status_file.UNKNOWN_PID


def test_the_lock_file_is_where_the_cli_puts_it(tmp_path: Path) -> None:
    from copytrade.cli.context import Context
    from copytrade.home import HomePaths

    paths = HomePaths.from_dirs(tmp_path, tmp_path, tmp_path / "logs")
    context = Context(paths, None, {})  # type: ignore[arg-type]
    assert status_file.lock_path(paths.data_dir) == context.lock_path
    assert status_file.status_path(paths.data_dir).parent == paths.database_file.parent


# ---- the verdict -----------------------------------------------------------------------------


def test_running_and_healthy() -> None:
    verdict = judge(state(), 4321, now=NOW + timedelta(seconds=3))
    assert (verdict.running, verdict.healthy, verdict.why) == (True, True, "")
    assert verdict.heartbeat_age_seconds == 3.0


@pytest.mark.parametrize(("current", "holder", "words"), [
    (None, None, "follow is not running on this home"),
    (state(), None, "after its last heartbeat at 2026-11-30 09:30:00 IST"),
    (None, 4321, "has not written its status yet"),
    (state(), 999, "(pid 999) holds the lock but has not written its status yet"),
    (state(updated=NOW - timedelta(seconds=16)), 4321, "heartbeat is stale"),
    (state(running=False), 4321, "heartbeat is stale"),
])
def test_not_running(current: FollowState | None, holder: int | None, words: str) -> None:
    verdict = judge(current, holder, now=NOW)
    assert not verdict.running and not verdict.healthy
    assert words in verdict.why and "\n" not in verdict.why


def test_an_unreadable_status_file_while_the_lock_is_held_is_not_running() -> None:
    verdict = judge(None, 4321, NOW, unreadable="x is not a status file follow wrote")
    assert not verdict.running
    assert "status file cannot be read: x is not a status file" in verdict.why


def test_a_holder_of_unknown_pid_is_judged_by_the_heartbeat() -> None:
    assert judge(state(), status_file.UNKNOWN_PID, NOW).healthy


def test_a_heartbeat_just_inside_the_bound_is_fresh() -> None:
    assert judge(state(updated=NOW - timedelta(seconds=15)), 4321, NOW).running


@pytest.mark.parametrize(("accounts", "degraded", "problems"), [
    ((account("leader", stream="backoff", stream_detail="1006"), account("f1")), None,
     ["leader stream backoff (1006)"]),
    ((account("leader"), account("f1", stopped="token of follower f1 was refused",
                                 stopped_kind="token_refused", stream="backoff")), None,
     ["follower f1 stopped (token_refused): token of follower f1 was refused"]),
    ((account("leader"), account("f1", stopped="refused for its IP",
                                 stopped_kind="static_ip")), None,
     ["follower f1 stopped (static_ip): refused for its IP"]),
    ((account("leader", token_refused=True), account("f1")), None,
     ["leader: token refused"]),
    ((account("leader"), account("f1", stream="starting")), None,
     ["follower f1 stream starting"]),
    ((account("leader"),), {"reconciliation": "OSError: disk full"},
     ["degraded: reconciliation keeps failing (OSError: disk full)"]),
])
def test_running_but_unhealthy(accounts: tuple[AccountState, ...],
                               degraded: dict[str, str] | None, problems: list[str]) -> None:
    verdict = judge(state(*accounts, degraded=degraded), 4321, now=NOW)
    assert verdict.running and not verdict.healthy
    assert list(verdict.problems) == problems
    assert verdict.why == "; ".join(problems)


# ---- from the engine -------------------------------------------------------------------------


def fake_engine(tmp_path: Path, status: FollowStatus, *, refused: object = None) -> object:
    f1 = SimpleNamespace(name="f1", shadow=False, account=SimpleNamespace(client_id="C2"))
    keeper = SimpleNamespace(
        states={"C1": SimpleNamespace(valid_until=NOW + timedelta(hours=3), refused=False),
                "C2": SimpleNamespace(valid_until=None, refused=True)},
        warnings={"follower f1": "token of follower f1 expires at 10:00 IST"})
    return SimpleNamespace(
        status=status, tokens=keeper, followers=[f1],
        leader_client_id="C1", remote_lag=None,
        workers={"f1": SimpleNamespace(executor=SimpleNamespace(refused=refused))},
        replicator=SimpleNamespace(stats=SimpleNamespace(leader_reports=7, intents=5,
                                                         skipped=1)),
        store=SimpleNamespace(path=tmp_path / "copytrade.db"))


def test_a_snapshot_of_the_engine_redacts_what_came_from_outside(tmp_path: Path) -> None:
    token = Secret("tok-status-file-0123456789abcdef")
    status = FollowStatus(leader_stream=StreamStatus("connected", "", reconnects=2),
                          follower_streams={"f1": StreamStatus(
                              "backoff", f"closed 1008: bad token {token.reveal()}")},
                          stopped_followers={"f1": f"refused {token.reveal()}"},
                          degraded={"reconciliation": f"boom {token.reveal()}"})
    refusal = SimpleNamespace(static_ip=False)
    taken = snapshot(fake_engine(tmp_path, status, refused=refusal),  # type: ignore[arg-type]
                     started_at=NOW, now=NOW, running=True)
    leader, f1 = taken.accounts
    assert (leader.stream, leader.token_valid_until, leader.token_refused) == (
        "connected", NOW + timedelta(hours=3), False)
    assert (f1.stream, f1.stopped_kind, f1.token_refused) == ("backoff", "token_refused", True)
    assert f1.token_warning == "token of follower f1 expires at 10:00 IST"
    assert taken.counters["frames"] == 7 and taken.counters["reconnects"] == 2
    text = status_file.to_json(taken)
    assert token.reveal() not in text and "***" in text
    assert taken.pid == os.getpid()


def test_a_stop_for_the_accounts_ip_is_told_apart(tmp_path: Path) -> None:
    status = FollowStatus(stopped_followers={"f1": "refused for its IP"})
    engine = fake_engine(tmp_path, status, refused=SimpleNamespace(static_ip=True))
    taken = snapshot(engine, started_at=NOW, now=NOW, running=True)  # type: ignore[arg-type]
    assert taken.accounts[1].stopped_kind == "static_ip"
    assert taken.accounts[1].stream == "starting"  # its stream not up yet


def clock_that_stops(stop: threading.Event, after: int) -> Callable[[], datetime]:
    """A clock for keep_written that sets `stop` on its `after`-th reading."""
    readings = iter(range(1, 1000))

    def now() -> datetime:
        count = next(readings)
        if count >= after:
            stop.set()
        return NOW + timedelta(seconds=2 * count)

    return now


def test_follow_writes_at_start_every_beat_and_at_stop(tmp_path: Path) -> None:
    stop = threading.Event()
    engine = fake_engine(tmp_path, FollowStatus())
    writes: list[FollowState] = []
    original = status_file.write_status

    def record(path: Path, taken: FollowState) -> None:
        writes.append(taken)
        original(path, taken)

    status_file.write_status = record  # type: ignore[assignment]
    try:
        # a 1 ms beat: the clock ends the run at its third reading (bounded, not a sleep)
        asyncio.run(keep_written(engine, stop, every=0.001,  # type: ignore[arg-type]
                                 now=clock_that_stops(stop, after=3)))
    finally:
        status_file.write_status = original  # type: ignore[assignment]
    assert [w.running for w in writes] == [True, True, False]
    assert len({w.started_at for w in writes}) == 1
    assert writes[-1].updated_at > writes[0].updated_at
    assert read_status(status_file.status_path(tmp_path)) == writes[-1]


def test_a_failing_write_never_stops_follow(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the home should be")
    engine = fake_engine(tmp_path, FollowStatus())
    engine.store = SimpleNamespace(path=blocked / "copytrade.db")  # type: ignore[attr-defined]
    stop = threading.Event()
    stop.set()
    asyncio.run(keep_written(engine, stop))  # type: ignore[arg-type]  # returns, no raise
    engine.store = SimpleNamespace(path=Path(":memory:"))  # type: ignore[attr-defined]
    asyncio.run(keep_written(engine, stop))  # type: ignore[arg-type]  # no home: nothing
    assert not (Path.cwd() / status_file.STATUS_FILE_NAME).exists()


def test_a_write_that_raises_is_logged_and_the_beat_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def full_disk(path: Path, taken: FollowState) -> None:
        calls.append(1)
        raise OSError("no space left on device")

    monkeypatch.setattr(status_file, "write_status", full_disk)
    stop = threading.Event()
    asyncio.run(keep_written(fake_engine(tmp_path, FollowStatus()), stop,  # type: ignore[arg-type]
                             every=0.001, now=clock_that_stops(stop, after=3)))
    assert len(calls) == 3
    assert "could not write the status file" in caplog.text


# ---- what `copytrade status` prints ----------------------------------------------------------


def report(current: FollowState | None, holder: int | None, *, today: object = None) -> object:
    from copytrade.cli.status import StatusReport

    now = NOW + timedelta(seconds=3)
    return StatusReport(Path("/home/x"), now, judge(current, holder, now), current,
                        today)  # type: ignore[arg-type]


def rendered(renderable: object, width: int) -> str:
    import io

    from rich.console import Console

    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("width", [80, 120])
def test_status_lines_for_a_healthy_follow(width: int) -> None:
    from copytrade.cli.status import status_lines, status_view
    from copytrade.store.status_queries import FollowerCounts, TodayCounts

    today = TodayCounts("2026-11-30", 5, {"f1": FollowerCounts(4, 3, 1, 0, 0, 0),
                                          "f2": FollowerCounts(2, 1, 0, 1, 1, 1)})
    healthy = report(state(account("leader", token_valid_until=NOW + timedelta(hours=20)),
                           account("f1")), 4321, today=today)
    lines = status_lines(healthy)  # type: ignore[arg-type]
    assert lines[0] == ("follow is running on this home (pid 4321) since 2026-11-30 09:10:00 IST "
                        "(up 20 min); last heartbeat 09:30:00 IST (3 s ago)")
    assert lines[1] == ("leader (1000000006): stream connected; token valid until "
                        "2026-12-01 05:30 IST")
    assert lines[2] == "follower f1 (1000000002): stream connected; token validity not known yet"
    assert lines[3] == "today (2026-11-30, IST): 5 leader order(s)"
    assert lines[5] == "  f2: 2 mirrored (1 filled, 0 open, 1 cancelled), 1 skipped, 1 rejected"
    assert lines[-1] == "healthy"
    text = rendered(status_view(healthy), width)  # type: ignore[arg-type]
    assert max(len(line) for line in text.splitlines()) <= width
    assert "healthy" in text and "09:30:00 IST" in text


def test_status_lines_leave_the_why_to_the_error_line() -> None:
    from copytrade.cli.status import status_data, status_lines

    stopped = account("f1", stopped="token refused", stopped_kind="token_refused")
    unhealthy = report(state(account("leader"), stopped), 4321)
    lines = status_lines(unhealthy)  # type: ignore[arg-type]
    assert "follower f1 (1000000002): stream connected; STOPPED (token_refused): token refused" \
        "; token validity not known yet" in lines
    assert "healthy" not in lines and lines[-1] == "today: nothing recorded on this home yet"
    data = status_data(unhealthy)  # type: ignore[arg-type]
    assert (data["running"], data["healthy"], data["exit_code"]) == (True, False, 11)
    assert data["problems"] == ["follower f1 stopped (token_refused): token refused"]
    assert data["since"] == "2026-11-30T09:10:00+05:30"
    gone = report(state(), None)
    assert status_lines(gone) == ["today: nothing recorded on this home yet"]  # type: ignore
    data = status_data(gone)  # type: ignore[arg-type]
    assert (data["running"], data["exit_code"], data["accounts"]) == (False, 10, [])
    json.dumps(data)
