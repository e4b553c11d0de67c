"""`copytrade mappings`: each leader order of a day and every follower's order mirroring
it. Reads the database only (copytrade.store.reports), while follow runs or not; renders
with copytrade.cli.render_reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from copytrade.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from datetime import date

    from peewee import SqliteDatabase

    from copytrade.core.report_math import MappingRow

DateOption = Annotated[str | None, typer.Option(
    "--date", metavar="DATE", show_default=False,
    help="Trading date: YYYY-MM-DD, today or yesterday (IST; default: today).")]


def mappings(
    date: DateOption = None,
    status: Annotated[str | None, typer.Option(
        "--status", metavar="STATE", show_default=False,
        help="Only mirrors in this state: FILLED, ACCEPTED, PARTIALLY_FILLED, SUBMITTED, "
        "PENDING_CANCEL, CANCELED, REJECTED, EXPIRED, SKIPPED, PLANNED (any case).")] = None,
    follower: Annotated[str | None, typer.Option(
        "--follower", metavar="NAME", show_default=False,
        help="Only this follower's mirrors.")] = None,
    leader_order: Annotated[str | None, typer.Option(
        "--leader-order", metavar="ID", show_default=False,
        help="Only this leader order (of any date unless --date is given).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: a list of rows.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV with a header line.")] = False,
) -> None:
    """Show each leader order and every follower's order mirroring it.

    A row per leader order and follower (a BO's or CO's exit legs as rows of their own):
    both order ids, symbol, side, product, order type, quantities asked and filled, the
    leader's and the follower's average fill and the slippage between them, the mirror's
    state, the lag from the leader event to the follower's broker accepting the order,
    and why it was skipped or rejected. A table on a terminal, aligned text when piped.
    Exit 0 (also when nothing is recorded for the day), 9 for an unknown leader order or
    follower, 7 without a database.
    """
    from copytrade.cli import render_reports as render
    from copytrade.store.reports import mapping_rows

    if as_json and as_csv:
        raise UsageError("--json and --csv print different formats: give one of them")
    state = _state(status) if status is not None else None
    order_id = _leader_order_id(leader_order)
    day = report_day(date) if date is not None or order_id is None else None
    db = open_reader()
    try:
        if order_id is not None:
            _check_leader_order(db, order_id, day)
            rows = mapping_rows(db, leader_order_id=order_id)
        else:
            rows = mapping_rows(db, trading_date=str(day))
        name = _follower(db, follower) if follower is not None else None
    finally:
        db.close()
    rows = [r for r in rows if (name is None or r.follower == name)
            and (state is None or r.state == state)]
    if not rows:
        typer.echo(f"no mirrors recorded for {_what(day, order_id, name, state)}", err=True)
    if as_json:
        typer.echo(render.mappings_json(rows))
    elif as_csv:
        typer.echo(render.mappings_csv(rows))
    elif rows:
        _print_rows(rows)


def _print_rows(rows: list[MappingRow]) -> None:
    from rich.console import Console

    from copytrade.cli import render_reports as render

    console = Console(highlight=False)
    if console.is_terminal:
        console.print(render.mappings_table(rows, console.width))
    else:
        typer.echo(render.mappings_plain(rows))


def report_day(text: str | None) -> date:
    """`--date` as a date (today in IST when not given); a bad one is a usage error."""
    from datetime import UTC, datetime

    from copytrade.core.ist import ist_today
    from copytrade.core.report_math import report_date

    try:
        return report_date(text, ist_today(datetime.now(UTC)))
    except ValueError as exc:
        raise UsageError(f"--date: {exc}") from None


def open_reader() -> SqliteDatabase:
    """The home's database, read-only; none there is a StoreError (exit 7), not a new one."""
    from copytrade.home import home_paths
    from copytrade.store.db import open_reader as open_database

    return open_database(home_paths().database_file)


def _state(text: str) -> str:
    from copytrade.core.orders import MirrorState

    wanted = text.strip().upper()
    if wanted not in MirrorState.__members__:
        valid = ", ".join(state.value for state in MirrorState)
        raise UsageError(f"--status: unknown state {' '.join(text.split())[:40]!r} "
                         f"(one of {valid})")
    return MirrorState[wanted].value


def _leader_order_id(text: str | None) -> str | None:
    if text is None:
        return None
    if not text.strip():
        raise UsageError("--leader-order: the id is empty")
    return text.strip()


def _check_leader_order(db: SqliteDatabase, order_id: str, day: date | None) -> None:
    from copytrade.store.reports import leader_order_date

    recorded = leader_order_date(db, order_id)
    if recorded is None:
        raise NotFoundError(f"leader order {order_id[:40]!r} is not in the record")
    if day is not None and recorded != str(day):
        raise NotFoundError(f"leader order {order_id!r} is on {recorded} (IST), not on {day}")


def _follower(db: SqliteDatabase, wanted: str) -> str:
    """The recorded follower named so, in any case."""
    from copytrade.store.reports import followers_recorded

    names = followers_recorded(db)
    for name in names:
        if name.lower() == wanted.strip().lower():
            return name
    known = ", ".join(names) or "none yet"
    raise NotFoundError(f"no mirror of a follower named {' '.join(wanted.split())[:40]!r} "
                        f"is recorded (followers: {known})")


def _what(day: date | None, order_id: str | None, follower: str | None,
          state: str | None) -> str:
    what = f"leader order {order_id}" if order_id is not None else f"{day} (IST)"
    if follower is not None:
        what += f", follower {follower}"
    if state is not None:
        what += f", state {state}"
    return what
