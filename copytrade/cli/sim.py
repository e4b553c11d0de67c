"""`copytrade sim`: run the Dhan emulator until SIGINT or SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Annotated

import typer

from copytrade.errors import UsageError


def sim(
    host: Annotated[str, typer.Option(help="Address both servers listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="REST port (0 = any free port).")
    ] = 8181,
    ws_port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="Order-update stream port (0 = any free port)."),
    ] = 8182,
    funds: Annotated[
        float,
        typer.Option(min=0, help="Fund balance of each account, created on its first use."),
    ] = 1_000_000,
    seed: Annotated[
        int | None, typer.Option(help="Seed for the price path, for repeatable runs.")
    ] = None,
    order_rate_scale: Annotated[
        float,
        typer.Option(min=0.001, help="Multiply Dhan's order-rate limits (load tests; "
                     "follow's order_rate_scale setting must match)."),
    ] = 1.0,
    tick: Annotated[
        float,
        typer.Option(min=0, help="Step the seeded price path every TICK seconds (0 = prices "
                     "move only by control calls)."),
    ] = 0.0,
    dialect: Annotated[
        str,
        typer.Option(help="How Dhan-like the wire is: 'clean' (tidy shapes) or 'realistic' "
                     "(every documented quirk of real Dhan: 'NA' legs, filled_qty, mixed "
                     "camelCase frames, MARKET orders as protected LIMITs, no Data API "
                     "plan; the default: paper trading as real Dhan behaves). Per account: "
                     "POST /_sim/accounts/dialect. See docs/sim.md."),
    ] = "realistic",
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Log each request line to stderr (never headers).")
    ] = False,
) -> None:
    """Run the Dhan emulator, for paper trading and tests.

    Serves Dhan's REST v2 API, the order-update stream and a control plane.
    Prints `REST <url>` and `WS <url>` as its first two lines, then serves until
    SIGINT or SIGTERM. See docs/sim.md.
    """
    # Imported here: the emulator pulls in websockets, which `copytrade --help` must not pay for.
    from copytrade.sim.dialects import PRESETS
    from copytrade.sim.server import Emulator

    if dialect not in PRESETS:
        raise UsageError(f"unknown dialect {dialect!r}: choose one of {', '.join(PRESETS)}")
    stop = threading.Event()
    previous_handlers = {
        signum: signal.signal(signum, lambda _signum, _frame: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    emulator = Emulator(
        host=host, rest_port=port, ws_port=ws_port, funds=funds, seed=seed, verbose=verbose,
        order_rate_scale=order_rate_scale, dialect=dialect,
    )
    try:
        try:
            emulator.start()
        except OSError as exc:
            # start() may have bound one server before the other failed.
            with contextlib.suppress(Exception):
                emulator.stop()
            reason = exc.strerror or str(exc)
            raise UsageError(
                f"cannot listen on {host} (REST port {port}, WS port {ws_port}): {reason}; "
                "choose other ports with --port/--ws-port (0 = any free port)"
            ) from exc
        try:
            print(f"REST {emulator.rest_url}", flush=True)
            print(f"WS {emulator.ws_url}", flush=True)
            # follow's instruments_url, for a config that runs against this emulator
            print(f"SCRIP {emulator.scrip_master_url}", flush=True)
            # A timeout keeps the wait responsive to signals on every platform.
            while not stop.wait(timeout=tick or 0.5):
                if tick:
                    emulator.step_prices()
        finally:
            emulator.stop()
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
