"""`copytrade cancel-mirror`: cancel the follower orders mirroring given leader orders (or
every open mirror). The work is copytrade.engine.cancel.cancel_mirrors; this parses,
confirms, renders and picks the exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from copytrade.cli.config_cmd import ConfigOption
from copytrade.errors import AuthError, BrokerError, UsageError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from copytrade.config import Config, Secret
    from copytrade.dhan.rest import DhanAccount
    from copytrade.engine.cancel import CancelPlan, CancelResult
    from copytrade.home import HomePaths

PLAN_HEADER = ("leader order", "follower", "follower order(s)", "state")
RESULT_HEADER = ("leader order", "follower", "follower order", "result")


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

    from copytrade.cli.logs import log_to_file
    from copytrade.config import load_config, require_valid
    from copytrade.engine.cancel import Selection, cancel_mirrors, plan_cancel
    from copytrade.home import home_paths
    from copytrade.store.db import open_store
    from copytrade.store.repo import Store

    ids = tuple(dict.fromkeys(i.strip() for i in leader_order_ids or ()))
    if all_open == bool(ids):
        raise UsageError("give leader order ids or --all-open (one of them, not both)")
    if any(not i for i in ids):
        raise UsageError("a leader order id is empty")
    paths = home_paths()
    loaded = load_config(config)
    tokens = require_valid(loaded)
    name = _follower_name(loaded, follower) if follower is not None else None
    log_to_file(paths.log_dir)  # the SDK logs its errors: to the file, not to stderr
    store = Store(open_store(paths.database_file), lambda: datetime.now(UTC))
    plan = plan_cancel(Selection(ids, all_open, name))
    console = Console(highlight=False)
    if plan.order_count and not yes:
        _confirm(console, plan)
    names = {target.follower for target in plan.targets}
    accounts = _accounts(loaded, tokens, names)
    results = cancel_mirrors(store, accounts, plan,
                             acquire=_limiters(paths, accounts))
    if not results:
        typer.echo("nothing to cancel: no open mirror" + (f" of follower {name}" if name else ""))
        return
    if console.is_terminal:
        console.print(results_table(results))
    else:
        typer.echo(plain_table(RESULT_HEADER, result_rows(results)))
    typer.echo(summary_line(results))
    _exit_for(results)


def _follower_name(config: Config, wanted: str) -> str:
    for follower in config.followers:
        if follower.name.lower() == wanted.lower():
            return follower.name
    known = ", ".join(f.name for f in config.followers) or "none"
    raise UsageError(f"no follower named {wanted!r} in {config.source} (followers: {known})")


def _confirm(console: Console, plan: CancelPlan) -> None:
    count = plan.order_count
    noun = "follower order" if count == 1 else "follower orders"
    if sys.stdin is None or not sys.stdin.isatty():
        raise UsageError(f"refusing to cancel {count} {noun} without confirmation: stdin is "
                         "not a terminal; pass --yes to cancel without asking")
    console.print(plan_table(plan))
    if not typer.confirm(f"Cancel {count} {noun}?", default=False):
        typer.echo("nothing cancelled")
        raise typer.Exit(0)


def _accounts(config: Config, tokens: dict[str, Secret],
              names: set[str]) -> dict[str, DhanAccount]:
    """An account per enabled follower among `names` (a disabled one has none)."""
    from copytrade.engine.broker import account_for

    timeout = config.settings.http_timeout_seconds
    return {f.name: account_for(f.account, tokens[f.account.client_id], timeout=timeout)
            for f in config.enabled_followers if f.name in names}


def _limiters(paths: HomePaths,
              accounts: dict[str, DhanAccount]) -> dict[str, Callable[[], bool]]:
    """follow's per-account rate limiter (the same persisted windows): cancels are
    order calls, and what is sent here counts against what follow may still send."""
    import time

    from copytrade.engine.limits import AccountLimiter

    def wait(seconds: float) -> bool:
        time.sleep(seconds)
        return False  # never told to stop: Ctrl-C interrupts

    return {name: AccountLimiter(paths.data_dir / "limits.db", account.client_id,
                                 now_ms=lambda: int(time.time() * 1000), wait=wait).acquire
            for name, account in accounts.items()}


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


# ---- rendering (pure) ---------------------------------------------------------------------

def plan_rows(plan: CancelPlan) -> list[tuple[str, str, str, str]]:
    return [(t.leader_order_id, t.follower, ", ".join(t.order_ids) or "(not placed yet)",
             t.state.lower()) for t in plan.targets]


def result_rows(results: Sequence[CancelResult]) -> list[tuple[str, str, str, str]]:
    from copytrade.redact import redact

    # r.text can quote the broker's reply or a library's exception
    return [(r.leader_order_id, r.follower or "-", r.follower_order_id or "-", redact(r.text))
            for r in results]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(header_style="bold")
    for title in header:
        table.add_column(title, overflow="fold")
    for row in rows:  # Text, not markup: a broker's message may hold "[...]"
        table.add_row(*(Text(cell) for cell in row))
    return table


def plan_table(plan: CancelPlan) -> Table:
    return _table(PLAN_HEADER, plan_rows(plan))


def results_table(results: Sequence[CancelResult]) -> Table:
    return _table(RESULT_HEADER, result_rows(results))


def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns, no box or colour: for pipes and logs."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in (header, *rows)]
    return "\n".join(lines)


def summary_line(results: Sequence[CancelResult]) -> str:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.kind.value] = counts.get(result.kind.value, 0) + 1
    return ", ".join(f"{count} {kind}" for kind, count in counts.items())
