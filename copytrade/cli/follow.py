"""`copytrade follow`: mirror the leader's orders onto every follower until Ctrl-C."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from copytrade.cli.config_cmd import ConfigOption

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import Console

    from copytrade.cli.context import Context
    from copytrade.engine.follow import FollowEngine

REFRESH_SECONDS = 0.25
LIVE_ROWS = 25


def follow(
    config: ConfigOption = None,
    duration: Annotated[float | None, typer.Option(
        min=0, help="Stop by itself after this many seconds (default: run until Ctrl-C).",
    )] = None,
) -> None:
    """Mirror every leader order onto every follower, exactly once, until Ctrl-C.

    Shows a live table on a terminal, plain log lines otherwise. Ctrl-C lets calls in
    flight finish and be recorded. One follow per home (COPYTRADE_HOME). Tokens are
    renewed before they expire; secrets.toml is read again when it changes or on SIGHUP.
    """
    from rich.console import Console

    from copytrade.cli.context import Context
    from copytrade.cli.logs import log_to_file
    from copytrade.engine.lock import acquire_follow_lock
    from copytrade.store.queries import last_event_ids

    context = Context.load(config, background_checkpoints=True)
    context.paths.create_dirs()
    lock = acquire_follow_lock(context.lock_path)
    try:
        log_to_file(context.paths.log_dir)
        engine = context.follow_engine()  # opens the store
        _warn_calendar(context)
        _record_start(context)
        printed_up_to = last_event_ids()  # earlier runs' events are not printed again
        engine.prepare()
        run_engine(engine, Console(), duration, printed_up_to=printed_up_to)
    finally:
        lock.close()


def _record_start(context: Context) -> None:
    """This start and its configuration (no token) on the record, with what changed."""
    from copytrade.config import token_sources
    from copytrade.config.show import redacted
    from copytrade.engine.runlog import record_start

    record_start(context.store, redacted(context.config, token_sources(context.config)))


def _warn_calendar(context: Context) -> None:
    """Say so at start when the trading calendar runs out within 30 days."""
    import logging
    import sys

    market = context.market_hours
    warning = market.expiry_warning() if market is not None else None
    if warning:
        logging.getLogger("copytrade.follow").warning(warning)
        print(f"warning: {warning}", file=sys.stderr)


@contextmanager
def stop_on_signals(engine: FollowEngine) -> Iterator[None]:
    """Ctrl-C and SIGTERM stop follow; SIGHUP has it read secrets.toml again (a token
    replaced there is picked up without a restart). Handlers only set flags."""
    previous = {signum: signal.signal(signum, lambda _s, _f: engine.stop())
                for signum in (signal.SIGINT, signal.SIGTERM)}
    hangup = getattr(signal, "SIGHUP", None)  # POSIX only
    if hangup is not None:
        previous[hangup] = signal.signal(hangup, lambda _s, _f: engine.reload_tokens())
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_engine(engine: FollowEngine, console: Console, duration: float | None, *,
               title: str = "copytrade follow",
               printed_up_to: tuple[int, int] | None = None) -> None:
    """Run the engine in its own thread; show it here until it ends, is told to stop, or
    `duration` passes. Re-raises what stopped the engine (e.g. the leader's AuthError)."""
    import asyncio

    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(engine.run())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name="follow-engine", daemon=True)
    deadline = time.monotonic() + duration if duration is not None else None
    with stop_on_signals(engine):
        worker.start()
        if console.is_terminal:
            _live(engine, console, worker, deadline, title)
        else:
            _plain(engine, console, worker, deadline, title, printed_up_to)
        engine.stop()
        worker.join(60)
    if failure:
        raise failure[0]


def _running(worker: threading.Thread, deadline: float | None) -> bool:
    return worker.is_alive() and (deadline is None or time.monotonic() < deadline)


def _view(engine: FollowEngine):
    from copytrade.cli.render import follow_view
    from copytrade.store.queries import recent_orders

    stats = engine.replicator.stats if engine.replicator else None
    counters = {"frames": stats.leader_reports if stats else 0,
                "duplicates": stats.duplicates if stats else 0,
                "intents": stats.intents if stats else 0,
                "skipped": stats.skipped if stats else 0,
                "catch-ups": engine.status.catch_ups}
    stream = engine.status.leader_stream
    view = follow_view(recent_orders(LIVE_ROWS), [f.name for f in engine.followers],
                       stream.state, stream.detail, counters, engine.status.stopped_followers,
                       dict(engine.status.degraded))
    warnings = dict(engine.tokens.warnings) if engine.tokens is not None else {}
    if not warnings:
        return view
    from rich.console import Group
    from rich.text import Text

    from copytrade.redact import redact

    return Group(view, *(Text(f"token: {redact(text)}", style="yellow")
                         for text in warnings.values()))


def _live(engine: FollowEngine, console: Console, worker: threading.Thread,
          deadline: float | None, title: str) -> None:
    from rich.live import Live

    console.print(f"[bold]{title}[/bold]  (Ctrl-C to stop)")
    with Live(_view(engine), console=console, refresh_per_second=4) as live:
        while _running(worker, deadline):
            time.sleep(REFRESH_SECONDS)
            live.update(_view(engine))


def _plain(engine: FollowEngine, console: Console, worker: threading.Thread,
           deadline: float | None, title: str,
           printed_up_to: tuple[int, int] | None = None) -> None:
    """Not a terminal: one line per state change and audit event of this run, as they
    happen."""
    from copytrade.cli.render import audit_event_line, state_event_line
    from copytrade.store.queries import audit_events_after, last_event_ids, state_events_after

    console.print(f"{title}: started", highlight=False)
    last_state, last_audit = printed_up_to or last_event_ids()
    while True:
        running = _running(worker, deadline)
        # Plain text, written as is: no Rich rendering on the engine's interpreter (it
        # competes with the copy path), and a broker's "[...]" is never read as markup.
        lines = []
        for event in state_events_after(last_state):
            last_state = event.id
            lines.append(state_event_line(event))
        for audit in audit_events_after(last_audit):
            last_audit = audit.id
            lines.append(audit_event_line(audit))
        if lines:
            console.file.write("\n".join(lines) + "\n")
            console.file.flush()
        if not running:
            return
        time.sleep(REFRESH_SECONDS)

