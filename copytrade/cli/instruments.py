"""`copytrade instruments search TEXT`: security ids, lot sizes and ticks from the scrip
master follow cached (no download, no account): what a leader order or `sim` needs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from copytrade.cli.fast_help import FastHelpGroup

if TYPE_CHECKING:
    from copytrade.store.models import Instrument

instruments_app = typer.Typer(
    name="instruments",
    help="Look instruments up in the cached scrip master.",
    cls=FastHelpGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
COLUMNS = ("security_id", "exchange_segment", "symbol", "lot_size", "tick_size")


@instruments_app.command("search")
def search(
    text: Annotated[str, typer.Argument(help="A security id, or part of a symbol (any case).")],
    segment: Annotated[str | None, typer.Option(
        "--segment", metavar="SEG", help="Only this exchange segment, e.g. NSE_FNO.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many rows.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Find instruments by security id or symbol in the scrip master follow cached.

    Exact matches first, then symbols starting with TEXT, then those containing it. The
    list's date goes to stderr. Exit 0 with matches, 9 with none (or no list cached yet:
    follow downloads it at start), 7 without a database.
    """
    from copytrade.cli.mappings import open_reader
    from copytrade.errors import NotFoundError
    from copytrade.store.instruments import search_instruments

    wanted = " ".join(text.split())
    db = open_reader()
    try:
        cached_on, found = search_instruments(db, wanted, segment=_segment(segment),
                                              limit=limit)
    finally:
        db.close()
    if cached_on is None:
        raise NotFoundError("no scrip master is cached in this home yet: `copytrade follow` "
                            "downloads it at start")
    typer.echo(f"scrip master cached on {cached_on} (IST)", err=True)
    if not found:
        raise NotFoundError(f"no instrument matches {wanted[:40]!r}"
                            + (f" in {segment}" if segment else ""))
    typer.echo(json.dumps([_row(i) for i in found]) if as_json else _plain(found))


def _segment(segment: str | None) -> str | None:
    return segment.strip().upper() if segment else None


def _row(instrument: Instrument) -> dict[str, object]:
    return {column: getattr(instrument, column) for column in COLUMNS}


def _plain(found: list[Instrument]) -> str:
    rows = [COLUMNS] + [tuple(str(value) for value in _row(i).values()) for i in found]
    widths = [max(len(row[index]) for row in rows) for index in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                         strict=True)).rstrip()
                     for row in rows)
