"""docs/architecture.md against the code: its state-machine table is the one
copytrade.core.state_table renders from core/orders.py, and every copytrade/ path the docs
cite exists.

Run as a script to regenerate the table in the doc after changing the state machine:

    python tests/unit/test_architecture_doc.py --write
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from copytrade.core.orders import TRANSITIONS, MirrorState, Trigger
from copytrade.core.state_table import ignored_reports, transition_table_markdown

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
CITING_DOCS = (ARCHITECTURE, ROOT / "docs" / "operations.md", ROOT / "README.md")
BEGIN = "<!-- state-table:begin -->"
END = "<!-- state-table:end -->"
REGENERATE = "python tests/unit/test_architecture_doc.py --write"
# copytrade/engine/executor.py, copytrade/core/, copytrade/data/trading_calendar.json
CITED_PATH = re.compile(r"(?<![\w/.-])copytrade/(?:[\w-]+/)*(?:[\w-]+\.\w+|[\w-]+/?)")


def split_doc(text: str) -> tuple[str, str, str]:
    """(before the begin marker line, the table between the markers, from the end marker)."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"expected one {BEGIN} line, then one {END} line")
    head, rest = text.split(BEGIN, 1)
    table, tail = rest.split(END, 1)
    return head + BEGIN + "\n", table.strip("\n") + "\n", END + tail


def with_table(text: str, table: str) -> str:
    head, _, tail = split_doc(text)
    return head + table + tail


def check_table(text: str) -> None:
    _, table, _ = split_doc(text)
    if table != transition_table_markdown():
        raise AssertionError("docs/architecture.md's state table differs from "
                             f"copytrade/core/orders.py; regenerate it with: {REGENERATE}")


def test_the_docs_state_table_is_the_one_generated_from_the_code():
    check_table(ARCHITECTURE.read_text(encoding="utf-8"))


def test_the_table_has_a_row_for_every_transition_and_nothing_else():
    table = transition_table_markdown()
    transitions = table.split("\n\n", 1)[0].splitlines()[2:]  # the first table's rows
    pairs = {tuple(cell.strip(" `") for cell in row.split("|")[1:3]) for row in transitions}
    assert pairs == {(str(s), str(t)) for s, t in TRANSITIONS} | {
        ("PENDING_CANCEL", "CANCEL_REJECTED")}
    assert "| `ACCEPTED` | `ACK` | `ACCEPTED` | no (a repeat) |" in table
    assert "| `PENDING_CANCEL` | `CANCEL_REJECTED` | the state before the cancel" in table


def test_ignored_reports_are_those_transition_accepts_without_a_move():
    ignored = ignored_reports()
    assert ignored[MirrorState.FILLED][0] is Trigger.ACK
    assert MirrorState.ACCEPTED not in ignored  # nothing stale there: the table covers it
    assert Trigger.CANCEL_REJECTED not in ignored[MirrorState.PENDING_CANCEL]
    assert "| `SKIPPED` | `SKIP`, `REQUEST_CANCEL` |" in transition_table_markdown()


def test_a_table_edited_by_hand_is_caught_and_the_message_says_how_to_regenerate():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    row = "| `SUBMITTED` | `ACK` | `ACCEPTED` |"
    edited = text.replace(row, row.replace("ACCEPTED", "FILLED"))
    assert edited != text
    with pytest.raises(AssertionError, match=re.escape(REGENERATE)):
        check_table(edited)


def test_write_puts_the_generated_table_between_the_markers_and_keeps_the_rest():
    doc = f"# title\n\nprose\n{BEGIN}\nold table\n{END}\n\nmore prose\n"
    written = with_table(doc, transition_table_markdown())
    assert written.startswith(f"# title\n\nprose\n{BEGIN}\n| from |")
    assert written.endswith(f"`InvalidTransition`.\n{END}\n\nmore prose\n")
    assert with_table(written, transition_table_markdown()) == written  # idempotent


@pytest.mark.parametrize("text", ["no markers", f"{BEGIN}\n{BEGIN}\n{END}", f"{END}\n{BEGIN}"])
def test_missing_or_doubled_markers_are_an_error(text):
    with pytest.raises(ValueError, match="expected one"):
        split_doc(text)


def cited_paths(text: str) -> set[str]:
    return {match.rstrip("/") for match in CITED_PATH.findall(text)}


def test_the_path_pattern_finds_files_and_directories_but_not_the_config_file():
    text = ("`copytrade/engine/executor.py` owns it; see copytrade/core/ and "
            "copytrade/data/trading_calendar.json; not copytrade.toml nor x/copytrade/y.py")
    assert cited_paths(text) == {"copytrade/engine/executor.py", "copytrade/core",
                                 "copytrade/data/trading_calendar.json"}


def missing_paths(text: str) -> list[str]:
    return sorted(path for path in cited_paths(text) if not (ROOT / path).exists())


def test_a_path_that_does_not_exist_is_reported():
    text = "`copytrade/engine/executor.py` and `copytrade/engine/dispatcher.py`, copytrade/nope/"
    assert missing_paths(text) == ["copytrade/engine/dispatcher.py", "copytrade/nope"]


@pytest.mark.parametrize("doc", CITING_DOCS, ids=lambda p: p.name)
def test_every_copytrade_path_the_docs_cite_exists(doc):
    text = doc.read_text(encoding="utf-8")
    if doc == ARCHITECTURE:
        assert len([p for p in cited_paths(text) if p.endswith(".py")]) >= 20  # the owners
    missing = missing_paths(text)
    assert not missing, f"{doc.name} cites paths that do not exist: {missing}"


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print(f"usage: {REGENERATE}", file=sys.stderr)
        return 2
    text = ARCHITECTURE.read_text(encoding="utf-8")
    ARCHITECTURE.write_text(with_table(text, transition_table_markdown()), encoding="utf-8")
    print(f"wrote the state table into {ARCHITECTURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
