"""`copytrade replay-missed`: mirror, once, the leader orders created in a time window that
follow missed (it was not running). The work is copytrade.engine.replay.replay_missed;
this parses the times, takes follow's lock, shows progress, renders and picks the exit
code."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from copytrade.cli.config_cmd import ConfigOption
from copytrade.errors import AlreadyRunningError, AuthError, BrokerError, UsageError

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from copytrade.engine.replay import Progress, ReplayReport


def replay_missed(
    since: Annotated[str, typer.Option(
        "--since", metavar="TIME", show_default=False,
        help="Replay leader orders created at or after TIME: an ISO 8601 date-time "
        "(2026-11-25T09:15:00, IST unless it has an offset), an IST clock time HH:MM or "
        "HH:MM:SS meaning today, today / yesterday (optionally with a time: yesterday "
        "15:00), or an age such as 30m or 2h.")],
    until: Annotated[str | None, typer.Option(
        "--until", metavar="TIME", show_default=False,
        help="Only orders created at or before TIME (same forms; default: now).")] = None,
    follower: Annotated[str | None, typer.Option(
        "--follower", metavar="NAME", help="Only this follower (the others are untouched).",
    )] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Decide and list, but send nothing and record nothing.")] = False,
    max_age: Annotated[float | None, typer.Option(
        "--max-age", metavar="SECONDS", show_default=False,
        help="For this run, mirror orders up to this old instead of each follower's "
        "max_order_age_seconds (to catch up a longer outage on purpose).")] = None,
    config: ConfigOption = None,
) -> None:
    """Mirror the leader orders created while follow was not running, once.

    Feeds every leader order created between --since and --until through the same
    decisions as follow's catch-up (sizing, caps, staleness, de-duplication), sends what
    they decide, and prints what it did and why per leader order and follower. Running it
    again places nothing twice. Exit 0 when nothing failed, 5 when a follower call failed
    or its outcome stayed unknown, 4 when a token was refused, 6 while follow runs.
    """
    from rich.console import Console

    from copytrade.cli import render
    from copytrade.cli.context import Context
    from copytrade.cli.logs import log_to_file
    from copytrade.core.timeparse import parse_time, parse_window
    from copytrade.engine.lock import acquire_follow_lock
    from copytrade.engine.replay import replay_missed as run_replay

    now = datetime.now(UTC)
    for option, text in (("--since", since), ("--until", until)):
        if text is not None:
            try:
                parse_time(text, now=now)
            except ValueError as exc:
                raise UsageError(f"{option}: {exc}") from None
    try:
        start, end = parse_window(since, until, now=now)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if max_age is not None and not max_age > 0:
        raise UsageError("--max-age must be more than 0 seconds")
    context = Context.load(config)
    from copytrade.config.bus import refuse_on_agent, refuse_served_elsewhere

    refuse_on_agent(context.config.bus, "replay-missed")
    if follower is not None:
        refuse_served_elsewhere(context.config, follower)
    context.wiring.select(follower, max_age)  # an unknown --follower: exit 2 before anything
    context.paths.create_dirs()
    lock_path = context.lock_path
    try:
        lock = acquire_follow_lock(lock_path)
    except AlreadyRunningError:
        raise AlreadyRunningError(f"follow is running and catches up by itself: nothing to "
                                  f"replay while it runs (pid {_holder(lock_path)})") from None
    try:
        log_to_file(context.paths.log_dir)  # the SDK logs its errors: to the file, not stderr
        console = Console(highlight=False)
        typer.echo(render.replay_heading(start, end, dry_run=dry_run))
        with _progress(console) as on_progress, context.run_store(dry_run=dry_run) as store:
            report = run_replay(context.wiring, store, since=start, until=end,
                                follower=follower, max_age=max_age, dry_run=dry_run,
                                on_progress=on_progress)
    finally:
        lock.close()
    if not report.rows:
        typer.echo(render.nothing_to_replay(report))
    else:
        if console.is_terminal:
            console.print(render.replay_table(report.rows))
        else:
            typer.echo(render.plain_table(render.REPLAY_HEADER, render.replay_rows(report.rows)))
        typer.echo(render.replay_summary(report))
    _exit_for(report)


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def _progress(console: Console) -> Iterator[Callable[[Progress], None]]:
    """A Rich progress bar per stage on a terminal; else a plain line as each stage ends
    (and per answered call)."""
    from copytrade.cli import render

    if not console.is_terminal:
        said: set[tuple[str, int, int]] = set()

        def plain(progress: Progress) -> None:
            key = (progress.stage, progress.done, progress.total)
            line = render.replay_progress_line(progress)
            if key not in said and line is not None:
                said.add(key)
                typer.echo(line)

        yield plain
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
    from rich.progress import Progress as Bars

    bars = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    console=console, transient=False)
    tasks: dict[str, object] = {}

    def show(progress: Progress) -> None:
        if progress.stage not in tasks:
            tasks[progress.stage] = bars.add_task(render.REPLAY_STAGES.get(progress.stage,
                                                                           progress.stage),
                                                  total=progress.total)
        bars.update(tasks[progress.stage], completed=progress.done,  # type: ignore[arg-type]
                    total=progress.total)

    with bars:
        yield show


def _exit_for(report: ReplayReport) -> None:
    refused = report.refused
    failed = report.failed
    if refused:
        names = ", ".join(dict.fromkeys(row.follower for row in refused))
        raise AuthError(f"token refused (DH-901) for follower {names}; "
                        f"{len(failed)} mirror(s) not done")
    if failed:
        raise BrokerError(f"{len(failed)} mirror(s) failed or stayed unknown (see the table)")
