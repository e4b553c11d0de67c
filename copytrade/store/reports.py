"""Reads for `mappings` and `stats` (never writes): a day's leader orders, each follower's
mirrors of them (every attempt), and the exit legs of BO/CO orders, as MappingRows.

The queries run on the connection given (`store.db.open_reader`), so they read while
follow writes (WAL) and bind nothing globally.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from peewee import DatabaseError as PeeweeDatabaseError
from peewee import SqliteDatabase

from copytrade.core.events import ENTRY_LEG
from copytrade.core.report_math import MappingRow, weighted_average
from copytrade.errors import StoreError
from copytrade.store.models import LeaderLeg, LeaderOrder, MirrorOrder

# The leader event that decided an attempt: its place request records when the leader
# report arrived (wall-clock epoch seconds); an attempt never placed has none.
_MIRRORS = (
    "SELECT m.*, (SELECT CASE WHEN json_valid(i.request) THEN "
    "json_extract(i.request, '$.seen_at') END FROM intent i WHERE i.mirror_id = m.id AND "
    "i.action = 'PLACE' ORDER BY i.id LIMIT 1) AS seen_at "
    "FROM mirrororder m JOIN leaderorder l ON l.order_id = m.leader_order_id WHERE ")


def mapping_rows(db: SqliteDatabase, *, trading_date: str | None = None,
                 leader_order_id: str | None = None) -> list[MappingRow]:
    """The rows of one trading date (YYYY-MM-DD, IST) or of one leader order, in the order
    the leader orders were first seen; per leader order, by follower then leg. A leader
    order no follower has a mirror of is one row without a follower."""
    where, params = ("l.order_id = ?", (leader_order_id,)) if leader_order_id is not None \
        else ("l.trading_date = ?", (trading_date,))
    return rows_where(db, where, params)


def rows_where(db: SqliteDatabase, where: str, params: tuple) -> list[MappingRow]:
    """The rows of the leader orders `where` (an SQL condition over `l`, the leaderorder
    table; for the store's own queries) selects, as mapping_rows orders them."""
    leaders = _rows(db, LeaderOrder, f"SELECT l.* FROM leaderorder l WHERE {where} "
                    "ORDER BY l.first_seen_at, l.order_id", params)
    mirrors = [{**mirror, "remote": False} for mirror in _rows(
        db, MirrorOrder, _MIRRORS + where + " ORDER BY m.follower, m.leg, m.attempt", params)]
    legs = {(leg["order_id"], leg["leg"]): leg for leg in _rows(
        db, LeaderLeg, "SELECT g.* FROM leaderleg g JOIN leaderorder l ON l.order_id = "
        f"g.order_id WHERE {where}", params)}
    attempts: dict[str, dict[tuple[str, int, bool], list[dict]]] = {}
    for mirror in [*mirrors, *_remote_mirrors(db, where, params)]:
        attempts.setdefault(mirror["leader_order"], {}).setdefault(
            (mirror["follower"], mirror["leg"], mirror["remote"]), []).append(mirror)
    rows: list[MappingRow] = []
    for leader in leaders:
        mine = attempts.get(leader["order_id"], {})
        if not mine:
            rows.append(_leader_row(leader, legs, ENTRY_LEG))
        for (_follower, leg, _remote), tries in sorted(mine.items()):
            rows.append(_mirror_row(_leader_row(leader, legs, leg), tries))
    return rows


def _remote_mirrors(db: SqliteDatabase, where: str, params: tuple) -> list[dict[str, Any]]:
    """The remote followers' mirrors as their agents last reported them (remoteoutcome,
    store/results_queries.py), shaped like a mirror row; what an agent does not report
    (slices, when its broker accepted) is left empty."""
    names, rows = _query(db, "SELECT r.* FROM remoteoutcome r JOIN leaderorder l ON "
                         f"l.order_id = r.leader_order_id WHERE {where} "
                         "ORDER BY r.follower, r.leg, r.attempt", params)
    return [{**row, "leader_order": row["leader_order_id"], "legs": "{}", "seen_at": None,
             "shadow": False, "acked_at": None, "remote": True}
            for row in (dict(zip(names, values, strict=True)) for values in rows)]


def leader_order_date(db: SqliteDatabase, order_id: str) -> str | None:
    """The trading date of a recorded leader order; None when it is not recorded."""
    _names, rows = _query(db, "SELECT trading_date FROM leaderorder WHERE order_id = ?",
                          (order_id,))
    return rows[0][0] if rows else None


def followers_recorded(db: SqliteDatabase) -> list[str]:
    """Every follower with a mirror on record (its agent's, for a remote one), any day."""
    _names, rows = _query(db, "SELECT follower FROM mirrororder UNION "
                          "SELECT follower FROM remoteoutcome ORDER BY follower", ())
    return [row[0] for row in rows]


def _leader_row(leader: dict, legs: dict[tuple[str, int], dict], leg: int) -> MappingRow:
    common = dict(trading_date=leader["trading_date"], leader_order_id=leader["order_id"],
                  leg=leg, symbol=leader["symbol"] or leader["security_id"],
                  product=leader["product_type"], leader_seen_at=leader["first_seen_at"])
    exit_leg = legs.get((leader["order_id"], leg)) if leg != ENTRY_LEG else None
    if exit_leg is None:
        return MappingRow(**common, side=leader["transaction_type"],
                          order_type=leader["order_type"], leader_status=leader["status"],
                          leader_quantity=leader["quantity"],
                          leader_filled=leader["traded_quantity"],
                          leader_average=leader["average_price"] if leg == ENTRY_LEG else 0.0)
    # An exit leg closes the entry: the other side. Dhan gives no average for it.
    side = "SELL" if leader["transaction_type"] == "BUY" else "BUY"
    return MappingRow(**common, side=side, order_type=exit_leg["order_type"],
                      leader_status=exit_leg["status"], leader_quantity=exit_leg["quantity"],
                      leader_filled=exit_leg["traded_quantity"], leader_average=0.0)


def _mirror_row(leader: MappingRow, tries: list[dict]) -> MappingRow:
    """The latest attempt, with the fills of every attempt (a replaced order's)."""
    latest = tries[-1]
    order_ids = tuple(json.loads(latest["legs"] or "{}")) or tuple(
        filter(None, [latest["follower_order_id"]]))
    seen = latest["seen_at"]
    return replace(
        leader, side=latest["transaction_type"] or leader.side, follower=latest["follower"],
        follower_order_ids=order_ids,
        follower_order_type=latest["order_type"], state=latest["state"],
        quantity=latest["quantity"] + latest["carried_quantity"],
        filled=sum(t["filled_quantity"] for t in tries),
        follower_average=weighted_average((t["filled_quantity"], t["average_price"])
                                          for t in tries),
        attempt=latest["attempt"], reason=latest["reason"], reason_code=latest["reason_code"],
        shadow=latest["shadow"],
        seen_at=datetime.fromtimestamp(seen, UTC) if isinstance(seen, int | float) else None,
        acked_at=latest["acked_at"], send_lag_ms=latest["lag_ms"],
        fill_lag_ms=latest["fill_lag_ms"], remote=latest["remote"])


def _rows(db: SqliteDatabase, model: type, sql: str, params: tuple) -> list[dict[str, Any]]:
    """Rows as dicts of what the model's fields hold (datetimes, booleans); columns the
    model does not know (computed ones) as SQLite gives them."""
    names, rows = _query(db, sql, params)
    fields = model._meta.columns
    return [{(fields[name].name if name in fields else name):
             (fields[name].python_value(value) if name in fields else value)
             for name, value in zip(names, row, strict=True)} for row in rows]


def _query(db: SqliteDatabase, sql: str, params: Iterable[Any]) -> tuple[list[str], list]:
    """Column names and every row; a damaged database is a StoreError (exit 7)."""
    try:
        cursor = db.execute_sql(sql, tuple(params))
        return [column[0] for column in cursor.description], cursor.fetchall()
    except (PeeweeDatabaseError, sqlite3.DatabaseError) as exc:
        raise StoreError(f"cannot read the database: {exc}") from None
