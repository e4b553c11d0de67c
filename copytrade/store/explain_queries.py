"""Reads for `copytrade explain`: everything recorded about one leader order, as the facts
core/story.py assembles (never writes; the database is opened read-only, never created)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from peewee import OperationalError as PeeweeOperationalError
from peewee import SqliteDatabase, fn

from copytrade.core.story import (
    RESUMING_KINDS,
    STOPPING_KINDS,
    AuditFacts,
    IntentFacts,
    LeaderFacts,
    LegFacts,
    MirrorFacts,
    OrderRecord,
    ReportFacts,
    TransitionFacts,
)
from copytrade.store.db import open_reader
from copytrade.store.models import (
    AuditEvent,
    Intent,
    LeaderLeg,
    LeaderOrder,
    MirrorOrder,
    StateEvent,
    database,
)
from copytrade.store.results_queries import remote_outcomes
from copytrade.store.trail import trail_for_leader_order

# What happened to the streams and the loops around an order may explain a late mirror.
STREAM_KINDS = ("stream_closed", "stream_stalled", "stream_silent", "stream_heard",
                "degraded", "recovered", "report_failed", "instruments_stale")
CONTEXT_BEFORE = timedelta(minutes=1)
CONTEXT_LIMIT = 50
SOURCE_WORDS = {"stream": "stream frame", "rest": "REST read"}
UNRECORDED = "unrecorded source"
COPIED_NOTE = ("a report from an unrecorded source was copied when the audit trail began "
               "(the order's state then, not each report before it)")


def open_for_reading(path: Path) -> SqliteDatabase:
    """The home's database, read-only, with the models bound to it; StoreError (exit 7)
    when there is none: a read never creates one."""
    db = open_reader(path)
    database.initialize(db)
    return db


def order_record(db: SqliteDatabase, order_id: str) -> OrderRecord | None:
    """Everything recorded about one leader order; None when it is not in the record."""
    row = LeaderOrder.get_or_none(LeaderOrder.order_id == order_id)
    if row is None:
        return None
    leader = _leader(row)
    mirrors = tuple(_mirror(m) for m in MirrorOrder.select()
                    .where(MirrorOrder.leader_order == order_id)
                    .order_by(MirrorOrder.follower, MirrorOrder.leg, MirrorOrder.attempt))
    mirror_ids = [m.id for m in mirrors]
    mirrors += _remote_mirrors(db, order_id)  # remote followers' outcomes (their agents')
    intents = tuple(_intent(i) for i in Intent.select().where(Intent.mirror.in_(mirror_ids))
                    .order_by(Intent.id)) if mirror_ids else ()
    transitions = tuple(_transition(e) for e in StateEvent.select()
                        .where(StateEvent.mirror.in_(mirror_ids))
                        .order_by(StateEvent.id)) if mirror_ids else ()
    audits = tuple(_audit(a) for a in AuditEvent.select()
                   .where(AuditEvent.leader_order_id == order_id).order_by(AuditEvent.id))
    end = _last_activity(leader, transitions, intents, audits)
    trail = _trail_reports(db, order_id)
    return OrderRecord(
        leader=leader, legs=tuple(_leg(g) for g in LeaderLeg.select()
                                  .where(LeaderLeg.order_id == order_id)
                                  .order_by(LeaderLeg.leg)),
        mirrors=mirrors, intents=intents, transitions=transitions, audits=audits,
        context=_context(leader.first_seen_at - CONTEXT_BEFORE, end),
        reports=trail or _remembered_reports(leader), reports_from_trail=bool(trail),
        notes=(COPIED_NOTE,) if any(r.source == UNRECORDED for r in trail) else ())


def recorded_summary() -> tuple[int, str | None]:
    """How many leader orders are recorded, and the latest trading date: for the one line
    that says an id is not in the record."""
    count = LeaderOrder.select().count()
    latest = LeaderOrder.select(fn.MAX(LeaderOrder.trading_date)).scalar()
    return count, latest


# ---- rows -> facts -----------------------------------------------------------------------


def _leader(row: LeaderOrder) -> LeaderFacts:
    return LeaderFacts(
        order_id=row.order_id, trading_date=row.trading_date, status=row.status,
        exchange_segment=row.exchange_segment, security_id=row.security_id,
        symbol=row.symbol, transaction_type=row.transaction_type,
        product_type=row.product_type, order_type=row.order_type, validity=row.validity,
        quantity=row.quantity, traded_quantity=row.traded_quantity, price=row.price,
        trigger_price=row.trigger_price, average_price=row.average_price,
        lot_size=row.lot_size, placed_in_app=row.placed_in_app,
        after_market_order=row.after_market_order, correlation_id=row.correlation_id,
        reason=row.reason, first_seen_at=row.first_seen_at,
        leader_updated_at=row.leader_updated_at, traded_at=row.traded_at)


def _leg(row: LeaderLeg) -> LegFacts:
    return LegFacts(row.leg, row.status, row.order_type, row.quantity, row.traded_quantity,
                    row.price, row.trigger_price, row.first_price, row.first_trigger_price,
                    row.updated_at)


def _mirror(row: MirrorOrder) -> MirrorFacts:
    legs = _json(row.legs)
    ids = [row.follower_order_id] if row.follower_order_id else []
    ids += [oid for oid in legs if oid not in ids]
    return MirrorFacts(
        id=row.id, follower=row.follower, leg=row.leg, attempt=row.attempt,
        correlation_id=row.correlation_id, follower_order_ids=tuple(ids), state=row.state,
        quantity=row.quantity, carried_quantity=row.carried_quantity,
        filled_quantity=row.filled_quantity, order_type=row.order_type, price=row.price,
        trigger_price=row.trigger_price, sliced=row.sliced, shadow=row.shadow,
        leader_position_before=row.leader_position_before,
        follower_position_before=row.follower_position_before,
        modifications=row.modifications, reason=row.reason, reason_code=row.reason_code,
        created_at=row.created_at, submitted_at=row.submitted_at, lag_ms=row.lag_ms,
        fill_lag_ms=row.fill_lag_ms)


def _remote_mirrors(db: SqliteDatabase, order_id: str) -> tuple[MirrorFacts, ...]:
    """What agents reported of their followers' mirrors of this order (the latest state of
    each attempt; their intents and transitions stay in the agents' own records). Ids are
    negative: no intent or transition of this store is theirs."""
    try:
        rows = remote_outcomes(db, order_id)
    except (sqlite3.OperationalError, PeeweeOperationalError):
        return ()  # a store from before schema 9
    return tuple(MirrorFacts(
        id=-index, follower=row["follower"], leg=row["leg"], attempt=row["attempt"],
        correlation_id=row["correlation_id"],
        follower_order_ids=(row["follower_order_id"],) if row["follower_order_id"] else (),
        state=row["state"], quantity=row["quantity"],
        carried_quantity=row["carried_quantity"], filled_quantity=row["filled_quantity"],
        order_type=row["order_type"], price=row["price"], trigger_price=row["trigger_price"],
        sliced=False, shadow=False, leader_position_before=0, follower_position_before=0,
        modifications=0, reason=row["reason"], reason_code=row["reason_code"],
        created_at=_remote_time(row["received_at"]), submitted_at=None,
        lag_ms=row["lag_ms"], fill_lag_ms=row["fill_lag_ms"], remote=True)
        for index, row in enumerate(rows, start=1))


def _remote_time(text: object) -> datetime:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return datetime.min


def _intent(row: Intent) -> IntentFacts:
    return IntentFacts(row.id, row.mirror_id, row.action, row.status, _json(row.request),
                       row.outcome or "", row.created_at, row.completed_at)


def _transition(row: StateEvent) -> TransitionFacts:
    return TransitionFacts(row.mirror_id, row.from_state, row.to_state, row.trigger, row.at,
                           row.detail or "")


def _audit(row: AuditEvent) -> AuditFacts:
    return AuditFacts(row.id, row.at, row.kind, row.follower, row.leader_order_id,
                      row.message)


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:  # a damaged row: shown as nothing rather than not at all
        return {}
    return value if isinstance(value, dict) else {}


# ---- around the order --------------------------------------------------------------------


def _last_activity(leader: LeaderFacts, *groups: tuple) -> datetime:
    moments = [leader.first_seen_at, leader.traded_at]
    for group in groups:
        for item in group:
            moments += [getattr(item, name, None) for name in ("at", "created_at",
                                                                "completed_at")]
    return max(m for m in moments if m is not None)


def _context(start: datetime, end: datetime) -> tuple[AuditFacts, ...]:
    """Rows for no leader order around it: the streams' and loops' news in the window,
    and each follower's last stop or resume up to its end (a follower stopped before the
    order came is why it has no mirror)."""
    streams = (AuditEvent.select()
               .where(AuditEvent.leader_order_id.is_null(), AuditEvent.kind.in_(STREAM_KINDS),
                      AuditEvent.at.between(start, end))
               .order_by(AuditEvent.id).limit(CONTEXT_LIMIT))
    accounts = (AuditEvent.select()
                .where(AuditEvent.leader_order_id.is_null(),
                       AuditEvent.kind.in_(tuple(STOPPING_KINDS | RESUMING_KINDS)),
                       AuditEvent.at <= end)
                .order_by(AuditEvent.id.desc()).limit(CONTEXT_LIMIT))
    latest: dict[str, AuditEvent] = {}
    for row in accounts:  # newest first: the first per follower is its last word
        if row.follower and row.follower not in latest:
            latest[row.follower] = row
    rows = list(streams) + [row for row in accounts if row.at >= start
                            or latest.get(row.follower) is row]
    unique = {row.id: row for row in rows}
    return tuple(_audit(row) for _, row in sorted(unique.items()))


def _trail_reports(db: SqliteDatabase, order_id: str) -> tuple[ReportFacts, ...]:
    """Each change of the leader order (and its legs) as the audit trail recorded it, with
    what reported it: a stream frame or a REST read. Empty in a store without the trail."""
    try:
        rows = trail_for_leader_order(db, order_id)
    except (PeeweeOperationalError, sqlite3.OperationalError):  # no trail table (yet)
        return ()
    reports = []
    for row in rows:
        data = row.data if isinstance(row.data, dict) else {}
        if row.kind == "leader_order":
            source = SOURCE_WORDS.get(str(data.get("source")), UNRECORDED)
            reports.append(ReportFacts(row.at, source, str(data.get("status", "")),
                                       row.message))
        elif row.kind == "leader_leg":
            reports.append(ReportFacts(row.at, f"leg {data.get('leg', '?')}",
                                       str(data.get("status", "")), row.message))
    return tuple(reports)


def _remembered_reports(leader: LeaderFacts) -> tuple[ReportFacts, ...]:
    """Without a trail: the moments the leader-order row keeps."""
    reports = [ReportFacts(leader.first_seen_at, "record", "first seen",
                           "when copytrade first received the order (frame or book read)")]
    if leader.traded_at is not None:
        reports.append(ReportFacts(leader.traded_at, "record", "TRADED",
                                   "first seen fully traded"))
    if leader.leader_updated_at is not None:
        reports.append(ReportFacts(
            leader.leader_updated_at, "leader's broker", f"{leader.status} (latest)",
            f"traded {leader.traded_quantity}/{leader.quantity}: its last change, by the "
            "leader's broker's clock (to the second)", our_clock=False))
    return tuple(reports)
