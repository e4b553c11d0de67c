"""`copytrade instruments search` on the scrip master a real follow run cached (the
emulator's: docs/sim.md lists 2885 RELIANCE, 1333 HDFCBANK, 11536 TCS and derivatives)."""

from __future__ import annotations

import json
from pathlib import Path

from recorded import RecordedDay, run_cli


def test_a_symbol_part_finds_its_instruments_exact_first(recorded_day: RecordedDay) -> None:
    result = run_cli(recorded_day, "instruments", "search", "reliance")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("scrip master cached on ") and "(IST)" in result.stderr
    header, *rows = [line.split() for line in result.stdout.splitlines()]
    assert header == ["security_id", "exchange_segment", "symbol", "lot_size", "tick_size"]
    symbols = [row[2] for row in rows]
    exact = symbols.count("RELIANCE")
    assert exact and symbols[:exact] == ["RELIANCE"] * exact  # exact matches first
    assert ["2885", "NSE_EQ", "RELIANCE"] in [row[:3] for row in rows]


def test_a_security_id_and_json(recorded_day: RecordedDay) -> None:
    result = run_cli(recorded_day, "instruments", "search", "1333", "--json", process=True)
    assert result.returncode == 0, result.stderr
    [row] = [r for r in json.loads(result.stdout) if r["security_id"] == "1333"]
    assert (row["exchange_segment"], row["symbol"], row["lot_size"]) == ("NSE_EQ", "HDFCBANK",
                                                                         1)


def test_segment_and_limit_narrow_it(recorded_day: RecordedDay) -> None:
    every = json.loads(run_cli(recorded_day, "instruments", "search", "N", "--json").stdout)
    assert len({r["exchange_segment"] for r in every}) > 1
    equity = json.loads(run_cli(recorded_day, "instruments", "search", "N", "--segment",
                                "nse_eq", "--json").stdout)
    assert equity and {r["exchange_segment"] for r in equity} == {"NSE_EQ"}
    one = json.loads(run_cli(recorded_day, "instruments", "search", "N", "--limit", "1",
                             "--json").stdout)
    assert len(one) == 1


def test_nothing_found_is_one_line_and_exit_9(recorded_day: RecordedDay) -> None:
    for text in ("NO-SUCH-THING", "%", "_", "'; DROP TABLE instrument; --"):
        result = run_cli(recorded_day, "instruments", "search", text)
        assert (result.returncode, result.stdout) == (9, ""), (text, result.stdout)
        assert result.stderr.splitlines()[-1].startswith("error: no instrument matches")


def test_without_a_database_it_fails_and_creates_none(recorded_day: RecordedDay,
                                                      tmp_path: Path) -> None:
    home = tmp_path / "empty-home"
    home.mkdir(mode=0o700)
    day = RecordedDay(home, home / "copytrade.toml", {}, recorded_day.followers,
                      {**recorded_day.environ, "COPYTRADE_HOME": str(home)})
    result = run_cli(day, "instruments", "search", "RELIANCE")
    assert result.returncode == 7 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: no database at")
    assert not (home / "copytrade.db").exists()
