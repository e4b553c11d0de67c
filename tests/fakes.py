"""An in-memory broker for unit tests: the methods of `copytrade.dhan.rest.DhanAccount` the
engine calls, answering with the same `Outcome`s (order reports as `OrderReport`, place as
a list of order ids, modify / cancel / positions as Dhan's JSON), with no network.

Failures are injected per method (`fail`): the next calls answer with the outcome given,
optionally after the call took effect (`applied=True`: an order accepted whose reply was
lost). What happens outside copytrade (a user in Dhan's app, the exchange) has its own
methods: `app_cancel`, `app_modify`, `fill`, `reject`, `add`.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from copytrade.core.events import OrderReport, ReportSource
from copytrade.dhan.rest import Outcome, OutcomeKind, PlaceRequest

T0 = datetime(2025, 1, 6, 9, 15, 0)
_DEFINITIVE = Outcome(OutcomeKind.REFUSED, code="DH-906", message="order is not open")


@dataclass(frozen=True)
class _Failure:
    outcome: Outcome
    applied: bool  # the call took effect before this answer


class FakeBroker:
    """One account's orders in memory. Thread-safe: a worker and a test may share it."""

    def __init__(self, client_id: str = "1000000001", *, initial_status: str = "PENDING",
                 slice_limit: int | None = None) -> None:
        self.client_id = client_id
        self.initial_status = initial_status
        self.slice_limit = slice_limit  # units per slice when placed with slice_order
        self.orders: dict[str, OrderReport] = {}  # in the order placed
        self.calls: list[tuple[Any, ...]] = []
        self.position_rows: list[dict] | None = None  # None: computed from the fills
        self.on_bad_row = lambda reason, excerpt: None  # DhanAccount's hook; never fires
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._ids = itertools.count(1)
        self._ticks = itertools.count(1)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"FakeBroker({self.client_id}, {len(self.orders)} orders)"

    # ---- injection -------------------------------------------------------------------------

    def fail(self, method: str, kind: OutcomeKind | Outcome, *, times: int = 1,
             code: str = "", message: str = "", applied: bool = False) -> None:
        """The next `times` calls of `method` answer `kind` (or the Outcome given)."""
        outcome = kind if isinstance(kind, Outcome) else Outcome(kind, code=code,
                                                                 message=message)
        with self._lock:
            self._failures[method].extend(_Failure(outcome, applied) for _ in range(times))

    def _failure(self, method: str) -> _Failure | None:
        queued = self._failures.get(method)
        return queued.popleft() if queued else None

    def count(self, method: str) -> int:
        return sum(1 for call in self.calls if call[0] == method)

    # ---- state-changing calls ------------------------------------------------------------

    def place(self, request: PlaceRequest, correlation_id: str, *, slice_order: bool) -> Outcome:
        with self._lock:
            self.calls.append(("place", request, correlation_id, slice_order))
            failure = self._failure("place")
            if failure is not None and not failure.applied:
                return failure.outcome
            ids = [self._new(request, quantity, correlation_id)
                   for quantity in self._slices(request.quantity, slice_order)]
            return failure.outcome if failure is not None else Outcome(OutcomeKind.SUCCESS, ids)

    def modify(self, order_id: str, *, order_type: str, quantity: int, price: float,
               trigger_price: float, disclosed_quantity: int, validity: str,
               leg_name: str = "ENTRY_LEG") -> Outcome:
        with self._lock:
            self.calls.append(("modify", order_id, quantity, price))
            failure = self._failure("modify")
            if failure is not None and not failure.applied:
                return failure.outcome
            current = self.orders.get(order_id)
            if current is None or current.is_terminal:
                return failure.outcome if failure is not None else _DEFINITIVE
            self._update(order_id, order_type=order_type, quantity=quantity, price=price,
                         trigger_price=trigger_price, disclosed_quantity=disclosed_quantity,
                         validity=validity)
            return failure.outcome if failure is not None else self._ack(order_id)

    def cancel(self, order_id: str) -> Outcome:
        with self._lock:
            self.calls.append(("cancel", order_id))
            failure = self._failure("cancel")
            if failure is not None and not failure.applied:
                return failure.outcome
            current = self.orders.get(order_id)
            if current is None or current.is_terminal:
                return failure.outcome if failure is not None else _DEFINITIVE
            self._update(order_id, status="CANCELLED")
            return failure.outcome if failure is not None else self._ack(order_id)

    # ---- reads -----------------------------------------------------------------------------

    def order_book(self) -> Outcome:
        """Newest first, as Dhan lists it."""
        with self._lock:
            self.calls.append(("order_book",))
            failure = self._failure("order_book")
            if failure is not None:
                return failure.outcome
            return Outcome(OutcomeKind.SUCCESS, list(reversed(self.orders.values())))

    def order(self, order_id: str, leg: int = 1) -> Outcome:
        with self._lock:
            self.calls.append(("order", order_id))
            failure = self._failure("order")
            if failure is not None:
                return failure.outcome
            found = self.orders.get(order_id)
            if found is None:
                return Outcome(OutcomeKind.NOT_FOUND, code="DH-906", message="no such order")
            return Outcome(OutcomeKind.SUCCESS, found)

    def order_by_correlation(self, correlation_id: str) -> Outcome:
        """Through the order book, as DhanAccount does (slices share the id). A failure
        injected for "order_by_correlation" answers before the book is read (a book that
        lags a new order: `fail("order_by_correlation", OutcomeKind.NOT_FOUND)`)."""
        with self._lock:
            self.calls.append(("order_by_correlation", correlation_id))
            failure = self._failure("order_by_correlation")
            if failure is not None:
                return failure.outcome
        book = self.order_book()
        if not book.ok:
            return book
        found = [r for r in book.data if r.correlation_id == correlation_id]
        return Outcome(OutcomeKind.SUCCESS, found) if found else Outcome(OutcomeKind.NOT_FOUND)

    def positions(self) -> Outcome:
        with self._lock:
            self.calls.append(("positions",))
            failure = self._failure("positions")
            if failure is not None:
                return failure.outcome
            rows = self.position_rows if self.position_rows is not None else self._net_rows()
            return Outcome(OutcomeKind.SUCCESS, [dict(row) for row in rows])

    def trade_book(self) -> Outcome:
        return Outcome(OutcomeKind.SUCCESS, [])

    def fund_limits(self) -> Outcome:
        return Outcome(OutcomeKind.SUCCESS, {"availabelBalance": 1_000_000.0})

    def available_funds(self) -> float | None:
        return 1_000_000.0

    def last_price(self, exchange_segment: str, security_id: str) -> float | None:
        return None

    # ---- what happens outside copytrade ------------------------------------------------

    def add(self, report: OrderReport) -> str:
        """An order that is simply there (placed by another run, or by the user)."""
        with self._lock:
            self.orders[report.order_id] = replace(report, updated_at=self._tick())
            return report.order_id

    def app_cancel(self, order_id: str) -> None:
        with self._lock:
            self._update(order_id, status="CANCELLED")

    def app_modify(self, order_id: str, **changes: Any) -> None:
        with self._lock:
            self._update(order_id, **changes)

    def fill(self, order_id: str, quantity: int | None = None) -> None:
        """Trade `quantity` more units (all that is left by default); a fill after a
        cancel is the exchange's late report, and is allowed."""
        with self._lock:
            current = self.orders[order_id]
            traded = min(current.quantity, current.traded_quantity + (
                current.remaining_quantity if quantity is None else quantity))
            status = "TRADED" if traded == current.quantity else "PART_TRADED"
            self._update(order_id, traded_quantity=traded, status=status,
                         average_price=current.price)

    def reject(self, order_id: str, reason: str = "RMS: margin exceeds") -> None:
        with self._lock:
            self._update(order_id, status="REJECTED", reason=reason)

    # ---- inside ------------------------------------------------------------------------

    def _slices(self, quantity: int, slice_order: bool) -> list[int]:
        if not slice_order or not self.slice_limit or quantity <= self.slice_limit:
            return [quantity]
        full, rest = divmod(quantity, self.slice_limit)
        return [self.slice_limit] * full + ([rest] if rest else [])

    def _new(self, request: PlaceRequest, quantity: int, correlation_id: str) -> str:
        order_id = f"{self.client_id[-3:]}{next(self._ids):06d}"
        at = self._tick()
        self.orders[order_id] = OrderReport(
            order_id=order_id, status=self.initial_status,
            exchange_segment=request.exchange_segment, security_id=request.security_id,
            transaction_type=request.transaction_type, product_type=request.product_type,
            order_type=request.order_type, validity=request.validity, quantity=quantity,
            traded_quantity=0, price=request.price, trigger_price=request.trigger_price,
            disclosed_quantity=request.disclosed_quantity,
            after_market_order=request.after_market_order, correlation_id=correlation_id,
            updated_at=at, created_at=at, source=ReportSource.REST)
        return order_id

    def _update(self, order_id: str, **changes: Any) -> None:
        self.orders[order_id] = replace(self.orders[order_id], updated_at=self._tick(),
                                        **changes)

    def _tick(self) -> datetime:
        return T0 + timedelta(seconds=next(self._ticks))

    def _ack(self, order_id: str) -> Outcome:
        current = self.orders[order_id]
        return Outcome(OutcomeKind.SUCCESS, {"orderId": order_id,
                                             "orderStatus": current.status})

    def _net_rows(self) -> list[dict]:
        net: dict[tuple[str, str, str], int] = defaultdict(int)
        for order in self.orders.values():
            sign = 1 if order.transaction_type == "BUY" else -1
            key = (order.security_id, order.product_type, order.exchange_segment)
            net[key] += sign * order.traded_quantity
        return [{"securityId": security_id, "productType": product,
                 "exchangeSegment": segment, "netQty": quantity}
                for (security_id, product, segment), quantity in net.items() if quantity]
