"""Every renderable of copytrade/cli/render.py, rendered to a fixed-width console without
colour and compared as text."""

from __future__ import annotations

import io

import pytest
from rich.console import Console, RenderableType

from copytrade.cli.render import (
    STATE_STYLES,
    follow_view,
    mirror_cell,
    orders_table,
    percentile,
    status_line,
    summary_table,
)
from copytrade.store.queries import MirrorRow, OrderRow


def text_of(renderable: RenderableType, width: int = 120) -> str:
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def block(text: str) -> str:
    return text.strip("\n")


FILLED = MirrorRow("alice", "FILLED", 130, 130, "F1", 12.3, 250.0, "", 1)
SKIPPED = MirrorRow("bob", "SKIPPED", 0, 0, None, None, None,
                    "0.5 lots after multiplier 0.5: below one lot", 1)
REJECTED = MirrorRow("alice", "REJECTED", 65, 0, "F2", 8.0, None,
                     "DH-906: margin shortfall", 1)
ROWS = [
    OrderRow("5224010100001", "NIFTY-FUT", "52175", "BUY", 130, 130, "LIMIT", 101.5, "TRADED",
             False, {"alice": FILLED, "bob": SKIPPED}),
    OrderRow("5224010100002", "BANKNIFTY", "52176", "SELL", 30, 0, "MARKET", 0.0, "PENDING",
             True, {"alice": REJECTED}),
]
FOLLOWERS = ["alice", "bob"]

ORDERS = block("""
┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━┳━━━━━━━━━┳━━━━━━━━┳━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┓
┃ leader order        ┃ instrument ┃ side ┃     qty ┃ type   ┃ price ┃ status  ┃ alice             ┃ bob               ┃
┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━╇━━━━━━━━━╇━━━━━━━━╇━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━┩
│ 5224010100001       │ NIFTY-FUT  │ BUY  │ 130/130 │ LIMIT  │ 101.5 │ traded  │ filled 130/130    │ skipped           │
│                     │            │      │         │        │       │         │ 12ms              │ 0.5 lots after    │
│                     │            │      │         │        │       │         │                   │ multiplier 0.5:   │
│                     │            │      │         │        │       │         │                   │ below one lot     │
│ 5224010100002 (app) │ BANKNIFTY  │ SELL │    0/30 │ MARKET │     - │ pending │ rejected 0/65 8ms │ -                 │
│                     │            │      │         │        │       │         │ DH-906: margin    │                   │
│                     │            │      │         │        │       │         │ shortfall         │                   │
└─────────────────────┴────────────┴──────┴─────────┴────────┴───────┴─────────┴───────────────────┴───────────────────┘
""")  # noqa: E501


# ---- mirror cells -------------------------------------------------------------------------------


def test_a_missing_mirror_is_a_dash() -> None:
    cell = mirror_cell(None)
    assert (cell.plain, str(cell.style)) == ("-", "dim")


def test_a_filled_mirror_shows_its_quantities_and_lag() -> None:
    cell = mirror_cell(FILLED)
    assert cell.plain == "filled 130/130 12ms"
    assert cell.style == STATE_STYLES["FILLED"] == "green"


def test_a_skipped_mirror_shows_its_reason_not_quantities() -> None:
    assert mirror_cell(SKIPPED).plain == "skipped\n0.5 lots after multiplier 0.5: below one lot"


def test_a_long_reason_is_cut_at_60_characters() -> None:
    long = MirrorRow("bob", "REJECTED", 65, 0, None, None, None, "x" * 100, 1)
    assert mirror_cell(long).plain == "rejected 0/65\n" + "x" * 60


def test_a_reason_shows_only_for_skipped_and_rejected() -> None:
    cancelled = MirrorRow("bob", "CANCELED", 65, 0, "F3", None, None, "leader order cancelled", 2)
    assert mirror_cell(cancelled).plain == "canceled 0/65"


def test_a_sub_millisecond_lag_rounds() -> None:
    quick = MirrorRow("bob", "ACCEPTED", 65, 0, "F4", 0.4, None, "", 1)
    assert mirror_cell(quick).plain == "accepted 0/65 0ms"


# ---- tables ------------------------------------------------------------------------------------


def test_orders_table() -> None:
    assert text_of(orders_table(ROWS, FOLLOWERS)) == ORDERS


def test_orders_table_without_rows_or_followers() -> None:
    # expand=True: the empty table still spans the console's 80 columns.
    assert text_of(orders_table([], []), width=80) == block("""
┏━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━┳━━━━━━━━┳━━━━━━━━┳━━━━━━━━━┓
┃ leader order     ┃ instrument    ┃ side   ┃  qty ┃ type   ┃  price ┃ status  ┃
┡━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━╇━━━━━━━━╇━━━━━━━━╇━━━━━━━━━┩
└──────────────────┴───────────────┴────────┴──────┴────────┴────────┴─────────┘
""")


def test_status_line_connected() -> None:
    line = status_line("connected", "ignored while connected", {"orders": 2, "intents": 3}, {})
    assert text_of(line) == "leader stream: connected   orders: 2   intents: 3"


def test_status_line_reconnecting_with_a_stopped_follower() -> None:
    line = status_line("reconnecting", "closed 1006", {"orders": 0},
                       {"carol": "token refused (DH-901)"})
    assert text_of(line) == block("""
leader stream: reconnecting (closed 1006)   orders: 0
stopped carol: token refused (DH-901)
""")


def test_follow_view_is_the_status_line_over_the_table() -> None:
    view = follow_view(ROWS, FOLLOWERS, "reconnecting", "closed 1006",
                       {"orders": 2, "intents": 3}, {"carol": "token refused"})
    assert text_of(view) == (
        "leader stream: reconnecting (closed 1006)   orders: 2   intents: 3\n"
        "stopped carol: token refused\n" + ORDERS)


def test_summary_table_with_its_latency_caption() -> None:
    table = summary_table(ROWS, FOLLOWERS, [30.5, 10.0, 12.0])
    assert text_of(table) == block("""
                                              summary
┏━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ follower ┃ mirrored ┃ filled ┃ skipped ┃ rejected ┃ reasons                                      ┃
┡━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩
│ alice    │        2 │      1 │       0 │        1 │ DH-906: margin shortfall                     │
│ bob      │        0 │      0 │       1 │        0 │ 0.5 lots after multiplier 0.5: below one lot │
└──────────┴──────────┴────────┴─────────┴──────────┴──────────────────────────────────────────────┘
            leader seen -> follower request sent: p50 12.0 ms, p99 30.5 ms over 3 orders
""")


def test_summary_table_without_lags_has_no_caption() -> None:
    table = summary_table([], ["alice"], [])
    assert table.caption is None
    assert text_of(table) == block("""
                            summary
┏━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━┓
┃ follower ┃ mirrored ┃ filled ┃ skipped ┃ rejected ┃ reasons ┃
┡━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━┩
│ alice    │        0 │      0 │       0 │        0 │ -       │
└──────────┴──────────┴────────┴─────────┴──────────┴─────────┘
""")


def test_summary_reasons_are_deduplicated_sorted_and_cut_at_70() -> None:
    def skipped(reason: str) -> MirrorRow:
        return MirrorRow("bob", "SKIPPED", 0, 0, None, None, None, reason, 1)

    rows = [OrderRow(str(n), "NIFTY-FUT", "52175", "BUY", 65, 0, "LIMIT", 100.0, "PENDING",
                     False, {"bob": skipped(reason)})
            for n, reason in enumerate(["z: denied", "a: below one lot", "z: denied",
                                        "m" * 80])]
    text = text_of(summary_table(rows, ["bob"], []), width=200)
    (line,) = [line for line in text.splitlines() if line.startswith("│ bob")]
    cells = [cell.strip() for cell in line.split("│")[1:-1]]
    # Four skipped (duplicates counted), three distinct reasons.
    assert cells == ["bob", "0", "0", "4", "0", "a: below one lot; " + "m" * 70 + "; z: denied"]


# ---- percentile ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "share", "expected"), [
    ([], 0.5, None),
    ([], 0.99, None),
    ([7.0], 0.5, 7.0),
    ([7.0], 0.99, 7.0),
    ([7.0], 0.0, 7.0),  # rank at least 1
    ([3.0, 1.0, 2.0], 0.5, 2.0),  # unsorted input
    ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),  # nearest rank: ceil(4 * 0.5) = 2, no interpolation
    ([1.0, 2.0, 3.0, 4.0], 1.0, 4.0),
    ([1.0, 2.0, 3.0, 4.0], 0.0, 1.0),
    ([float(n) for n in range(1, 11)], 0.99, 10.0),  # ceil(9.9) = 10: the maximum
    ([float(n) for n in range(1, 101)], 0.99, 99.0),
    ([float(n) for n in range(1, 101)], 0.5, 50.0),
    ([float(n) for n in range(1, 1001)], 0.99, 990.0),
    ([5.0, 5.0, 5.0], 0.5, 5.0),
])
def test_percentile(values: list[float], share: float, expected: float | None) -> None:
    assert percentile(values, share) == expected


def test_percentile_does_not_sort_its_argument() -> None:
    values = [3.0, 1.0, 2.0]
    percentile(values, 0.5)
    assert values == [3.0, 1.0, 2.0]


def test_a_degraded_loop_shows_in_the_status_line() -> None:
    from rich.console import Console

    from copytrade.cli.render import status_line

    console = Console(width=100, color_system=None, record=True)
    console.print(status_line("connected", "", {"frames": 3}, {},
                              {"leader check": "OSError: No space left on device"}))
    text = console.export_text()
    assert "degraded: leader check keeps failing (OSError: No space left on device)" in text
