"""`copytrade demo`: follow, against the built-in emulator, a scripted leader session."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from copytrade.store.repo import Store


def demo(
    duration: Annotated[float, typer.Option(
        min=5, max=60, help="Longest the demo runs, in seconds (it ends sooner when the "
        "script is done and every mirror has settled).")] = 30.0,
) -> None:
    """See copytrade work: no account, no network.

    Starts the Dhan emulator in-process, a leader placing equity market and limit orders,
    F&O in lots, a stop-loss, a modification, a cancellation, partial fills and one order
    "in Dhan's app", and two followers sized differently; shows follow's live table, then
    a summary with the latency figures.
    """
    from rich.console import Console

    from copytrade.cli.context import Context
    from copytrade.cli.follow import run_engine
    from copytrade.cli.logs import log_to_file
    from copytrade.demo import demo_world, leader_session, wait_until
    from copytrade.home import HomePaths
    from copytrade.store.queries import EventCursor

    console = Console()
    with demo_world() as world:
        paths = HomePaths.from_dirs(world.home, world.home, world.home / "logs")
        log_to_file(paths.log_dir)
        context = Context.load(world.config_path, environ=world.environ,
                               secrets_file=paths.secrets_file, paths=paths,
                               background_checkpoints=True)
        store = context.store
        engine = context.follow_engine()
        engine.prepare()
        stop = threading.Event()
        script_log: list[str] = []

        def script() -> None:
            if wait_until(lambda: engine.status.leader_stream.state == "connected", stop, 20):
                script_log.extend(leader_session(world, stop))
                wait_until(lambda: settled(store), stop, 10)
            engine.stop()

        runner = threading.Thread(target=script, name="demo-leader", daemon=True)
        runner.start()
        try:
            # A new home every time: everything in it is this run's. run_engine ends with
            # the run's summary.
            run_engine(engine, console, duration, title="copytrade demo",
                       printed_up_to=EventCursor())
        finally:
            stop.set()
            runner.join(10)
        console.print(f"leader session: {len(script_log)} steps; the emulator, its accounts "
                      "and the demo's database were temporary.", highlight=False)


def settled(store: Store) -> bool:
    return not store.unfinished_intents()
