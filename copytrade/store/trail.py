"""The audit trail: one append-only table, `trail`, with one monotonic id (the export cursor).

SQLite triggers write a trail row in the same statement as each write they watch: every
audit event, intent committed (its request) and completed (its status and outcome), mirror
state transition, and every change of a leader order or leg as recorded (with whether a
stream frame or a REST read said so). Triggers, not calls in the write
paths: nothing that writes those tables (the hot path, cancel-mirror, a migration, a tool)
can leave a write off the record, and the row commits or rolls back with the write.

Each row is hash-chained: hash = sha256 over the previous row's hash and the row's content
(`row_hash`, the SQL function `trail_hash` registered on every connection copytrade opens;
a connection without it cannot write the watched tables at all). Ids come from the
table's AUTOINCREMENT sequence, so a removed row leaves a gap even after later appends.
`verify_chain` names the first row altered, inserted or removed. What it cannot see: a
rewrite of the whole chain from some row on, with the sequence edited to match (no key is
secret); an export's `hash` column kept elsewhere anchors against that.

Writers are serialised by SQLite (one writer; copytrade's are IMMEDIATE transactions), so
the head a trigger reads is the head its row follows, whichever process writes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from copytrade.errors import TamperedError

GENESIS = "0" * 64  # the prev_hash of row 1
HASH_FUNCTION = "trail_hash"
FIELDS = ("at", "kind", "leader_order_id", "follower", "mirror_id", "message", "data")
# Kinds the trail writes itself; every other kind is an audit event's own.
OWN_KINDS = frozenset({"leader_order", "leader_leg", "intent", "intent_done", "transition",
                       "trail_started"})


def row_hash(prev_hash: Any, *content: Any) -> str:
    """sha256 (hex) over the previous hash and a row's content, FIELDS in order, each as
    its text (what SQLite stores) length-prefixed, so no two rows encode alike; NULL is
    `~`. Called by SQLite for every row written: kept to a few microseconds."""
    parts = []
    for value in (prev_hash, *content):
        if value is None:
            parts.append("~")
        else:
            text = str(value)
            parts.append(f"{len(text)}:{text}")
    return hashlib.sha256(",".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def register(conn: sqlite3.Connection) -> None:
    """Make `trail_hash` available on a plain sqlite3 connection that writes the store."""
    conn.create_function(HASH_FUNCTION, 1 + len(FIELDS), row_hash, deterministic=True)


# ---- what each watched write records ---------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    name: str  # of its trigger: trail_<name>
    table: str
    event: str  # INSERT, or UPDATE OF columns
    row: dict[str, str]  # trail column -> SQL over NEW (and OLD for an update)
    when: str = ""  # the trigger's WHEN
    backfill: str | None = None  # which existing rows a migration copies (NEW = each row)


def _mirror(column: str) -> str:
    return f"(SELECT {column} FROM mirrororder WHERE id = NEW.mirror_id)"


def _changed(columns: tuple[str, ...]) -> str:
    return " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns)


_SOURCE_TEXT = ("CASE NEW.source WHEN 'stream' THEN 'the stream' WHEN 'rest' THEN "
                "'a REST read' ELSE 'an unrecorded source' END")
_LEADER_WATCHED = ("status", "quantity", "traded_quantity", "price", "trigger_price",
                   "order_type")
_LEADER_DATA = ("json_object('status', NEW.status, 'quantity', NEW.quantity, "
                "'traded_quantity', NEW.traded_quantity, 'price', NEW.price, "
                "'trigger_price', NEW.trigger_price, 'order_type', NEW.order_type, "
                "'transaction_type', NEW.transaction_type, 'product_type', NEW.product_type, "
                "'exchange_segment', NEW.exchange_segment, 'security_id', NEW.security_id, "
                "'average_price', NEW.average_price, 'reason', NEW.reason, "
                "'source', NEW.source, 'first', {first})")
_LEADER_TEXT = ("printf('%s %s %d %s %s @ %s, traded %d, from %s', NEW.status, "
                "NEW.transaction_type, NEW.quantity, COALESCE(NULLIF(NEW.symbol, ''), "
                f"NEW.security_id), NEW.order_type, NEW.price, NEW.traded_quantity, "
                f"{_SOURCE_TEXT})")
_LEADER_ROW = dict(at="COALESCE(NEW.recorded_at, NEW.first_seen_at)", kind="'leader_order'",
                   leader_order_id="NEW.order_id", follower="NULL", mirror_id="NULL")
_LEG_WATCHED = ("status", "quantity", "traded_quantity", "price", "trigger_price", "order_type")
_LEG_ROW = dict(
    at="NEW.updated_at", kind="'leader_leg'", leader_order_id="NEW.order_id", follower="NULL",
    mirror_id="NULL",
    message="printf('leg %d: %s %s %d @ %s, trigger %s, traded %d', NEW.leg, NEW.status, "
            "NEW.order_type, NEW.quantity, NEW.price, NEW.trigger_price, NEW.traded_quantity)",
    data="json_object('leg', NEW.leg, 'status', NEW.status, 'order_type', NEW.order_type, "
         "'quantity', NEW.quantity, 'traded_quantity', NEW.traded_quantity, 'price', "
         "NEW.price, 'trigger_price', NEW.trigger_price)")

SOURCES: tuple[_Source, ...] = (
    _Source("leader_seen", "leaderorder", "INSERT", {
        **_LEADER_ROW, "message": f"'first seen: ' || {_LEADER_TEXT}",
        "data": _LEADER_DATA.format(first="json('true')")}, backfill="1"),
    _Source("leader_changed", "leaderorder", "UPDATE OF " + ", ".join(_LEADER_WATCHED), {
        **_LEADER_ROW,
        "message": f"'changed: ' || {_LEADER_TEXT} || printf(' (was %s %d, traded %d, @ %s)', "
                   "OLD.status, OLD.quantity, OLD.traded_quantity, OLD.price)",
        "data": _LEADER_DATA.format(first="json('false')")}, when=_changed(_LEADER_WATCHED)),
    _Source("leg_seen", "leaderleg", "INSERT", _LEG_ROW, backfill="1"),
    _Source("leg_changed", "leaderleg", "UPDATE OF " + ", ".join(_LEG_WATCHED), _LEG_ROW,
            when=_changed(_LEG_WATCHED)),
    _Source("intent", "intent", "INSERT", dict(
        at="NEW.created_at", kind="'intent'", leader_order_id=_mirror("leader_order_id"),
        follower=_mirror("follower"), mirror_id="NEW.mirror_id",
        message="NEW.action || ' committed (intent ' || NEW.id || ')'",
        # built as text: the request is JSON already (checked, not parsed and rewritten)
        data="'{\"intent_id\":' || NEW.id || ',\"action\":' || json_quote(NEW.action) || "
             "',\"correlation_id\":' || json_quote(" + _mirror("correlation_id") + ") || "
             "',\"request\":' || CASE WHEN json_valid(NEW.request) THEN NEW.request "
             "ELSE json_quote(NEW.request) END || '}'"), backfill="1"),
    _Source("intent_done", "intent", "UPDATE OF status", dict(
        at="COALESCE(NEW.completed_at, NEW.created_at)", kind="'intent_done'",
        leader_order_id=_mirror("leader_order_id"), follower=_mirror("follower"),
        mirror_id="NEW.mirror_id",
        message="NEW.action || ' ' || NEW.status || CASE WHEN NEW.outcome <> '' "
                "THEN ': ' || NEW.outcome ELSE '' END",
        data="json_object('intent_id', NEW.id, 'action', NEW.action, 'status', NEW.status, "
             "'outcome', NEW.outcome)"),
        when="OLD.status IS NOT NEW.status", backfill="NEW.status <> 'SENDING'"),
    _Source("transition", "stateevent", "INSERT", dict(
        at="NEW.at", kind="'transition'", leader_order_id=_mirror("leader_order_id"),
        follower=_mirror("follower"), mirror_id="NEW.mirror_id",
        message="NEW.from_state || ' -> ' || NEW.to_state || ' (' || NEW.trigger || ')' || "
                "CASE WHEN NEW.detail <> '' THEN ': ' || NEW.detail ELSE '' END",
        data="json_object('event_id', NEW.id, 'from', NEW.from_state, 'to', NEW.to_state, "
             "'trigger', NEW.trigger, 'detail', NEW.detail)"), backfill="1"),
    _Source("audit", "auditevent", "INSERT", dict(
        at="NEW.at", kind="NEW.kind", leader_order_id="NEW.leader_order_id",
        follower="NEW.follower",
        # cancel-mirror's audit names its mirror in data (LIKE first: most rows have none)
        mirror_id="CASE WHEN NEW.data LIKE '%\"mirror\\_id\"%' ESCAPE '\\' AND "
                  "json_valid(NEW.data) AND json_type(NEW.data, '$.mirror_id') = 'integer' "
                  "THEN json_extract(NEW.data, '$.mirror_id') END",
        message="NEW.message", data="NEW.data"), backfill="1"),
)

# The row as stored and hashed: texts (or NULL) and an integer mirror id, whatever the
# column types of the source.
_CASTS = dict(at="CAST(COALESCE({}, strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')) AS TEXT)",
              kind="CAST(COALESCE({}, '') AS TEXT)", leader_order_id="CAST({} AS TEXT)",
              follower="CAST({} AS TEXT)", mirror_id="CAST({} AS INTEGER)",
              message="CAST(COALESCE({}, '') AS TEXT)", data="CAST(COALESCE({}, '{{}}') AS TEXT)")
_HEAD = (f"SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'trail'), 0) AS id, "
         f"COALESCE((SELECT hash FROM trail ORDER BY id DESC LIMIT 1), '{GENESIS}') AS hash")
_NEXT_ID = "COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'trail'), 0) + 1"
_PREV_HASH = f"COALESCE((SELECT hash FROM trail ORDER BY id DESC LIMIT 1), '{GENESIS}')"
_COLUMNS = ", ".join(FIELDS)


def _row_select(source: _Source) -> str:
    return ", ".join(f"{_CASTS[f].format(source.row[f])} AS {f}" for f in FIELDS)


def _trigger_sql(source: _Source) -> str:
    # INSERT ... VALUES with each expression written twice (stored, and hashed): cheaper
    # than selecting from subqueries, which SQLite materialises for every row.
    when = f" WHEN {source.when}" if source.when else ""
    row = ", ".join(_CASTS[f].format(source.row[f]) for f in FIELDS)
    return (f"CREATE TRIGGER trail_{source.name} AFTER {source.event} ON {source.table}{when} "
            f"BEGIN INSERT INTO trail (id, {_COLUMNS}, prev_hash, hash) VALUES ({_NEXT_ID}, "
            f"{row}, {_PREV_HASH}, {HASH_FUNCTION}({_PREV_HASH}, {row})); END")


TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS trail ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, kind TEXT NOT NULL, "
    "leader_order_id TEXT, follower TEXT, mirror_id INTEGER, message TEXT NOT NULL, "
    "data TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)")
_GUARDS = (
    "CREATE TRIGGER trail_no_update BEFORE UPDATE ON trail BEGIN "
    "SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
    "CREATE TRIGGER trail_no_delete BEFORE DELETE ON trail BEGIN "
    "SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
)


def install(execute: Any) -> None:
    """Create the table, its index and every trigger (again: a table rebuilt by a later
    migration loses its triggers, and this puts them back). `execute(sql, params=())`."""
    execute(TABLE_SQL)
    execute("CREATE INDEX IF NOT EXISTS trail_leader_order_id ON trail (leader_order_id)")
    for name in [f"trail_{s.name}" for s in SOURCES] + ["trail_no_update", "trail_no_delete"]:
        execute(f"DROP TRIGGER IF EXISTS {name}")
    for sql in [_trigger_sql(s) for s in SOURCES] + list(_GUARDS):
        execute(sql)


def backfill(execute: Any, now: datetime, schema: int) -> int:
    """Chain the rows written before the trail existed, oldest first (leader orders and
    legs in their latest state only: earlier states were never kept), then a
    `trail_started` row saying so. Nothing when the trail already has rows. Returns how
    many rows were copied."""
    if execute("SELECT 1 FROM trail LIMIT 1").fetchone():
        return 0
    found: list[tuple[datetime, int, int, tuple]] = []
    for order, source in enumerate(SOURCES):
        if source.backfill is None:
            continue
        select = _row_select(source).replace("NEW.", "src.")
        where = source.backfill.replace("NEW.", "src.")
        for rowid, *row in execute(f"SELECT src.rowid, {select} FROM {source.table} AS src "
                                   f"WHERE {where}").fetchall():
            found.append((_sort_time(row[0]), order, rowid, tuple(row)))
    found.sort(key=lambda item: item[:3])
    for _time, _order, _rowid, row in found:
        append(execute, *row)
    message = (f"audit trail started (schema {schema}): the {len(found)} rows before this one "
               "were copied from the tables it began with; leader orders and legs in their "
               "latest state only" if found else f"audit trail started (schema {schema})")
    append(execute, str(now), "trail_started", None, None, None, message,
           json.dumps({"copied": len(found), "schema": schema}))
    return len(found)


def append(execute: Any, *row: Any) -> None:
    """Append one row (FIELDS, in order) from Python: the migration's copies."""
    head_id, head_hash = execute(_HEAD).fetchone()
    execute(f"INSERT INTO trail (id, {_COLUMNS}, prev_hash, hash) VALUES "
            f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (head_id + 1, *row, head_hash, row_hash(head_hash, *row)))


def _sort_time(text: str) -> datetime:
    try:
        return _parse_time(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def _parse_time(text: str) -> datetime:
    """A stored time: aware, or naive meaning UTC (how the store keeps times)."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# ---- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrailRow:
    id: int
    at: datetime  # aware (UTC as stored); show with copytrade.core.ist
    kind: str
    leader_order_id: str | None
    follower: str | None
    mirror_id: int | None
    message: str
    data: Any  # the JSON object (a dict), or the text when it is not JSON
    prev_hash: str
    hash: str


_SELECT = f"SELECT id, {_COLUMNS}, prev_hash, hash FROM trail"


def _to_row(raw: tuple) -> TrailRow:
    row_id, at, kind, leader_order_id, follower, mirror_id, message, data, prev, digest = raw
    try:
        parsed: Any = json.loads(data)
    except (TypeError, ValueError):
        parsed = data
    try:
        moment = _parse_time(at)
    except (TypeError, ValueError):
        moment = datetime.min.replace(tzinfo=UTC)
    return TrailRow(row_id, moment, kind, leader_order_id, follower, mirror_id, message,
                    parsed, prev, digest)


def _execute(db: Any, sql: str, params: tuple = ()) -> Any:
    """A peewee database or a plain sqlite3 connection."""
    run = getattr(db, "execute_sql", None) or db.execute
    return run(sql, params)


def trail_for_leader_order(db: Any, leader_order_id: str) -> list[TrailRow]:
    """Everything the trail holds about one leader order, oldest first: its reports as
    recorded (with their source), its legs, every follower's mirrors, intents and their
    outcomes, state transitions, and the audit events that name it. `db`: the store's
    peewee database (store.db.open_reader) or a plain sqlite3 connection."""
    return [_to_row(raw) for raw in _execute(
        db, f"{_SELECT} WHERE leader_order_id = ? ORDER BY id", (leader_order_id,)).fetchall()]


def trail_rows(db: Any, *, after_id: int = 0, since: datetime | None = None,
               until: datetime | None = None) -> Iterator[TrailRow]:
    """Rows with id > after_id, at in [since, until] (aware; either may be None), by id.
    `db`: a peewee database (store.db.open_reader) or a plain sqlite3 connection."""
    where, params = ["id > ?"], [after_id]
    # julianday narrows in SQL (times stored with and without fractions compare right);
    # a second of slack, then the exact bound on the parsed time.
    if since is not None:
        where.append("julianday(at) >= julianday(?) - 1.0 / 86400")
        params.append(since.astimezone(UTC).isoformat(" "))
    if until is not None:
        where.append("julianday(at) <= julianday(?) + 1.0 / 86400")
        params.append(until.astimezone(UTC).isoformat(" "))
    for raw in _execute(db, f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY id",
                        tuple(params)):
        row = _to_row(raw)
        if (since is None or row.at >= since) and (until is None or row.at <= until):
            yield row


# ---- verifying -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    rows: int
    head_id: int  # 0: empty
    head_hash: str


_RECENT = 4096  # hashes remembered to tell an inserted run of rows from other breaks


def verify_chain(db: Any) -> ChainReport:
    """Walk the chain in one read snapshot (`db` as for trail_rows); TamperedError naming
    the first row altered, inserted or removed."""
    _execute(db, "BEGIN")
    try:
        rows = _execute(db, f"{_SELECT} ORDER BY id")
        count, last_id, last_hash = 0, 0, GENESIS
        recent: dict[str, int] = {GENESIS: 0}
        for raw in rows:
            row_id, *content, prev, digest = raw
            _check_row(row_id, content, prev, digest, last_id, last_hash, recent)
            count, last_id, last_hash = count + 1, row_id, digest
            recent[digest] = row_id
            if len(recent) > _RECENT:
                del recent[next(iter(recent))]
        sequence = _execute(db, "SELECT seq FROM sqlite_sequence WHERE name = 'trail'"
                            ).fetchone()
    finally:
        _execute(db, "COMMIT")
    seq = sequence[0] if sequence else 0
    if seq > last_id:
        raise TamperedError(_removed(last_id + 1, seq, "from the end of the audit trail "
                                     f"(its sequence is at {seq}, the last row is {last_id})"))
    return ChainReport(count, last_id, last_hash)


def _check_row(row_id: int, content: list, prev: str, digest: str, last_id: int,
               last_hash: str, recent: dict[str, int]) -> None:
    if row_id != last_id + 1:
        raise TamperedError(_removed(last_id + 1, row_id - 1,
                                     f"(the ids go from {last_id} to {row_id})"))
    if row_hash(prev, *content) != digest:
        raise TamperedError(f"audit trail row {row_id} was altered (or inserted): its content "
                            "does not match its hash")
    if prev != last_hash:
        if prev in recent:
            first = recent[prev] + 1
            rows = f"row {first}" if first == row_id - 1 else f"rows {first}-{row_id - 1}"
            raise TamperedError(f"audit trail {rows} inserted: row {row_id} follows row "
                                f"{recent[prev]}")
        raise TamperedError(f"audit trail row {row_id} does not follow row {last_id}: a row "
                            f"between them was removed, or row {last_id} was altered and "
                            "re-hashed")


def _removed(first: int, last: int, why: str) -> str:
    rows = f"row {first} was" if first == last else f"rows {first}-{last} were"
    return f"audit trail {rows} removed {why}"


def check_anchor(db: Any, row_id: int, expected_hash: str) -> None:
    """Row `row_id` still has the hash an export kept elsewhere recorded: a chain rewritten
    whole from that row (or before) on, which verify_chain alone cannot see, is caught."""
    row = _execute(db, "SELECT hash FROM trail WHERE id = ?", (row_id,)).fetchone()
    if row is None:
        raise TamperedError(f"audit trail row {row_id} (the anchor) is not there: removed, or "
                            "the anchor is from another database")
    if row[0] != expected_hash:
        raise TamperedError(f"audit trail row {row_id} has hash {row[0][:16]}..., not the "
                            f"anchor's {expected_hash[:16]}...: the trail was rewritten from "
                            f"row {row_id} or before")
