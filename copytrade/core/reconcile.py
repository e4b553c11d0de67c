"""Periodic reconciliation kernels (pure): what the store says + what the broker reports
-> findings (`Divergence`) -> what to do about them (`Fix`).

Every few seconds `follow` reads each follower's order book over REST and calls
`diff_follower` with the `StoredMirror`s of that follower that can matter (the open ones,
and those that the book's new or changed rows name: see "incremental rounds" below, which
keeps a round O(open mirrors + book rows) on a day of thousands of ended mirrors), then
`plan_fixes` with the follower's `on_divergence` policy. Likewise the leader's REST book
goes through `diff_leader`, which keeps only the reports that are news, so the periodic
read costs nothing when nothing changed. Nothing here does I/O or reads a clock: ages
come in as numbers (`StoredMirror.submitted_age_seconds`).

Which broker orders are looked at: those whose order id is in some mirror's `legs`, and
those carrying one of OUR correlation ids (`ids.is_ours`). The follower's own orders are
ignored. A mirror's follower orders are its `legs` (one order, or the slices of a sliced
order); all slices carry the mirror's correlation id.

Divergences (one per mirror and follower order, checked in this order):

==================  ==================================================================
kind                when
==================  ==================================================================
MISSING_ON_BROKER   mirror open (SUBMITTED .. PENDING_CANCEL), a leg the store has as
                    not ended, its order id absent from the book, and the mirror was
                    sent more than `grace_seconds` ago (REST books lag a new order).
CANCELLED_OUTSIDE   the broker says CANCELLED, the store's leg has not recorded it, and
                    the mirror is SUBMITTED / ACCEPTED / PARTIALLY_FILLED (we never
                    asked: no PENDING_CANCEL, not ended).
STATE_BEHIND        the broker is further along than the store: a leg's status ranks
                    higher (`leader.status_rank`) or it traded more; or the legs are up to
                    date but the mirror's state/filled is not (the state machine would
                    still move it); or an order carrying an OPEN mirror's correlation id
                    that is not in its legs yet (a slice or a reply we lost: adopt it).
WRONG_QUANTITY      a live order of a SUBMITTED / ACCEPTED / PARTIALLY_FILLED mirror is
                    for another quantity than the mirror wants (one order: the mirror's
                    own quantity; a slice: the quantity stored for it). A sliced mirror
                    whose slices no longer add up to its quantity, with no one slice to
                    blame, is reported with `follower_order_id=None`.
WRONG_PRICE         the same, for order type, price or trigger (compared as they take
                    effect: no price on MARKET / STOP_LOSS_MARKET, no trigger on LIMIT /
                    MARKET). A MARKET mirror the broker shows as LIMIT (or SL-M as SL)
                    is Dhan's price protection, not a divergence.
UNKNOWN_OURS        an order with our correlation id whose order id no mirror has, and
                    no OPEN mirror carries that correlation id (e.g. an attempt given up
                    as NOT_FOUND that appeared later). Ignored when it ended with nothing
                    traded (it holds nothing and risks nothing). `duplicate` is set when
                    another attempt at the same leader order (same id stem) holds its
                    place: one is open, or a LATER attempt has fills. `live` is set when
                    the order is still open. `leader_order_id` is known when some mirror
                    shares the id stem; else it is an orphan (another home's, or a row
                    the engine did not pass).
STUCK_SUBMITTED     a SUBMITTED mirror with no follower order id, sent more than
                    `grace_seconds` ago, and no order with its correlation id in the book.
==================  ==================================================================

Grace: "more than" is strict (an age equal to the grace is not late). An age of None
means unknown and is never late: the engine should pass the age since the send, or since
the row was created when the send time was never recorded (a crash before the send).

Fixes (`plan_fixes`). APPLY_REPORT and LOOKUP only bring the store up to the broker's
truth and are always planned; CANCEL_ORDER, MODIFY_ORDER and REPLACE send an
order-changing call and are planned only with policy "resync":

=====================================  ===============  ==============================
divergence                             alert + resync   resync only
=====================================  ===============  ==============================
MISSING_ON_BROKER                      LOOKUP           -
CANCELLED_OUTSIDE                      APPLY_REPORT     REPLACE the remainder (quantity
                                                        = what that order had left)
STATE_BEHIND                           APPLY_REPORT     -
WRONG_QUANTITY (one order / a slice)   -                MODIFY_ORDER back (quantity =
                                                        the desired total of that order)
WRONG_QUANTITY (slices' sum, no id)    -                - (which slice is unknowable)
WRONG_PRICE                            -                MODIFY_ORDER back
UNKNOWN_OURS, duplicate, live          -                CANCEL_ORDER it
UNKNOWN_OURS, duplicate, ended         -                - (extra units held: a human)
UNKNOWN_OURS, not duplicate            APPLY_REPORT     - (adopt it)
UNKNOWN_OURS, orphan (no leader)       -                - (not ours to touch from here)
STUCK_SUBMITTED                        LOOKUP           -
=====================================  ===============  ==============================

Why: MISSING_ON_BROKER gets a LOOKUP, never a blind REPLACE: Dhan does not delete
orders, so a missing row is far likelier a lagging or partial read than a lost order; the
lookup settles it and the next round sees the truth. Adopting an UNKNOWN_OURS order that
no other attempt duplicates is safer than leaving it untracked: tracked, the leader's
later modify/cancel reach it through the normal decision path. APPLY_REPORT with
cause UNKNOWN_OURS is therefore an adoption: the engine attaches the order to
`mirror_id` (the row carrying its correlation id, which is ended) or, when `mirror_id` is
None, creates the attempt row for `leader_order_id`, then runs the leader order through
`decide` (which cancels it if the leader no longer wants it). A REPLACE is a request:
the engine places the remainder only while the leader order is still open.

Limits, on purpose. A cancel in the follower's app that the stream DID deliver is
recorded (the mirror ends CANCELED) and is indistinguishable here from ours; flag it when
the report is applied (`is_cancelled_outside`). The store ahead of the broker (a REST
snapshot older than the stream) is never a divergence. A call in flight looks like a
divergence: a modify committed but not yet sent looks like WRONG_*, and a cancel sent
before its REQUEST_CANCEL is committed (the worker records it after the reply) looks like
CANCELLED_OUTSIDE, whose REPLACE would place again what we just cancelled. So the engine
should leave out mirrors with an intent in flight, and send order-changing fixes only for
divergences seen in two consecutive reads: `plan_fixes(confirmed(previous, current),
policy=...)` for those, `plan_fixes(current, policy="alert")` for the store-only ones.

Output is sorted and independent of the order of the inputs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from copytrade.core.decide import effective_price, effective_trigger
from copytrade.core.events import ENTRY_LEG, OPEN_STATUSES, TERMINAL_STATUSES, OrderReport
from copytrade.core.ids import attempt_of, is_ours
from copytrade.core.leader import order_parameters, report_version, status_rank
from copytrade.core.orders import (
    OPEN_STATES,
    TERMINAL_STATES,
    InvalidTransition,
    MirrorState,
    transition,
    trigger_for_legs,
)

Policy = Literal["alert", "resync"]
LegTuple = tuple[str, int, int]  # (status, traded, quantity)

# Mirror states in which the follower order should match the mirror's desired parameters
# and in which a cancel we did not ask for is "outside" (PENDING_CANCEL: we asked).
_WORKING_STATES = frozenset({MirrorState.SUBMITTED, MirrorState.ACCEPTED,
                             MirrorState.PARTIALLY_FILLED})
# Dhan converts API market orders into limit orders with price protection; the book may
# show them so. (mirror's order type, broker's order type) pairs that are not a change.
_CONVERTED = frozenset({("MARKET", "LIMIT"), ("STOP_LOSS_MARKET", "STOP_LOSS")})


@dataclass(frozen=True)
class StoredMirror:
    """What the store says of one mirror (built by the engine from a MirrorOrder row)."""

    mirror_id: int
    leader_order_id: str
    follower: str
    correlation_id: str
    state: str  # a MirrorState value
    quantity: int  # this attempt's own units (carried units of earlier attempts excluded)
    filled: int
    legs: Mapping[str, LegTuple]  # follower order id -> (status, traded, quantity)
    price: float
    trigger_price: float
    order_type: str
    # Seconds since the place request was sent (or since the row was created when the
    # send was never recorded); None: unknown, never counted as late.
    submitted_age_seconds: float | None


class DivergenceKind(StrEnum):
    MISSING_ON_BROKER = "MISSING_ON_BROKER"
    CANCELLED_OUTSIDE = "CANCELLED_OUTSIDE"
    STATE_BEHIND = "STATE_BEHIND"
    WRONG_QUANTITY = "WRONG_QUANTITY"
    WRONG_PRICE = "WRONG_PRICE"
    UNKNOWN_OURS = "UNKNOWN_OURS"
    STUCK_SUBMITTED = "STUCK_SUBMITTED"


_KIND_RANK = {kind: rank for rank, kind in enumerate(DivergenceKind)}


@dataclass(frozen=True)
class Divergence:
    kind: DivergenceKind
    mirror_id: int | None
    follower: str
    follower_order_id: str | None
    detail: str  # one line a human reads
    leader_order_id: str | None = None
    # CANCELLED_OUTSIDE: units that order had left; WRONG_QUANTITY: the order's desired
    # total; WRONG_PRICE: its total as it is (a modify must send one).
    quantity: int | None = None
    live: bool = False  # UNKNOWN_OURS: the order is still open at the broker
    duplicate: bool = False  # UNKNOWN_OURS: another attempt at the leader order holds its place

    @property
    def key(self) -> tuple:
        """Identity across reconciliation rounds (the detail may change, e.g. ages)."""
        return (self.kind, self.follower, self.mirror_id, self.follower_order_id)


class FixKind(StrEnum):
    APPLY_REPORT = "APPLY_REPORT"  # feed the broker's report to the mirror (or adopt it)
    LOOKUP = "LOOKUP"  # look the order up by id / correlation id, apply what is found
    CANCEL_ORDER = "CANCEL_ORDER"
    MODIFY_ORDER = "MODIFY_ORDER"  # put the mirror's desired quantity / price back
    REPLACE = "REPLACE"  # place the missing remainder anew


ORDER_CHANGING = frozenset({FixKind.CANCEL_ORDER, FixKind.MODIFY_ORDER, FixKind.REPLACE})
_FIX_RANK = {kind: rank for rank, kind in enumerate(FixKind)}


@dataclass(frozen=True)
class Fix:
    kind: FixKind
    mirror_id: int | None
    follower_order_id: str | None
    detail: str
    follower: str = ""
    leader_order_id: str | None = None
    quantity: int | None = None  # REPLACE: units to place; MODIFY_ORDER: the total to set
    cause: DivergenceKind | None = None


# ---- the follower side -------------------------------------------------------------------


def diff_follower(stored: Sequence[StoredMirror], reported: Sequence[OrderReport], *,
                  follower: str, grace_seconds: float) -> list[Divergence]:
    """Compare one follower's mirrors with its broker order book."""
    mirrors = sorted(stored, key=lambda m: m.mirror_id)
    for mirror in mirrors:
        if mirror.follower != follower:
            raise ValueError(f"mirror {mirror.mirror_id} belongs to {mirror.follower!r}, "
                             f"not {follower!r}")
    owner_of: dict[str, StoredMirror] = {}  # follower order id -> the mirror listing it
    by_cid: dict[str, StoredMirror] = {}
    by_stem: dict[str, list[StoredMirror]] = defaultdict(list)
    for mirror in mirrors:
        for order_id in sorted(mirror.legs):
            owner_of.setdefault(order_id, mirror)
        by_cid.setdefault(mirror.correlation_id, mirror)
        if is_ours(mirror.correlation_id):
            by_stem[stem(mirror.correlation_id)].append(mirror)
    # The furthest-along row of each order id first, then only ours: a stale duplicate row
    # cannot stand in for the broker's latest word (and `index_book` chooses alike).
    book = {order_id: r for order_id, r in _latest_by_id(reported).items()
            if order_id in owner_of or is_ours(r.correlation_id)}
    # Indexed once: a scan of the book per mirror made a round O(mirrors x book).
    carrying = _ids_by_cid(book.values())

    found: list[Divergence] = []
    for mirror in mirrors:
        found += _check_mirror(mirror, book, carrying, grace_seconds)
    for order_id in sorted(book):
        if order_id not in owner_of:
            found += _check_unlisted(book[order_id], by_cid, by_stem, follower)
    return sorted(set(found), key=_divergence_order)


def _check_mirror(mirror: StoredMirror, book: Mapping[str, OrderReport],
                  carrying: Mapping[str, list[str]], grace: float) -> list[Divergence]:
    state = MirrorState(mirror.state)
    late = mirror.submitted_age_seconds is not None and mirror.submitted_age_seconds > grace
    found: list[Divergence] = []

    def add(kind: DivergenceKind, order_id: str | None, detail: str, **extra) -> None:
        found.append(Divergence(kind, mirror.mirror_id, mirror.follower, order_id, detail,
                                leader_order_id=mirror.leader_order_id, **extra))

    if (state is MirrorState.SUBMITTED and not mirror.legs and late
            and mirror.correlation_id not in carrying):
        add(DivergenceKind.STUCK_SUBMITTED, None,
            f"mirror {mirror.mirror_id} has been SUBMITTED for "
            f"{mirror.submitted_age_seconds:.1f}s with no follower order "
            f"({mirror.correlation_id} not in the order book)")

    sliced = len(mirror.legs) > 1
    # Orders carrying this mirror's id that its legs do not list yet (a slice or a lost
    # reply, reported STATE_BEHIND elsewhere): until they are adopted, what the mirror's
    # orders add up to is not known, so quantities are not judged this round.
    unlisted = any(order_id not in mirror.legs
                   for order_id in carrying.get(mirror.correlation_id, ()))
    leg_behind = False
    slice_quantity_blamed = False
    for order_id in sorted(mirror.legs):
        stored_status, stored_traded, stored_quantity = mirror.legs[order_id]
        report = book.get(order_id)
        if report is None:
            if state in OPEN_STATES and stored_status not in TERMINAL_STATUSES and late:
                add(DivergenceKind.MISSING_ON_BROKER, order_id,
                    f"order {order_id} is {stored_status} in the store but not in the "
                    f"broker's order book ({mirror.submitted_age_seconds:.1f}s after it "
                    f"was sent)")
            continue
        # What this order should be for: the mirror's own quantity, or a slice's share
        # (unknown until a report of it arrived: then the broker's figure stands).
        desired = mirror.quantity if not sliced else (stored_quantity or report.quantity)
        if _broker_ahead(report, stored_status, stored_traded):
            leg_behind = True
            if is_cancelled_outside(state, report.status, stored_status):
                remainder = max(desired - max(report.traded_quantity, stored_traded), 0)
                add(DivergenceKind.CANCELLED_OUTSIDE, order_id,
                    f"order {order_id} was cancelled at the broker, not by us, with "
                    f"{report.traded_quantity}/{report.quantity} traded; the mirror is "
                    f"{state}", quantity=remainder)
            else:
                add(DivergenceKind.STATE_BEHIND, order_id,
                    f"order {order_id} is {report.status} {report.traded_quantity}/"
                    f"{report.quantity} at the broker; the store has {stored_status} "
                    f"{stored_traded}")
        if report.status in OPEN_STATUSES and state in _WORKING_STATES:
            if report.quantity != desired and not unlisted:
                slice_quantity_blamed = True
                add(DivergenceKind.WRONG_QUANTITY, order_id,
                    f"live order {order_id} is for {report.quantity} units; the mirror "
                    f"wants {desired}", quantity=desired)
            if _parameters_differ(mirror, report):
                add(DivergenceKind.WRONG_PRICE, order_id,
                    f"live order {order_id} is {report.order_type} at {report.price:g} "
                    f"(trigger {report.trigger_price:g}); the mirror wants "
                    f"{mirror.order_type} at {mirror.price:g} "
                    f"(trigger {mirror.trigger_price:g})",
                    quantity=report.quantity)  # keep; a WRONG_QUANTITY beside it wins

    if sliced and state in _WORKING_STATES and not slice_quantity_blamed and not unlisted:
        total = sum(book[oid].quantity if oid in book else leg[2]
                    for oid, leg in mirror.legs.items())
        if total != mirror.quantity:
            add(DivergenceKind.WRONG_QUANTITY, None,
                f"the {len(mirror.legs)} slices add up to {total} units; the mirror wants "
                f"{mirror.quantity}", quantity=mirror.quantity)

    if mirror.legs and not leg_behind:
        behind = _mirror_behind(mirror, state, book)
        if behind is not None:
            add(DivergenceKind.STATE_BEHIND, behind[0], behind[1])
    return found


def _check_unlisted(report: OrderReport, by_cid: Mapping[str, StoredMirror],
                    by_stem: Mapping[str, list[StoredMirror]],
                    follower: str) -> list[Divergence]:
    """An order with our correlation id whose order id no mirror lists."""
    exact = by_cid.get(report.correlation_id)
    if exact is not None and MirrorState(exact.state) in OPEN_STATES:
        return [Divergence(
            DivergenceKind.STATE_BEHIND, exact.mirror_id, follower, report.order_id,
            f"order {report.order_id} ({report.status} {report.traded_quantity}/"
            f"{report.quantity}) carries the correlation id of mirror {exact.mirror_id}, "
            f"which has not recorded it", leader_order_id=exact.leader_order_id)]
    if report.is_terminal and report.traded_quantity == 0:
        return []  # ended with nothing traded: holds nothing, risks nothing
    siblings = [m for m in by_stem.get(stem(report.correlation_id), []) if m is not exact]
    leader_order_id = (exact.leader_order_id if exact is not None
                       else siblings[0].leader_order_id if siblings else None)
    attempt = attempt_of(report.correlation_id) or 0
    holders = sorted(m.mirror_id for m in siblings
                     if MirrorState(m.state) in OPEN_STATES
                     or ((attempt_of(m.correlation_id) or 0) > attempt and m.filled > 0))
    live = not report.is_terminal
    what = (f"order {report.order_id} ({report.status} {report.traded_quantity}/"
            f"{report.quantity}, {report.correlation_id}) is ours but no mirror tracks it")
    if leader_order_id is None:
        why = "; no mirror shares its id stem"
    elif holders:
        why = (f"; a duplicate of leader order {leader_order_id}: mirror(s) "
               f"{', '.join(map(str, holders))} hold its place")
    else:
        why = f"; the only order for leader order {leader_order_id}"
    return [Divergence(DivergenceKind.UNKNOWN_OURS,
                       exact.mirror_id if exact is not None else None, follower,
                       report.order_id, what + why, leader_order_id=leader_order_id,
                       live=live, duplicate=bool(holders))]


def is_cancelled_outside(mirror_state: str, broker_status: str, stored_status: str) -> bool:
    """A cancel we never asked for: the broker says CANCELLED, the store's leg had not
    ended, and the mirror was working (not PENDING_CANCEL, not ended)."""
    return (broker_status == "CANCELLED" and stored_status not in TERMINAL_STATUSES
            and MirrorState(mirror_state) in _WORKING_STATES)


def _broker_ahead(report: OrderReport, stored_status: str, stored_traded: int) -> bool:
    return (report.traded_quantity > stored_traded
            or status_rank(report.status) > status_rank(stored_status))


def _parameters_differ(mirror: StoredMirror, report: OrderReport) -> bool:
    want, got = mirror.order_type, report.order_type
    if (want, got) in _CONVERTED:
        return not _same(effective_trigger(want, mirror.trigger_price),
                         effective_trigger(got, report.trigger_price))
    return (want != got
            or not _same(effective_price(want, mirror.price), effective_price(got, report.price))
            or not _same(effective_trigger(want, mirror.trigger_price),
                         effective_trigger(got, report.trigger_price)))


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0.0, abs_tol=1e-6)


def _mirror_behind(mirror: StoredMirror, state: MirrorState,
                   book: Mapping[str, OrderReport]) -> tuple[str, str] | None:
    """The legs agree with the broker, but the mirror's own state or filled quantity does
    not: applying a report would still move it. (order id to re-apply, detail) or None."""
    reported = sorted(oid for oid in mirror.legs if oid in book)
    if not reported:
        return None
    legs: dict[str, LegTuple] = {}
    for order_id, (status, traded, quantity) in mirror.legs.items():
        report = book.get(order_id)
        if report is not None:
            if status_rank(report.status) >= status_rank(status):
                status = report.status
            traded, quantity = max(traded, report.traded_quantity), report.quantity
        legs[order_id] = (status, traded, quantity)
    traded = sum(leg[1] for leg in legs.values())
    trigger = trigger_for_legs(legs, mirror.quantity)
    try:
        target = transition(state, trigger).state
    except InvalidTransition:
        target = state  # the store's own rows disagree: an anomaly, not the broker's news
    if target is not state:
        return reported[0], (f"mirror {mirror.mirror_id} is {state} but its orders at the "
                             f"broker make it {target}")
    if traded > mirror.filled:
        return reported[0], (f"mirror {mirror.mirror_id} has {mirror.filled} filled but its "
                             f"orders at the broker traded {traded}")
    return None


def _divergence_order(d: Divergence) -> tuple:
    return (d.follower, d.mirror_id is None, d.mirror_id or 0, d.follower_order_id or "",
            _KIND_RANK[d.kind], d.detail, d.leader_order_id or "", d.quantity or 0, d.live,
            d.duplicate)


def _ids_by_cid(reports: Iterable[OrderReport]) -> dict[str, list[str]]:
    """Correlation id -> the order ids carrying it (slices share one)."""
    carrying: dict[str, list[str]] = defaultdict(list)
    for report in reports:
        if report.correlation_id:
            carrying[report.correlation_id].append(report.order_id)
    return carrying


# ---- incremental rounds --------------------------------------------------------------------
#
# A follower's book holds every order of the day, and nearly all of them belong to mirrors
# that ended long ago and agree with it. `diff_follower` gives the same findings when it is
# passed only the rows that could still say something (new or changed since a round found
# them settled, or belonging to a mirror that is still open) with the mirrors those rows
# name, so the engine keeps each row's `fingerprint` once `settled_rows` says so (an int:
# a day of 10,000 rows x 10 followers must not hold a copy of every row).


@dataclass(frozen=True)
class BookIndex:
    """One follower book, indexed once per round."""

    rows: Mapping[str, OrderReport]  # order id -> its furthest-along row
    carrying: Mapping[str, list[str]]  # correlation id -> order ids carrying it


def index_book(reported: Iterable[OrderReport]) -> BookIndex:
    rows = _latest_by_id(reported)
    return BookIndex(rows, _ids_by_cid(rows.values()))


def fingerprint(report: OrderReport) -> int:
    """A hash of the row's order id and everything of it the kernels compare: while it is
    unchanged, so is the row's verdict."""
    return hash((report.order_id, report.status, report.traded_quantity, report.quantity,
                 report.price, report.trigger_price, report.order_type,
                 report.correlation_id))


def settled_rows(found: Iterable[Divergence], stored: Sequence[StoredMirror],
                 reported: Iterable[OrderReport]) -> set[int]:
    """The rows a later round may skip while their fingerprint stays the same: named by
    no divergence, and owned by no mirror that is still open or diverged. The store only
    moves forward (towards the broker), so such a row cannot become news by itself; a
    mirror still open is looked at every round with all its rows anyway."""
    named_orders, named_mirrors = set(), set()
    for divergence in found:
        named_orders.add(divergence.follower_order_id)
        named_mirrors.add(divergence.mirror_id)
    owner_of: dict[str, StoredMirror] = {}
    by_cid: dict[str, StoredMirror] = {}
    for mirror in stored:
        for order_id in mirror.legs:
            owner_of.setdefault(order_id, mirror)
        by_cid.setdefault(mirror.correlation_id, mirror)

    def quiet(mirror: StoredMirror | None) -> bool:
        return mirror is None or (mirror.mirror_id not in named_mirrors
                                  and MirrorState(mirror.state) in TERMINAL_STATES)

    # Both owners count: the mirror listing the order, and the one whose id it carries.
    return {fingerprint(r) for r in reported
            if r.order_id not in named_orders and quiet(owner_of.get(r.order_id))
            and quiet(by_cid.get(r.correlation_id))}


def stem(correlation_id: str) -> str:
    """The part every attempt at one (date, leader order, follower, leg) shares."""
    return correlation_id.rsplit("-", 1)[0]


# ---- from findings to fixes ----------------------------------------------------------------


def plan_fixes(divergences: Sequence[Divergence], *, policy: Policy) -> list[Fix]:
    """What to do; order-changing fixes only with policy "resync" (see the module table).
    Store-only fixes come first, each group sorted; one fix per (kind, order)."""
    if policy not in ("alert", "resync"):
        raise ValueError(f"policy must be 'alert' or 'resync', not {policy!r}")
    planned: dict[tuple, list[Fix]] = defaultdict(list)
    for d in divergences:
        for fix in _fixes_for(d):
            if fix.kind in ORDER_CHANGING and policy != "resync":
                continue
            planned[(fix.kind, fix.follower, fix.mirror_id, fix.follower_order_id)].append(fix)
    return sorted((_merge(group) for group in planned.values()), key=_fix_order)


def _fixes_for(d: Divergence) -> list[Fix]:
    K, F = DivergenceKind, FixKind

    def fix(kind: FixKind, detail: str, quantity: int | None = None) -> Fix:
        return Fix(kind, d.mirror_id, d.follower_order_id, detail, follower=d.follower,
                   leader_order_id=d.leader_order_id, quantity=quantity, cause=d.kind)

    if d.kind in (K.MISSING_ON_BROKER, K.STUCK_SUBMITTED):
        return [fix(F.LOOKUP, f"look up: {d.detail}")]
    if d.kind is K.STATE_BEHIND:
        return [fix(F.APPLY_REPORT, f"apply the broker's report: {d.detail}")]
    if d.kind is K.CANCELLED_OUTSIDE:
        fixes = [fix(F.APPLY_REPORT, f"record the cancel: {d.detail}")]
        if d.quantity:
            fixes.append(fix(F.REPLACE, f"place the remaining {d.quantity} anew: {d.detail}",
                             d.quantity))
        return fixes
    if d.kind in (K.WRONG_QUANTITY, K.WRONG_PRICE):
        if d.follower_order_id is None:
            return []  # the slices no longer add up, and no one slice is to blame
        return [fix(F.MODIFY_ORDER, f"modify back: {d.detail}", d.quantity)]
    if d.kind is K.UNKNOWN_OURS:
        if d.leader_order_id is None:
            return []  # an orphan: not ours to touch from here
        if not d.duplicate:
            return [fix(F.APPLY_REPORT, f"adopt: {d.detail}")]
        return [fix(F.CANCEL_ORDER, f"cancel the duplicate: {d.detail}")] if d.live else []
    raise ValueError(f"unknown divergence kind {d.kind!r}")


def _merge(group: list[Fix]) -> Fix:
    """Fixes of one kind for one order (WRONG_QUANTITY + WRONG_PRICE -> one modify)."""
    group = sorted(group, key=lambda f: (_KIND_RANK[f.cause] if f.cause else -1, f.detail,
                                         f.quantity is None, f.quantity or 0,
                                         f.leader_order_id is None, f.leader_order_id or ""))
    first = group[0]
    if len(group) == 1:
        return first
    detail = "; ".join(dict.fromkeys(f.detail for f in group))
    quantity = next((f.quantity for f in group if f.quantity is not None), None)
    leader = next((f.leader_order_id for f in group if f.leader_order_id), None)
    return Fix(first.kind, first.mirror_id, first.follower_order_id, detail,
               follower=first.follower, leader_order_id=leader,
               quantity=quantity, cause=first.cause)


def _fix_order(f: Fix) -> tuple:
    return (f.kind in ORDER_CHANGING, f.follower, f.mirror_id is None, f.mirror_id or 0,
            f.follower_order_id or "", _FIX_RANK[f.kind], f.detail, f.quantity or 0,
            f.leader_order_id or "")


def confirmed(previous: Iterable[Divergence], current: Iterable[Divergence]) -> list[Divergence]:
    """The current divergences also seen in the previous round (by `Divergence.key`): act
    on order-changing fixes only for these, so a read racing a send is not 'fixed'."""
    seen = {d.key for d in previous}
    return sorted((d for d in current if d.key in seen), key=_divergence_order)


# ---- the leader side ----------------------------------------------------------------------


def diff_leader(known: Mapping[str, OrderReport],
                reported: Sequence[OrderReport]) -> list[OrderReport]:
    """The leader reports from a REST book that are news compared with what the engine
    knows (`known`: order leg key -> merged report): new order ids, a status further along,
    more traded, or - unless the row is older than what is known - another status word of
    the same rank (a terminal race) or other order parameters. Only what both dialects
    report alike is compared (`leader.order_parameters`: not the disclosed quantity,
    remarks or times), else every read would be news and reconnect the stream. Stale rows
    (a snapshot older than the stream) are left out. Sorted by update time, then order id,
    to go through the normal decision path."""
    news = [report for key, report in _latest_by_key(reported).items()
            if _is_news(known.get(key), report)]
    return sorted(news, key=lambda r: (r.updated_at.isoformat() if r.updated_at else "",
                                       r.order_id))


def _is_news(known: OrderReport | None, report: OrderReport) -> bool:
    if known is None:
        return True
    rank, known_rank = status_rank(report.status), status_rank(known.status)
    if report.traded_quantity > known.traded_quantity or rank > known_rank:
        return True
    older = (report.updated_at is not None and known.updated_at is not None
             and report.updated_at < known.updated_at)
    if older:
        return False
    # Another word of the same rank (a terminal race), or other parameters: merge decides.
    return ((report.status != known.status and rank == known_rank)
            or order_parameters(report) != order_parameters(known)
            or _new_bracket_values(known, report))


def _new_bracket_values(known: OrderReport, report: OrderReport) -> bool:
    """A BO's profit and stop-loss values, which only REST rows carry: news while the
    stream-fed state lacks them (its follower orders wait for them)."""
    values = (report.bo_profit_value, report.bo_stop_loss_value)
    return any(values) and values != (known.bo_profit_value, known.bo_stop_loss_value)


def _latest_by_id(reports: Iterable[OrderReport]) -> dict[str, OrderReport]:
    """One report per order id, the furthest along, chosen whatever the input order.
    Entries only: a BO's or CO's exit legs share the entry's id, and are Dhan's orders."""
    latest: dict[str, OrderReport] = {}
    for report in reports:
        if report.leg != ENTRY_LEG:
            continue
        current = latest.get(report.order_id)
        if current is None or _report_order(report) > _report_order(current):
            latest[report.order_id] = report
    return latest


def _latest_by_key(reports: Iterable[OrderReport]) -> dict[str, OrderReport]:
    """One report per order leg (`OrderReport.key`), the furthest along."""
    latest: dict[str, OrderReport] = {}
    for report in reports:
        current = latest.get(report.key)
        if current is None or _report_order(report) > _report_order(current):
            latest[report.key] = report
    return latest


def _report_order(r: OrderReport) -> tuple:
    return (report_version(r), order_parameters(r), r.status, r.correlation_id, r.reason,
            r.average_price, r.exchange_segment, r.security_id, r.transaction_type,
            r.product_type, r.symbol, r.placed_in_app, r.source, r.leg, r.lot_size or 0,
            r.after_market_order, repr(r))  # repr: a total order, whatever fields exist
