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

from copytrade.redact import redact

if TYPE_CHECKING:
    from rich.table import Table

    from copytrade.engine.cancel import CancelPlan, CancelResult
    from copytrade.engine.replay import Progress, ReplayReport, ReplayRow

STATE_STYLES = {
    "FILLED": "green", "ACCEPTED": "cyan", "PARTIALLY_FILLED": "cyan", "SUBMITTED": "yellow",
    "PENDING_CANCEL": "yellow", "CANCELED": "dim", "EXPIRED": "dim", "REJECTED": "red",
    "SKIPPED": "magenta",
}


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
        f"broker = {_toml_value(data.get('broker', 'dhan'))}",
    ]
    if data.get("sim"):
        lines += ["", "[sim]", *_table_lines(data["sim"])]
    lines += ["", "[leader]", *_table_lines(data["leader"])]
    for follower in data["followers"]:
        lines += ["", "[[followers]]", *_table_lines(follower)]
    settings = dict(data["settings"])
    freeze_limits = settings.pop("freeze_limits")
    lines += ["", "[settings]", *_table_lines(settings)]
    lines += ["", "[settings.freeze_limits]", *_table_lines(freeze_limits)]
    alerts = dict(data.get("alerts", {}))
    fields = alerts.pop("fields", {})
    url = alerts.pop("webhook_url", None)
    if url and url.endswith("…"):  # masked (config/show.py): a comment, never a wrong URL
        lines += ["", "[alerts]", f"# webhook_url: {url} (path and query not shown)"]
    else:
        lines += ["", "[alerts]", *_table_lines({"webhook_url": url})]
    lines += [*_table_lines(alerts), "", "[alerts.fields]", *_table_lines(fields)]
    if data.get("bus"):  # file paths only, never what the files hold (config/show.py)
        lines += ["", "[bus]", *_table_lines(data["bus"])]
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
