"""One worker thread per follower: it takes that follower's committed intents in order and
runs them through the follower's Executor (engine/executor.py, the one owner of its broker
calls), then records each intent's outcome. One follower's slow or failing API never
delays another's orders.

What is recorded here (the calls' rules are the executor's): an accepted place adopts its
order ids and its lag; a refused one rejects the mirror with Dhan's reason; a place still
not found after an unknown outcome is retried under a new correlation id (at most
MAX_PLACE_ATTEMPTS); a refused token stops this account (Executor.halt).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable

from copytrade.core.events import ENTRY_LEG, OPEN_STATUSES, OrderReport
from copytrade.core.intents import IntentAction, IntentStatus
from copytrade.core.orders import MirrorState, Trigger
from copytrade.dhan.rest import OutcomeKind
from copytrade.engine.broker import Broker
from copytrade.engine.executor import (  # re-exported: other modules import them from here
    MAX_PLACE_ATTEMPTS,
    RESUME_GAP,
    RESUME_LOOKUPS,
    RESUME_READS,
    THROTTLE_RETRIES,
    UNKNOWN_LOOKUPS,
    Backoff,
    CancelOutcome,
    Executor,
    PlaceKind,
    PlaceResult,
    ResumeKind,
    intent_status,
    token_refused_text,
)
from copytrade.engine.limits import Limiter
from copytrade.engine.mirrors import MirrorUpdater
from copytrade.engine.positions import PositionBook
from copytrade.store.models import Intent, MirrorOrder
from copytrade.store.repo import Store, legs_of

__all__ = ["CONFIRM_GAP_SECONDS", "CONFIRM_READS", "MAX_PLACE_ATTEMPTS", "RESUME_GAP",
           "RESUME_LOOKUPS", "RESUME_READS", "STOP", "THROTTLE_RETRIES", "UNKNOWN_LOOKUPS",
           "Backoff", "FollowerWorker", "held_against", "intent_status", "token_refused_text"]

log = logging.getLogger(__name__)

CONFIRM_READS = 5  # positions reads before an exit larger than what is held is cut
CONFIRM_GAP_SECONDS = 0.2
STOP = object()


class FollowerWorker:
    def __init__(self, name: str, account: Broker, store: Store, updater: MirrorUpdater,
                 limiter: Limiter, *, on_halt: Callable[[str, str], None],
                 correlation_id_for: Callable[[MirrorOrder, int], str],
                 backoff: Backoff | None = None, lookup_backoff: Backoff | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.name = name
        self.account = account
        self.store = store
        self.updater = updater
        self.limiter = limiter
        self.correlation_id_for = correlation_id_for  # (mirror, attempt) -> correlation id
        self.stopping = threading.Event()
        self.executor = Executor(name, account, store, updater, acquire=limiter.acquire,
                                 wait=self.stopping.wait, backoff=backoff,
                                 lookup_backoff=lookup_backoff, wall=wall, on_halt=on_halt)
        self._retried: set[int] = set()  # intents already tried again after a failure
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()  # C: the fastest wake-up
        self._thread = threading.Thread(target=self._run, name=f"follower-{name}", daemon=True)

    # ---- the executor's state, as this worker's public surface ----------------------------

    @property
    def sent(self) -> int:
        return self.executor.sent

    @property
    def last_sent_at(self) -> float:
        return self.executor.last_sent_at

    @property
    def halted_reason(self) -> str | None:
        return self.executor.halted_reason

    @property
    def backoff(self) -> Backoff:
        return self.executor.backoff

    @backoff.setter
    def backoff(self, value: Backoff) -> None:
        self.executor.backoff = value

    @property
    def lookup_backoff(self) -> Backoff:
        return self.executor.lookup_backoff

    @lookup_backoff.setter
    def lookup_backoff(self, value: Backoff) -> None:
        self.executor.lookup_backoff = value

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, intent_id: int, *, resume: bool = False,
               fresh: tuple[Intent, MirrorOrder] | None = None) -> None:
        """Queue a committed intent; `resume` for one left SENDING by an earlier run, whose
        call may or may not have left before that run ended. `fresh`: the intent and its
        mirror as just committed, so the send reads nothing back from the database."""
        self._queue.put((intent_id, resume, fresh))

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the call in flight (and record it), then stop; queued intents stay
        committed as SENDING for the next start to resolve."""
        self.stopping.set()
        self._queue.put(STOP)
        self._thread.join(timeout)
        self.limiter.close()

    def resume(self, intent_ids: list[int]) -> None:
        """Un-halt (the token was replaced) and send these intents, left AUTH or SENDING
        by the halt, through the resume path: looked up by correlation id, then sent."""
        self.executor.resume()
        for intent_id in intent_ids:
            self._queue.put((intent_id, True, None))

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is STOP or self.stopping.is_set():
                return
            if self.halted_reason:
                continue  # the account is stopped; its intents stay SENDING
            intent_id, resume, fresh = item  # type: ignore[misc]
            try:
                self._execute(intent_id, resume=resume, fresh=fresh)
            except Exception as exc:  # one bad intent must not kill the follower's worker
                log.exception("follower %s: intent %s failed", self.name, intent_id)
                self._failed(intent_id, exc)

    def _failed(self, intent_id: int, exc: Exception) -> None:
        """An intent whose run raised is on the record, and is tried once more through the
        resume path (a place is looked up by correlation id first, never sent blind); a
        second failure leaves it SENDING for the next start, and says so."""
        again = intent_id not in self._retried
        what = (f"intent {intent_id} failed ({type(exc).__name__}: {exc}); "
                + ("trying it once more" if again else "it stays pending for the next start"))
        try:
            with self.store.write():
                self.store.audit("intent_failed", what, follower=self.name)
        except Exception:
            log.exception("follower %s: recording a failed intent failed", self.name)
        if again and not self._wait(self.backoff.delay(0)):
            self._retried.add(intent_id)
            self._queue.put((intent_id, True, None))

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopping; True means stop."""
        return self.stopping.wait(seconds)

    # ---- execution ----------------------------------------------------------------------

    def _execute(self, intent_id: int, *, resume: bool = False,
                 fresh: tuple[Intent, MirrorOrder] | None = None) -> None:
        # Only this worker finishes a follow intent: one handed over fresh is SENDING.
        intent = fresh[0] if fresh else self.store.intent_by_id(intent_id)
        if intent.status != IntentStatus.SENDING:
            return
        request = json.loads(intent.request)
        if fresh and intent.action == IntentAction.PLACE:
            self._place(intent, request, fresh[1])
            return
        if resume and intent.action == IntentAction.PLACE:
            self._resume_place(intent, request)
            return
        # Modify and cancel set a desired state: sending them again is safe.
        action = {IntentAction.PLACE: self._place, IntentAction.MODIFY: self._modify,
                  IntentAction.CANCEL: self._cancel}
        action[IntentAction(intent.action)](intent, request)

    def _resume_place(self, intent: Intent, request: dict) -> None:
        """A place the last run committed but never recorded an answer for: adopted if the
        broker has it, sent only if it does not (the executor decides which)."""
        result = self.executor.resume_place(intent, self.store.mirror_by_id(intent.mirror_id))
        if result.kind is ResumeKind.SEND:
            self._place(intent, request)
        elif result.kind is ResumeKind.AUTH:
            self.executor.halt()  # the place stays SENDING: it may exist

    def _place(self, intent: Intent, request: dict, mirror: MirrorOrder | None = None) -> None:
        mirror = mirror or self.store.mirror_by_id(intent.mirror_id)
        confirm = request.get("confirm_exit")
        if confirm and not self._confirm_exit(intent, mirror, request, confirm):
            return
        result = self.executor.place(intent, mirror, request)
        if result.kind is PlaceKind.AUTH:
            self.executor.halt(intent)
        elif result.kind is PlaceKind.NOT_FOUND:
            self._next_attempt(intent, request, result)
        elif result.kind in (PlaceKind.ACCEPTED, PlaceKind.REFUSED):
            self._record_place(intent, mirror, request, result)

    def _record_place(self, intent: Intent, mirror: MirrorOrder, request: dict,
                      result: PlaceResult) -> None:
        outcome = result.outcome
        assert outcome is not None
        with self.store.write():
            mirror = self.store.mirror_by_id(mirror.id)
            self.store.update_mirror(mirror, submitted_at=self.store.now(),
                                     lag_ms=_lag_ms(request, result.sent_at))
            if outcome.ok:
                self.store.finish_intent(intent, IntentStatus.DONE, ",".join(outcome.data))
                if len(outcome.data) > 1 and not mirror.sliced:
                    # the slicing endpoint split it: several orders are replaced, not modified
                    self.store.update_mirror(mirror, sliced=True)
                self.updater.adopt_order_ids(mirror.id, outcome.data)
            else:
                self.store.finish_intent(intent, IntentStatus.REFUSED, outcome.describe())
                self.store.update_mirror(mirror, reason=outcome.describe())
                self.store.apply_trigger(mirror, Trigger.REJECTED, outcome.describe())
                self.store.audit("mirror_rejected", outcome.describe(), follower=self.name,
                                 leader_order_id=mirror.leader_order_id)

    def _confirm_exit(self, intent: Intent, mirror: MirrorOrder, request: dict,
                      confirm: dict) -> bool:
        """An exit sized from fills our records do not vouch for: the broker's positions
        decide how much of it may go. False when nothing is to be sent (recorded)."""
        order = request["order"]
        exit_units = int(confirm["exit_units"])
        held = 0
        # The entry this exit closes may have been sent just before it and not be filled
        # yet (a burst): the holding is read a few times before the exit is cut.
        reads = CONFIRM_READS if confirm.get("await_entry", True) else 1
        for attempt in range(reads):
            if attempt and self._wait(CONFIRM_GAP_SECONDS):
                return False
            outcome = self.executor.positions()
            if outcome.kind is OutcomeKind.AUTH:
                self.executor.halt(intent)
                return False
            if not outcome.ok:
                continue
            held = held_against(outcome.data, order["security_id"], order["product_type"],
                                order["transaction_type"])
            if held >= exit_units:
                break
        if not outcome.ok:
            self._not_sent(intent, mirror, "exit not sent: the follower's positions could "
                           f"not be read to confirm it ({outcome.describe()})")
            return False
        lot = max(int(confirm.get("lot_size") or 1), 1)
        allowed = min(held // lot * lot, exit_units)
        if allowed == exit_units:
            return True
        quantity = order["quantity"] - exit_units + allowed
        if quantity <= 0:
            self._not_sent(intent, mirror, f"exit not sent: the broker shows {held} held, "
                           f"not the {exit_units} our fills suggested")
            return False
        order["quantity"] = quantity
        with self.store.write():
            self.store.update_mirror(self.store.mirror_by_id(mirror.id), quantity=quantity)
            self.store.audit("exit_reduced", f"exit reduced to {quantity}: the broker shows "
                             f"{held} held, not the {exit_units} our fills suggested",
                             follower=self.name, leader_order_id=mirror.leader_order_id)
        return True

    def _not_sent(self, intent: Intent, mirror: MirrorOrder, reason: str) -> None:
        with self.store.write():
            mirror = self.store.mirror_by_id(mirror.id)
            self.store.finish_intent(intent, IntentStatus.REFUSED, reason)
            self.store.update_mirror(mirror, reason=reason)
            self.store.apply_trigger(mirror, Trigger.REJECTED, reason)
            self.store.audit("mirror_not_sent", reason, follower=self.name,
                             leader_order_id=mirror.leader_order_id)

    def _next_attempt(self, intent: Intent, request: dict, result: PlaceResult) -> None:
        """Not found after an unknown outcome: this attempt is over; the next one goes
        under a new correlation id, so it can never be mistaken for this one."""
        assert result.outcome is not None
        reason = f"not found after an unknown outcome ({result.outcome.describe()})"
        with self.store.write():
            mirror = self.store.mirror_by_id(intent.mirror_id)
            self.store.finish_intent(intent, IntentStatus.UNKNOWN, reason)
            self.store.update_mirror(mirror, reason=reason)
            self.store.apply_trigger(mirror, Trigger.NOT_FOUND, reason)
            if mirror.attempt >= MAX_PLACE_ATTEMPTS:
                self.store.audit("mirror_abandoned", f"{reason}; gave up after "
                                 f"{mirror.attempt} attempts", follower=self.name,
                                 leader_order_id=mirror.leader_order_id)
                return
            retry = self.updater.new_attempt(mirror, self.correlation_id_for(
                mirror, mirror.attempt + 1))
            next_intent = self.store.add_intent(retry, IntentAction.PLACE, request)
        self._execute(next_intent.id)

    def _modify(self, intent: Intent, request: dict) -> None:
        mirror = self.store.mirror_by_id(intent.mirror_id)
        if not mirror.follower_order_id or MirrorState(mirror.state) not in (
                MirrorState.ACCEPTED, MirrorState.PARTIALLY_FILLED, MirrorState.SUBMITTED):
            with self.store.write():
                self.store.finish_intent(intent, IntentStatus.SKIPPED, f"mirror is {mirror.state}")
            return
        order_id = request.get("order_id") or mirror.follower_order_id
        outcome = self.executor.modify(order_id, request["modify"]).outcome
        if outcome is None:
            return  # stopping: the intent stays SENDING, and a modify is safe to resend
        if outcome.kind is OutcomeKind.AUTH:
            self.executor.halt(intent)
            return
        ended = None if outcome.ok else self._leg_ended(mirror, order_id)
        with self.store.write():
            if ended is not None:  # converged: Dhan ended the leg (traded, or its OCO)
                self.updater.apply_report(mirror.id, ended)
                self.store.finish_intent(intent, IntentStatus.CHECKED,
                                         f"{outcome.describe()}; leg is {ended.status}")
                return
            self.store.finish_intent(intent, intent_status(outcome), outcome.describe())
            if not outcome.ok:
                self.store.audit("modify_failed", outcome.describe(), follower=self.name,
                                 leader_order_id=mirror.leader_order_id)

    def _leg_ended(self, mirror: MirrorOrder, order_id: str) -> OrderReport | None:
        """An exit leg whose modify was refused because it had ended meanwhile (both
        stops trigger on the same tick): its report, read back; None otherwise."""
        if mirror.leg == ENTRY_LEG:
            return None
        found = self.executor.order(order_id, mirror.leg)
        return found.data if found.ok and found.data.is_terminal else None

    def _cancel(self, intent: Intent, request: dict) -> None:
        mirror = self.store.mirror_by_id(intent.mirror_id)
        open_legs = request.get("order_ids") or [
            order_id for order_id, (status, _, _) in legs_of(mirror).items()
            if status in OPEN_STATUSES]
        if not legs_of(mirror):
            with self.store.write():
                self.store.finish_intent(intent, IntentStatus.SKIPPED,
                                         "no follower order to cancel")
                if MirrorState(mirror.state) is MirrorState.SUBMITTED:
                    self.store.apply_trigger(mirror, Trigger.CANCELED, "never placed")
            return
        legs: list[CancelOutcome] = []
        for order_id in open_legs:
            leg = self.executor.cancel(order_id, mirror.leg)
            if leg.stopped:
                return
            if leg.refused_token:
                self.executor.halt(intent)
                return
            legs.append(leg)
        self._record_cancel(intent, mirror, request, legs)

    def _record_cancel(self, intent: Intent, mirror: MirrorOrder, request: dict,
                       legs: list[CancelOutcome]) -> None:
        with self.store.write():
            for leg in legs:  # not cancelled by us: the order as read says what it is
                if not leg.sent and leg.report is not None:
                    self.updater.apply_report(mirror.id, leg.report)
            failures = [leg.outcome.describe() for leg in legs if not leg.sent]
            self.store.finish_intent(intent, IntentStatus.CHECKED if failures
                                     else IntentStatus.DONE, "; ".join(failures))
            mirror = self.store.mirror_by_id(mirror.id)
            if any(leg.sent for leg in legs) and not request.get("order_ids"):
                self.store.apply_trigger(mirror, Trigger.REQUEST_CANCEL, request.get("reason", ""))


def held_against(rows: object, security_id: str, product_type: str, side: str) -> int:
    """Units an order on `side` can close, from Dhan's positions rows (netQty signed)."""
    book = PositionBook()
    book.load(rows if isinstance(rows, list) else [])
    net = book.net(security_id, product_type)
    return max(net, 0) if side == "SELL" else max(-net, 0)


def _lag_ms(request: dict, sent_at: float) -> float | None:
    """Leader order seen -> follower request sent, both wall-clock epoch seconds (the
    request carries when the leader was seen, so the figure survives a restart)."""
    seen = request.get("seen_at")
    return round((sent_at - seen) * 1000, 3) if seen is not None else None
