"""Net open quantity per (security, product), from a REST positions read plus the fills
seen since: exits are sized from what an account actually holds."""

from __future__ import annotations

import threading
from collections.abc import Iterable


class PositionBook:
    """Two views of each net quantity: `net` counts every fill seen, `vouched` only those
    of the broker's positions read and of our own mirrors. A fill from an order we did not
    place (the user's own, or a frame that lies) moves `net` alone, so an exit sized above
    `vouched` is confirmed from the broker's positions before it is sent."""

    def __init__(self) -> None:
        self._net: dict[tuple[str, str], int] = {}
        self._vouched: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def load(self, rows: Iterable[dict]) -> None:
        """Replace the book with Dhan's `GET /positions` rows (netQty is signed)."""
        with self._lock:
            self._net.clear()
            for row in rows:
                if not isinstance(row, dict):
                    continue  # an odd row: not ours to guess
                key = (str(row.get("securityId", "")), str(row.get("productType", "")))
                try:
                    self._net[key] = self._net.get(key, 0) + int(float(row.get("netQty", 0)))
                except (TypeError, ValueError, OverflowError):  # an odd row: not ours to guess
                    continue
            self._vouched = dict(self._net)

    def net(self, security_id: str, product_type: str) -> int:
        with self._lock:
            return self._net.get((security_id, product_type), 0)

    def vouched(self, security_id: str, product_type: str) -> int:
        with self._lock:
            return self._vouched.get((security_id, product_type), 0)

    def apply_fill(self, security_id: str, product_type: str, transaction_type: str,
                   quantity: int, *, ours: bool = True) -> None:
        if not quantity:
            return
        signed = quantity if transaction_type == "BUY" else -quantity
        with self._lock:
            key = (security_id, product_type)
            self._net[key] = self._net.get(key, 0) + signed
            if ours:
                self._vouched[key] = self._vouched.get(key, 0) + signed
