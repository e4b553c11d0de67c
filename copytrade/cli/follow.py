"""`copytrade follow`: mirror the leader's orders onto every follower until Ctrl-C."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from copytrade.cli.config_cmd import ConfigOption

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

    from rich.console import Console, RenderableType

    from copytrade.cli.context import Context
    from copytrade.engine.follow import FollowEngine
    from copytrade.store.queries import EventCursor

REFRESH_SECONDS = 0.25
LIVE_ROWS = 25  # the newest leader orders read for the live view (fewer if the screen is)
PLAIN_BATCH = 500  # audit-trail rows read at a time for the plain lines
PLAIN_BATCHES = 20  # at most this many reads per refresh: the rest at the next one


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
        # [alerts]: on their own threads; a failure there never stops follow.
        import sys

        from copytrade.engine.alert_watch import start_alerts_safely, stop_reason

        alerts = start_alerts_safely(context.config, context.store,
                                     warn=lambda text: print(f"warning: {text}", file=sys.stderr))
        bus_threads = _start_bus_threads(context, engine)
        try:
            engine.prepare()
            run_engine(engine, Console(), duration, printed_up_to=printed_up_to)
        except BaseException as exc:
            if alerts is not None:
                alerts.stopped(stop_reason(exc))  # the error that stopped follow
            raise
        finally:
            for thread in bus_threads:
                thread.stop()  # what waits is sent now, else by the next start
        if alerts is not None:
            alerts.stopped()  # with this run's summary
    finally:
        lock.close()


def _start_bus_threads(context: Context, engine: FollowEngine) -> list[Any]:
    """[bus] mode = "nats", each on a thread of its own, a server down never stopping
    follow (nothing in embedded mode). A leader publishes its orders' events (woken by
    each change committed) and reads its agents' results and lag; an agent publishes its
    own results (woken by each leader event it decided on; its feed is the engine's)."""
    from copytrade.engine.bus_publish import start_bus_publisher
    from copytrade.engine.bus_results import start_results_publisher
    from copytrade.engine.bus_results_in import start_results_consumer

    config, store = context.config, context.store
    started: list[Any] = []
    publisher = start_bus_publisher(config, store) or start_results_publisher(config, store)
    if publisher is not None:
        engine.on_leader_recorded = publisher.wake
        started.append(publisher)
    results = start_results_consumer(config, store)
    if results is not None:
        engine.remote_lag = results.consumer_lag
        started.append(results)
    return started


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
               printed_up_to: EventCursor | None = None) -> None:
    """Run the engine in its own thread; show it here until it ends, is told to stop, or
    `duration` passes; then this run's summary. Events before `printed_up_to` (earlier
    runs') are neither printed nor summed up. Re-raises what stopped the engine (e.g. the
    leader's AuthError)."""
    import asyncio
    from datetime import UTC, datetime

    from copytrade.store.queries import last_event_ids

    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(engine.run())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name="follow-engine", daemon=True)
    deadline = time.monotonic() + duration if duration is not None else None
    cursor = printed_up_to if printed_up_to is not None else last_event_ids()
    started = datetime.now(UTC)
    printed = cursor.trail_id
    with stop_on_signals(engine):
        worker.start()
        try:
            if console.is_terminal:
                _live(engine, console, worker, deadline, title, started)
            else:
                printed = _plain(engine, console, worker, deadline, title, cursor)
        finally:  # a failing display (closed pipe, read error) still lets calls in flight end
            engine.stop()
            worker.join(60)
        if not console.is_terminal:
            _print_events(engine, console, printed)  # what stopping recorded
        _print_summary(engine, console, title, started, cursor)
    if failure:
        raise failure[0]


def _running(worker: threading.Thread, deadline: float | None) -> bool:
    return worker.is_alive() and (deadline is None or time.monotonic() < deadline)


def live_view_of(engine: FollowEngine, *, title: str, started: datetime, now: datetime,
                 width: int, height: int | None = None) -> RenderableType:
    """The live view of the engine as it is now: its accounts (the status file's
    snapshot: nothing read twice) and the newest leader orders from the store."""
    from copytrade.cli.live_view import live_view
    from copytrade.engine.status_file import snapshot
    from copytrade.store.queries import recent_orders

    state = snapshot(engine, started_at=started, now=now, running=True)
    rows = LIVE_ROWS if height is None else max(1, min(LIVE_ROWS, height))
    return live_view(state, recent_orders(rows), [f.name for f in engine.followers],
                     title=title, now=now, width=width, height=height)


def _live(engine: FollowEngine, console: Console, worker: threading.Thread,
          deadline: float | None, title: str, started: datetime) -> None:
    from datetime import UTC, datetime

    from rich.live import Live

    def view() -> RenderableType:
        return live_view_of(engine, title=title, started=started, now=datetime.now(UTC),
                            width=console.width, height=console.height)

    # Drawn when updated, not by a refresh thread of its own: Rich's rendering competes
    # with the copy path for the interpreter.
    with Live(view(), console=console, auto_refresh=False) as live:
        while _running(worker, deadline):
            time.sleep(REFRESH_SECONDS)
            live.update(view(), refresh=True)


def _plain(engine: FollowEngine, console: Console, worker: threading.Thread,
           deadline: float | None, title: str, cursor: EventCursor) -> int:
    """Not a terminal: one line per event of this run, as they happen. The last audit
    trail id printed."""
    console.print(f"{title}: started", highlight=False)
    printed = cursor.trail_id
    while True:
        running = _running(worker, deadline)
        printed = _print_events(engine, console, printed)
        if not running:
            return printed
        time.sleep(REFRESH_SECONDS)


def _print_events(engine: FollowEngine, console: Console, after: int) -> int:
    """The audit trail's events after `after`, a line each; the last trail id read."""
    from copytrade.cli.live_view import event_line, who_width
    from copytrade.store.queries import events_after

    width = who_width(f.name for f in engine.followers)
    for _batch in range(PLAIN_BATCHES):
        events = events_after(after, PLAIN_BATCH)
        # Plain text, written as is: no Rich rendering on the engine's interpreter (it
        # competes with the copy path), and a broker's "[...]" is never read as markup.
        lines = [line for event in events if (line := event_line(event, width))]
        if events:
            after = events[-1].id
        if lines:
            console.file.write("\n".join(lines) + "\n")
            console.file.flush()
        if len(events) < PLAIN_BATCH:
            break
    return after


def _print_summary(engine: FollowEngine, console: Console, title: str, started: datetime,
                   cursor: EventCursor) -> None:
    """This run's figures per follower: a table on a terminal, aligned text otherwise."""
    import logging
    from datetime import UTC, datetime

    from copytrade.cli.live_view import run_summary, summary_plain, summary_view
    from copytrade.store.queries import run_rows

    try:
        summary = run_summary(title, started, datetime.now(UTC),
                              [f.name for f in engine.followers], run_rows(cursor))
    except Exception as exc:  # never in the way of what stopped follow
        logging.getLogger("copytrade.follow").exception("no summary")
        console.file.write(f"no summary of this run: {type(exc).__name__}\n")
        return
    if console.is_terminal:
        console.print(summary_view(summary, console.width))
    else:
        console.file.write(summary_plain(summary) + "\n")
        console.file.flush()
