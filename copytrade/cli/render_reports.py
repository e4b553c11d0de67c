"""What `mappings` and `stats` print: Rich tables that fit the terminal by leaving out the
least needed columns (never by squeezing them), aligned plain text, JSON and CSV. Pure
functions of their rows, tested as text.

Rich is imported inside the functions that build Rich objects: the plain, JSON and CSV
paths do not pay for it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from copytrade.cli.render import STATE_STYLES, plain_table
from copytrade.core.ist import to_ist
from copytrade.core.report_math import FollowerStats, MappingRow
from copytrade.redact import redact

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table

COLUMN_GAP = 2  # one space of padding and one of divider between columns

# ---- fitting columns to a width ------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Any], str]
    priority: int  # 0 is kept first; higher numbers are left out first
    right: bool = False
    cap: int = 24  # the widest it is drawn; longer cells end in an ellipsis
    flexible: int = 0  # > 0: may be drawn this narrow, to fit beside the others
    prefer: int = 30  # a flexible column's width at its turn; it grows into what is left
    style: Callable[[Any], str] | None = None  # a cell's colour, from its row


def fit_columns(columns: Sequence[Column], cells: Sequence[Sequence[str]],
                width: int) -> list[tuple[int, int]]:
    """(column index, width) of the columns drawn within `width`, in display order.

    By priority, each column that fits at its natural width (its widest cell, capped)
    is kept; a flexible one takes up to `prefer` of what is left (at least `flexible`),
    and at the end whatever is still left, up to its natural width. Empty columns are
    left out."""
    natural = [min(max([len(c.header), *(len(row[i]) for row in cells)]), c.cap)
               for i, c in enumerate(columns)]
    chosen: dict[int, int] = {}
    used = -COLUMN_GAP
    for index in sorted(range(len(columns)), key=lambda i: columns[i].priority):
        column = columns[index]
        if cells and not any(row[index] for row in cells):
            continue  # an empty column says nothing
        room = width - used - COLUMN_GAP
        if column.flexible:
            size = min(natural[index], column.prefer, room)
            size = size if size >= min(column.flexible, natural[index]) else 0
        else:
            size = natural[index] if natural[index] <= room else 0
        if size:
            chosen[index] = size
            used += size + COLUMN_GAP
    if not chosen and cells:  # narrower than any column: the first, cut short
        first = min((i for i in range(len(columns)) if any(row[i] for row in cells)),
                    key=lambda i: columns[i].priority, default=None)
        if first is not None:
            chosen[first] = max(width, 1)
    for index in [i for i in chosen if columns[i].flexible]:
        grow = min(natural[index] - chosen[index], width - used)
        if grow > 0:
            chosen[index] += grow
            used += grow
    return sorted(chosen.items())


def fitted_table(columns: Sequence[Column], items: Sequence[Any], width: int,
                 styles: Sequence[str] = (), styled_header: str = "") -> Table:
    """A Rich table of the columns that fit; `styles[i]` colours row i's `styled_header`
    column. Cells are Text, not markup: a broker's message may hold "[...]"."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    cells = [[_one_line(c.cell(item)) for c in columns] for item in items]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                  header_style="bold")
    fitted = fit_columns(columns, cells, width)
    for index, size in fitted:
        column = columns[index]
        table.add_column(column.header, width=size, no_wrap=True, overflow="ellipsis",
                         justify="right" if column.right else "left")
    for number, row in enumerate(cells):
        table.add_row(*(Text(row[index], style=_cell_style(
            columns[index], items[number], styles[number] if styles and
            columns[index].header == styled_header else "")) for index, _size in fitted))
    return table


def _cell_style(column: Column, item: Any, row_style: str) -> str:
    return column.style(item) if column.style is not None else row_style


def _one_line(text: str) -> str:
    """A cell on one line, without control characters (a broker's text may hold escape
    sequences: nothing it says may colour or move a terminal)."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


# ---- cells ---------------------------------------------------------------------------------

def _price(value: float) -> str:
    return f"{value:.2f}" if value > 0 else ""


def _lag(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.1f}" if abs(value) < 10 else f"{value:.0f}"


def _signed(value: float | None, suffix: str = "") -> str:
    return "" if value is None else f"{value:+.2f}{suffix}"


def _leader_cell(row: MappingRow) -> str:
    return row.leader_order_id + ("" if row.leg == 1 else f" {row.leg_label}")


def _follower_order(row: MappingRow) -> str:
    ids = row.follower_order_ids
    return "" if not ids else ids[0] + (f" +{len(ids) - 1}" if len(ids) > 1 else "")


def _follower_qty(row: MappingRow) -> str:
    if row.state is None:
        return ""
    return f"{row.filled}/{row.quantity}" if row.state != "SKIPPED" else "-"


def _clock(moment: datetime | None) -> str:
    return f"{to_ist(moment):%H:%M:%S}" if moment is not None else ""


def _slip(row: MappingRow, percent: bool) -> str:
    slip = row.slippage
    if slip is None:
        return ""
    return _signed(slip.percent, "%") if percent else _signed(slip.rupees)


# ---- mappings ------------------------------------------------------------------------------

MAPPING_COLUMNS: tuple[Column, ...] = (
    Column("seen IST", lambda r: _clock(r.leader_seen_at), 14),
    Column("leader order", _leader_cell, 0, cap=28),
    Column("symbol", lambda r: r.symbol, 4, cap=20),
    Column("side", lambda r: r.side, 5),
    Column("product", lambda r: r.product, 16),
    Column("type", lambda r: r.order_type, 15),
    Column("leader", lambda r: f"{r.leader_filled}/{r.leader_quantity}", 10, right=True),
    Column("leader avg", lambda r: _price(r.leader_average), 12, right=True),
    Column("follower", lambda r: (r.follower or "") + (" (shadow)" if r.shadow else "")
           + (" (remote)" if r.remote else ""), 1, cap=20),
    Column("follower order", _follower_order, 8, cap=28),
    Column("state", lambda r: (r.state or "no mirror").lower(), 2, cap=16),
    Column("filled", _follower_qty, 3, right=True),
    Column("avg", lambda r: _price(r.follower_average), 11, right=True),
    Column("slip Rs", lambda r: _slip(r, percent=False), 9, right=True),
    Column("slip %", lambda r: _slip(r, percent=True), 13, right=True),
    Column("lag ms", lambda r: _lag(r.ack_lag_ms), 6, right=True),
    Column("reason", lambda r: redact(r.reason), 7, cap=60, flexible=12),
)
MAPPING_HEADER = tuple(column.header for column in MAPPING_COLUMNS)


def mapping_cells(rows: Sequence[MappingRow]) -> list[list[str]]:
    return [[_one_line(column.cell(row)) for column in MAPPING_COLUMNS] for row in rows]


def mappings_table(rows: Sequence[MappingRow], width: int) -> Table:
    return fitted_table(MAPPING_COLUMNS, rows, width,
                        [STATE_STYLES.get(row.state or "", "dim") for row in rows], "state")


def mappings_plain(rows: Sequence[MappingRow]) -> str:
    """Every column, aligned, one row a line: for pipes, logs and cron mail."""
    return plain_table(MAPPING_HEADER, mapping_cells(rows))


def _iso(moment: datetime | None) -> str | None:
    return to_ist(moment).isoformat(timespec="milliseconds") if moment is not None else None


def mapping_record(row: MappingRow) -> dict[str, Any]:
    """One row for scripts: JSON's object, CSV's line. Times are ISO 8601 in IST."""
    slip = row.slippage
    return {
        "trading_date": row.trading_date, "leader_order_id": row.leader_order_id,
        "leg": row.leg_label, "symbol": row.symbol, "side": row.side, "product": row.product,
        "order_type": row.order_type, "leader_status": row.leader_status,
        "leader_quantity": row.leader_quantity, "leader_filled": row.leader_filled,
        "leader_average_price": row.leader_average or None,
        "leader_seen_at": _iso(row.leader_seen_at), "follower": row.follower,
        "follower_order_ids": list(row.follower_order_ids),
        "follower_order_type": row.follower_order_type or None, "state": row.state,
        "quantity": row.quantity, "filled": row.filled,
        "follower_average_price": row.follower_average or None,
        "slippage_rupees": slip.rupees if slip else None,
        "slippage_percent": slip.percent if slip else None,
        "leader_event_at": _iso(row.seen_at), "acked_at": _iso(row.acked_at),
        "ack_lag_ms": row.ack_lag_ms, "send_lag_ms": row.send_lag_ms,
        "fill_lag_ms": row.fill_lag_ms, "attempt": row.attempt or None,
        "reason": redact(row.reason) or None, "reason_code": row.reason_code or None,
        "shadow": row.shadow, "remote": row.remote,
    }


RECORD_FIELDS = tuple(mapping_record(MappingRow("", "", 1, "", "", "", "", "", 0, 0, 0.0)))


def mappings_json(rows: Sequence[MappingRow]) -> str:
    return json.dumps([mapping_record(row) for row in rows], indent=2, ensure_ascii=False)


def mappings_csv(rows: Sequence[MappingRow]) -> str:
    """A header line, then a line per row: the follower's order ids joined by spaces,
    what JSON has as null an empty field."""
    out = io.StringIO()
    writer = csv.DictWriter(out, RECORD_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        record = mapping_record(row)
        record["follower_order_ids"] = " ".join(record["follower_order_ids"])
        writer.writerow({key: "" if value is None else value for key, value in record.items()})
    return out.getvalue().rstrip("\n")


# ---- stats ---------------------------------------------------------------------------------

def _count(counts: dict[str, int]) -> str:
    return str(sum(counts.values()))


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:+.3f}%"


STATS_COLUMNS: tuple[Column, ...] = (
    Column("follower", lambda s: s.follower, 0, cap=20),
    Column("orders", lambda s: str(s.orders), 9, right=True),
    Column("mirrored", lambda s: str(s.mirrored), 1, right=True),
    Column("filled", lambda s: str(s.filled), 6, right=True),
    Column("skipped", lambda s: _count(s.skipped), 2, right=True),
    Column("rejected", lambda s: _count(s.rejected), 3, right=True),
    Column("p50 ms", lambda s: _lag(s.latency.p50), 4, right=True),
    Column("p95 ms", lambda s: _lag(s.latency.p95), 8, right=True),
    Column("p99 ms", lambda s: _lag(s.latency.p99), 5, right=True),
    Column("max ms", lambda s: _lag(s.latency.max), 10, right=True),
    Column("slip Rs", lambda s: f"{s.slippage.rupees:+.2f}" if s.slippage.orders else "", 7,
           right=True),
    Column("slip %", lambda s: _percent(s.slippage.percent), 11, right=True),
)
STATS_HEADER = tuple(column.header for column in STATS_COLUMNS)
STATS_NOTE = ("lag ms: from the leader event (its report reaching copytrade) to the "
              "follower's broker accepting the order; slip: the follower's fills against "
              "the leader's, + is worse for the follower")


def reason_lines(stats: Sequence[FollowerStats]) -> list[str]:
    """A line per follower, outcome and reason: `f2 skipped 1: <reason>`."""
    return [f"{s.follower} {outcome} {count}: {redact(reason)}"
            for s in stats for outcome, counts in (("skipped", s.skipped),
                                                   ("rejected", s.rejected))
            for reason, count in counts.items()]


def stats_view(stats: Sequence[FollowerStats], trading_date: str, width: int) -> Group:
    from rich.console import Group
    from rich.text import Text

    lines = [Text(_one_line(line), overflow="fold") for line in reason_lines(stats)]
    return Group(Text(f"{trading_date} (IST)", style="bold"),
                 fitted_table(STATS_COLUMNS, stats, width), *lines,
                 Text(STATS_NOTE, style="dim"))


def stats_plain(stats: Sequence[FollowerStats], trading_date: str) -> str:
    cells = [[_one_line(column.cell(s)) for column in STATS_COLUMNS] for s in stats]
    return "\n".join([f"{trading_date} (IST)", plain_table(STATS_HEADER, cells),
                      *(_one_line(line) for line in reason_lines(stats)), STATS_NOTE])


def stats_record(stats: Sequence[FollowerStats], trading_date: str) -> dict[str, Any]:
    return {"trading_date": trading_date, "followers": [{
        "follower": s.follower, "orders": s.orders, "mirrored": s.mirrored,
        "filled": s.filled,
        "skipped": {redact(reason): count for reason, count in s.skipped.items()},
        "rejected": {redact(reason): count for reason, count in s.rejected.items()},
        "latency_ms": {"count": s.latency.count, "p50": s.latency.p50, "p95": s.latency.p95,
                       "p99": s.latency.p99, "max": s.latency.max},
        "slippage": {"orders": s.slippage.orders, "rupees": s.slippage.rupees,
                     "percent": s.slippage.percent,
                     "worst_percent": s.slippage.worst_percent},
    } for s in stats]}


def stats_json(stats: Sequence[FollowerStats], trading_date: str) -> str:
    return json.dumps(stats_record(stats, trading_date), indent=2, ensure_ascii=False)
