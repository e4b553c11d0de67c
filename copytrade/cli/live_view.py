"""What `copytrade follow` (and `copytrade demo`) shows while it runs and when it stops: the
live view on a terminal, one plain line per event when piped, and the stop summary. Pure
functions of their inputs, tested as text at 80 and 120 columns.

The live view fits its width the way `mappings` does (render_reports.fit_columns): columns
are left out by priority, never squeezed, so no header is ever cut. A follower's columns
of one kind (avg, slip, lag) are shown for every follower or for none. Every text from
outside (symbols, broker reasons) is a Text cell, never markup, and kept to one line.

Rich is imported by the functions that build Rich objects: the plain lines do not pay for
it (they are written while the engine runs, on its interpreter).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from copytrade.cli.render import STATE_STYLES, plain_table
from copytrade.cli.render_reports import Column, _one_line, fit_columns, fitted_table, reason_lines
from copytrade.core.ist import ist_clock, to_ist
from copytrade.core.report_math import FollowerStats, LatencySummary, latency_summary
from copytrade.redact import redact

if TYPE_CHECKING:
    from rich.console import Group, RenderableType
    from rich.table import Table
    from rich.text import Text

    from copytrade.core.report_math import MappingRow
    from copytrade.engine.status_file import AccountState, FollowState
    from copytrade.store.queries import LiveOrder, TrailEvent

EXPIRING_WITHIN = timedelta(minutes=30)  # engine/tokens.py warns this close to the end
LABEL_MAX = 12  # a longer follower name is shown as #N in the orders table
MAX_REASON_LINES = 3
PLAIN_REASON_MAX = 200  # a plain line's reason beyond this points to `explain`
STATE_WORDS = {
    "PLANNED": "planned", "SUBMITTED": "sent", "ACCEPTED": "open", "PARTIALLY_FILLED": "part",
    "PENDING_CANCEL": "cancel", "FILLED": "filled", "CANCELED": "cancelled",
    "REJECTED": "rejected", "EXPIRED": "expired", "SKIPPED": "skipped",
}
NOTED_STATES = ("SKIPPED", "REJECTED", "EXPIRED")  # a reason line under the table


def explain_pointer(order_id: str) -> str:
    return f"(copytrade explain {order_id})"


def fit_line(head: str, body: str, tail: str, width: int) -> str:
    """head + body + tail on one line of at most `width`: the body is cut (with "…") so
    the tail, the pointer to the full text, stays whole."""
    body = _one_line(body)
    room = width - len(head) - len(tail)
    if len(body) > room:
        body = body[:max(room - 1, 0)] + "…"
    return head + body + tail


def _flat(text: str) -> str:
    """One line, without control characters; spacing kept (unlike _one_line)."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _cut(text: str, size: int) -> str:
    text = _flat(text)
    return text if len(text) <= size else text[:max(size - 1, 0)] + "…"


# ---- cells -------------------------------------------------------------------------------------


def _price(value: float) -> str:
    return f"{value:.2f}" if value > 0 else ""


def lag_text(ms: float | None) -> str:
    if ms is None:
        return ""
    if abs(ms) >= 10_000:
        return f"{ms / 1000:.0f}s"
    return f"{ms:.1f}ms" if abs(ms) < 10 else f"{ms:.0f}ms"


def state_cell(mirror: MappingRow | None) -> str:
    """A follower's mirror, compact: `filled 10/20`, `skipped`; `-` for none."""
    if mirror is None or mirror.state is None:
        return "-"
    word = STATE_WORDS.get(mirror.state, mirror.state.lower())
    if mirror.state in NOTED_STATES and mirror.filled == 0:
        return word
    return f"{word} {mirror.filled}/{mirror.quantity}"


def _state_style(mirror: MappingRow | None) -> str:
    return STATE_STYLES.get(mirror.state or "", "") if mirror is not None else "dim"


def _slip(mirror: MappingRow | None) -> str:
    slip = mirror.slippage if mirror is not None else None
    return f"{slip.rupees:+.2f}" if slip is not None else ""


def _leader_price(order: LiveOrder) -> str:
    if order.traded and order.average_price > 0:
        return _price(order.average_price)
    if order.price > 0:
        return _price(order.price)
    return "MKT" if order.order_type == "MARKET" else ""


def _symbol(order: LiveOrder) -> str:
    return order.symbol if order.leg == 1 else f"{order.symbol} {order.leg_label}"


def follower_labels(followers: Sequence[str]) -> dict[str, str]:
    """Each follower's heading in the orders table: its name, or #N for a long one (the
    accounts table says which)."""
    return {name: name if len(name) <= LABEL_MAX else f"#{index}"
            for index, name in enumerate(followers, start=1)}


# ---- the orders table --------------------------------------------------------------------------

SECONDARY_KINDS = ("avg", "slip", "lag")  # a follower's columns besides its state


def order_columns(followers: Sequence[str]) -> tuple[list[Column], dict[int, str]]:
    """Every column the orders table may show, and the kind of each follower column
    after the first (by index)."""
    labels = follower_labels(followers)
    columns = [
        Column("time IST", lambda o: f"{to_ist(o.seen_at):%H:%M:%S}" if o.seen_at else "", 4),
        Column("symbol", _symbol, 0, cap=20),
        Column("side", lambda o: o.side, 2),
        Column("qty", lambda o: f"{o.traded}/{o.quantity}", 3, right=True),
        Column("price", _leader_price, 5, right=True),
    ]
    kinds: dict[int, str] = {}
    for name in followers:
        for kind, column in _follower_columns(name, labels[name]):
            if kind in SECONDARY_KINDS:
                kinds[len(columns)] = kind
            columns.append(column)
    columns.append(Column("order", lambda o: o.order_id, 9, cap=24))
    return columns, kinds


def _follower_columns(name: str, label: str) -> list[tuple[str, Column]]:
    """A follower's columns, by kind: its mirror's state and fills, then the others."""
    def mirror(order: LiveOrder) -> MappingRow | None:
        return order.mirrors.get(name)

    def average(order: LiveOrder) -> str:
        found = mirror(order)
        return _price(found.follower_average) if found is not None else ""

    def lag(order: LiveOrder) -> str:
        found = mirror(order)
        return lag_text(found.ack_lag_ms) if found is not None else ""

    return [("state", Column(label, lambda o: state_cell(mirror(o)), 1,
                             cap=max(15, len(label)), style=lambda o: _state_style(mirror(o)))),
            ("avg", Column("avg", average, 7, right=True, cap=10)),
            ("slip", Column("slip", lambda o: _slip(mirror(o)), 8, right=True, cap=10)),
            ("lag", Column("lag", lag, 6, right=True, cap=10))]


def fitting_columns(columns: Sequence[Column], kinds: Mapping[int, str],
                    items: Sequence[Any], width: int) -> list[Column]:
    """The columns to draw: what fit_columns keeps, with a kind of follower column left
    out wherever one follower would show it and another (with something to say) not."""
    cells = [[_one_line(column.cell(item)) for column in columns] for item in items]
    active = list(range(len(columns)))
    for _round in range(len(SECONDARY_KINDS) + 1):
        kept = {active[i] for i, _size in fit_columns(
            [columns[i] for i in active], [[row[i] for i in active] for row in cells], width)}
        ragged = {kinds[i] for i in active if i in kinds and i not in kept
                  and (not cells or any(row[i] for row in cells))}
        ragged &= {kinds[i] for i in kept if i in kinds}
        if not ragged:
            break
        active = [i for i in active if kinds.get(i) not in ragged]
    return [columns[i] for i in active]


def orders_table(orders: Sequence[LiveOrder], followers: Sequence[str], width: int) -> Table:
    columns, kinds = order_columns(followers)
    return fitted_table(fitting_columns(columns, kinds, orders, width), orders, width)


def reason_texts(orders: Sequence[LiveOrder], followers: Sequence[str], width: int,
                 limit: int = MAX_REASON_LINES) -> list[str]:
    """A line per skipped, rejected or expired mirror of the orders shown (newest first):
    its reason cut to the width, ending in the command that shows it in full."""
    labels = follower_labels(followers)
    lines: list[str] = []
    for order in orders:
        for name in followers:
            mirror = order.mirrors.get(name)
            if mirror is None or mirror.state not in NOTED_STATES or not mirror.reason:
                continue
            if len(lines) == limit:
                return lines
            symbol = _cut(_symbol(order), 10 if width < 100 else 20)  # room for the why
            head = f"{labels[name]} {STATE_WORDS[mirror.state]} {symbol}: "
            lines.append(fit_line(head, redact(mirror.reason),
                                  " " + explain_pointer(order.order_id), width))
    return lines


# ---- the header: the accounts ------------------------------------------------------------------


def token_text(account: AccountState, now: datetime) -> str:
    until = account.token_valid_until
    if account.token_refused:
        return "refused"
    if until is None:
        return "expiring" if account.token_warning else "not read yet"
    if account.token_warning or until - now <= EXPIRING_WITHIN:
        return f"expiring {to_ist(until):%H:%M} IST"
    days = (to_ist(until).date() - to_ist(now).date()).days
    if days == 0:
        return f"valid until {to_ist(until):%H:%M} IST"
    if days == 1:  # a day's token taken in the evening, or renewed
        return f"valid until {to_ist(until):%H:%M} IST tomorrow"
    return f"valid until {to_ist(until):%d/%m %H:%M} IST"


def _token_style(text: str) -> str:
    return "red" if text == "refused" else "yellow" if text.startswith("expiring") else ""


def _account_name(account: AccountState, labels: Mapping[str, str]) -> str:
    label = labels.get(account.name, account.name) if account.role != "leader" else "leader"
    name = account.name if label == account.name else f"{label} {account.name}"
    return name + (" (shadow)" if account.shadow else "")


def _account_note(account: AccountState) -> str:
    """Why it stopped; else its stream's news: the leader's always (a silence it fell
    into and came out of), a follower's while not connected."""
    if account.stopped:
        return f"STOPPED: {account.stopped}"
    shown = account.stream != "connected" or account.role == "leader"
    return account.stream_detail if shown else ""


def account_columns(now: datetime, labels: Mapping[str, str]) -> list[Column]:
    return [
        Column("account", lambda a: _account_name(a, labels), 0, cap=48),
        Column("stream", lambda a: a.stream, 1, cap=14,
               style=lambda a: "green" if a.stream == "connected" else "yellow"),
        Column("token", lambda a: token_text(a, now), 2, cap=30,
               style=lambda a: _token_style(token_text(a, now))),
        Column("note", _account_note, 3, cap=200, flexible=12,
               style=lambda a: "red" if a.stopped else "dim"),
    ]


ALWAYS_COUNTED = ("frames", "intents", "skipped")  # other counters: once they are not 0


def title_text(title: str, state: FollowState | None, now: datetime,
               width: int | None = None) -> str:
    """The title, the time and the counters that fit `width` whole."""
    text = f"{title}  {ist_clock(now)}  Ctrl-C stops"
    for name, value in (state.counters if state else {}).items():
        counter = f"  {name.replace('_', '-')} {value}"
        if not (value or name in ALWAYS_COUNTED):
            continue
        if width is not None and len(text) + len(counter) > width:
            break
        text += counter
    return text


def alert_lines(state: FollowState) -> list[tuple[str, str]]:
    """(text, style): loops that keep failing, and the token loop's warnings."""
    lines = [(f"degraded: {loop} keeps failing ({redact(error)}); see the log", "red")
             for loop, error in state.degraded.items()]
    lines += [(f"token: {redact(account.token_warning)}", "yellow")
              for account in state.accounts if account.token_warning]
    return lines


def agents_line(lags: Mapping[str, int | None], labels: Mapping[str, str]) -> tuple[str, str]:
    """(text, style): each remote follower's agent and its lag, the leader events it has
    not acknowledged yet (`?`: not known now, e.g. the server is down)."""
    parts = []
    for name, lag in lags.items():
        label = labels.get(name, name)
        who = name if label == name else f"{label} {name}"
        parts.append(f"{who} {'?' if lag is None else lag}")
    behind = any(lag is None or lag > 0 for lag in lags.values())
    return (f"agent lag: {', '.join(parts)} (leader events not yet acknowledged)",
            "yellow" if behind else "dim")


# ---- the live view -----------------------------------------------------------------------------


def live_view(state: FollowState, orders: Sequence[LiveOrder], followers: Sequence[str], *,
              title: str, now: datetime, width: int, height: int | None = None) -> Group:
    """The title with counters, a line per account (stream, token, why it stopped),
    warnings, then a row per leader order (newest first, as many as fit `height`) and a
    line per reason."""
    from rich.console import Group

    # remote followers ([bus] leader): a column each, from what their agents reported
    followers = [*followers, *(name for name in state.remote if name not in followers)]
    labels = follower_labels(followers)
    alerts = alert_lines(state)
    if state.remote:
        alerts.append(agents_line(state.remote, labels))
    head: list[RenderableType] = [_line(title_text(title, state, now, width), width, "bold"),
                                  fitted_table(account_columns(now, labels), state.accounts,
                                               width)]
    head += [_line(text, width, style) for text, style in alerts]
    if height is not None:  # the table's heading is 2 lines, and 1 is kept spare
        used = 1 + 2 + len(state.accounts) + len(alerts) + 2 + 1
        reasons = min(MAX_REASON_LINES, len(reason_texts(orders, followers, width)))
        orders = orders[:max(height - used - reasons, 1)]
    if not orders:
        return Group(*head, _line("no leader order yet", width, "dim"))
    reasons_shown = [_line(text, width, "dim") for text in reason_texts(orders, followers,
                                                                         width)]
    return Group(*head, orders_table(orders, followers, width), *reasons_shown)


def _line(text: str, width: int, style: str = "") -> Text:
    from rich.text import Text

    return Text(_cut(text, width), style=style, no_wrap=True, overflow="ellipsis")


# ---- the plain lines ---------------------------------------------------------------------------

# Audit events that say again what a line of the trail already said (unless their data says
# `no_mirror`: a skip decided before any mirror, e.g. an agent's event of an earlier day).
_SAID_ELSEWHERE = frozenset({"skipped", "mirror_rejected", "mirror_not_sent", "modify_failed"})
# Intent outcomes the mirror's state change already says.
_QUIET_OUTCOMES = {"PLACE": {"DONE", "REFUSED", "UNKNOWN", "AUTH"},
                   "CANCEL": {"DONE", "CHECKED", "SKIPPED"}, "MODIFY": set()}
_UNITS = re.compile(r"\d+ units")
_CHANGES = (("price", "price", _price), ("quantity", "qty", str),
            ("trigger_price", "trigger", _price), ("order_type", "type", str))


def who_width(followers: Iterable[str]) -> int:
    return max([len("leader"), *(len(name) for name in followers)])


def event_line(event: TrailEvent, width: int = 8) -> str | None:
    """`HH:MM:SS IST  WHO  LEADER_ORDER  SYMBOL SIDE QTY  what happened`, or None for an
    event another line already tells. WHO is `leader`, a follower or `-`."""
    happened = what_happened(event)
    if happened is None:
        return None
    leader_side = event.kind in ("leader_order", "leader_leg")
    who = "leader" if leader_side else _one_line(event.follower or "-")
    order = _one_line(event.leader_order_id or "-")
    what = "-"
    if event.leader_order_id:
        quantity = event.data.get("quantity") if leader_side else event.quantity
        what = " ".join(_one_line(str(part)) for part in (_cut(event.symbol, 40), event.side,
                                                         quantity) if part not in (None, ""))
    clock = ist_clock(event.at) if event.at is not None else "--:--:-- IST"
    return redact(f"{clock}  {who:<{width}}  {order:<16}  {what or '-'}  "
                  f"{_one_line(happened)}")


def what_happened(event: TrailEvent) -> str | None:
    if event.kind == "leader_order":
        return leader_change(event.data, event.before)
    if event.kind == "transition":
        return _transition(event)
    if event.kind == "intent_done":
        return _intent_done(event)
    if event.kind == "intent" or (event.kind in _SAID_ELSEWHERE
                                  and not event.data.get("no_mirror")):
        return None
    if event.kind == "leader_leg":
        return event.message
    if event.kind.startswith("remote_"):  # a remote follower's agent reported it
        told = event.kind.removeprefix("remote_")
        # (a skip about no mirror, e.g. an event of an earlier day, has no other line)
        return None if told == "intent" or (told in _SAID_ELSEWHERE and event.data.get(
            "mirror") is not None) else f"{told} (its agent): {event.message}"
    return f"{event.kind}: {event.message}"


def _because(reason: str, order_id: str | None) -> str:
    """` (reason)`, one line; a very long one ends in the pointer to its full text."""
    reason = _one_line(reason)
    if not reason:
        return ""
    if len(reason) > PLAIN_REASON_MAX and order_id:
        return f" ({reason[:PLAIN_REASON_MAX - 1]}… {explain_pointer(order_id)})"
    return f" ({reason})"


def _filled(event: TrailEvent) -> str:
    average = f" @ {event.average_price:.2f}" if event.average_price > 0 else ""
    return f"{event.filled}/{event.quantity}{average}"


def _transition(event: TrailEvent) -> str:
    data = event.data
    before, after = str(data.get("from", "")), str(data.get("to", ""))
    detail = str(data.get("detail") or "")
    reason = _because(detail or event.reason, event.leader_order_id)
    if after == "SUBMITTED":
        return "placed" + ("" if _UNITS.fullmatch(detail) else _because(detail, None))
    if before == "PENDING_CANCEL" and after in ("ACCEPTED", "PARTIALLY_FILLED"):
        return f"cancel refused: still {STATE_WORDS[after]}" + _because(detail, None)
    if after == "ACCEPTED":
        return "accepted" + (f" (order {event.follower_order_id})"
                             if event.follower_order_id else "")
    if after == "PARTIALLY_FILLED":  # the mirror may have filled further since: then no figures
        return "partly filled" + (f" {_filled(event)}" if event.quantity is not None
                                  and event.filled < event.quantity else "")
    if after == "FILLED":
        return f"filled {_filled(event)}"
    if after == "PENDING_CANCEL":
        return "cancelling" + _because(detail, event.leader_order_id)
    words = {"CANCELED": "cancelled", "REJECTED": "rejected", "SKIPPED": "skipped",
             "EXPIRED": "expired"}
    if after in words:
        return words[after] + reason
    return f"{before.lower()} -> {after.lower()}" + _because(detail, event.leader_order_id)


def _intent_done(event: TrailEvent) -> str | None:
    action = str(event.data.get("action", ""))
    status = str(event.data.get("status", ""))
    outcome = str(event.data.get("outcome") or "")
    if action == "MODIFY" and status == "DONE":
        return "modified: " + changes(event.before, event.request or {})
    if status in _QUIET_OUTCOMES.get(action, set()):
        return None
    return f"{action.lower()} {status.lower()}" + _because(outcome, event.leader_order_id)


def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> str:
    """`price 3000.00 -> 3010.00, qty 5 -> 8`: what differs; what `after` sets when there
    is nothing to compare with, or nothing differs."""
    def shown(key: str, text: Callable[[Any], str], values: Mapping[str, Any]) -> str:
        value = values.get(key)
        return "" if value in (None, "") else text(value)

    differ, values = [], []
    for key, name, text in _CHANGES:
        new = shown(key, text, after)
        old = shown(key, text, before) if before is not None else ""
        if before is not None and old != new and (old or new):
            differ.append(f"{name} {old or '-'} -> {new or '-'}")
        elif new:
            values.append(f"{name} {new}")
    if differ:
        return ", ".join(differ)
    return ", ".join(values) + (" (as before)" if before is not None else "")


def _terms(data: Mapping[str, Any]) -> str:
    kind = str(data.get("order_type", ""))
    price, trigger = data.get("price") or 0, data.get("trigger_price") or 0
    return (kind + (f" @ {price:.2f}" if price and kind != "MARKET" else "")
            + (f" trigger {trigger:.2f}" if trigger else ""))


def leader_change(data: Mapping[str, Any], before: Mapping[str, Any] | None) -> str | None:
    """A leader order's recorded change, in words; None when nothing worth a line moved."""
    status = str(data.get("status", ""))
    quantity, traded = int(data.get("quantity") or 0), int(data.get("traded_quantity") or 0)
    if data.get("first") or before is None:
        return f"seen: {_terms(data)}, {status.lower()}" + (
            f", traded {traded}/{quantity}" if traded else "")
    parts = []
    modified = [(key, name) for key, name, _text in _CHANGES if data.get(key) != before.get(key)]
    if modified:
        parts.append("modified: " + changes({k: before.get(k) for k, _ in modified},
                                            {k: data.get(k) for k, _ in modified}))
    was_traded = int(before.get("traded_quantity") or 0)
    average = float(data.get("average_price") or 0)
    at = f" @ {average:.2f}" if average > 0 else ""
    if traded > was_traded:
        parts.append(f"filled {traded}{at}" if traded >= quantity
                     else f"partly filled {traded}/{quantity}{at}")
    if status != before.get("status") and status not in ("TRADED", "PART_TRADED"):
        words = {"CANCELLED": "cancelled", "PENDING": "open", "REJECTED": "rejected",
                 "EXPIRED": "expired", "TRIGGERED": "triggered"}
        word = words.get(status, status.lower())
        if status in ("CANCELLED", "EXPIRED") and traded:
            word += f" ({traded}/{quantity} filled)"
        elif status == "REJECTED":
            word += _because(str(data.get("reason") or ""), None)
        parts.append(word)
    return "; ".join(parts) or None


# ---- the stop summary --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    title: str
    started: datetime
    stopped: datetime
    stats: tuple[FollowerStats, ...]  # every follower, in the configuration's order
    sending: LatencySummary  # leader event -> request sent: copytrade's own part


def run_summary(title: str, started: datetime, stopped: datetime, followers: Sequence[str],
                rows: Sequence[MappingRow]) -> RunSummary:
    """This run's figures per follower, from the mapping rows of its leader orders."""
    from copytrade.core.report_math import follower_stats

    found = {stats.follower: stats for stats in follower_stats(rows)}
    names = [*followers, *(name for name in found if name not in followers)]
    sending = [r.send_lag_ms for r in rows
               if r.follower is not None and r.leg == 1 and r.send_lag_ms is not None]
    return RunSummary(title, started, stopped,
                      tuple(found.get(name, FollowerStats(name, 0, 0, 0)) for name in names),
                      latency_summary(sending))


def _count(counts: Mapping[str, int]) -> str:
    return str(sum(counts.values()))


SUMMARY_COLUMNS: tuple[Column, ...] = (
    Column("follower", lambda s: s.follower, 0, cap=32),
    Column("seen", lambda s: str(s.orders), 1, right=True),
    Column("mirrored", lambda s: str(s.mirrored), 2, right=True),
    Column("filled", lambda s: str(s.filled), 3, right=True),
    Column("skipped", lambda s: _count(s.skipped), 4, right=True),
    Column("rejected", lambda s: _count(s.rejected), 5, right=True),
    Column("lag p50", lambda s: lag_text(s.latency.p50), 6, right=True),
    Column("lag p99", lambda s: lag_text(s.latency.p99), 7, right=True),
)


def summary_heading(summary: RunSummary) -> str:
    return (f"{summary.title} stopped: this run, {ist_clock(summary.started)} to "
            f"{ist_clock(summary.stopped)}")


def summary_note(summary: RunSummary) -> str:
    sending = summary.sending
    own = (f"; copytrade's own part, leader event -> request sent: p50 "
           f"{lag_text(sending.p50)}, p99 {lag_text(sending.p99)}" if sending.count else "")
    return ("seen: leader orders decided for the follower; lag: leader event -> its "
            f"broker accepted the order (as in `copytrade stats`){own}")


def summary_view(summary: RunSummary, width: int) -> Group:
    from rich.console import Group

    reasons = [_line(line, width) for line in reason_lines(summary.stats)]
    return Group(_line(summary_heading(summary), width, "bold"),
                 fitted_table(SUMMARY_COLUMNS, summary.stats, width), *reasons,
                 _note(summary_note(summary)))


def _note(text: str) -> Text:
    from rich.text import Text

    return Text(text, style="dim")


def summary_plain(summary: RunSummary) -> str:
    header = [column.header for column in SUMMARY_COLUMNS]
    cells = [[_one_line(column.cell(s)) for column in SUMMARY_COLUMNS] for s in summary.stats]
    return "\n".join([summary_heading(summary), plain_table(header, cells),
                      *(_one_line(line) for line in reason_lines(summary.stats)),
                      summary_note(summary)])
