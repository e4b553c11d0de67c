"""`copytrade stats`: per follower, a day's mirrors counted, timed and priced against the
leader. Reads the database only; the arithmetic is copytrade.core.report_math."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from copytrade.cli.mappings import DateOption

if TYPE_CHECKING:
    from copytrade.core.report_math import FollowerStats


def stats(
    date: DateOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show, per follower, how a day's leader orders were mirrored.

    Orders mirrored and filled; skipped and rejected, each by reason; the lag from the
    leader event (its report reaching copytrade) to the follower's broker accepting the
    order, as p50, p95, p99 and max in milliseconds; and the slippage of the follower's
    fills against the leader's (positive: the follower paid more on a buy, got less on a
    sell), in rupees over the units filled and in percent of their value. Entries only:
    a BO's or CO's exit legs are Dhan's, made with the entry. Exit 0 (also when nothing
    is recorded for the day), 7 without a database.
    """
    from copytrade.cli import render_reports as render
    from copytrade.cli.mappings import open_reader, report_day
    from copytrade.core.report_math import follower_stats
    from copytrade.store.reports import mapping_rows

    day = str(report_day(date))
    db = open_reader()
    try:
        per_follower = follower_stats(mapping_rows(db, trading_date=day))
    finally:
        db.close()
    if not per_follower:
        typer.echo(f"no mirrors recorded for {day} (IST)", err=True)
    if as_json:
        typer.echo(render.stats_json(per_follower, day))
    elif per_follower:
        _print(per_follower, day)


def _print(per_follower: Sequence[FollowerStats], day: str) -> None:
    from rich.console import Console

    from copytrade.cli import render_reports as render

    console = Console(highlight=False)
    if console.is_terminal:
        console.print(render.stats_view(per_follower, day, console.width))
    else:
        typer.echo(render.stats_plain(per_follower, day))
