"""`copytrade cancel-mirror`: cancel the follower orders mirroring given leader orders (or
every open mirror). The work is copytrade.engine.cancel.cancel_mirrors; this parses,
confirms, renders and picks the exit code."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from copytrade.cli.config_cmd import ConfigOption
from copytrade.errors import AuthError, BrokerError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from copytrade.config import Config
    from copytrade.engine.cancel import CancelPlan, CancelResult


def cancel_mirror(
    leader_order_ids: Annotated[list[str] | None, typer.Argument(
        metavar="LEADER_ORDER_ID", show_default=False,
        help="Leader order ids whose follower orders to cancel.")] = None,
    all_open: Annotated[bool, typer.Option(
        "--all-open", help="Cancel every open mirror instead of naming leader orders.",
    )] = False,
    follower: Annotated[str | None, typer.Option(
        "--follower", metavar="NAME", help="Only this follower's orders.")] = None,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Do not ask for confirmation (needed when stdin is not a "
        "terminal).")] = False,
    config: ConfigOption = None,
) -> None:
    """Cancel the follower orders that mirror the given leader orders (or every open mirror).

    Shows what will be cancelled and asks first, unless --yes. Orders already filled or
    cancelled are reported, not errors, so running it again is harmless; follow (even
    running right now) never re-places a mirror cancelled here. Exit 0 when everything
    asked for is cancelled or had already ended, 5 when a cancel failed, 2 when a leader
    order has no mirror.
    """
    from rich.console import Console

    from copytrade.cli import render
    from copytrade.cli.context import Context
    from copytrade.cli.logs import log_to_file
    from copytrade.engine.cancel import Selection, cancel_mirrors, plan_cancel

    ids = tuple(dict.fromkeys(i.strip() for i in leader_order_ids or ()))
    if all_open == bool(ids):
        raise UsageError("give leader order ids or --all-open (one of them, not both)")
    if any(not i for i in ids):
        raise UsageError("a leader order id is empty")
    context = Context.load(config)
    name = _follower_name(context.config, follower) if follower is not None else None
    log_to_file(context.paths.log_dir)  # the SDK logs its errors: to the file, not to stderr
    store = context.store
    plan = plan_cancel(Selection(ids, all_open, name), store)
    console = Console(highlight=False)
    if plan.order_count and not yes:
        _confirm(console, plan)
    names = {target.follower for target in plan.targets}
    # Only enabled followers have an account (a disabled one's orders are reported).
    accounts = {n: context.accounts[n] for n in names if n in context.accounts}
    results = cancel_mirrors(store, accounts, plan, acquire={
        n: context.limiter_for(account.client_id, _sleep).acquire
        for n, account in accounts.items()})
    if not results:
        typer.echo("nothing to cancel: no open mirror" + (f" of follower {name}" if name else ""))
        return
    if console.is_terminal:
        console.print(render.cancel_table(results))
    else:
        typer.echo(render.plain_table(render.CANCEL_RESULT_HEADER, render.cancel_rows(results)))
    typer.echo(render.cancel_summary(results))
    _exit_for(results)


def _sleep(seconds: float) -> bool:
    """The limiter's wait here: never told to stop (Ctrl-C interrupts)."""
    import time

    time.sleep(seconds)
    return False


def _follower_name(config: Config, wanted: str) -> str:
    from copytrade.config.bus import refuse_served_elsewhere

    refuse_served_elsewhere(config, wanted)
    for follower in config.followers:
        if follower.name.lower() == wanted.lower():
            return follower.name
    known = ", ".join(f.name for f in config.followers) or "none"
    raise UsageError(f"no follower named {wanted!r} in {config.source} (followers: {known})")


def _confirm(console: Console, plan: CancelPlan) -> None:
    from copytrade.cli import render

    count = plan.order_count
    noun = "follower order" if count == 1 else "follower orders"
    if sys.stdin is None or not sys.stdin.isatty():
        raise UsageError(f"refusing to cancel {count} {noun} without confirmation: stdin is "
                         "not a terminal; pass --yes to cancel without asking")
    console.print(render.cancel_plan_table(plan))
    if not typer.confirm(f"Cancel {count} {noun}?", default=False):
        typer.echo("nothing cancelled")
        raise typer.Exit(0)


def _exit_for(results: Sequence[CancelResult]) -> None:
    failed = [r for r in results if r.failed]
    refused = [r for r in failed if r.auth]
    if refused:
        raise AuthError(f"token refused while cancelling (DH-901); {len(failed)} follower "
                        "order(s) not cancelled", account=refused[0].follower)
    if failed:
        raise BrokerError(f"{len(failed)} follower order(s) not cancelled (see the table)")
    from copytrade.engine.cancel import ResultKind

    unmatched = [r.leader_order_id for r in results if r.kind is ResultKind.NO_MIRROR]
    if unmatched:
        raise UsageError(f"no mirror of leader order {', '.join(unmatched)}")
