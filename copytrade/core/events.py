"""One shape for an order as a broker reports it, whatever the source (stream frame or REST).

`dhan/` turns wire data into `OrderReport`; `core/` and `engine/` never see Dhan's wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ReportSource(StrEnum):
    STREAM = "stream"  # an order_alert frame
    REST = "rest"  # the order book, a lookup, or a reconciliation read


class OrderStatus(StrEnum):
    """Dhan's order statuses (REST vocabulary; the stream's title-case words are
    upper-cased). A report may carry a word outside it: unknown words are kept as text
    and treated as open."""

    TRANSIT = "TRANSIT"
    PENDING = "PENDING"
    TRIGGERED = "TRIGGERED"  # super orders
    PART_TRADED = "PART_TRADED"
    TRADED = "TRADED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CLOSED = "CLOSED"  # super orders


S = OrderStatus
OPEN_STATUSES = frozenset({S.TRANSIT, S.PENDING, S.PART_TRADED, S.TRIGGERED})
TERMINAL_STATUSES = frozenset({S.TRADED, S.CANCELLED, S.REJECTED, S.EXPIRED, S.CLOSED})
ENDED_WITHOUT_FILL = frozenset({S.CANCELLED, S.EXPIRED, S.REJECTED})
# The first states in which the exchange has accepted the order: mirroring starts here.
EXCHANGE_ACCEPTED_STATUSES = frozenset({S.PENDING, S.PART_TRADED, S.TRADED, S.TRIGGERED})


@dataclass(frozen=True)
class OrderReport:
    order_id: str
    status: str  # upper case: TRANSIT, PENDING, PART_TRADED, TRADED, CANCELLED, ...
    exchange_segment: str  # NSE_EQ, NSE_FNO, BSE_EQ, MCX_COMM, ...
    security_id: str
    transaction_type: str  # BUY / SELL
    product_type: str  # CNC, INTRADAY, MARGIN, MTF, CO, BO
    order_type: str  # LIMIT, MARKET, STOP_LOSS, STOP_LOSS_MARKET
    validity: str  # DAY / IOC
    quantity: int  # total order quantity, in units
    traded_quantity: int
    price: float = 0.0
    trigger_price: float = 0.0
    disclosed_quantity: int = 0
    average_price: float = 0.0
    after_market_order: bool = False
    amo_time: str = ""  # PRE_OPEN / OPEN / OPEN_30 / OPEN_60 where reported; "" unknown
    correlation_id: str = ""
    reason: str = ""  # rejection reason (ReasonDescription / omsErrorDescription)
    symbol: str = ""
    lot_size: int | None = None  # frames carry it; REST rows do not
    leg: int = 1  # 1 entry, 2 stop-loss, 3 target
    # A BO's distances from its entry's fill, in rupees a unit (REST rows; frames lack them)
    bo_profit_value: float = 0.0
    bo_stop_loss_value: float = 0.0
    placed_in_app: bool = False  # Source "N": Dhan's web or app, not the API
    updated_at: datetime | None = None  # IST, from LastUpdatedTime / updateTime
    created_at: datetime | None = None  # IST, from OrderDateTime / createTime
    source: ReportSource = ReportSource.STREAM

    @property
    def remaining_quantity(self) -> int:
        return max(self.quantity - self.traded_quantity, 0)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def exchange_accepted(self) -> bool:
        return self.status in EXCHANGE_ACCEPTED_STATUSES

    @property
    def key(self) -> str:
        """This report's order leg: a BO's or CO's exit legs share the entry's order id."""
        return leg_key(self.order_id, self.leg)


ENTRY_LEG = 1
# Dhan's leg numbers (LegNo on the stream) and names (legName in REST and modify calls).
LEG_NAMES = {1: "ENTRY_LEG", 2: "STOP_LOSS_LEG", 3: "TARGET_LEG"}
BRACKET_PRODUCTS = frozenset({"BO", "CO"})


def leg_key(order_id: str, leg: int) -> str:
    """One order leg as a key: the order id for an entry (every plain order), else the id
    and the leg, so an exit leg's fills and state are never counted as its entry's."""
    return order_id if leg == ENTRY_LEG else f"{order_id}#{leg}"


def bracket_values_known(report: OrderReport) -> bool:
    """Whether a BO/CO entry carries what its follower's order needs: a BO its profit and
    stop-loss distances (REST rows carry them, the stream does not), a CO its trigger."""
    if report.product_type == "BO":
        return report.bo_profit_value > 0 and report.bo_stop_loss_value > 0
    if report.product_type == "CO":
        return report.trigger_price > 0
    return True


def book_order(report: OrderReport) -> tuple[float, float, int, str]:
    """The order in which a book's rows happened: last change, then creation, then the
    order id (Dhan's ids grow: shorter is older). Dhan lists its book newest first and
    stamps whole seconds, so two orders placed in the same second must not be applied in
    the book's order (a sell before the buy it closes)."""
    updated = report.updated_at.timestamp() if report.updated_at else 0.0
    created = report.created_at.timestamp() if report.created_at else 0.0
    return updated, created, len(report.order_id), report.order_id
