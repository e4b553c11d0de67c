"""The scrip master, downloaded at most once a day and cached in the store."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date

from peewee import SqliteDatabase

from copytrade.dhan.instruments import InstrumentRow
from copytrade.errors import BrokerError
from copytrade.store.models import Instrument, Setting
from copytrade.store.repo import Store

log = logging.getLogger(__name__)
CACHE_DATE_KEY = "instruments_date"
BATCH = 500


def search_instruments(db: SqliteDatabase, text: str, *, segment: str | None = None,
                       limit: int = 20) -> tuple[str | None, list[Instrument]]:
    """The cached scrip master's date (None: never downloaded) and its instruments whose
    security id is `text`, or whose symbol contains it (any case): exact matches first,
    then symbols starting with it, then the rest, each by symbol."""
    cached = db.execute_sql("SELECT value FROM setting WHERE key = ?",
                            (CACHE_DATE_KEY,)).fetchone()
    wanted = text.strip().upper()
    pattern = "%" + wanted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    where, params = "(security_id = ? OR upper(symbol) LIKE ? ESCAPE '\\')", [wanted, pattern]
    if segment:
        where += " AND exchange_segment = ?"
        params.append(segment)
    rows = db.execute_sql(
        "SELECT security_id, exchange_segment, symbol, lot_size, tick_size FROM instrument "
        f"WHERE {where} ORDER BY CASE WHEN security_id = ? OR upper(symbol) = ? THEN 0 "
        "WHEN upper(symbol) LIKE ? ESCAPE '\\' THEN 1 ELSE 2 END, symbol, exchange_segment "
        "LIMIT ?", (*params, wanted, wanted, pattern[1:], limit)).fetchall()
    found = [Instrument(security_id=r[0], exchange_segment=r[1], symbol=r[2], lot_size=r[3],
                        tick_size=r[4]) for r in rows]
    return (cached[0] if cached else None), found


class InstrumentCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._lot_sizes: dict[tuple[str, str], int] = {}
        self._tick_sizes: dict[tuple[str, str], float] = {}
        self._symbols: dict[str, str] = {}

    def ensure_fresh(self, today: date, fetch: Callable[[], list[InstrumentRow]]) -> bool:
        """Download only when the cache is from another day; True if it downloaded."""
        cached = Setting.get_or_none(Setting.key == CACHE_DATE_KEY)
        downloaded = False
        if cached is None or cached.value != today.isoformat():
            try:
                rows = fetch()
                if not rows:
                    raise ValueError("the list came back empty")
            except Exception as exc:  # requests, OSError, CSV: any failure to get a list
                return self._fall_back(cached, exc)
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

    def _fall_back(self, cached: Setting | None, exc: Exception) -> bool:
        """The download failed: yesterday's list beats none (lot sizes rarely change
        overnight); with no list at all nothing can be sized, so follow does not start."""
        why = f"{type(exc).__name__}: {exc}"[:300]
        if cached is None or not Instrument.select().exists():
            raise BrokerError(f"cannot download the instrument list ({why}) and no cached "
                              "copy exists: check instruments_url and the network") from None
        log.warning("instrument list download failed (%s): using the copy of %s", why,
                    cached.value)
        with self.store.write():
            self.store.audit("instruments_stale", f"download failed ({why}): using the "
                             f"cached list of {cached.value}")
        self._load()
        return False

    def _load(self) -> None:
        rows = list(Instrument.select())
        self._lot_sizes = {(i.exchange_segment, i.security_id): i.lot_size for i in rows}
        self._tick_sizes = {(i.exchange_segment, i.security_id): i.tick_size for i in rows}
        self._symbols = {i.security_id: i.symbol for i in rows}

    def lot_size(self, exchange_segment: str, security_id: str) -> int | None:
        return self._lot_sizes.get((exchange_segment, security_id))

    def tick_size(self, exchange_segment: str, security_id: str) -> float | None:
        return self._tick_sizes.get((exchange_segment, security_id))

    def symbol(self, security_id: str) -> str:
        return self._symbols.get(security_id, "")

    def __len__(self) -> int:
        return len(self._lot_sizes)
