"""Leader order events as the bus carries them (issue 12): subject, Nats-Msg-Id, payload.

Pure: the same recorded change always gives the same subject, id and bytes, so a publish
repeated after a crash or a failed attempt is dropped by JetStream's duplicate window,
and an agent can tell a repeat by (order id, seq) as well. No clock anywhere.

    subject   <prefix>.leader.<trading date YYYYMMDD>.<leader order id>
    msg id    <trading date YYYYMMDD>:<leader order id>:<seq>
    payload   {"v": 1, "trading_date": "2026-11-30", "order_id": "...", "seq": 3,
               "source": "stream" | "rest", "position_before": -50 | null,
               "order": {every OrderReport field}}

The payload holds the leader's order only: no token, no account secret, no follower.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from datetime import date, datetime
from enum import Enum
from typing import Any

from copytrade.core.events import OrderReport, ReportSource

PAYLOAD_VERSION = 1
MSG_ID_HEADER = "Nats-Msg-Id"
# Characters a NATS subject token cannot hold as themselves (separator, wildcards),
# and the escape character itself: written as %XX so every id maps to one token.
_SUBJECT_UNSAFE = frozenset(".*>% \t\r\n")


@dataclass(frozen=True)
class LeaderChange:
    """One recorded change of a leader order (an entry or one of its exit legs), as the
    store gives it: where it sits on the audit trail, its per-order sequence number
    (1, 2, ... over the order's changes, legs included) and the order as recorded."""

    trail_id: int
    trading_date: date
    seq: int
    report: OrderReport
    # The leader's net position in the instrument before the order (an agent sizes exits
    # from it); None for an order recorded before it was kept.
    position_before: int | None = None

    @property
    def order_id(self) -> str:
        return self.report.order_id


def date_token(trading_date: date) -> str:
    return f"{trading_date:%Y%m%d}"


def subject_token(order_id: str) -> str:
    """The order id as one subject token: `.`, `*`, `>`, `%` and blanks escaped (%2E);
    Dhan's numeric ids pass unchanged."""
    return "".join(f"%{ord(c):02X}" if c in _SUBJECT_UNSAFE else c for c in order_id)


def leader_subject(prefix: str, trading_date: date, order_id: str) -> str:
    return f"{prefix}.leader.{date_token(trading_date)}.{subject_token(order_id)}"


def leader_filter(prefix: str) -> str:
    """What the stream captures and each agent's consumer reads: every leader event."""
    return f"{prefix}.leader.>"


def msg_id(trading_date: date, order_id: str, seq: int) -> str:
    """The Nats-Msg-Id: a pure function of the change, never of when it is sent."""
    if seq < 1:
        raise ValueError(f"a change's sequence number starts at 1, not {seq}")
    return f"{date_token(trading_date)}:{order_id}:{seq}"


def change_msg_id(change: LeaderChange) -> str:
    return msg_id(change.trading_date, change.order_id, change.seq)


def change_subject(prefix: str, change: LeaderChange) -> str:
    return leader_subject(prefix, change.trading_date, change.order_id)


def order_snapshot(report: OrderReport) -> dict[str, Any]:
    """Every field of the report, JSON-safe: times as ISO 8601 text with their offset (or
    None), enums as their value, text made valid UTF-8, a number that is not finite as
    None."""
    return {f.name: _json_safe(getattr(report, f.name)) for f in fields(report)}


def event_payload(change: LeaderChange) -> dict[str, Any]:
    report = change.report
    source = report.source if report.source in tuple(ReportSource) else ReportSource.REST
    return {"v": PAYLOAD_VERSION, "trading_date": change.trading_date.isoformat(),
            "order_id": report.order_id, "seq": change.seq, "source": str(source),
            "position_before": change.position_before, "order": order_snapshot(report)}


def event_bytes(change: LeaderChange) -> bytes:
    """The payload as sent: compact JSON, keys sorted (the same change, the same bytes)."""
    return json.dumps(event_payload(change), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")


def _json_safe(value: Any) -> Any:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    # a lone surrogate (fault 23) cannot be encoded: replaced, never sent as is
    return str(value).encode("utf-8", "replace").decode("utf-8")
