"""Dhan's compact scrip master (CSV): lot sizes and symbols per (segment, security id)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import requests

# (SEM_EXM_EXCH_ID, SEM_SEGMENT) -> exchangeSegment
SEGMENTS = {
    ("NSE", "E"): "NSE_EQ", ("NSE", "D"): "NSE_FNO", ("NSE", "C"): "NSE_CURRENCY",
    ("BSE", "E"): "BSE_EQ", ("BSE", "D"): "BSE_FNO", ("BSE", "C"): "BSE_CURRENCY",
    ("MCX", "M"): "MCX_COMM",
}


@dataclass(frozen=True)
class InstrumentRow:
    exchange_segment: str
    security_id: str
    symbol: str
    lot_size: int
    tick_size: float


def parse_scrip_master(lines: Iterable[str]) -> Iterator[InstrumentRow]:
    """Rows with a known segment and a whole, positive lot size; others are skipped
    (an unknown lot size must stay unknown, never guessed)."""
    for row in csv.DictReader(lines):
        segment = SEGMENTS.get((row.get("SEM_EXM_EXCH_ID", ""), row.get("SEM_SEGMENT", "")))
        try:
            lot_size = float(row.get("SEM_LOT_UNITS") or 0)
            tick = float(row.get("SEM_TICK_SIZE") or 0.05)
        except ValueError:
            continue
        security_id = (row.get("SEM_SMST_SECURITY_ID") or "").strip()
        if segment and security_id and lot_size >= 1 and lot_size == int(lot_size):
            yield InstrumentRow(segment, security_id, row.get("SEM_TRADING_SYMBOL", ""),
                                int(lot_size), tick)


def download_scrip_master(url: str, timeout: float = 60.0) -> list[InstrumentRow]:
    with requests.get(url, timeout=timeout, stream=True) as reply:
        reply.raise_for_status()
        reply.encoding = reply.encoding or "utf-8"
        return list(parse_scrip_master(reply.iter_lines(decode_unicode=True)))
