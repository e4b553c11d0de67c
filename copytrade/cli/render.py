"""Every Rich renderable the CLI shows: pure functions of their inputs, tested as text."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text

from copytrade.redact import redact
from copytrade.store.queries import MirrorRow, OrderRow

STATE_STYLES = {
    "FILLED": "green", "ACCEPTED": "cyan", "PARTIALLY_FILLED": "cyan", "SUBMITTED": "yellow",
    "PENDING_CANCEL": "yellow", "CANCELED": "dim", "EXPIRED": "dim", "REJECTED": "red",
    "SKIPPED": "magenta",
}


def mirror_cell(mirror: MirrorRow | None) -> Text:
    if mirror is None:
        return Text("-", style="dim")
    text = Text(mirror.state.lower(), style=STATE_STYLES.get(mirror.state, ""))
    if mirror.state != "SKIPPED":
        text.append(f" {mirror.filled}/{mirror.quantity}")
    if mirror.lag_ms is not None:
        text.append(f" {mirror.lag_ms:.0f}ms", style="dim")
    if mirror.reason and mirror.state in ("SKIPPED", "REJECTED"):
        text.append(f"\n{mirror.reason[:60]}", style="dim")
    return text


def orders_table(rows: Sequence[OrderRow], followers: Sequence[str]) -> Table:
    table = Table(expand=True, show_lines=False, header_style="bold")
    table.add_column("leader order", no_wrap=True)
    table.add_column("instrument", no_wrap=True)
    table.add_column("side")
    table.add_column("qty", justify="right")
    table.add_column("type")
    table.add_column("price", justify="right")
    table.add_column("status")
    for follower in followers:
        table.add_column(follower)
    for row in rows:
        origin = " (app)" if row.placed_in_app else ""
        table.add_row(row.order_id + origin, row.symbol, row.side,
                      f"{row.traded}/{row.quantity}", row.order_type,
                      f"{row.price:g}" if row.price else "-", row.status.lower(),
                      *(mirror_cell(row.mirrors.get(name)) for name in followers))
    return table


def status_line(stream_state: str, stream_detail: str, counters: dict[str, int],
                stopped: dict[str, str], degraded: dict[str, str] | None = None) -> Text:
    text = Text("leader stream: ", style="bold")
    style = "green" if stream_state == "connected" else "yellow"
    text.append(stream_state, style=style)
    if stream_detail and stream_state != "connected":
        text.append(f" ({redact(stream_detail)})", style="dim")  # server close reasons
    for name, value in counters.items():
        text.append(f"   {name}: {value}")
    for follower, reason in stopped.items():
        text.append(f"\nstopped {follower}: {redact(reason)}", style="red")  # broker text
    for loop, error in (degraded or {}).items():
        text.append(f"\ndegraded: {loop} keeps failing ({redact(error)}); see the log",
                    style="red")
    return text


def follow_view(rows: Sequence[OrderRow], followers: Sequence[str], stream_state: str,
                stream_detail: str, counters: dict[str, int], stopped: dict[str, str],
                degraded: dict[str, str] | None = None) -> Group:
    return Group(status_line(stream_state, stream_detail, counters, stopped, degraded),
                 orders_table(rows, followers))


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))  # ceil(n * share), at least 1
    return ordered[int(rank) - 1]


def summary_table(rows: Sequence[OrderRow], followers: Sequence[str],
                  lags: Sequence[float]) -> Table:
    table = Table(title="summary", header_style="bold")
    table.add_column("follower")
    table.add_column("mirrored", justify="right")
    table.add_column("filled", justify="right")
    table.add_column("skipped", justify="right")
    table.add_column("rejected", justify="right")
    table.add_column("reasons")
    for follower in followers:
        mirrors = [r.mirrors[follower] for r in rows if follower in r.mirrors]
        placed = [m for m in mirrors if m.state not in ("SKIPPED",)]
        skipped = [m for m in mirrors if m.state == "SKIPPED"]
        reasons = sorted({m.reason for m in skipped + [m for m in mirrors
                                                        if m.state == "REJECTED"]})
        table.add_row(follower, str(len(placed)),
                      str(sum(m.state == "FILLED" for m in mirrors)), str(len(skipped)),
                      str(sum(m.state == "REJECTED" for m in mirrors)),
                      "; ".join(reason[:70] for reason in reasons) or "-")
    p50, p99 = percentile(lags, 0.50), percentile(lags, 0.99)
    if p50 is not None and p99 is not None:
        table.caption = (f"leader seen -> follower request sent: p50 {p50:.1f} ms, "
                         f"p99 {p99:.1f} ms over {len(lags)} orders")
    return table
