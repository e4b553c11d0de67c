"""`copytrade status`: whether follow runs on this home and is healthy, for a person or a
monitor. Reads follow's status file, probes its lock and counts today's mirrors; sends
nothing. Exit 0 running and healthy, 10 not running, 11 running but unhealthy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Group

    from copytrade.engine.status_file import AccountState, FollowState, Verdict
    from copytrade.store.status_queries import TodayCounts


@dataclass(frozen=True)
class StatusReport:
    home: Path
    now: datetime
    verdict: Verdict
    state: FollowState | None  # None: no (readable) status file
    today: TodayCounts | None  # None: no database yet, or it cannot be read
    today_error: str = ""  # why the database cannot be read


def status(
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print the status as JSON (for monitoring; times in IST).")] = False,
) -> None:
    """Tell whether follow runs on this home, and how each account is doing.

    Prints since when follow runs, each account's stream, stop reason, token validity
    and degraded loops, and today's counts (mirrored, skipped, rejected, open). Exit 0
    when follow runs and is healthy; 10 when it does not run (or its heartbeat is stale);
    11 when it runs but an account is disconnected, stopped or a loop is degraded.
    """
    from datetime import UTC

    from copytrade.errors import NotRunningError, UnhealthyError

    report = read_report(datetime.now(UTC))
    if json_output:
        typer.echo(json.dumps(status_data(report), indent=2))
    else:
        _print(report)
    verdict = report.verdict
    if not verdict.running:
        raise NotRunningError(verdict.why)
    if not verdict.healthy:
        raise UnhealthyError(f"follow runs but is unhealthy: {verdict.why}")


def read_report(now: datetime) -> StatusReport:
    from copytrade.core.ist import ist_today
    from copytrade.engine import status_file
    from copytrade.errors import StoreError
    from copytrade.home import home_paths
    from copytrade.store.status_queries import today_counts

    paths = home_paths()
    state, unreadable = None, ""
    try:
        state = status_file.read_status(status_file.status_path(paths.data_dir))
    except status_file.UnreadableStatus as exc:
        unreadable = str(exc)
    holder = status_file.lock_holder(status_file.lock_path(paths.data_dir))
    verdict = status_file.judge(state, holder, now, unreadable=unreadable)
    try:
        today = today_counts(paths.database_file, ist_today(now).isoformat())
    except StoreError as exc:  # follow's health is still worth telling
        return StatusReport(paths.data_dir, now, verdict, state, None, exc.message)
    return StatusReport(paths.data_dir, now, verdict, state, today)


def _print(report: StatusReport) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    if console.is_terminal:
        console.print(status_view(report))
    else:
        typer.echo("\n".join(status_lines(report)))


# ---- rendering (pure) --------------------------------------------------------------------


def _r(text: object) -> str:
    from copytrade.redact import redact

    return redact(str(text))


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def headline(report: StatusReport) -> str:
    from copytrade.core.ist import ist_clock, ist_text

    verdict, state = report.verdict, report.state
    if not verdict.running:
        return _r(verdict.why)
    assert state is not None
    up = _age((report.now - state.started_at).total_seconds())
    return (f"follow is running on this home (pid {state.pid}) since "
            f"{ist_text(state.started_at)} (up {up}); last heartbeat "
            f"{ist_clock(state.updated_at)} ({_age(verdict.heartbeat_age_seconds or 0)} ago)")


def account_line(account: AccountState) -> str:
    from copytrade.core.ist import ist_text

    who = "leader" if account.role == "leader" else f"follower {account.name}"
    parts = [f"{who} ({account.client_id}){' [shadow]' if account.shadow else ''}: "
             f"stream {account.stream}"]
    if account.stream_detail and account.stream != "connected":
        parts.append(f"({account.stream_detail})")
    if account.stopped:
        parts.append(f"; STOPPED ({account.stopped_kind}): {account.stopped}")
    if account.token_refused:
        parts.append("; token refused")
    elif account.token_valid_until is not None:
        parts.append(f"; token valid until {ist_text(account.token_valid_until, seconds=False)}")
    else:
        parts.append("; token validity not known yet")
    if account.token_warning:
        parts.append(f"; {account.token_warning}")
    return _r(" ".join(parts).replace(" ;", ";"))


def remote_line(name: str, lag: int | None) -> str:
    """A remote follower ([bus] leader): its agent's lag, as follow last read it."""
    behind = ("not known now (the bus is not reachable, or its consumer is not made yet)"
              if lag is None else f"{lag} leader event(s) not yet acknowledged")
    return _r(f"follower {name} (remote, mirrored by its agent): {behind}")


def today_lines(today: TodayCounts | None, error: str = "") -> list[str]:
    if error:
        return [_r(f"today: not counted: {error}")]
    if today is None:
        return ["today: nothing recorded on this home yet"]
    lines = [f"today ({today.trading_date}, IST): {today.leader_orders} leader order(s)"]
    for name, c in sorted(today.followers.items()):
        remote = " (remote, as its agent reported)" if c.remote else ""
        lines.append(_r(f"  {name}{remote}: {c.mirrored} mirrored ({c.filled} filled, "
                        f"{c.open} open, {c.cancelled} cancelled), {c.skipped} skipped, "
                        f"{c.rejected} rejected"))
    return lines


def status_lines(report: StatusReport) -> list[str]:
    """Plain text (pipes, cron mail). Not running or unhealthy, the why is the command's
    one error line (stderr), not repeated here."""
    verdict, state = report.verdict, report.state
    lines = []
    if verdict.running and state is not None:
        lines.append(headline(report))
        lines += [account_line(a) for a in state.accounts]
        lines += [_r(f"degraded: {loop} keeps failing ({error})")
                  for loop, error in state.degraded.items()]
        lines += [remote_line(name, lag) for name, lag in state.remote.items()]
    lines += today_lines(report.today, report.today_error)
    if verdict.healthy:
        lines.append("healthy")
    return lines


def status_view(report: StatusReport) -> Group:
    """The Rich view (a terminal): the same lines, each account's coloured by its health."""
    from rich.console import Group
    from rich.text import Text

    state = report.state if report.verdict.running else None
    accounts = {account_line(a): _healthy(a) for a in state.accounts} if state else {}
    texts = []
    for line in status_lines(report):
        style = ("green" if accounts[line] else "red") if line in accounts else ""
        texts.append(Text(line, style="bold green" if line == "healthy" else style))
    return Group(*texts)


def _healthy(account: AccountState) -> bool:
    return account.stream == "connected" and not account.stopped and not account.token_refused


def status_data(report: StatusReport) -> dict[str, Any]:
    """For --json: times in IST with their offset; exit_code as the command exits."""
    from dataclasses import asdict

    from copytrade.core.ist import to_ist
    from copytrade.redact import redact_value

    def when(moment: datetime | None) -> str | None:
        return None if moment is None else to_ist(moment).isoformat(timespec="seconds")

    verdict, state = report.verdict, report.state
    code = 0 if verdict.healthy else (11 if verdict.running else 10)
    data: dict[str, Any] = {
        "home": str(report.home), "now": when(report.now), "running": verdict.running,
        "healthy": verdict.healthy, "exit_code": code, "why": verdict.why,
        "problems": list(verdict.problems),
        "heartbeat_age_seconds": (None if verdict.heartbeat_age_seconds is None
                                  else round(verdict.heartbeat_age_seconds, 1)),
        "pid": state.pid if state else None,
        "since": when(state.started_at) if state else None,
        "heartbeat": when(state.updated_at) if state else None,
        "accounts": [dict(asdict(a), token_valid_until=when(a.token_valid_until))
                     for a in state.accounts] if state and verdict.running else [],
        "degraded": dict(state.degraded) if state and verdict.running else {},
        "counters": dict(state.counters) if state and verdict.running else {},
        "remote_lag": dict(state.remote) if state and verdict.running else {},
        "today": asdict(report.today) if report.today else None,
        "today_error": report.today_error or None,
    }
    return redact_value(data)  # type: ignore[return-value]
