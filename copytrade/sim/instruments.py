"""The emulator's instrument table and its compact scrip-master CSV.

Equity ids are Dhan's real security ids (1333 is HDFCBANK on NSE_EQ). Derivative
ids change with every expiry on the real exchange; the ones here are fixed so
tests stay stable. Lot sizes and freeze limits are the exchanges' figures at the
time of writing; real values change, which is why copytrade reads them from the
instrument list instead of hard-coding them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

# (exchangeSegment) -> (SEM_EXM_EXCH_ID, SEM_SEGMENT), as in Dhan's scrip master.
SEGMENT_CODES: dict[str, tuple[str, str]] = {
    "NSE_EQ": ("NSE", "E"),
    "NSE_FNO": ("NSE", "D"),
    "NSE_CURRENCY": ("NSE", "C"),
    "BSE_EQ": ("BSE", "E"),
    "BSE_FNO": ("BSE", "D"),
    "BSE_CURRENCY": ("BSE", "C"),
    "MCX_COMM": ("MCX", "M"),
}

# Header of Dhan's compact scrip master (api-scrip-master.csv), in its order.
SCRIP_MASTER_COLUMNS = (
    "SEM_EXM_EXCH_ID",
    "SEM_SEGMENT",
    "SEM_SMST_SECURITY_ID",
    "SEM_INSTRUMENT_NAME",
    "SEM_EXPIRY_CODE",
    "SEM_TRADING_SYMBOL",
    "SEM_LOT_UNITS",
    "SEM_CUSTOM_SYMBOL",
    "SEM_EXPIRY_DATE",
    "SEM_STRIKE_PRICE",
    "SEM_OPTION_TYPE",
    "SEM_TICK_SIZE",
    "SEM_EXPIRY_FLAG",
    "SEM_EXCH_INSTRUMENT_TYPE",
    "SEM_SERIES",
    "SM_SYMBOL_NAME",
)


@dataclass(frozen=True)
class Instrument:
    security_id: str
    segment: str  # Dhan's exchangeSegment, e.g. NSE_EQ
    symbol: str  # SEM_TRADING_SYMBOL
    display_name: str  # SEM_CUSTOM_SYMBOL
    instrument: str  # SEM_INSTRUMENT_NAME: EQUITY, FUTIDX, OPTIDX, FUTCOM
    lot_size: int
    tick_size: float
    freeze_quantity: int  # exchange freeze limit per order, in units
    price: float  # starting last traded price
    expiry: str = ""  # YYYY-MM-DD for derivatives
    strike: float = 0.0
    option_type: str = ""  # CE / PE for options

    @property
    def exchange(self) -> str:
        return SEGMENT_CODES[self.segment][0]

    @property
    def segment_code(self) -> str:
        return SEGMENT_CODES[self.segment][1]

    @property
    def is_derivative(self) -> bool:
        return self.instrument != "EQUITY"

    @property
    def is_option(self) -> bool:
        return self.option_type in ("CE", "PE")


def on_tick(price: float, tick_size: float) -> bool:
    ticks = round(price / tick_size)
    return abs(ticks * tick_size - price) < 1e-6


_EQ_FREEZE = 10_000_000  # equities have no practical per-order freeze limit here

DEFAULT_INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("1333", "NSE_EQ", "HDFCBANK", "HDFC Bank", "EQUITY", 1, 0.05, _EQ_FREEZE, 1650.0),
    Instrument("2885", "NSE_EQ", "RELIANCE", "Reliance Industries", "EQUITY", 1, 0.05,
               _EQ_FREEZE, 1400.0),
    Instrument("11536", "NSE_EQ", "TCS", "Tata Consultancy Services", "EQUITY", 1, 0.05,
               _EQ_FREEZE, 3200.0),
    Instrument("1594", "NSE_EQ", "INFY", "Infosys", "EQUITY", 1, 0.05, _EQ_FREEZE, 1500.0),
    Instrument("3045", "NSE_EQ", "SBIN", "State Bank of India", "EQUITY", 1, 0.05,
               _EQ_FREEZE, 800.0),
    Instrument("500180", "BSE_EQ", "HDFCBANK", "HDFC Bank", "EQUITY", 1, 0.05, _EQ_FREEZE, 1650.0),
    Instrument("500325", "BSE_EQ", "RELIANCE", "Reliance Industries", "EQUITY", 1, 0.05,
               _EQ_FREEZE, 1400.0),
    Instrument("52175", "NSE_FNO", "NIFTY-Dec2026-FUT", "NIFTY DEC FUT", "FUTIDX", 65, 0.1,
               1755, 26000.0, expiry="2026-12-29"),
    Instrument("52174", "NSE_FNO", "BANKNIFTY-Dec2026-FUT", "BANKNIFTY DEC FUT", "FUTIDX", 30,
               0.2, 600, 58000.0, expiry="2026-12-29"),
    Instrument("52201", "NSE_FNO", "NIFTY-Dec2026-26000-CE", "NIFTY 29 DEC 26000 CALL", "OPTIDX",
               65, 0.05, 1755, 250.0, expiry="2026-12-29", strike=26000.0, option_type="CE"),
    Instrument("52202", "NSE_FNO", "NIFTY-Dec2026-26000-PE", "NIFTY 29 DEC 26000 PUT", "OPTIDX",
               65, 0.05, 1755, 230.0, expiry="2026-12-29", strike=26000.0, option_type="PE"),
    Instrument("52301", "NSE_FNO", "BANKNIFTY-Dec2026-58000-CE", "BANKNIFTY 29 DEC 58000 CALL",
               "OPTIDX", 30, 0.05, 600, 600.0, expiry="2026-12-29", strike=58000.0,
               option_type="CE"),
    Instrument("447552", "MCX_COMM", "CRUDEOIL-Dec2026-FUT", "CRUDEOIL DEC FUT", "FUTCOM", 100,
               1.0, 10_000, 5600.0, expiry="2026-12-18"),
)


def scrip_master_csv(instruments: tuple[Instrument, ...] | list[Instrument]) -> str:
    """Render instruments in the columns of Dhan's compact scrip master."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SCRIP_MASTER_COLUMNS)
    for item in instruments:
        expiry = f"{item.expiry} 14:30:00" if item.expiry else "0001-01-01 00:00:00"
        writer.writerow((
            item.exchange,
            item.segment_code,
            item.security_id,
            item.instrument,
            0 if item.expiry else "",
            item.symbol,
            f"{item.lot_size:.1f}",
            item.display_name,
            expiry,
            f"{item.strike:.5f}" if item.is_option else "-0.01000",
            item.option_type or "XX",
            f"{item.tick_size:.4f}",
            "M" if item.expiry else "NA",
            item.instrument,
            "EQ" if not item.is_derivative else "NA",
            item.symbol.split("-")[0],
        ))
    return out.getvalue()
