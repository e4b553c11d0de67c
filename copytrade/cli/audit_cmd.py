"""`copytrade audit`: the audit trail exported for cron (JSON lines or CSV, by cursor or time
window), and `copytrade audit verify`: its hash chain checked. The trail is
copytrade.store.trail; this parses, masks account ids, writes and picks the exit code."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from copytrade.cli.fast_help import FastHelpGroup
from copytrade.errors import UsageError

if TYPE_CHECKING:
    from datetime import datetime

    from copytrade.store.trail import TrailRow

FORMATS = ("jsonl", "csv")
COLUMNS = ("id", "at", "kind", "leader_order_id", "follower", "mirror_id", "message", "data",
           "prev_hash", "hash")
# A Dhan client id: ten digits, not part of a longer number (order ids have 12 or more).
_ACCOUNT_ID = re.compile(r"(?<![0-9])[0-9]{10}(?![0-9])")
_ACCOUNT_KEY = re.compile(r"client|account", re.IGNORECASE)


class _AuditGroup(FastHelpGroup):
    """The group's own options (the export's) are processed whenever a subcommand runs,
    `copytrade audit verify --help` too, and Typer builds a pydantic adapter (~150 ms of
    imports) for any value but a bool, None included. An option left out is None: that
    value is kept as it is, without the adapter (Typer's own coercion returns None too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _keep_none(param)


def _keep_none(param: Any) -> None:
    process = param.process_value

    def process_value(ctx: Any, value: Any) -> Any:
        if value is None and not param.required and param.callback is None:
            return None
        return process(ctx, value)

    param.process_value = process_value


audit_app = typer.Typer(
    name="audit",
    cls=_AuditGroup,  # `copytrade audit verify --help` without pydantic
    invoke_without_command=True,  # `copytrade audit` alone exports
    add_completion=False,
    rich_markup_mode=None,
)


@audit_app.callback(invoke_without_command=True)
def export(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="TIME", show_default=False,
        help="Only rows written at or after TIME: an ISO 8601 date-time (IST unless it has "
        "an offset), HH:MM[:SS] today IST, today, yesterday [HH:MM], or an age (30m, 2h, "
        "1d).")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", metavar="TIME", show_default=False,
        help="Only rows written at or before TIME (same forms).")] = None,
    after_id: Annotated[int | None, typer.Option(
        "--after-id", metavar="N", show_default=False,
        help="Only rows with an id above N: the last-id the previous run printed.")] = None,
    output_format: Annotated[str | None, typer.Option(
        "--format", metavar="jsonl|csv", show_default=False,
        help="jsonl (default): one JSON object a line; csv: a header, then a row each.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", metavar="FILE", show_default=False,
        help="Write to FILE (mode 0600, whole or not at all) instead of standard output.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace FILE if it exists (otherwise an existing FILE is refused).",
    )] = False,
    include_account_ids: Annotated[bool, typer.Option(
        "--include-account-ids", help="Show Dhan client ids in full (masked by default: "
        "10******02).")] = False,
) -> None:
    """Export the audit trail, oldest first: every leader order change, intent and outcome,
    state transition and audit event.

    Made for cron: no prompts, no colour. After the rows, `last-id: N` goes to standard
    error: pass it as --after-id next time to get only newer rows. Exit 0 (also when
    nothing is new), 2 for bad options or times, 7 when the database is missing or
    unreadable. `copytrade audit verify` checks the trail's hash chain.
    """
    if ctx.invoked_subcommand is not None:  # `copytrade audit verify`: not an export
        _refuse_export_options(ctx.invoked_subcommand, {
            "--since": since, "--until": until, "--after-id": after_id,
            "--format": output_format, "--output": output, "--force": force or None,
            "--include-account-ids": include_account_ids or None})
        return
    from copytrade.home import home_paths
    from copytrade.store.db import open_reader
    from copytrade.store.trail import trail_rows

    fmt = (output_format or "jsonl").strip().lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format must be jsonl or csv, not {output_format!r}")
    if after_id is not None and after_id < 0:
        raise UsageError("--after-id must be 0 or more")
    start, end = _window(since, until)
    if output is not None:
        _check_output(output, force)
    db = open_reader(home_paths().database_file)
    try:
        rows = trail_rows(db, after_id=after_id or 0, since=start, until=end)
        records = (_record(row, mask=not include_account_ids) for row in rows)
        last = _write(records, fmt, output, force)
    finally:
        db.close()
    typer.echo(f"last-id: {last if last is not None else after_id or 0}", err=True)


@audit_app.command("verify")
def verify(
    anchor: Annotated[str | None, typer.Option(
        "--anchor", metavar="ID:HASH", show_default=False,
        help="Also require row ID to still have HASH (from an export kept elsewhere): "
        "catches a chain rewritten whole from that row on.")] = None,
) -> None:
    """Check the audit trail's hash chain: every row unchanged, none inserted or removed.

    Reads only (it can run while follow writes). Prints how many rows were verified and
    the last row's hash. Exit 0 when the chain holds, 12 naming the first row altered,
    inserted or removed, 7 when the database is missing or unreadable.
    """
    from copytrade.home import home_paths
    from copytrade.store.db import open_reader
    from copytrade.store.trail import check_anchor, verify_chain

    expected = _parse_anchor(anchor) if anchor is not None else None
    db = open_reader(home_paths().database_file)
    try:
        report = verify_chain(db)
        if expected is not None:
            check_anchor(db, *expected)
    finally:
        db.close()
    if not report.rows:
        typer.echo("0 rows verified: the audit trail is empty")
        return
    typer.echo(f"{report.rows} rows verified (ids 1-{report.head_id}); last hash "
               f"{report.head_hash}")


# ---- options ---------------------------------------------------------------------------------


def _window(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    from datetime import UTC, datetime

    from copytrade.core.ist import ist_text
    from copytrade.core.timeparse import parse_time

    now = datetime.now(UTC)
    bounds: list[datetime | None] = []
    for option, text in (("--since", since), ("--until", until)):
        try:
            bounds.append(parse_time(text, now=now) if text is not None else None)
        except ValueError as exc:
            raise UsageError(f"{option}: {exc}") from None
    start, end = bounds
    if start is not None and end is not None and start > end:
        raise UsageError(f"--since ({ist_text(start)}) is after --until ({ist_text(end)})")
    return start, end


def _refuse_export_options(subcommand: str, options: dict[str, object]) -> None:
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise UsageError(f"{given[0]} is an option of the export (copytrade audit), not of "
                         f"copytrade audit {subcommand}")


def _parse_anchor(text: str) -> tuple[int, str]:
    row_id, _, digest = text.strip().partition(":")
    if not row_id.isascii() or not row_id.isdigit() or not re.fullmatch(r"[0-9a-f]{64}",
                                                                         digest.lower()):
        raise UsageError(f"--anchor must be ID:HASH (a row id, a colon, the 64 hex digits of "
                         f"its hash), not {text[:80]!r}")
    return int(row_id), digest.lower()


def _check_output(path: Path, force: bool) -> None:
    """Refused before the database is read: an existing FILE (without --force), a directory."""
    if path.is_dir():
        raise UsageError(f"--output {path} is a directory")
    if path.exists() and not force:
        raise UsageError(f"--output {path} exists: pass --force to replace it (or write a new "
                         "file per run)")
    if not path.parent.is_dir():
        raise UsageError(f"--output {path}: the directory {path.parent} does not exist")


# ---- rows ------------------------------------------------------------------------------------


def mask_account_ids(text: str) -> str:
    """Every ten-digit number in `text` as 10******02."""
    return _ACCOUNT_ID.sub(lambda found: f"{found[0][:2]}******{found[0][-2:]}", text)


def _masked(value: Any, key: str = "") -> Any:
    if isinstance(value, str):
        return mask_account_ids(value)
    if isinstance(value, dict):
        return {mask_account_ids(k): _masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(item, key) for item in value]
    if (type(value) is int and _ACCOUNT_KEY.search(key)
            and _ACCOUNT_ID.fullmatch(str(value))):  # a client id sent as a number
        return mask_account_ids(str(value))
    return value


def _record(row: TrailRow, *, mask: bool) -> dict[str, Any]:
    from copytrade.core.ist import to_ist

    record = {"id": row.id, "at": to_ist(row.at).isoformat(), "kind": row.kind,
              "leader_order_id": row.leader_order_id, "follower": row.follower,
              "mirror_id": row.mirror_id, "message": row.message, "data": row.data,
              "prev_hash": row.prev_hash, "hash": row.hash}
    if mask:
        for name in ("follower", "message", "data"):
            record[name] = _masked(record[name])
    return record


# ---- writing ---------------------------------------------------------------------------------


def _write(records: Iterable[dict[str, Any]], fmt: str, output: Path | None,
           force: bool) -> int | None:
    """The records to standard output or FILE; the last id written (None: nothing)."""
    if output is None:
        return _emit(records, fmt, sys.stdout)
    with _private_file(output, force) as file:
        return _emit(records, fmt, file)


def _emit(records: Iterable[dict[str, Any]], fmt: str, out: TextIO) -> int | None:
    import json

    last = None
    if fmt == "jsonl":
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            last = record["id"]
        return last
    import csv

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for record in records:
        data = record["data"]
        record["data"] = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        writer.writerow(["" if record[c] is None else record[c] for c in COLUMNS])
        last = record["id"]
    return last


@contextmanager
def _private_file(path: Path, force: bool) -> Iterator[TextIO]:
    """A temporary file beside `path`, 0600 from its first byte, renamed to `path` once
    complete: a reader (or a crash) never sees half an export. Without `force` the final
    step is a hard link, which fails rather than replace a file made meanwhile."""
    import os
    import secrets

    from copytrade.home import fsync_dir

    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     0o600)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            if os.name == "posix":
                os.fchmod(file.fileno(), 0o600)  # exact, whatever the umask
            yield file
            file.flush()
            os.fsync(file.fileno())
        _publish(temp, path, force)
        fsync_dir(path.parent)
    finally:
        if temp.exists():
            temp.unlink()


def _publish(temp: Path, path: Path, force: bool) -> None:
    import os

    if force:
        os.replace(temp, path)
        return
    try:
        os.link(temp, path)
    except FileExistsError:
        raise UsageError(f"--output {path} exists: pass --force to replace it") from None
    except OSError:  # a file system without hard links: the check made before must do
        if path.exists():
            raise UsageError(f"--output {path} exists: pass --force to replace it") from None
        os.replace(temp, path)
