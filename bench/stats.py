"""Distributions and the printed table."""

from __future__ import annotations

import math
from typing import Any

QUANTILES = (("min", 0.0), ("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))


def percentile(values: list[float], share: float) -> float:
    """Nearest rank: the smallest value with at least `share` of the values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if share <= 0:
        return ordered[0]
    return ordered[min(len(ordered), math.ceil(share * len(ordered))) - 1]


def summary(values: list[float]) -> dict[str, Any]:
    """n, min, p50, p95, p99, max (rounded to a microsecond when in ms)."""
    result: dict[str, Any] = {"n": len(values)}
    for name, share in QUANTILES:
        value = percentile(values, share)
        result[name] = None if math.isnan(value) else round(value, 4)
    return result


def ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or bottom is None or bottom == 0:
        return None
    return round(top / bottom, 3)


def difference(top: float | None, bottom: float | None) -> float | None:
    if top is None or bottom is None:
        return None
    return round(top - bottom, 4)


def ratios(top: dict[str, Any], bottom: dict[str, Any]) -> dict[str, float | None]:
    return {name: ratio(top.get(name), bottom.get(name)) for name, _ in QUANTILES}


class Table:
    """Rows of a distribution (min / p50 / p95 / p99 / max) or of a single value."""

    HEADER = (f"{'figure':<44} {'n':>5} {'min':>9} {'p50':>9} {'p95':>9} {'p99':>9} "
              f"{'max':>9}  unit  target / verdict")

    def __init__(self) -> None:
        self.lines: list[str] = []

    def section(self, title: str) -> None:
        self.lines.append("")
        self.lines.append(title)

    def dist(self, label: str, stats: dict[str, Any], unit: str = "ms", note: str = "") -> None:
        cells = " ".join(_cell(stats.get(name)) for name, _ in QUANTILES)
        self.lines.append(f"  {label:<42} {stats.get('n', 0):>5} {cells}  {unit:<4}  {note}")

    def value(self, label: str, text: str, note: str = "") -> None:
        self.lines.append(f"  {label:<42} {text:<55} {note}")

    def text(self) -> str:
        return "\n".join([self.HEADER, *self.lines])


def _cell(value: float | None) -> str:
    if value is None:
        return f"{'-':>9}"
    if abs(value) >= 1000:
        return f"{value:9.0f}"
    if abs(value) >= 10:
        return f"{value:9.2f}"
    return f"{value:9.3f}"


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "n/a"
    return "ok" if value <= target else "MISSED"
