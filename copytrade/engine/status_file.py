"""follow's status file: what `copytrade status` reads to tell whether follow runs on this
home, since when, and how each account is doing.

follow writes it (JSON, 0600, a temporary file renamed over: a reader never sees half of
it) at start, every HEARTBEAT_SECONDS, and once more at stop. `status` trusts it only
while follow's lock on the home is held by a live process AND the heartbeat is fresh: a
hung or killed follow cannot look healthy. Texts from outside (stream close reasons,
broker refusals) are redacted before they are written; tokens are never in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from copytrade.core.ist import ist_text
from copytrade.home import write_private_file
from copytrade.redact import redact

if TYPE_CHECKING:
    from copytrade.engine.follow import FollowEngine

log = logging.getLogger(__name__)

STATUS_FILE_NAME = "follow-status.json"
LOCK_FILE_NAME = "follow.lock"  # cli/context.py's Context.lock_path, in the data directory
HEARTBEAT_SECONDS = 2.0
# A heartbeat older than this means follow is hung (or its disk is): not running.
STALE_AFTER_SECONDS = 15.0
CONNECTED = "connected"


def status_path(data_dir: Path) -> Path:
    return data_dir / STATUS_FILE_NAME


def lock_path(data_dir: Path) -> Path:
    return data_dir / LOCK_FILE_NAME


# ---- what is written ---------------------------------------------------------------------


@dataclass(frozen=True)
class AccountState:
    role: str  # "leader" or "follower"
    name: str
    client_id: str
    stream: str  # connecting / connected / backoff / stopped / starting
    stream_detail: str = ""
    stopped: str = ""  # why the account was stopped ("": it was not)
    stopped_kind: str = ""  # token_refused / static_ip / other
    token_valid_until: datetime | None = None
    token_refused: bool = False
    token_warning: str = ""
    shadow: bool = False


@dataclass(frozen=True)
class FollowState:
    pid: int
    started_at: datetime
    updated_at: datetime  # the heartbeat
    running: bool  # False: written as follow stopped
    accounts: tuple[AccountState, ...] = ()
    degraded: Mapping[str, str] = field(default_factory=dict)  # loop -> its last error
    counters: Mapping[str, int] = field(default_factory=dict)
    # [bus] leader: each remote follower's agent lag, leader events it has not acknowledged
    # yet (None: not known now, e.g. the server is down), as the results consumer last read.
    remote: Mapping[str, int | None] = field(default_factory=dict)


def snapshot(engine: FollowEngine, *, started_at: datetime, now: datetime,
             running: bool) -> FollowState:
    """The engine's state as the status file says it (read from its threads' fields:
    plain values, each read once)."""
    status = engine.status
    keeper = engine.tokens
    tokens = keeper.states if keeper is not None else {}
    warnings = dict(keeper.warnings) if keeper is not None else {}

    def token_fields(client_id: str, role: str) -> dict[str, Any]:
        state = tokens.get(client_id)
        return {"token_valid_until": state.valid_until if state else None,
                "token_refused": bool(state and state.refused),
                "token_warning": redact(warnings.get(role, ""))}

    leader_id = engine.leader_client_id
    leader = status.leader_stream
    accounts = [AccountState("leader", "leader", leader_id, leader.state,
                             redact(leader.detail), **token_fields(leader_id, "the leader"))]
    for follower in engine.followers:
        name, client_id = follower.name, follower.account.client_id
        stream = status.follower_streams.get(name)
        stopped = status.stopped_followers.get(name, "")
        accounts.append(AccountState(
            "follower", name, client_id, stream.state if stream else "starting",
            redact(stream.detail) if stream else "", redact(stopped),
            _stopped_kind(engine, name) if stopped else "",
            shadow=follower.shadow, **token_fields(client_id, f"follower {name}")))
    stats = engine.replicator.stats if engine.replicator is not None else None
    counters = {"frames": stats.leader_reports if stats else 0,
                "intents": stats.intents if stats else 0,
                "skipped": stats.skipped if stats else 0,
                "catch_ups": status.catch_ups, "stalls": status.stalls,
                "reconnects": leader.reconnects}
    return FollowState(os.getpid(), started_at, now, running, tuple(accounts),
                       {loop: redact(error) for loop, error in dict(status.degraded).items()},
                       counters, _remote_lag(engine))


def _remote_lag(engine: FollowEngine) -> dict[str, int | None]:
    """The results consumer's last reading (engine/bus_results_in.py), when follow wired
    it as `engine.remote_lag`; nothing is read from the server here."""
    lag = engine.remote_lag
    if lag is None:
        return {}
    try:
        return dict(lag())
    except Exception:  # never a reason for the status file to fail
        log.debug("reading the agents' lag failed", exc_info=True)
        return {}


def _stopped_kind(engine: FollowEngine, name: str) -> str:
    worker = engine.workers.get(name)
    refused = worker.executor.refused if worker is not None else None
    if refused is None:
        return "other"
    return "static_ip" if refused.static_ip else "token_refused"


def to_json(state: FollowState) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat()
        return value

    data = {"pid": state.pid, "started_at": plain(state.started_at),
            "updated_at": plain(state.updated_at), "running": state.running,
            "accounts": [{k: plain(v) for k, v in vars(a).items()} for a in state.accounts],
            "degraded": dict(state.degraded), "counters": dict(state.counters),
            "remote": dict(state.remote)}
    return json.dumps(data, indent=1, sort_keys=True)


def write_status(path: Path, state: FollowState) -> None:
    """Atomically, 0600 (home.write_private_file: temporary file, fsync, rename)."""
    write_private_file(path, to_json(state) + "\n")


# ---- follow's heartbeat ----------------------------------------------------------------------


async def keep_written(engine: FollowEngine, stop: threading.Event, *,
                       every: float = HEARTBEAT_SECONDS,
                       now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """follow's task: the status file at start, every `every` seconds, and at stop. A
    failed write (a full disk) is logged and tried again at the next beat: the status
    file must never stop follow."""
    path = _path_for(engine)
    if path is None:
        return
    started = now()
    while True:
        stopping = stop.is_set()
        await asyncio.to_thread(_write_logged, path, engine, started, now, not stopping)
        if stopping:
            return
        await asyncio.to_thread(stop.wait, every)


def _path_for(engine: FollowEngine) -> Path | None:
    database = engine.store.path
    if str(database) in ("", ":memory:") or not database.parent.is_dir():
        return None  # a store in memory (tests): no home to write into
    return status_path(database.parent)


def _write_logged(path: Path, engine: FollowEngine, started: datetime,
                  now: Callable[[], datetime], running: bool) -> None:
    try:
        write_status(path, snapshot(engine, started_at=started, now=now(), running=running))
    except Exception:  # any failure here is logged, never fatal to follow
        log.warning("could not write the status file %s", path, exc_info=True)


# ---- reading it (copytrade status) ---------------------------------------------------------


class UnreadableStatus(ValueError):
    """The status file exists but is not one follow wrote."""


def read_status(path: Path) -> FollowState | None:
    """The last state follow wrote; None when there is no status file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableStatus(f"cannot read {path}: {exc}") from None
    try:
        return _parse(json.loads(text))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise UnreadableStatus(f"{path} is not a status file follow wrote") from None


def _parse(data: Any) -> FollowState:
    accounts = tuple(AccountState(
        role=str(a["role"]), name=str(a["name"]), client_id=str(a["client_id"]),
        stream=str(a["stream"]), stream_detail=str(a.get("stream_detail") or ""),
        stopped=str(a.get("stopped") or ""), stopped_kind=str(a.get("stopped_kind") or ""),
        token_valid_until=_time(a.get("token_valid_until")) if a.get(
            "token_valid_until") else None,
        token_refused=bool(a.get("token_refused")),
        token_warning=str(a.get("token_warning") or ""), shadow=bool(a.get("shadow")))
        for a in data["accounts"])
    pid = data["pid"]
    if not isinstance(pid, int) or isinstance(pid, bool):
        raise ValueError("pid")
    return FollowState(pid, _time(data["started_at"]), _time(data["updated_at"]),
                       bool(data["running"]), accounts,
                       {str(k): str(v) for k, v in dict(data.get("degraded") or {}).items()},
                       {str(k): int(v) for k, v in dict(data.get("counters") or {}).items()},
                       {str(k): None if v is None else int(v)
                        for k, v in dict(data.get("remote") or {}).items()})


def _time(text: Any) -> datetime:
    moment = datetime.fromisoformat(str(text))
    if moment.tzinfo is None:
        raise ValueError("a time without its offset")
    return moment


NOBODY = None  # lock_holder: the lock is free
UNKNOWN_PID = 0  # lock_holder: held, by a process that wrote no pid (yet)


def lock_holder(path: Path) -> int | None:
    """The pid of the process holding follow's lock on the home (UNKNOWN_PID if it wrote
    none), or None when nobody holds it. Probed with a shared, non-blocking lock on a
    read-only handle, released at once: nothing is written, and follow holding it
    exclusively is never disturbed. (Only a follow starting within those microseconds
    could find the lock busy.)"""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return NOBODY
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(descriptor, 32).decode("ascii", "replace").strip()
            return int(text) if text.isascii() and text.isdigit() else UNKNOWN_PID
        with contextlib.suppress(OSError):
            fcntl.flock(descriptor, fcntl.LOCK_UN)
        return NOBODY
    finally:
        os.close(descriptor)


# ---- the verdict -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    running: bool
    healthy: bool
    why: str  # one line: why not running, or what is unhealthy ("" when healthy)
    problems: tuple[str, ...] = ()
    heartbeat_age_seconds: float | None = None


def judge(state: FollowState | None, holder: int | None, now: datetime,
          stale_after: float = STALE_AFTER_SECONDS, unreadable: str = "") -> Verdict:
    """Running: a process holds the lock, the status file is that process's AND its
    heartbeat is fresh. Healthy: every account's stream connected, none stopped, no
    token refused, no loop degraded. `unreadable`: why the status file could not be read."""
    age = (now - state.updated_at).total_seconds() if state is not None else None
    if holder is NOBODY:
        last = (f": it stopped, or was stopped, after its last heartbeat at "
                f"{ist_text(state.updated_at)}" if state is not None else "")
        return Verdict(False, False, f"follow is not running on this home{last}",
                       heartbeat_age_seconds=age)
    who = f"pid {holder}" if holder else "a process"
    if unreadable:
        return Verdict(False, False, f"follow ({who}) holds the lock but its status file "
                       f"cannot be read: {unreadable}")
    if state is None or (holder and state.pid != holder):
        return Verdict(False, False, f"follow ({who}) holds the lock but has not written its "
                       "status yet: it is starting (or is an older copytrade)")
    assert age is not None
    if not state.running or age > stale_after:
        return Verdict(False, False, f"follow ({who}) holds the lock but its heartbeat is "
                       f"stale (last {ist_text(state.updated_at)}, {age:.0f} s ago): it may "
                       "be hung", heartbeat_age_seconds=age)
    problems = account_problems(state)
    return Verdict(True, not problems, "; ".join(problems), tuple(problems), age)


def account_problems(state: FollowState) -> list[str]:
    problems = []
    for account in state.accounts:
        who = "leader" if account.role == "leader" else f"follower {account.name}"
        if account.stopped:
            problems.append(f"{who} stopped ({account.stopped_kind or 'other'}): "
                            f"{account.stopped}")
        elif account.token_refused:
            problems.append(f"{who}: token refused")
        if account.stream != CONNECTED and not account.stopped:
            detail = f" ({account.stream_detail})" if account.stream_detail else ""
            problems.append(f"{who} stream {account.stream}{detail}")
    problems += [f"degraded: {loop} keeps failing ({error})"
                 for loop, error in state.degraded.items()]
    return problems
