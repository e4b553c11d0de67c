"""The command renderers moved into copytrade/cli/render.py: replay-missed, cancel-mirror
and `config show`'s TOML, as text (follow's lines: tests/unit/test_live_view.py)."""

from __future__ import annotations

import io
from datetime import datetime
from types import SimpleNamespace

from rich.console import Console

from copytrade.cli import render
from copytrade.engine.replay import Progress, ReplayRow, ResultKind
from copytrade.secret import Secret


def text_of(renderable: object) -> str:
    console = Console(width=100, color_system=None, record=True, file=io.StringIO())
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


ROWS = [ReplayRow("L1", 1, "BUY 10 HDFCBANK LIMIT 1600 pending", "f1", ResultKind.PLACED,
                  "10 LIMIT @ 1600"),
        ReplayRow("L1", 2, "BUY 10 HDFCBANK LIMIT 1600 pending", "f2", ResultKind.SKIPPED,
                  "", dry_run=True)]


def test_replay_rows_plain_and_rich() -> None:
    rows = render.replay_rows(ROWS)
    assert rows[1] == ("L1/2", "BUY 10 HDFCBANK LIMIT 1600 pending", "f2", "would skip", "-")
    plain = render.plain_table(render.REPLAY_HEADER, rows).splitlines()
    assert plain[0].split() == ["leader", "order", "order", "follower", "result", "detail"]
    assert plain[1].split("  f1  ")[1].split() == ["placed", "10", "LIMIT", "@", "1600"]
    assert "[markup]" in text_of(render.text_table(("a",), [("[markup]",)]))
    assert "would skip" in text_of(render.replay_table(ROWS))


def test_replay_texts() -> None:
    since, until = datetime(2026, 1, 5, 9, 15), datetime(2026, 1, 5, 10, 0)
    assert render.replay_heading(since, until, dry_run=True) == (
        "replay-missed (dry run: nothing is sent or recorded): leader orders created "
        "2026-01-05 09:15:00 to 2026-01-05 10:00:00 IST")
    assert render.replay_progress_line(Progress("orders", 1, 2)) is None
    assert render.replay_progress_line(Progress("orders", 2, 2)) == "decided on 2 leader order(s)"
    assert render.replay_progress_line(Progress("calls", 1, 2)) == (
        "follower calls answered: 1/2")
    assert render.replay_progress_line(Progress("calls", 0, 0)) is None


def test_cancel_rows_redact_a_quoted_token() -> None:
    token = Secret("tok-CANCEL-render-77aa55")
    result = SimpleNamespace(leader_order_id="L1", follower="f1", follower_order_id=None,
                             text=f"refused: {token.reveal()}",
                             kind=SimpleNamespace(value="failed"))
    [row] = render.cancel_rows([result])  # type: ignore[list-item]
    assert row[:3] == ("L1", "f1", "-") and token.reveal() not in row[3]
    assert render.cancel_summary([result, result]) == "2 failed"  # type: ignore[list-item]


def test_render_toml_lives_in_render() -> None:
    data = {"source": "a.toml", "leader": {"client_id": "1", "token": "set (env X)"},
            "followers": [{"name": "f 1", "proxy": None}],
            "settings": {"reconcile_interval_seconds": 3.0, "freeze_limits": {"1333": 1800}}}
    text = render.render_toml(data)
    assert "# token: set (env X)" in text and "# proxy: not set" in text
    assert "\n1333 = 1800" in text
