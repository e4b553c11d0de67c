"""The scrip master, downloaded at most once a day and cached in the store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from copytrade.dhan.instruments import InstrumentRow
from copytrade.store.models import Instrument, Setting
from copytrade.store.repo import Store

CACHE_DATE_KEY = "instruments_date"
BATCH = 500


class InstrumentCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._lot_sizes: dict[tuple[str, str], int] = {}
        self._symbols: dict[str, str] = {}

    def ensure_fresh(self, today: date, fetch: Callable[[], list[InstrumentRow]]) -> bool:
        """Download only when the cache is from another day; True if it downloaded."""
        cached = Setting.get_or_none(Setting.key == CACHE_DATE_KEY)
        downloaded = False
        if cached is None or cached.value != today.isoformat():
            rows = fetch()
            with self.store.write():
                Instrument.delete().execute()
                for start in range(0, len(rows), BATCH):
                    Instrument.insert_many([
                        dict(exchange_segment=r.exchange_segment, security_id=r.security_id,
                             symbol=r.symbol, lot_size=r.lot_size, tick_size=r.tick_size)
                        for r in rows[start:start + BATCH]]).execute()
                Setting.replace(key=CACHE_DATE_KEY, value=today.isoformat()).execute()
            downloaded = True
        self._load()
        return downloaded

    def _load(self) -> None:
        self._lot_sizes = {(i.exchange_segment, i.security_id): i.lot_size
                           for i in Instrument.select()}
        self._symbols = {i.security_id: i.symbol for i in Instrument.select()}

    def lot_size(self, exchange_segment: str, security_id: str) -> int | None:
        return self._lot_sizes.get((exchange_segment, security_id))

    def symbol(self, security_id: str) -> str:
        return self._symbols.get(security_id, "")

    def __len__(self) -> int:
        return len(self._lot_sizes)
