"""From a leader report to committed intents for every follower, then to their workers.

The hot path: merge the report into the order's known state (in memory); if nothing
changed, stop there (duplicates end here). Otherwise decide for every follower, commit
the leader row, mirrors and intents in ONE transaction, and only then hand the intents
to the followers' workers, which send them in parallel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from copytrade.core.decide import (
    Action,
    ActionKind,
    MirrorView,
    is_chase,
    is_late_market,
    is_reopenable,
    needs_quote,
)
from copytrade.core.events import ENTRY_LEG, OrderReport, OrderStatus, bracket_values_known
from copytrade.core.ids import attempt_of, correlation_id
from copytrade.core.intents import IntentAction
from copytrade.core.leader import Merged, merge
from copytrade.core.orders import MirrorState, Trigger
from copytrade.core.plan import PlanInputs, needs_size, plan
from copytrade.core.reasons import ReasonCode
from copytrade.core.sizing import Capital, Caps, NetPositions, SizingRule
from copytrade.core.story import sizing_facts
from copytrade.engine import faultpoints
from copytrade.engine.legs import ExitLegs
from copytrade.engine.mirrors import MirrorUpdater
from copytrade.engine.positions import PositionBook
from copytrade.store.models import Intent, MirrorOrder
from copytrade.store.repo import Store

log = logging.getLogger(__name__)
DEFAULT_AMO_TIME = "OPEN"  # Dhan's and the SDK's default
QUOTE_TTL_SECONDS = 2.0
# Dhan's quote APIs allow 1 call a second, and only with a Data API plan: a quote is an
# extra check, never waited for, so one asked within this gap is simply not asked.
QUOTE_GAP_SECONDS = 1.0
QUOTE_RETRY_SECONDS = 600.0  # no answer (no Data API plan?): stop asking for this long
# A follower's own order seen this recently on an instrument: its fills may still be on
# their way, so exits there are confirmed from the broker's positions.
FOREIGN_RECENT_SECONDS = 60.0
# Segments whose orders the exchanges cap at a freeze quantity (Dhan's slicing endpoint).
DERIVATIVE_SEGMENTS = frozenset({"NSE_FNO", "BSE_FNO", "MCX_COMM"})
LotSizeFn = Callable[[str, str], int | None]  # (exchange segment, security id) -> lot size
TickFn = Callable[[str, str], float | None]  # (exchange segment, security id) -> tick size
FreezeFn = Callable[[str, str], int | None]  # (security id, symbol) -> freeze limit


@dataclass
class FollowerPlan:
    """What the replicator needs to know of one follower."""

    name: str
    rule: SizingRule
    caps: Caps
    positions: PositionBook
    submit: Callable[..., None]  # hands an intent (id, optionally fresh) to the worker
    shadow: bool = False
    mirror_on_transit: bool = False
    capital: float | None = None
    max_order_age_seconds: float = 300.0
    max_price_drift_percent: float = 1.0
    stopped_reason: Callable[[], str | None] = lambda: None
    # Whether every frame the follower's stream brought is applied and the stream is up:
    # then the positions we keep are the broker's, and an exit needs no positions read.
    # The default (never current) reads the broker's positions before every exit.
    view_is_current: Callable[[], bool] = lambda: False


@dataclass
class ReplicatorStats:
    leader_reports: int = 0
    duplicates: int = 0
    intents: int = 0
    skipped: int = 0
    failures: int = 0  # leader reports that could not be recorded (retried later)
    decide_seconds: list[float] = field(default_factory=list)


class Replicator:
    def __init__(self, store: Store, followers: list[FollowerPlan], updater: MirrorUpdater, *,
                 lot_size: LotSizeFn, freeze_limit: FreezeFn, trading_date: Callable[[], date],
                 leader_positions: PositionBook, leader_capital: float | None = None,
                 wall: Callable[[], float] = time.time,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 last_price: Callable[[str, str], float | None] = lambda seg, sid: None,
                 on_change: Callable[[], None] = lambda: None,
                 tick_size: TickFn | None = None,
                 leader_order: Callable[[str], OrderReport | None] = lambda order_id: None,
                 market_closed: Callable[[str], str] | None = None,
                 on_leader_recorded: Callable[[], None] = lambda: None,
                 leader_position: Callable[[OrderReport], int] | None = None) -> None:
        self.store = store
        self.followers = followers
        self.updater = updater
        self.lot_size = lot_size
        self.freeze_limit = freeze_limit
        self.trading_date = trading_date
        self.leader_positions = leader_positions
        # An agent's: the leader's position before an order, as its event says (None: the
        # leader's positions are kept here, from its positions read and the fills seen).
        self.leader_position = leader_position
        self.leader_capital = leader_capital
        self.wall = wall
        self.now = now
        self.last_price = last_price
        self.on_change = on_change
        # A leader change committed (the bus's publisher wakes: engine/bus_publish.py).
        # Called after the hand-off to the workers; it must stay as cheap as an Event.set.
        self.on_leader_recorded = on_leader_recorded
        # A leader order's entry row read by REST: a BO's values are not on the stream.
        self.leader_order = leader_order
        self._bracket_asked: set[str] = set()
        self.exit_legs = ExitLegs(store, updater, trading_date)
        # segment -> why it takes no orders now ("" while it does); None: any hour
        self.market_closed = market_closed
        # The instrument list's tick sizes; read from the store when the caller has none.
        # No tick size known: a late market order is skipped with the reason (see plan).
        self.tick_size = tick_size or (lambda exchange_segment, security_id: None)
        # The updater words an IOC chase that ended unfilled with the follower's bound.
        updater.ioc_drift.update({f.name: f.max_price_drift_percent for f in followers})
        self.leaders: dict[str, Merged] = {}
        self._price_now: float | None = None  # the quote fetched for the report in hand
        self._quotes: dict[tuple[str, str], tuple[float, float | None]] = {}
        self._last_quote_call = float("-inf")
        self._quotes_off_until = float("-inf")
        self._working: dict[tuple[str, str, str], dict[str, int]] = {}
        # Traded quantities already inside the positions read at start (by order id), so
        # a catch-up does not count those fills twice; follower orders not ours included.
        self.leader_traded_at_start: dict[str, int] = {}
        self.follower_traded: dict[tuple[str, str], int] = {}
        # (follower, security, product) -> its own working orders there, and when one of
        # its own orders there was last seen (see note_foreign)
        self._freeze_limits: dict[tuple[str, str], int | None] = {}
        self.foreign_working: dict[tuple[str, str, str], set[str]] = {}
        self.foreign_seen_at: dict[tuple[str, str, str], float] = {}
        # Orders of ours found at the broker but unknown to the store (a new or lost
        # database): (follower, correlation id stem) -> their reports. Adopted, never
        # placed again.
        self.adoptable: dict[tuple[str, str], list[OrderReport]] = {}
        self._lot_disagreements: set[tuple[str, str, int]] = set()
        # New places of the report in hand, handed to the workers as committed.
        self._fresh: dict[int, tuple[Intent, MirrorOrder]] = {}
        self.stats = ReplicatorStats()

    # ---- leader side -----------------------------------------------------------------------

    def on_leader_report(self, report: OrderReport) -> None:
        seen_at = self.wall()
        started = time.perf_counter()
        self.stats.leader_reports += 1
        known = self.leaders.get(report.key)
        merged = merge(known, report)
        if not merged.changed:
            self.stats.duplicates += 1
            if known is not None and merged.rest_disagrees != known.rest_disagrees:
                self.leaders[report.key] = merged  # bookkeeping only: nothing to commit
            return
        if report.leg != ENTRY_LEG:
            self._on_exit_leg(known, merged)
            return
        if not bracket_values_known(merged.report):
            merged = replace(merged, report=self._with_bracket_values(merged.report))
        leader = merged.report
        submissions: list[tuple[FollowerPlan, int]] = []
        self._fresh.clear()
        # A quote is a REST call: fetched before the write transaction, never inside it.
        # Only an order first seen filled can use one (a live order was seen accepted),
        # and none is required: the IOC's limit bounds the price at the exchange.
        first_seen_filled = needs_quote(leader) and (
            known is None or not known.report.exchange_accepted)
        self._price_now = self._quote(leader) if first_seen_filled else None
        try:
            with self.store.write():
                # the leader's position before it, fixed at first sight (a bus event carries it)
                self.store.save_leader(leader, merged.version, self.trading_date().isoformat(),
                                       position_before=self._leader_before(leader)
                                       if known is None else None)
                for follower in self.followers:
                    submissions += self._decide_for(follower, leader, seen_at)
        except Exception as exc:
            # Nothing was committed and memory is untouched: the next read of the leader's
            # book brings this order again. Say so now, where it can be read.
            self._record_not_mirrored(leader, exc)
            return
        # Memory follows the database: only what is committed is known.
        self.leaders[report.key] = merged
        self._track_working(leader)
        previously_traded = (known.report.traded_quantity if known
                             else self.leader_traded_at_start.get(leader.key, 0))
        if leader.traded_quantity > previously_traded:
            self.leader_positions.apply_fill(leader.security_id, leader.product_type,
                                             leader.transaction_type,
                                             leader.traded_quantity - previously_traded)
        faultpoints.reached("after_intent_commit")
        self._submit(submissions)
        self.on_leader_recorded()
        if leader.status == OrderStatus.TRADED and (
                known is None or known.report.status != OrderStatus.TRADED):
            with self.store.write():  # after the hand-off: a figure never holds up a send
                self.updater.record_fill_lags(leader.order_id)
        self.stats.decide_seconds.append(time.perf_counter() - started)
        del self.stats.decide_seconds[:-10_000]  # bounded: recent samples only
        self.on_change()

    def _on_exit_leg(self, known: Merged | None, merged: Merged) -> None:
        """A leader BO's or CO's exit leg: recorded, and each follower's same leg (or its
        entry, still working) brought in line (engine/legs.py)."""
        leg = merged.report
        submissions: list[tuple[FollowerPlan, int]] = []
        try:
            with self.store.write():
                self.store.save_leader_leg(leg)
                for follower in self.followers:
                    if not follower.stopped_reason():
                        submissions += [(follower, intent_id) for intent_id in
                                        self.exit_legs.decide(follower.name, leg.order_id,
                                                              leg.leg)]
        except Exception as exc:
            self._record_not_mirrored(leg, exc)
            return
        self.leaders[leg.key] = merged
        previously_traded = (known.report.traded_quantity if known
                             else self.leader_traded_at_start.get(leg.key, 0))
        if leg.traded_quantity > previously_traded:  # the exit moves the leader's position
            self.leader_positions.apply_fill(leg.security_id, leg.product_type,
                                             leg.transaction_type,
                                             leg.traded_quantity - previously_traded)
        self._submit(submissions)
        self.on_leader_recorded()
        self.on_change()

    def _with_bracket_values(self, leader: OrderReport) -> OrderReport:
        """A BO entry seen on the stream, which does not carry its profit and stop-loss
        values: read once from its REST row. Not found: the planner waits, and the next
        read of the leader's book (every reconcile interval) brings them."""
        if leader.product_type != "BO" or leader.order_id in self._bracket_asked:
            return leader
        self._bracket_asked.add(leader.order_id)
        row = self.leader_order(leader.order_id)
        if row is None or not bracket_values_known(row):
            return leader
        return replace(leader, bo_profit_value=row.bo_profit_value,
                       bo_stop_loss_value=row.bo_stop_loss_value)

    def _submit(self, submissions: list[tuple[FollowerPlan, int]]) -> None:
        """Hand committed intents to their workers; a new place goes with what was just
        written, so the worker sends it without reading it back."""
        for follower, intent_id in submissions:
            fresh = self._fresh.get(intent_id)
            if fresh is None:
                follower.submit(intent_id)
            else:
                follower.submit(intent_id, fresh=fresh)
        self._fresh.clear()
        self.stats.intents += len(submissions)

    def decide_missed(self, name: str, has_mirror: Callable[[str, str], bool]) -> int:
        """On the leader pipeline, once a stopped follower is back: today's leader orders
        it was not decided on (nothing is recorded for a stopped account) are decided on
        now, oldest first, by the same planner: placed, or skipped when too old. Returns
        how many leader orders were decided on."""
        plan = next(p for p in self.followers if p.name == name)
        missed = sorted((m.report for m in self.leaders.values()
                         if m.report.leg == ENTRY_LEG
                         and not has_mirror(m.report.order_id, name)), key=_first_seen)
        for leader in missed:
            self._fresh.clear()
            self._price_now = self._quote(leader) if needs_quote(leader) else None
            with self.store.write():
                submissions = self._decide_for(plan, leader, self.wall())
            self._submit(submissions)
        return len(missed)

    def _record_not_mirrored(self, leader: OrderReport, exc: Exception) -> None:
        self.stats.failures += 1
        log.error("leader order %s could not be recorded; it is retried at the next read "
                  "of the leader's book", leader.order_id, exc_info=exc)
        try:
            with self.store.write():
                self.store.audit("not_mirrored", f"could not record the leader order: "
                                 f"{type(exc).__name__}: {exc}; retried at the next read "
                                 "of the leader's book", leader_order_id=leader.order_id)
        except Exception:
            log.exception("recording why leader order %s was not mirrored failed too",
                          leader.order_id)

    def _decide_for(self, follower: FollowerPlan, leader: OrderReport,
                    seen_at: float) -> list[tuple[FollowerPlan, int]]:
        mirror = self.store.mirror(leader.order_id, follower.name)
        if follower.stopped_reason():
            # A stopped account takes no calls, and nothing is recorded for it: once its
            # token is refreshed, the next start catches these orders up (staleness allowing).
            return []
        view = mirror_view(mirror) if mirror is not None else None
        positions = (NetPositions(mirror.leader_position_before, mirror.follower_position_before)
                     if mirror is not None else self._positions_now(follower, leader))
        if mirror is None and self.adoptable:
            # Ours is at the broker already (a lost or new database): it becomes the
            # mirror, never placed twice however old, and is then decided on as usual.
            mirror = self._adopt(follower, leader, positions)
            view = mirror_view(mirror) if mirror is not None else None
        actions = plan(self._inputs(follower, leader, view, positions, self._price_now))
        submissions: list[tuple[FollowerPlan, int]] = []
        for action in actions:
            submissions += self._record(follower, leader, mirror, action, positions, seen_at)
        return submissions

    def _positions_now(self, follower: FollowerPlan, leader: OrderReport) -> NetPositions:
        """Net positions with what is already on its way counted: two quick exits must
        not each close the whole follower position. The follower's working orders are
        read only when the leader's order is an exit."""
        side, security, product = (leader.transaction_type, leader.security_id,
                                   leader.product_type)
        sign = -1 if side == "SELL" else 1
        leader_before = self._leader_before(leader)
        follower_net = follower.positions.net(security, product)
        if leader_before * sign < 0:  # the order reduces the leader's position: an exit
            # Exits already on their way reduce what is left to close; entries of ours
            # still on their way (queued behind the rate limit in a burst) add to it: the
            # worker confirms the holding from the broker before such an exit leaves.
            opposite = "BUY" if side == "SELL" else "SELL"
            working = self.store.open_quantity_by_side(follower.name, security, product)
            follower_net += sign * (working.get(side, 0) - working.get(opposite, 0))
        return NetPositions(leader_before=leader_before, follower=follower_net)

    def _leader_before(self, leader: OrderReport) -> int:
        """The leader's net position before this order: its positions as read at start and
        moved by the fills seen since, with its other working orders on the same side
        counted as done (two quick exits must not each close the whole position). An agent
        has no leader positions: its feed gives the figure the leader recorded."""
        if self.leader_position is not None:
            return self.leader_position(leader)
        side, security, product = (leader.transaction_type, leader.security_id,
                                   leader.product_type)
        sign = -1 if side == "SELL" else 1
        working = self._working.get((security, product, side), {})
        leader_working = sum(q for oid, q in working.items() if oid != leader.order_id)
        own_fills_in_book = self.leader_traded_at_start.get(leader.key, 0)
        return (self.leader_positions.net(security, product)
                + sign * (leader_working - own_fills_in_book))

    def _track_working(self, leader: OrderReport) -> None:
        """Remaining quantity of the leader's open orders, by instrument and side."""
        key = (leader.security_id, leader.product_type, leader.transaction_type)
        working = self._working.setdefault(key, {})
        if leader.is_terminal or leader.remaining_quantity == 0:
            working.pop(leader.order_id, None)
        else:
            working[leader.order_id] = leader.remaining_quantity

    def _quote(self, leader: OrderReport) -> float | None:
        """A quote only where one is cheap: cached per instrument for a few seconds, at most
        one call a second (Dhan's quote limit), and none for a while after a call that got
        nothing (no Data API plan). None is fine: the IOC decides."""
        key = (leader.exchange_segment, leader.security_id)
        now = time.monotonic()
        cached = self._quotes.get(key)
        if cached is not None and now - cached[0] <= QUOTE_TTL_SECONDS:
            return cached[1]
        if now < self._quotes_off_until or now - self._last_quote_call < QUOTE_GAP_SECONDS:
            return None
        self._last_quote_call = now
        price = self.last_price(*key)
        if price is None:
            self._quotes_off_until = now + QUOTE_RETRY_SECONDS
            return None
        self._quotes[key] = (now, price)
        return price

    def _lot_size(self, leader: OrderReport) -> int | None:
        """The instrument list decides; a frame that disagrees is recorded (once per
        instrument and value), never believed over it."""
        listed = self.lot_size(leader.exchange_segment, leader.security_id)
        if listed is None:
            return leader.lot_size
        if leader.lot_size is not None and leader.lot_size != listed:
            key = (leader.exchange_segment, leader.security_id, leader.lot_size)
            if key not in self._lot_disagreements:
                self._lot_disagreements.add(key)
                self.store.audit("lot_size_mismatch", f"a report says lot size "
                                 f"{leader.lot_size} for {leader.exchange_segment} "
                                 f"{leader.security_id}; the instrument list says {listed}, "
                                 "which is used", leader_order_id=leader.order_id)
        return listed

    def _inputs(self, follower: FollowerPlan, leader: OrderReport, view: MirrorView | None,
                positions: NetPositions, quote: float | None) -> PlanInputs:
        """The planner's inputs, as plain values. Sizing's (the lot size with its mismatch
        audit, the freeze limit, the clock) are gathered only when the plan will size."""
        if not needs_size(leader, view, mirror_on_transit=follower.mirror_on_transit):
            return PlanInputs(leader, view, follower.rule, follower.caps,
                              follower.mirror_on_transit)
        return PlanInputs(
            leader, view, follower.rule, follower.caps, follower.mirror_on_transit,
            lot_size=self._lot_size(leader),
            freeze_limit=self._freeze_limit(leader),
            capital=self._capital(follower), positions=positions,
            now=self.now() if view is None else None,  # the staleness of a first decision
            closed_reason=self._closed_reason(leader) if view is None else "",
            quote=quote, tick_size=self._tick(leader, view),
            max_order_age_seconds=follower.max_order_age_seconds,
            max_price_drift_percent=follower.max_price_drift_percent)

    def _closed_reason(self, leader: OrderReport) -> str:
        """Why the segment takes no orders now ("" while it does, or hours are not kept)."""
        if self.market_closed is None:
            return ""
        return self.market_closed(leader.exchange_segment)

    def _tick(self, leader: OrderReport, view: MirrorView | None) -> float | None:
        """The tick size, read only where it prices something: a late market order's IOC."""
        if view is not None or not is_late_market(leader):
            return None
        return self.tick_size(leader.exchange_segment, leader.security_id)

    def _capital(self, follower: FollowerPlan) -> Capital | None:
        if self.leader_capital is None or follower.capital is None:
            return None
        return Capital(self.leader_capital, follower.capital)

    # ---- recording decisions ---------------------------------------------------------------

    def _record(self, follower: FollowerPlan, leader: OrderReport, mirror: MirrorOrder | None,
                action: Action, positions: NetPositions,
                seen_at: float) -> list[tuple[FollowerPlan, int]]:
        if action.kind is ActionKind.SKIP:
            return self._record_skip(follower, leader, mirror, action.reason, positions,
                                     code=action.code)
        if action.kind is ActionKind.PLACE:
            if mirror is None:
                return self._record_place(follower, leader, action, positions, seen_at,
                                          attempt=1)
            return self._record_place(follower, leader, action, positions, seen_at,
                                      attempt=mirror.attempt + 1,
                                      carried=mirror.carried_quantity + mirror.filled_quantity)
        assert mirror is not None
        if action.kind is ActionKind.CANCEL:
            if follower.shadow or mirror.shadow:
                return []
            self.store.update_mirror(mirror, reason=action.reason, reason_code=action.code.value)
            intent = self.store.add_intent(mirror, IntentAction.CANCEL, {"reason": action.reason})
            return [(follower, intent.id)]
        if action.kind is ActionKind.MODIFY:
            return self._record_modify(follower, leader, mirror, action)
        return self._record_replace(follower, leader, mirror, action, positions, seen_at)

    def _record_skip(self, follower: FollowerPlan, leader: OrderReport,
                     mirror: MirrorOrder | None, reason: str,
                     positions: NetPositions | None = None, *,
                     code: ReasonCode = ReasonCode.NONE) -> list[tuple[FollowerPlan, int]]:
        if mirror is None:
            mirror = self._new_mirror(follower, leader, None, positions, 1,
                                      state=MirrorState.SKIPPED, reason=reason, code=code)
            self.store.record_event(mirror, MirrorState.PLANNED, MirrorState.SKIPPED,
                                    Trigger.SKIP, reason)
        else:
            self.store.update_mirror(mirror, reason=reason, reason_code=code.value)
            self.store.apply_trigger(mirror, Trigger.SKIP, reason)
        self.store.audit("skipped", reason, leader_order_id=leader.order_id,
                         follower=follower.name)
        self.stats.skipped += 1
        return []

    def _record_place(self, follower: FollowerPlan, leader: OrderReport, action: Action,
                      positions: NetPositions, seen_at: float, *, attempt: int,
                      carried: int = 0) -> list[tuple[FollowerPlan, int]]:
        placed = self._place(follower, leader, action, positions, seen_at, attempt=attempt,
                             carried=carried)
        if placed is None:
            return []
        self._fresh[placed[0].id] = placed
        return [(follower, placed[0].id)]

    def _place(self, follower: FollowerPlan, leader: OrderReport, action: Action,
               positions: NetPositions, seen_at: float, *, attempt: int,
               carried: int = 0) -> tuple[Intent, MirrorOrder] | None:
        """A new attempt and its place intent (a shadow follower's is only recorded)."""
        if follower.shadow:
            reason = f"shadow: would place {action.quantity}, not sent"
            mirror = self._new_mirror(follower, leader, action, positions, attempt, carried,
                                      MirrorState.SKIPPED, reason)
            self.store.record_event(mirror, MirrorState.PLANNED, MirrorState.SKIPPED,
                                    Trigger.SKIP, reason)
            self.store.audit("shadow", reason, leader_order_id=leader.order_id,
                             follower=follower.name)
            return None
        # Created straight in SUBMITTED (PLANNED -> SUBMITTED recorded): the row and its
        # intent commit together, before anything is sent.
        # An IOC chase carries its code from the start: the updater and the planner treat
        # its end by the exchange as expected, not as a cancel from outside.
        chase = is_chase(action.code)
        mirror = self._new_mirror(follower, leader, action, positions, attempt, carried,
                                  MirrorState.SUBMITTED, action.reason if chase else "",
                                  action.code if chase else ReasonCode.NONE)
        self.store.record_event(mirror, MirrorState.PLANNED, MirrorState.SUBMITTED,
                                Trigger.SUBMIT, f"{action.quantity} units")
        request = {
            "order": {
                "security_id": leader.security_id,
                "exchange_segment": leader.exchange_segment,
                "transaction_type": leader.transaction_type,
                "quantity": action.quantity,
                "order_type": action.order_type,
                "product_type": leader.product_type,
                "price": action.price,
                "trigger_price": action.trigger_price,
                "disclosed_quantity": action.disclosed_quantity,
                "validity": action.validity or leader.validity,
                **amo_fields(leader),
                **bracket_fields(leader),
            },
            "slice": action.slice or self._freeze_unknown(leader),
            "seen_at": seen_at,
            # read back by `explain`: the rule and caps, and what changed the size
            "sizing": sizing_facts(follower.rule, follower.caps, action.notes),
        }
        confirm = self._exit_to_confirm(follower, leader, action.quantity, positions)
        if confirm:
            request["confirm_exit"] = confirm
        return self.store.add_intent(mirror, IntentAction.PLACE, request), mirror

    def _freeze_limit(self, leader: OrderReport) -> int | None:
        """The instrument's freeze quantity, looked up once a run (the table and the
        configuration's overrides do not change while follow runs)."""
        key = (leader.security_id, leader.symbol)
        if key not in self._freeze_limits:
            self._freeze_limits[key] = self.freeze_limit(leader.security_id, leader.symbol)
        return self._freeze_limits[key]

    def _freeze_unknown(self, leader: OrderReport) -> bool:
        """A derivative whose freeze quantity we do not know (stock F&O, BSE, MCX): placed
        through Dhan's slicing endpoint, which splits it only if the exchange's freeze
        quantity needs it, so it is never rejected for exceeding one. The mirror counts as
        sliced (replaced, not modified) only if it came back as more than one order."""
        return (leader.exchange_segment in DERIVATIVE_SEGMENTS
                and self._freeze_limit(leader) is None)

    def _exit_to_confirm(self, follower: FollowerPlan, leader: OrderReport, quantity: int,
                         positions: NetPositions) -> dict | None:
        """An exit is checked against the broker's positions by the worker before it is
        sent whenever our view may lag the broker's: the follower's stream is down or has
        frames not yet applied, or an order of the follower's own is at work on the
        instrument (its fill's frame can be on its way), so an exit never sells what is
        not held. One larger than what our
        own records vouch for may be waiting on an entry of ours still filling: then the
        worker reads the positions a few times before it cuts the exit."""
        sign = -1 if leader.transaction_type == "SELL" else 1
        open_against = max(-sign * positions.follower, 0)
        exit_units = min(quantity, open_against)
        if exit_units == 0:
            return None
        vouched = max(-sign * follower.positions.vouched(leader.security_id,
                                                          leader.product_type), 0)
        await_entry = exit_units > vouched
        if not await_entry and follower.view_is_current() and not self.foreign_activity(
                follower.name, leader.security_id, leader.product_type):
            # Every fill the broker reported is applied and nothing of the follower's own
            # is at work on this instrument: our positions are the broker's, and the exit
            # leaves without a positions read (one round trip off every exit).
            return None
        return {"exit_units": exit_units, "lot_size": self._lot_size(leader) or 1,
                "await_entry": await_entry}

    def _adopt(self, follower: FollowerPlan, leader: OrderReport,
               positions: NetPositions) -> MirrorOrder | None:
        """Our order for this leader order is already at the broker though the store has
        no mirror (the database was lost or is new): record it as the mirror instead of
        placing a second one."""
        stem = correlation_id(self.trading_date(), leader.order_id, follower.name,
                              leader.leg, 1).rsplit("-", 1)[0]
        found = self.adoptable.pop((follower.name, stem), None)
        if not found:
            return None
        latest = max(attempt_of(r.correlation_id) or 1 for r in found)
        mine = [r for r in found if attempt_of(r.correlation_id) == latest]
        first = mine[0]
        mirror = self._new_mirror(follower, leader, None, positions, latest, 0,
                                  MirrorState.SUBMITTED)
        self.store.update_mirror(
            mirror, quantity=sum(r.quantity for r in mine), price=first.price,
            trigger_price=first.trigger_price, order_type=first.order_type,
            disclosed_quantity=first.disclosed_quantity, sliced=len(mine) > 1)
        self.store.record_event(mirror, MirrorState.PLANNED, MirrorState.SUBMITTED,
                                Trigger.SUBMIT, "adopted: already at the broker")
        self.updater.adopt_order_ids(mirror.id, sorted(r.order_id for r in mine))
        for report in mine:
            self.updater.apply_report(mirror.id, report)
        self.store.audit("adopted", f"follower order(s) {', '.join(r.order_id for r in mine)} "
                         "carry our correlation id but were unknown to the store: adopted, "
                         "not placed again", leader_order_id=leader.order_id,
                         follower=follower.name)
        return self.store.mirror_by_id(mirror.id)

    def _record_modify(self, follower: FollowerPlan, leader: OrderReport, mirror: MirrorOrder,
                       action: Action) -> list[tuple[FollowerPlan, int]]:
        own_quantity = action.quantity - mirror.carried_quantity
        self.store.update_mirror(mirror, quantity=own_quantity, price=action.price,
                                 trigger_price=action.trigger_price,
                                 order_type=action.order_type,
                                 disclosed_quantity=action.disclosed_quantity,
                                 modifications=mirror.modifications + 1)
        if follower.shadow or mirror.shadow:
            return []
        intent = self.store.add_intent(mirror, IntentAction.MODIFY, {"modify": {
            "order_type": action.order_type, "quantity": own_quantity, "price": action.price,
            "trigger_price": action.trigger_price,
            "disclosed_quantity": action.disclosed_quantity, "validity": leader.validity}})
        return [(follower, intent.id)]

    def _record_replace(self, follower: FollowerPlan, leader: OrderReport,
                        mirror: MirrorOrder, action: Action, positions: NetPositions,
                        seen_at: float) -> list[tuple[FollowerPlan, int]]:
        """Cancel the old order, place the rest anew (Dhan allows 25 modifications)."""
        cancel = self.store.add_intent(mirror, IntentAction.CANCEL, {"reason": action.reason})
        carried = mirror.carried_quantity + mirror.filled_quantity
        remainder = Action(ActionKind.PLACE, quantity=action.quantity - carried,
                           price=action.price, trigger_price=action.trigger_price,
                           order_type=action.order_type,
                           disclosed_quantity=action.disclosed_quantity, slice=action.slice)
        self.store.audit("replaced", f"{action.reason}: cancel and place "
                         f"{remainder.quantity} anew", leader_order_id=leader.order_id,
                         follower=follower.name)
        placed = self._record_place(follower, leader, remainder, positions, seen_at,
                                    attempt=mirror.attempt + 1, carried=carried)
        return [(follower, cancel.id), *placed]

    def _new_mirror(self, follower: FollowerPlan, leader: OrderReport, action: Action | None,
                    positions: NetPositions | None, attempt: int, carried: int = 0,
                    state: MirrorState = MirrorState.PLANNED, reason: str = "",
                    code: ReasonCode = ReasonCode.NONE) -> MirrorOrder:
        return self.store.create_mirror(
            leader_order=leader.order_id, follower=follower.name, leg=leader.leg,
            attempt=attempt,
            correlation_id=correlation_id(self.trading_date(), leader.order_id, follower.name,
                                          leader.leg, attempt),
            state=state.value, reason=reason, reason_code=code.value,
            security_id=leader.security_id,
            product_type=leader.product_type, transaction_type=leader.transaction_type,
            quantity=action.quantity if action else 0, carried_quantity=carried,
            price=action.price if action else 0.0,
            trigger_price=action.trigger_price if action else 0.0,
            order_type=action.order_type if action else leader.order_type,
            disclosed_quantity=action.disclosed_quantity if action else 0,
            sliced=action.slice if action else False, shadow=follower.shadow,
            leader_position_before=positions.leader_before if positions else 0,
            follower_position_before=positions.follower if positions else 0)

    # ---- the reconciler's replacements ------------------------------------------------------

    def replace_cancelled(self, mirror: MirrorOrder) -> Intent | None:
        """Resync: the follower order of `mirror` was cancelled outside copytrade while the
        leader's order is open. Planned like every mirror: the leader's order as known now
        (in memory), the mirror as an ended one reopened for what it filled, i.e. the
        top-up path; recorded like every place, as the next attempt carrying those units.
        Called inside the reconciler's write transaction (from its thread): it reads no
        quote (a top-up never needs one) and leaves the report in hand's state alone.
        None: nothing to place (the leader's order ended, or sizes to what is filled)."""
        known = self.leaders.get(mirror.leader_order_id)
        follower = next((f for f in self.followers if f.name == mirror.follower), None)
        if known is None or follower is None or follower.shadow or mirror.shadow:
            return None
        leader = known.report
        if leader.is_terminal:
            return None  # the leader no longer wants it, or has it all
        view = replace(mirror_view(mirror), reopenable=True)
        positions = NetPositions(mirror.leader_position_before, mirror.follower_position_before)
        actions = plan(self._inputs(follower, leader, view, positions, quote=None))
        place = next((a for a in actions if a.kind is ActionKind.PLACE), None)
        if place is None:
            return None
        placed = self._place(follower, leader, place, positions, self.wall(),
                             attempt=mirror.attempt + 1,
                             carried=mirror.carried_quantity + mirror.filled_quantity)
        return placed[0] if placed is not None else None

    # ---- follower side --------------------------------------------------------------------

    def on_follower_report(self, follower: str, report: OrderReport) -> None:
        plan = next((p for p in self.followers if p.name == follower), None)
        intent_ids: list[int] = []
        with self.store.write():
            mirror = self.store.mirror_for_follower_order(follower, report.order_id,
                                                          report.correlation_id)
            if mirror is None:  # the follower's own order: its fills still move the position
                self._count_foreign_fills(follower, report)
                return
            if report.leg != ENTRY_LEG:  # an exit leg Dhan made when the entry filled
                mirror, new = self.exit_legs.mirror_for(mirror, report)
                self.updater.apply_report(mirror.id, report)
                # the leader may have moved or left its leg meanwhile (only for a follower
                # this run has a worker for: its intents must be handed to one)
                if new and plan is not None:
                    intent_ids = self.exit_legs.decide(follower, mirror.leader_order_id,
                                                       report.leg)
            else:
                self.updater.apply_report(mirror.id, report)
        for intent_id in intent_ids:
            assert plan is not None
            plan.submit(intent_id)
        self.on_change()

    def note_foreign(self, follower: str, report: OrderReport) -> None:
        """An order of the follower's own (placed outside copytrade): while one is working
        on an instrument, or was seen lately, its next fill may be on its way, so exits on
        that instrument are confirmed from the broker's positions."""
        key = (follower, report.security_id, report.product_type)
        self.foreign_seen_at[key] = time.monotonic()
        working = self.foreign_working.setdefault(key, set())
        if report.is_terminal:
            working.discard(report.order_id)
        else:
            working.add(report.order_id)

    def foreign_activity(self, follower: str, security_id: str, product_type: str) -> bool:
        key = (follower, security_id, product_type)
        seen = self.foreign_seen_at.get(key)
        return bool(self.foreign_working.get(key)) or (
            seen is not None and time.monotonic() - seen < FOREIGN_RECENT_SECONDS)

    def _count_foreign_fills(self, follower: str, report: OrderReport) -> None:
        self.note_foreign(follower, report)
        key = (follower, report.key)
        delta = report.traded_quantity - self.follower_traded.get(key, 0)
        if delta > 0:
            self.follower_traded[key] = report.traded_quantity
            for plan in self.followers:
                if plan.name == follower:
                    plan.positions.apply_fill(report.security_id, report.product_type,
                                              report.transaction_type, delta, ours=False)


def _first_seen(report: OrderReport) -> float:
    when = report.created_at or report.updated_at
    return when.timestamp() if when is not None else 0.0


def mirror_view(mirror: MirrorOrder) -> MirrorView:
    """The planner's view of a stored mirror: totals include what earlier attempts filled."""
    return MirrorView(
        state=MirrorState(mirror.state),
        quantity=mirror.quantity + mirror.carried_quantity,
        filled_quantity=mirror.filled_quantity + mirror.carried_quantity,
        price=mirror.price, trigger_price=mirror.trigger_price, order_type=mirror.order_type,
        modifications=mirror.modifications, sliced=mirror.sliced,
        reopenable=is_reopenable(MirrorState(mirror.state), mirror.reason_code,
                                 shadow=mirror.shadow),
        chase=is_chase(mirror.reason_code))


def bracket_fields(leader: OrderReport) -> dict:
    """A BO's profit and stop-loss values, mirrored as they are: distances in rupees a unit
    from the entry's fill, the same for any size (a CO's stop-loss is its trigger)."""
    if leader.product_type != "BO":
        return {}
    return {"bo_profit_value": leader.bo_profit_value,
            "bo_stop_loss_value": leader.bo_stop_loss_value}


def amo_fields(leader: OrderReport) -> dict:
    """The leader's AMO flag and time, mirrored as they are: an AMO the leader placed for
    the open goes to the same open. Dhan's default time (OPEN) where none was reported."""
    if not leader.after_market_order:
        return {"after_market_order": False}
    return {"after_market_order": True, "amo_time": leader.amo_time or DEFAULT_AMO_TIME}

