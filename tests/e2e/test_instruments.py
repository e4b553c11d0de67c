"""Dhan's scrip master: parsed from the emulator's CSV, downloaded at most once a day."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from copytrade.dhan.instruments import download_scrip_master, parse_scrip_master
from copytrade.sim.server import Emulator
from copytrade.store.db import open_store
from copytrade.store.instruments import InstrumentCache
from copytrade.store.repo import Store


def test_cache_downloads_once_a_day(sim: Emulator, tmp_path: Path) -> None:
    store = Store(open_store(tmp_path / "c.db"), lambda: datetime.now(UTC))
    downloads: list[int] = []

    def fetch() -> list:
        rows = download_scrip_master(sim.scrip_master_url, timeout=5)
        downloads.append(len(rows))
        return rows

    cache = InstrumentCache(store)
    assert cache.ensure_fresh(date(2026, 11, 25), fetch) is True
    assert cache.lot_size("NSE_FNO", "52175") == 65
    assert cache.lot_size("NSE_EQ", "1333") == 1
    assert cache.lot_size("NSE_FNO", "999999") is None  # unknown stays unknown
    again = InstrumentCache(store)  # a restart the same day: no download
    assert again.ensure_fresh(date(2026, 11, 25), fetch) is False
    assert again.lot_size("MCX_COMM", "447552") == 100
    assert again.ensure_fresh(date(2026, 11, 26), fetch) is True  # a new day
    assert len(downloads) == 2


def test_rows_without_a_whole_lot_size_are_left_out() -> None:
    csv_text = ("SEM_EXM_EXCH_ID,SEM_SEGMENT,SEM_SMST_SECURITY_ID,SEM_TRADING_SYMBOL,"
                "SEM_LOT_UNITS,SEM_TICK_SIZE\n"
                "NSE,D,1,GOOD,75.0,0.05\nNSE,D,2,HALF,7.5,0.05\nNSE,D,3,NONE,,0.05\n"
                "XYZ,Q,4,ODD,1.0,0.05\n")
    rows = list(parse_scrip_master(csv_text.splitlines()))
    assert [(r.security_id, r.lot_size) for r in rows] == [("1", 75)]
