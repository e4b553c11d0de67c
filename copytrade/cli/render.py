"""Everything the CLI shows, rendered: Rich renderables and plain text, pure functions of
their inputs, tested as text. Commands parse, call one library function and render with
what is here.

Rich is imported by the functions that build Rich objects: `config show` (plain text)
does not pay for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from copytrade.core.ist import ist_clock
from copytrade.redact import redact

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from copytrade.engine.cancel import CancelPlan, CancelResult
    from copytrade.engine.replay import Progress, ReplayReport, ReplayRow
    from copytrade.store.models import AuditEvent, StateEvent
    from copytrade.store.queries import MirrorRow, OrderRow

STATE_STYLES = {
    "FILLED": "green", "ACCEPTED": "cyan", "PARTIALLY_FILLED": "cyan", "SUBMITTED": "yellow",
    "PENDING_CANCEL": "yellow", "CANCELED": "dim", "EXPIRED": "dim", "REJECTED": "red",
    "SKIPPED": "magenta",
}


def mirror_cell(mirror: MirrorRow | None) -> Text:
    from rich.text import Text

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
    from rich.table import Table

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
    from rich.text import Text

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
    from rich.console import Group

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
    from rich.table import Table

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


def state_event_line(event: StateEvent) -> str:
    """follow's plain output: one line per state change."""
    mirror = event.mirror
    detail = f" ({event.detail})" if event.detail else ""
    return (f"{ist_clock(event.at)} {mirror.follower} leader {mirror.leader_order_id}: "
            f"{event.from_state} -> {event.to_state}{detail}")


def audit_event_line(audit: AuditEvent) -> str:
    """follow's plain output: one line per audit event."""
    return f"{ist_clock(audit.at)} {audit.kind}: {audit.message}"


# ---- tables of rows: Rich on a terminal, aligned text otherwise -------------------------

def text_table(header: Sequence[str], rows: Sequence[Sequence[str]],
               styles: Sequence[str] | None = None, styled_column: int = -1) -> Table:
    """A Rich table of plain cells; `styles[i]` colours row i's `styled_column`. Cells are
    Text, not markup: a broker's message may hold "[...]"."""
    from rich.table import Table
    from rich.text import Text

    table = Table(header_style="bold")
    for title in header:
        table.add_column(title, overflow="fold")
    for index, row in enumerate(rows):
        style = styles[index] if styles else ""
        table.add_row(*(Text(cell, style=style if column == styled_column else "")
                        for column, cell in enumerate(row)))
    return table


def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns, no box or colour: for pipes, logs and cron mail."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     .rstrip() for row in (header, *rows))


def _counts(kinds: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{count} {kind}" for kind, count in counts.items())


# ---- replay-missed -------------------------------------------------------------------------

REPLAY_HEADER = ("leader order", "order", "follower", "result", "detail")
REPLAY_STYLES = {"placed": "green", "modified": "cyan", "cancelled": "yellow",
                 "skipped": "magenta", "not mirrored": "magenta", "failed": "red",
                 "already mirrored": "dim"}


def replay_heading(since: datetime, until: datetime, *, dry_run: bool) -> str:
    mode = " (dry run: nothing is sent or recorded)" if dry_run else ""
    return (f"replay-missed{mode}: leader orders created {since:%Y-%m-%d %H:%M:%S} "
            f"to {until:%Y-%m-%d %H:%M:%S} IST")


def nothing_to_replay(report: ReplayReport) -> str:
    return (f"nothing to replay: no leader order created in the window "
            f"({report.orders_in_book} in the leader's order book)")


REPLAY_STAGES = {"prepare": "reading books", "orders": "leader orders",
                 "calls": "follower calls"}


def replay_progress_line(progress: Progress) -> str | None:
    """Plain output: a line as each stage ends, and per answered call; None: nothing."""
    if progress.done != progress.total and progress.stage != "calls":
        return None
    if progress.stage == "prepare":
        return "read the leader's and followers' books"
    if progress.stage == "orders":
        return f"decided on {progress.total} leader order(s)"
    if progress.total:
        return f"follower calls answered: {progress.done}/{progress.total}"
    return None


def replay_rows(rows: Sequence[ReplayRow]) -> list[tuple[str, str, str, str, str]]:
    # row.detail can quote the broker's reply or a library's exception
    return [(row.leader_order_id + (f"/{row.leg}" if row.leg != 1 else ""), row.order,
             row.follower, row.result, redact(row.detail) or "-") for row in rows]


def replay_table(rows: Sequence[ReplayRow]) -> Table:
    return text_table(REPLAY_HEADER, replay_rows(rows),
                      [REPLAY_STYLES.get(row.kind.value, "") for row in rows], styled_column=3)


def replay_summary(report: ReplayReport) -> str:
    counts = ", ".join(f"{count} {result}" for result, count in report.counts().items())
    if report.dry_run:
        return f"dry run, nothing sent or recorded: {counts}"
    return counts


# ---- cancel-mirror -------------------------------------------------------------------------

CANCEL_PLAN_HEADER = ("leader order", "follower", "follower order(s)", "state")
CANCEL_RESULT_HEADER = ("leader order", "follower", "follower order", "result")


def cancel_plan_rows(plan: CancelPlan) -> list[tuple[str, str, str, str]]:
    return [(t.leader_order_id, t.follower, ", ".join(t.order_ids) or "(not placed yet)",
             t.state.lower()) for t in plan.targets]


def cancel_plan_table(plan: CancelPlan) -> Table:
    return text_table(CANCEL_PLAN_HEADER, cancel_plan_rows(plan))


def cancel_rows(results: Sequence[CancelResult]) -> list[tuple[str, str, str, str]]:
    # r.text can quote the broker's reply or a library's exception
    return [(r.leader_order_id, r.follower or "-", r.follower_order_id or "-", redact(r.text))
            for r in results]


def cancel_table(results: Sequence[CancelResult]) -> Table:
    return text_table(CANCEL_RESULT_HEADER, cancel_rows(results))


def cancel_summary(results: Sequence[CancelResult]) -> str:
    return _counts([result.kind.value for result in results])


# ---- config show ----------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def render_toml(data: dict[str, Any]) -> str:
    """The redacted config as TOML: tokens and unset options become comments."""
    lines = [
        f"# Effective configuration from {_one_line(data['source'] or '(no file)')}",
        "# Defaults are filled in; tokens are never shown.",
        "",
        "[leader]",
        *_table_lines(data["leader"]),
    ]
    for follower in data["followers"]:
        lines += ["", "[[followers]]", *_table_lines(follower)]
    settings = dict(data["settings"])
    freeze_limits = settings.pop("freeze_limits")
    lines += ["", "[settings]", *_table_lines(settings)]
    lines += ["", "[settings.freeze_limits]", *_table_lines(freeze_limits)]
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def _table_lines(table: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in table.items():
        if key == "token":
            lines.append(f"# token: {value}")
        elif value is None:
            lines.append(f"# {key}: not set")
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return lines


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string, once DEL (raw in JSON, not in TOML) is escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
