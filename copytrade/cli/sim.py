"""`copytrade sim`: run the Dhan emulator until SIGINT or SIGTERM, printing the alerts it
receives; its subcommands (sim_order.py) act on a running one as Dhan's app would."""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import threading
import time
from typing import Annotated, Any

import typer

from copytrade.cli.fast_help import FastHelpGroup
from copytrade.cli.sim_order import cancel, modify, order
from copytrade.errors import UsageError

MAX_ALERT_TEXT = 1000  # characters of one alert line
MAX_PENDING_ALERTS = 1000  # queued for printing; more are only kept by the emulator


class SimGroup(FastHelpGroup):
    """`copytrade sim` serves when given no subcommand; with one, its own options are
    not read at all. Reading them would coerce each default through Typer's pydantic
    adapters, and `copytrade sim order --help` must stay as light as every --help."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] in self.commands:
            ctx._protected_args, ctx.args = args[:1], args[1:]
            return ctx.args
        return super().parse_args(ctx, args)


sim_app = typer.Typer(
    name="sim",
    cls=SimGroup,
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode=None,
)
sim_app.command("order", context_settings={"ignore_unknown_options": True})(order)
sim_app.command("modify")(modify)
sim_app.command("cancel")(cancel)


@sim_app.callback(invoke_without_command=True)
def sim(
    ctx: typer.Context,
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
                     "POST /_sim/accounts/dialect."),
    ] = "realistic",
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Log each request line to stderr (never headers).")
    ] = False,
) -> None:
    """Run the Dhan emulator (for paper trading and tests), or act on a running one.

    With no subcommand: serves Dhan's REST v2 API, the order-update stream and a control
    plane; prints `REST <url>`, `WS <url>`, `SCRIP <url>` and the `CONFIG copytrade config
    init ...` command that writes a matching configuration, then `alert: <text>` for each
    alert POSTed to <REST base>/_sim/alerts, until SIGINT or SIGTERM. To act as the
    leader: `copytrade sim order --help`.
    """
    if ctx.invoked_subcommand is not None:
        return
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
            print(f"CONFIG copytrade config init --sim {emulator.rest_url} "
                  f"--sim-ws {emulator.ws_url}", flush=True)
            _serve(emulator, stop, tick)
        finally:
            emulator.stop()
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)


def _serve(emulator: Any, stop: threading.Event, tick: float) -> None:
    """Print each alert as it arrives and step prices every `tick` seconds, until `stop`.

    Alerts arrive on REST threads and are printed here, on the main thread: a slow stdout
    never holds up the sender's POST, and lines never interleave.
    """
    lines: queue.Queue[str] = queue.Queue(maxsize=MAX_PENDING_ALERTS)
    emulator.on_alert = lambda body: _offer(lines, alert_line(body))
    next_step = time.monotonic() + tick
    while not stop.is_set():
        # A timeout keeps the loop responsive to signals on every platform.
        wait = min(0.5, max(0.0, next_step - time.monotonic())) if tick else 0.5
        with contextlib.suppress(queue.Empty):
            print(lines.get(timeout=wait), flush=True)
        if tick and time.monotonic() >= next_step:
            emulator.step_prices()
            next_step = time.monotonic() + tick


def _offer(lines: queue.Queue[str], line: str) -> None:
    with contextlib.suppress(queue.Full):  # nobody reads stdout: GET /_sim/alerts has them
        lines.put_nowait(line)


def alert_line(body: object) -> str:
    """`alert: <its text field, or the JSON>`, one printable line of bounded length: the
    body comes from anyone on loopback (escape sequences, newlines, lone surrogates)."""
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        text = json.dumps(body, ensure_ascii=False)
    text = " ".join(text.split())
    text = "".join(char if char.isprintable() else "\ufffd" for char in text)
    if len(text) > MAX_ALERT_TEXT:
        text = text[:MAX_ALERT_TEXT - 1] + "…"
    return f"alert: {text}"
