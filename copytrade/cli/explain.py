"""`copytrade explain LEADER_ORDER_ID`: the whole story of one leader order, per follower.

Reads the record (store/explain_queries.py), assembles the story (core/story.py) and
renders it here: Rich on a terminal, plain lines when piped, JSON with --json. Every text
passes the redaction filter; every time is IST and says so.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from copytrade.cli.config_cmd import ConfigOption

if TYPE_CHECKING:
    from rich.console import Group

    from copytrade.config import Config
    from copytrade.core.story import Event, FollowerSetup, FollowerStory, Story


def explain(
    leader_order_id: Annotated[str, typer.Argument(
        metavar="LEADER_ORDER_ID", show_default=False,
        help="The leader's order id (Dhan's orderId), as `copytrade mappings` lists it.")],
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print the story as JSON (times in IST, +05:30).")] = False,
    config: ConfigOption = None,
) -> None:
    """Tell the whole story of one leader order, for each follower.

    What reported the order and when, each follower's sizing (positions before, the
    rule, the caps checked, what changed the size), the requests sent and the broker's
    answers, every state change with its IST time and lag, and the reason for anything
    not mirrored. Reads the record only: nothing is sent. Exit 9 when the order is not in
    the record, 7 when there is no database.
    """
    from rich.console import Console

    from copytrade.core.story import build_story
    from copytrade.errors import NotFoundError
    from copytrade.home import home_paths
    from copytrade.store import explain_queries

    setups = _setups(config)  # first: it registers the tokens for redaction
    database_file = home_paths().database_file
    db = explain_queries.open_for_reading(database_file)
    try:
        record = explain_queries.order_record(db, leader_order_id)
        if record is None:
            count, latest = explain_queries.recorded_summary()
            raise NotFoundError(_not_found_text(leader_order_id, count, latest))
    finally:
        db.close()
    story = build_story(replace(record, setups=setups))
    if json_output:
        typer.echo(story_json(story))
        return
    console = Console(highlight=False)
    if console.is_terminal:
        console.print(story_view(story))
    else:
        typer.echo(story_text(story))


def _not_found_text(order_id: str, count: int, latest: str | None) -> str:
    from copytrade.redact import redact

    shown = " ".join(order_id.split())[:40] + ("..." if len(order_id) > 40 else "")
    known = (f"{count} leader order(s) recorded, the latest on {latest}; `copytrade "
             "mappings` lists them" if count else "no leader order is recorded yet")
    return f"leader order {redact(shown)!r} is not in the record ({known})"


def _setups(config_path: Path | None) -> tuple[FollowerSetup, ...] | None:
    """The followers as configured now, and their tokens registered for redaction. The
    home's configuration is optional here (the record alone tells most of the story); a
    file named with --config must load."""
    from copytrade.config import load_config, resolve_tokens
    from copytrade.errors import ConfigError

    try:
        config = load_config(config_path)
    except ConfigError:
        if config_path is not None:
            raise
        return None
    # Each token becomes a Secret, redacted from what we print; a missing one hides
    # nothing here (the record was redacted when it was written).
    with contextlib.suppress(ConfigError):
        resolve_tokens(config)
    return _follower_setups(config)


def _follower_setups(config: Config) -> tuple[FollowerSetup, ...]:
    from copytrade.config.model import served_elsewhere
    from copytrade.core.sizing import Caps, SizingRule
    from copytrade.core.story import FollowerSetup, caps_text, rule_text

    setups = []
    for f in config.followers:
        caps = Caps(max_quantity=f.max_quantity, max_order_value=f.max_order_value,
                    allowed_segments=f.allow_segments, denied_segments=f.deny_segments,
                    allowed_products=f.allow_products, denied_products=f.deny_products,
                    allowed_securities=f.allow_security_ids,
                    denied_securities=f.deny_security_ids)
        setups.append(FollowerSetup(f.name, f.enabled, f.shadow,
                                    rule_text(SizingRule(f.sizing.mode, f.sizing.value)),
                                    caps_text(caps), remote=served_elsewhere(config, f)))
    return tuple(setups)


# ---- rendering (pure: story -> text) --------------------------------------------------------


def _r(text: object) -> str:
    from copytrade.redact import redact

    return redact(str(text))


def story_json(story: Story) -> str:
    from copytrade.core.story import story_as_dict
    from copytrade.redact import redact_value

    return json.dumps(redact_value(story_as_dict(story)), indent=2, sort_keys=False)


def when(at: datetime | None, day: str = "") -> str:
    """`21:12:13.934 IST`, with the date in front when it is not `day` (YYYY-MM-DD)."""
    from copytrade.core.ist import to_ist

    if at is None:
        return "-"
    local = to_ist(at)
    clock = f"{local:%H:%M:%S}.{local.microsecond // 1000:03d} IST"
    return clock if local.date().isoformat() == day else f"{local:%Y-%m-%d} {clock}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _after(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f} ms"


def leader_lines(story: Story) -> list[str]:
    from copytrade.core.ist import ist_text

    leader = story.leader
    name = leader.symbol or leader.security_id
    price = f" @ {leader.price:g}" if leader.price else ""
    trigger = f" trigger {leader.trigger_price:g}" if leader.trigger_price else ""
    app = " (placed in Dhan's app)" if leader.placed_in_app else ""
    average = f", average {leader.average_price:g}" if leader.average_price else ""
    lines = [
        f"leader order {leader.order_id}{app}: {leader.transaction_type} {leader.quantity} "
        f"{name} ({leader.exchange_segment} {leader.security_id}) {leader.order_type}"
        f"{price}{trigger} {leader.product_type} {leader.validity}",
        f"  now {leader.status}, traded {leader.traded_quantity}/{leader.quantity}{average}; "
        f"trading date {leader.trading_date}; lot size "
        f"{leader.lot_size if leader.lot_size is not None else 'unknown'}",
        f"  first seen {ist_text(leader.first_seen_at, millis=True)}",
    ]
    if leader.reason:
        lines.append(f"  broker's reason: {leader.reason}")
    for leg in story.legs:
        lines.append(f"  exit leg {leg.leg}: {leg.status} {leg.order_type} "
                     f"{leg.traded_quantity}/{leg.quantity} price {leg.price:g} trigger "
                     f"{leg.trigger_price:g} (first {leg.first_price:g} / "
                     f"{leg.first_trigger_price:g}), {when(leg.updated_at)}")
    return [_r(line) for line in lines]


def follower_heading(follower: FollowerStory) -> str:
    return _r(f"follower {follower.name}: {follower.verdict}")


def follower_facts(follower: FollowerStory) -> list[str]:
    sizing = follower.sizing
    lines = []
    if follower.state and follower.state != "SKIPPED":
        ids = ", ".join(follower.follower_order_ids) or "none"
        lines.append(f"follower order(s): {ids}; attempts {follower.attempts}; lag "
                     f"{_ms(follower.lag_ms)} (leader seen -> request sent); fill lag "
                     f"{_ms(follower.fill_lag_ms)}")
    if follower.state and sizing.leader_position_before is None:  # a remote follower's
        lines.append(f"sizing: placed {sizing.placed}; positions before and the rule "
                     "applied are in its agent's record (`copytrade explain` on its host)")
    elif follower.state:
        lines.append(f"sizing: positions before: leader {sizing.leader_position_before}, "
                     f"follower {sizing.follower_position_before}; placed {sizing.placed}")
    if sizing.recorded:
        lines.append(f"sizing rule {sizing.rule}; caps checked: "
                     f"{', '.join(sizing.caps) or 'none set'}")
        lines += [f"size changed: {note}" for note in sizing.notes] or [
            "size changed: no (no cap or exit changed it)"]
    elif follower.state:
        lines.append("sizing rule and caps: not recorded with this order")
    if sizing.configured_now:
        lines.append(f"configuration now: {sizing.configured_now}")
    for leg in follower.legs[1:] if len(follower.legs) > 1 else ():
        lines.append(f"leg {leg.leg}: {leg.state.lower()} {leg.filled}/{leg.quantity}")
    return [_r(line) for line in lines]


EVENT_HEADER = ("time (IST)", "+ms", "what", "detail")


def event_row(event: Event, day: str) -> tuple[str, str, str, str]:
    attempt = f" (attempt {event.attempt})" if event.attempt and event.attempt > 1 else ""
    leg = f" [leg {event.leg}]" if event.leg != 1 else ""
    return (when(event.at, day), _after(event.after_seen_ms), _r(event.title + attempt + leg),
            _r(event.detail) or "-")


def _day(story: Story) -> str:
    from copytrade.core.ist import to_ist

    return to_ist(story.leader.first_seen_at).date().isoformat()


def story_text(story: Story) -> str:
    """Plain lines (pipes, logs, cron mail)."""
    from copytrade.cli.render import plain_table

    day = _day(story)
    lines = leader_lines(story)
    lines += ["", f"what reported the leader order, each change as recorded (times on {day} "
              "unless dated):"]
    lines += _indent(plain_table(EVENT_HEADER, [event_row(e, day) for e in story.reports]))
    lines += [f"note: {_r(note)}" for note in story.notes]
    if story.context:
        lines += ["", "around it:"]
        lines += _indent(plain_table(EVENT_HEADER, [event_row(e, day) for e in story.context]))
    for follower in story.followers:
        lines += ["", follower_heading(follower)]
        lines += [f"  {line}" for line in follower_facts(follower)]
        if follower.events:
            lines += _indent(plain_table(EVENT_HEADER,
                                         [event_row(e, day) for e in follower.events]))
    if not story.followers:
        lines += ["", "no follower is configured or recorded for this order"]
    return "\n".join(lines)


def _indent(text: str) -> list[str]:
    return [f"  {line}" for line in text.splitlines()]


def story_view(story: Story) -> Group:
    """The Rich view (a terminal): the same content as story_text, as tables."""
    from rich.console import Group
    from rich.text import Text

    day = _day(story)
    parts: list = [Text("\n".join(leader_lines(story)), style="bold")]
    parts.append(_events_table(f"what reported the leader order, each change ({day})",
                               story.reports, day))
    parts += [Text(f"note: {_r(note)}", style="dim") for note in story.notes]
    if story.context:
        parts.append(_events_table("around it", story.context, day))
    for follower in story.followers:
        style = "green" if follower.mirrored else "magenta"
        parts.append(Text(""))
        parts.append(Text(follower_heading(follower), style=f"bold {style}"))
        parts += [Text(f"  {line}") for line in follower_facts(follower)]
        if follower.events:
            parts.append(_events_table("", follower.events, day))
    return Group(*parts)


def _events_table(title: str, events: Sequence[Event], day: str):  # type: ignore[no-untyped-def]
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title or None, title_justify="left", header_style="bold",
                  expand=False)
    for name in EVENT_HEADER:
        table.add_column(name, overflow="fold", no_wrap=name in ("+ms",))
    for event in events:
        table.add_row(*(Text(cell) for cell in event_row(event, day)))
    return table
