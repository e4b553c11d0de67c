"""Merging reports of one leader order into its latest known state, whatever their order.

Frames repeat, arrive late and overtake each other; REST reads may be older than the
stream. Traded quantity and status only move forward whatever the order of arrival, and
the order's parameters come from the newest report by (update time, progress); between
reports of the same second, from the one whose parameters were not reported before, or
from two REST reads in a row that agree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from copytrade.core.events import TERMINAL_STATUSES, OrderReport, OrderStatus, ReportSource

_STATUS_RANK = {OrderStatus.TRANSIT: 0, OrderStatus.PENDING: 1, OrderStatus.TRIGGERED: 2,
                OrderStatus.PART_TRADED: 3}
TERMINAL_RANK = 4


def status_rank(status: str) -> int:
    """How far an order has come; every terminal status ranks last."""
    return _STATUS_RANK.get(status, TERMINAL_RANK if status in TERMINAL_STATUSES else 1)


def report_version(report: OrderReport) -> tuple:
    stamp = report.updated_at.isoformat() if report.updated_at else ""
    return (stamp, status_rank(report.status), report.traded_quantity)


def order_parameters(report: OrderReport) -> tuple:
    """What a modification can change, as the stream and REST both report it. Left out:
    the disclosed quantity (Dhan's stream has shown a plain order's DiscQuantity equal to
    its Quantity where REST says 0; comparing it made every periodic read look like news
    and reconnect the stream), and the advisory text and times (remarks, exchange time,
    expiry) each dialect fills its own way. No follower call depends on those alone."""
    return (report.quantity, report.price, report.trigger_price, report.order_type,
            report.validity)


@dataclass(frozen=True)
class Merged:
    report: OrderReport  # the merged state, in the report's shape
    version: tuple
    changed: bool  # anything new compared to what was known before
    # Every set of order parameters reported so far: on a tie, only an unseen one is news.
    seen: frozenset[tuple] = frozenset()
    # Parameters a REST read showed on a tie, already seen, unlike the merged state: a
    # second REST read showing them again is believed (see merge).
    rest_disagrees: tuple | None = None


def merge(known: Merged | None, incoming: OrderReport) -> Merged:
    incoming_version = report_version(incoming)
    parameters = order_parameters(incoming)
    if known is None:
        return Merged(incoming, incoming_version, True, frozenset({parameters}))
    current = known.report
    # Dhan's times have whole seconds, so a modification often ties with the report before
    # it. On a tie, parameters never reported before are the modification; parameters
    # already seen are a stale frame (repeated or overtaken) or a REST snapshot lagging the
    # stream, and must not undo it.
    tie = incoming_version == known.version
    newer = incoming_version > known.version or (tie and parameters not in known.seen)
    # A modification back to parameters seen earlier in the same second (A -> B -> A)
    # looks stale. A REST snapshot that lags the stream shows the new state by its next
    # read; one that still shows those parameters on a second read is the truth.
    disputed = (tie and not newer and incoming.source is ReportSource.REST
                and parameters != order_parameters(current))
    rest_disagrees = parameters if disputed else None
    if disputed and known.rest_disagrees == parameters:
        newer, rest_disagrees = True, None
    base = incoming if newer else current
    status = _forward_status(current, incoming)
    traded = max(current.traded_quantity, incoming.traded_quantity)
    merged = replace(
        base,
        status=status,
        traded_quantity=traded,
        average_price=incoming.average_price if incoming.traded_quantity >= traded
        else current.average_price,
        lot_size=base.lot_size or current.lot_size or incoming.lot_size,
        reason=base.reason or current.reason or incoming.reason,
        amo_time=base.amo_time or current.amo_time or incoming.amo_time,  # REST only, maybe
        placed_in_app=current.placed_in_app or incoming.placed_in_app,
        # a BO's values come with REST rows only; a frame after them must not erase them
        bo_profit_value=base.bo_profit_value or current.bo_profit_value
        or incoming.bo_profit_value,
        bo_stop_loss_value=base.bo_stop_loss_value or current.bo_stop_loss_value
        or incoming.bo_stop_loss_value,
    )
    version = max(known.version, incoming_version)
    return Merged(merged, version, merged != current, known.seen | {parameters},
                  rest_disagrees)


def _forward_status(current: OrderReport, incoming: OrderReport) -> str:
    """Statuses never move backwards; between two terminal words the newer report wins
    (a cancel that lost the race to a fill reports TRADED later)."""
    current_rank, incoming_rank = status_rank(current.status), status_rank(incoming.status)
    if incoming_rank > current_rank:
        return incoming.status
    if incoming_rank == current_rank == TERMINAL_RANK:
        if incoming.traded_quantity >= incoming.quantity > 0:
            return OrderStatus.TRADED
        if current.traded_quantity >= current.quantity > 0:
            return OrderStatus.TRADED
        return max(current, incoming, key=report_version).status
    return current.status
