"""The story of one leader order, as data (`copytrade explain`): pure, no I/O.

The store hands over what it recorded about the order (`OrderRecord`: the leader's row and
its reports, every follower's mirrors, intents, state changes and audit rows, built by
store/explain_queries.py); `build_story` orders it into sections per follower, each with
its verdict (mirrored or not, and why), its sizing and its events in time order. The CLI
renders it and passes every text through the redaction filter.

`sizing_facts` is the other half of the contract: what the replicator records about
sizing with each place (the rule, the lot size, the caps checked and what changed the
size), read back here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from copytrade.core.ist import to_ist
from copytrade.core.orders import OPEN_STATES, MirrorState
from copytrade.core.sizing import Caps, SizingRule

# ---- what the store hands over ----------------------------------------------------------


@dataclass(frozen=True)
class LeaderFacts:
    order_id: str
    trading_date: str
    status: str
    exchange_segment: str
    security_id: str
    symbol: str
    transaction_type: str
    product_type: str
    order_type: str
    validity: str
    quantity: int
    traded_quantity: int
    price: float
    trigger_price: float
    average_price: float
    lot_size: int | None
    placed_in_app: bool
    after_market_order: bool
    correlation_id: str
    reason: str  # the broker's own text, e.g. an RMS rejection of the leader's order
    first_seen_at: datetime  # our clock
    leader_updated_at: datetime | None  # the leader's broker's clock: its last change
    traded_at: datetime | None  # our clock: first seen fully traded


@dataclass(frozen=True)
class LegFacts:
    """A leader BO's or CO's exit leg (2 stop-loss, 3 target)."""

    leg: int
    status: str
    order_type: str
    quantity: int
    traded_quantity: int
    price: float
    trigger_price: float
    first_price: float
    first_trigger_price: float
    updated_at: datetime | None


@dataclass(frozen=True)
class MirrorFacts:
    id: int
    follower: str
    leg: int
    attempt: int
    correlation_id: str
    follower_order_ids: tuple[str, ...]
    state: str
    quantity: int  # this attempt's own order
    carried_quantity: int  # filled by earlier attempts of the same leg
    filled_quantity: int
    order_type: str
    price: float
    trigger_price: float
    sliced: bool
    shadow: bool
    leader_position_before: int
    follower_position_before: int
    modifications: int
    reason: str
    reason_code: str
    created_at: datetime
    submitted_at: datetime | None
    lag_ms: float | None
    fill_lag_ms: float | None
    # reported by the follower's agent ([bus] leader role): its latest state only; the
    # positions it sized from are in the agent's record
    remote: bool = False


@dataclass(frozen=True)
class IntentFacts:
    id: int
    mirror_id: int
    action: str
    status: str
    request: Mapping[str, Any]
    outcome: str
    created_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class TransitionFacts:
    mirror_id: int
    from_state: str
    to_state: str
    trigger: str
    at: datetime
    detail: str


@dataclass(frozen=True)
class AuditFacts:
    id: int
    at: datetime
    kind: str
    follower: str | None
    leader_order_id: str | None
    message: str


@dataclass(frozen=True)
class ReportFacts:
    """One report of the leader order as copytrade received it: a stream frame or a row
    of a REST order-book read (the trail), or, where no trail is kept, a moment the
    leader-order row remembers."""

    at: datetime
    source: str  # "stream frame", "REST read", ... or "record" for a remembered moment
    status: str
    detail: str = ""
    our_clock: bool = True  # False: the leader's broker's time (seconds), not comparable


@dataclass(frozen=True)
class FollowerSetup:
    """A follower as the configuration says NOW (not necessarily when the order came)."""

    name: str
    enabled: bool
    shadow: bool
    rule: str  # "multiplier 1", "fixed_lots 2"
    caps: tuple[str, ...]
    remote: bool = False  # mirrored by its agent on another host ([bus] leader role)


@dataclass(frozen=True)
class OrderRecord:
    leader: LeaderFacts
    legs: tuple[LegFacts, ...] = ()
    mirrors: tuple[MirrorFacts, ...] = ()
    intents: tuple[IntentFacts, ...] = ()
    transitions: tuple[TransitionFacts, ...] = ()
    audits: tuple[AuditFacts, ...] = ()  # rows about this leader order
    context: tuple[AuditFacts, ...] = ()  # rows around it: streams, stopped accounts
    reports: tuple[ReportFacts, ...] = ()
    reports_from_trail: bool = False  # False: only the moments the leader row keeps
    setups: tuple[FollowerSetup, ...] | None = None  # None: the configuration was not read
    notes: tuple[str, ...] = ()  # what the record cannot tell, said once


# ---- the story ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    at: datetime | None
    kind: str  # report / state / request / response / audit
    title: str
    detail: str = ""
    attempt: int | None = None
    leg: int = 1
    after_seen_ms: float | None = None  # since copytrade first saw the leader order


@dataclass(frozen=True)
class Sizing:
    leader_position_before: int | None
    follower_position_before: int | None
    placed: int  # units, every attempt of the entry
    recorded: bool  # the rule, caps and notes were recorded with the place
    rule: str = ""
    caps: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    configured_now: str = ""  # the configuration now: rule and caps, when it was read


@dataclass(frozen=True)
class LegState:
    leg: int
    state: str
    quantity: int
    filled: int


@dataclass(frozen=True)
class FollowerStory:
    name: str
    mirrored: bool
    verdict: str  # one line: what happened, and why when it was not mirrored
    state: str  # of the entry's latest attempt; "" when nothing was recorded
    reason: str
    reason_code: str
    quantity: int
    filled: int
    follower_order_ids: tuple[str, ...]
    attempts: int
    lag_ms: float | None
    fill_lag_ms: float | None
    legs: tuple[LegState, ...]
    sizing: Sizing
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Story:
    leader: LeaderFacts
    legs: tuple[LegFacts, ...]
    reports: tuple[Event, ...]
    reports_from_trail: bool
    context: tuple[Event, ...]  # leader-wide audit rows and what happened around the order
    followers: tuple[FollowerStory, ...]
    notes: tuple[str, ...] = field(default=())


STOPPING_KINDS = frozenset({"account_stopped", "token_refused"})
RESUMING_KINDS = frozenset({"account_resumed", "token_renewed"})
NO_TRAIL_NOTE = ("this store keeps no audit trail of the leader order's changes: the "
                 "report history shows only the moments the leader-order row remembers")


def build_story(record: OrderRecord) -> Story:
    seen = record.leader.first_seen_at
    names = _follower_names(record)
    followers = tuple(_follower_story(name, record, seen) for name in names)
    notes = record.notes + (() if record.reports_from_trail else (NO_TRAIL_NOTE,))
    return Story(record.leader, record.legs, _report_events(record, seen),
                 record.reports_from_trail, _leader_context(record, seen), followers, notes)


def _follower_names(record: OrderRecord) -> list[str]:
    """Followers configured now, in file order, then any other the record names."""
    recorded = {m.follower for m in record.mirrors} | {
        a.follower for a in record.audits if a.follower}
    names = [s.name for s in record.setups or ()]
    return names + sorted(recorded - set(names))


def _since(at: datetime | None, seen: datetime) -> float | None:
    return None if at is None else round((at - seen).total_seconds() * 1000, 1)


def _report_events(record: OrderRecord, seen: datetime) -> tuple[Event, ...]:
    """Our own clock's reports in time order, then the broker's (to the second: a lag
    against them would mislead)."""
    ours = sorted((r for r in record.reports if r.our_clock), key=lambda r: r.at)
    theirs = [r for r in record.reports if not r.our_clock]
    return tuple(Event(r.at, "report", f"{r.source}: {r.status}", r.detail,
                       after_seen_ms=_since(r.at, seen) if r.our_clock else None)
                 for r in ours + theirs)


def _leader_context(record: OrderRecord, seen: datetime) -> tuple[Event, ...]:
    """Audit rows about the order for no one follower, and the streams' news around it."""
    rows = [a for a in record.audits if not a.follower] + [
        a for a in record.context if not a.follower]
    return tuple(_audit_event(a, seen) for a in sorted(rows, key=lambda a: (a.at, a.id)))


def _audit_event(audit: AuditFacts, seen: datetime) -> Event:
    return Event(audit.at, "audit", audit.kind, audit.message,
                 after_seen_ms=_since(audit.at, seen))


# ---- one follower ---------------------------------------------------------------------------


def _follower_story(name: str, record: OrderRecord, seen: datetime) -> FollowerStory:
    mirrors = sorted((m for m in record.mirrors if m.follower == name),
                     key=lambda m: (m.leg, m.attempt))
    setup = next((s for s in record.setups or () if s.name == name), None)
    entry = [m for m in mirrors if m.leg == 1] or mirrors
    latest = entry[-1] if entry else None
    mirrored, verdict = _verdict(latest, setup, record.context, name)
    ids = tuple(oid for m in mirrors for oid in m.follower_order_ids)
    return FollowerStory(
        name=name, mirrored=mirrored, verdict=verdict,
        state=latest.state if latest else "", reason=latest.reason if latest else "",
        reason_code=latest.reason_code if latest else "",
        quantity=latest.quantity + latest.carried_quantity if latest else 0,
        filled=latest.filled_quantity + latest.carried_quantity if latest else 0,
        follower_order_ids=tuple(dict.fromkeys(ids)), attempts=len(entry),
        lag_ms=entry[0].lag_ms if entry else None,
        fill_lag_ms=next((m.fill_lag_ms for m in reversed(entry)
                          if m.fill_lag_ms is not None), None),
        legs=_leg_states(mirrors), sizing=_sizing(entry, record.intents, setup),
        events=_follower_events(name, mirrors, record, seen))


def _leg_states(mirrors: Sequence[MirrorFacts]) -> tuple[LegState, ...]:
    latest: dict[int, MirrorFacts] = {}
    for mirror in mirrors:  # sorted by (leg, attempt): the last one wins
        latest[mirror.leg] = mirror
    return tuple(LegState(leg, m.state, m.quantity + m.carried_quantity,
                          m.filled_quantity + m.carried_quantity)
                 for leg, m in sorted(latest.items()))


def _verdict(latest: MirrorFacts | None, setup: FollowerSetup | None,
             context: Sequence[AuditFacts], name: str) -> tuple[bool, str]:
    if latest is None:
        return False, "not mirrored: " + _why_nothing(setup, context, name)
    state, reason = latest.state, latest.reason
    total, filled = latest.quantity + latest.carried_quantity, (
        latest.filled_quantity + latest.carried_quantity)
    because = f": {reason}" if reason else ""
    if state == MirrorState.SKIPPED:
        return False, f"not mirrored{because or ': skipped'}"
    if state == MirrorState.REJECTED:
        return False, f"rejected by the follower's broker{because}"
    if state == MirrorState.FILLED:
        return True, f"mirrored: filled {filled}/{total}"
    if state == MirrorState.CANCELED:
        done = f", {filled}/{total} filled" if filled else ""
        return True, f"mirrored, then cancelled{done}{because}"
    if state == MirrorState.EXPIRED:
        return True, f"mirrored, expired with {filled}/{total} filled{because}"
    if state in OPEN_STATES:
        return True, f"mirrored, open: {state.lower()} {filled}/{total}"
    return False, f"{state.lower()}{because}"


def _why_nothing(setup: FollowerSetup | None, context: Sequence[AuditFacts],
                 name: str) -> str:
    if setup is not None and not setup.enabled:
        return "the follower is disabled in the configuration (enabled = false)"
    stops = [a for a in context if a.follower == name
             and a.kind in STOPPING_KINDS | RESUMING_KINDS]
    if stops and stops[-1].kind in STOPPING_KINDS:
        return f"the follower was stopped ({stops[-1].message})"
    if setup is not None and setup.remote:
        return ("mirrored by its agent on another host, which has sent no result for it "
                "yet: run `copytrade explain` there, or see the agent's lag in "
                "`copytrade status`")
    return ("no decision recorded for this follower: follow was not running for it when "
            "the order came, or it was stopped; `copytrade replay-missed --since ...` "
            "mirrors what follow missed")


def _sizing(entry: Sequence[MirrorFacts], intents: Sequence[IntentFacts],
            setup: FollowerSetup | None) -> Sizing:
    now = ""
    if setup is not None:
        now = f"{setup.rule}; " + (f"caps: {', '.join(setup.caps)}" if setup.caps
                                   else "no caps")
    if not entry:
        return Sizing(None, None, 0, False, configured_now=now)
    first = entry[0]
    placed = sum(m.quantity for m in entry if m.state != MirrorState.SKIPPED)
    if first.remote:
        return Sizing(None, None, placed, False, configured_now=now)
    ids = {m.id for m in entry}
    recorded = next((i.request.get("sizing") for i in intents
                     if i.mirror_id in ids and i.action == "PLACE"
                     and isinstance(i.request.get("sizing"), Mapping)), None)
    if recorded is None:
        return Sizing(first.leader_position_before, first.follower_position_before, placed,
                      False, configured_now=now)
    return Sizing(first.leader_position_before, first.follower_position_before, placed, True,
                  rule=str(recorded.get("rule", "")),
                  caps=tuple(str(c) for c in recorded.get("caps", ()) or ()),
                  notes=tuple(str(n) for n in recorded.get("notes", ()) or ()),
                  configured_now=now)


def _follower_events(name: str, mirrors: Sequence[MirrorFacts], record: OrderRecord,
                     seen: datetime) -> tuple[Event, ...]:
    by_id = {m.id: m for m in mirrors}
    # (tie order, event): at the same instant a request, its answer, the state change it
    # made, then audit rows
    events: list[tuple[int, Event]] = []
    for t in record.transitions:
        mirror = by_id.get(t.mirror_id)
        if mirror is not None:
            title = f"{t.from_state} -> {t.to_state}"
            events.append((2, Event(t.at, "state", title, t.detail, mirror.attempt,
                                    mirror.leg, _since(t.at, seen))))
    for intent in record.intents:
        mirror = by_id.get(intent.mirror_id)
        if mirror is not None:
            events += _intent_events(intent, mirror, seen)
    shown = {e.detail for _, e in events if e.detail}
    for audit in list(record.audits) + list(record.context):
        if audit.follower == name and audit.message not in shown:  # not said twice
            events.append((3, _audit_event(audit, seen)))
    events.sort(key=lambda pair: (pair[1].at is None, pair[1].at or seen, pair[0]))
    return tuple(event for _, event in events)


def _intent_events(intent: IntentFacts, mirror: MirrorFacts,
                   seen: datetime) -> list[tuple[int, Event]]:
    pending = "; no answer recorded yet" if intent.status == "SENDING" else ""
    request = Event(intent.created_at, "request", f"request {intent.action}",
                    describe_request(intent.action, intent.request) + pending, mirror.attempt,
                    mirror.leg, _since(intent.created_at, seen))
    if intent.completed_at is None:
        return [(0, request)]
    answer = Event(intent.completed_at, "response", f"response {intent.action}: "
                   f"{intent.status}", intent.outcome, mirror.attempt, mirror.leg,
                   _since(intent.completed_at, seen))
    return [(0, request), (1, answer)]


def describe_request(action: str, request: Mapping[str, Any]) -> str:
    """One line for a recorded request: the order sent, the change, or the cancel's why."""
    order = request.get("order") or request.get("modify")
    if not isinstance(order, Mapping):
        reason = request.get("reason")
        return str(reason) if reason else ""
    parts = [str(order.get(k, "")) for k in ("transaction_type", "quantity")
             if order.get(k) not in (None, "")]
    parts.append(str(order.get("order_type", "")))
    price, trigger = order.get("price") or 0, order.get("trigger_price") or 0
    if price:
        parts.append(f"@ {price:g}" if isinstance(price, int | float) else f"@ {price}")
    if trigger:
        parts.append(f"trigger {trigger}")
    parts += [str(order[k]) for k in ("product_type", "validity") if order.get(k)]
    if request.get("slice"):
        parts.append("(through the slicing endpoint)")
    return " ".join(p for p in parts if p)


# ---- what the replicator records about sizing ---------------------------------------------


def sizing_facts(rule: SizingRule, caps: Caps, notes: Sequence[str]) -> dict[str, Any]:
    """What a place records about its sizing (in the intent's request): read back by
    `_sizing`. Cheap on the hot path: the rule and caps part is computed once each, and
    nothing is looked up (the lot size is the leader row's)."""
    rule_words, caps_words = _setup_facts(rule, caps)
    return {"rule": rule_words, "caps": list(caps_words), "notes": list(notes)}


@lru_cache(maxsize=64)
def _setup_facts(rule: SizingRule, caps: Caps) -> tuple[str, tuple[str, ...]]:
    return rule_text(rule), caps_text(caps)


def rule_text(rule: SizingRule) -> str:
    return f"{rule.mode.value} {rule.value:g}"


def caps_text(caps: Caps) -> tuple[str, ...]:
    """The caps a follower's orders are checked against, one phrase each."""
    texts = []
    if caps.max_quantity is not None:
        texts.append(f"max_quantity {caps.max_quantity}")
    if caps.max_order_value is not None:
        texts.append(f"max_order_value {caps.max_order_value:g}")
    for word, kind in (("allow", "segments"), ("deny", "segments"), ("allow", "products"),
                       ("deny", "products"), ("allow", "securities"), ("deny", "securities")):
        names = getattr(caps, f"{'allowed' if word == 'allow' else 'denied'}_{kind}")
        if names:
            texts.append(f"{word} {kind} {', '.join(sorted(names))}")
    return tuple(texts)


# ---- as JSON ------------------------------------------------------------------------------


def story_as_dict(story: Story) -> dict[str, Any]:
    """The story as JSON-ready data: every time in IST with its offset (+05:30)."""
    return _plain(story)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, datetime):
        return to_ist(value).isoformat(timespec="milliseconds")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
