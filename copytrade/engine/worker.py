"""One worker thread per follower: it sends that follower's committed intents in order,
inside its rate limits, and records every outcome. One follower's slow or failing API
never delays another's orders.

Outcome rules (DESIGN.md): success -> recorded; refused -> rejected with Dhan's reason;
throttled -> back off and send the same request again (it was not accepted); unknown ->
look the order up by its correlation id, never resend blind; DH-901 -> this account
stops, with a message saying how to refresh the token.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from copytrade.core.events import OPEN_STATUSES, OrderReport
from copytrade.core.intents import IntentAction, IntentStatus
from copytrade.core.orders import MirrorState, Trigger
from copytrade.dhan.rest import Outcome, OutcomeKind, PlaceRequest
from copytrade.engine import faultpoints
from copytrade.engine.broker import Broker
from copytrade.engine.limits import AccountLimiter
from copytrade.engine.mirrors import MirrorUpdater
from copytrade.engine.positions import PositionBook
from copytrade.store.models import Intent, MirrorOrder
from copytrade.store.repo import Store, legs_of

log = logging.getLogger(__name__)

THROTTLE_RETRIES = 8
UNKNOWN_LOOKUPS = 3
RESUME_LOOKUPS = 2  # book reads without it before a place left over by a crash is sent
RESUME_READS = 8  # reads at most, when the broker answers with errors instead
RESUME_GAP = 0.5  # seconds between those two reads
MAX_PLACE_ATTEMPTS = 3
CONFIRM_READS = 5  # positions reads before an exit larger than what is held is cut
CONFIRM_GAP_SECONDS = 0.2
STOP = object()


@dataclass
class Backoff:
    """Exponential backoff with full jitter; throttling waits at least a second (Dhan)."""

    initial: float = 1.0
    maximum: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        ceiling = min(self.maximum, self.initial * 2**attempt)
        return max(self.initial, self.rng.uniform(0, ceiling))


class FollowerWorker:
    def __init__(self, name: str, account: Broker, store: Store, updater: MirrorUpdater,
                 limiter: AccountLimiter, *, on_halt: Callable[[str, str], None],
                 correlation_id_for: Callable[[MirrorOrder, int], str],
                 backoff: Backoff | None = None, lookup_backoff: Backoff | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.name = name
        self.account = account
        self.store = store
        self.updater = updater
        self.limiter = limiter
        self.on_halt = on_halt
        self.correlation_id_for = correlation_id_for  # (mirror, attempt) -> correlation id
        self.backoff = backoff or Backoff()
        self.lookup_backoff = lookup_backoff or Backoff(initial=0.5, maximum=2.0)
        self.wall = wall
        self.last_sent_at = 0.0
        self.halted_reason: str | None = None
        self._books_at_start: list[list[OrderReport]] | None = None
        self.stopping = threading.Event()
        self.sent = 0
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()  # C: the fastest wake-up
        self._thread = threading.Thread(target=self._run, name=f"follower-{name}", daemon=True)

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
            except Exception:  # one bad intent must not kill the follower's worker
                log.exception("follower %s: intent %s failed", self.name, item)

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
        """A place the last run committed but never recorded an answer for: the order may
        exist. Adopt it if the broker has it; send it only if the broker does not."""
        mirror = self.store.mirror_by_id(intent.mirror_id)
        if legs_of(mirror):  # the follower's stream already showed it
            with self.store.write():
                self.store.finish_intent(intent, IntentStatus.DONE, "adopted on restart")
            return
        books = self._resume_books()
        if books is None:  # the broker never answered: do not guess
            with self.store.write():
                self.store.audit("unresolved", "a place left over by a restart could not be "
                                 "looked up; it stays pending for the next start",
                                 follower=self.name, leader_order_id=mirror.leader_order_id)
            return
        found = [r for book in books for r in book if r.correlation_id == mirror.correlation_id]
        if found:
            with self.store.write():
                self.store.finish_intent(intent, IntentStatus.DONE, "adopted on restart")
                self.updater.adopt_order_ids(mirror.id, sorted({r.order_id for r in found}))
                for report in found:
                    self.updater.apply_report(mirror.id, report)
            return
        with self.store.write():
            self.store.audit("resumed", "place not found on the broker after a restart: "
                             "sending it", follower=self.name,
                             leader_order_id=mirror.leader_order_id)
        self._place(intent, request)

    def _resume_books(self) -> list[list[OrderReport]] | None:
        """Two reads of the follower's order book, the second at least RESUME_GAP seconds
        after the first, shared by every place resumed in this run: an order the last run
        sent shows in them (a book can lag a new order by a moment, hence two). None when
        the broker does not answer."""
        if self._books_at_start is not None:
            return self._books_at_start
        books: list[list[OrderReport]] = []
        for attempt in range(RESUME_READS):
            outcome = self.account.order_book()
            if outcome.ok:
                books.append(outcome.data)
                if len(books) == RESUME_LOOKUPS:
                    self._books_at_start = books
                    return books
                wait = RESUME_GAP
            else:
                wait = self.lookup_backoff.delay(attempt)
            if self._wait(wait):
                return None
        return None

    def _send(self, call: Callable[[], Outcome]) -> Outcome | None:
        """Rate-limited send, retried while throttled; None when told to stop."""
        for attempt in range(THROTTLE_RETRIES):
            if not self.limiter.acquire():
                return None
            self.last_sent_at = self.wall()
            outcome = call()
            self.sent += 1
            if outcome.kind is not OutcomeKind.THROTTLED:
                return outcome
            if self._wait(self.backoff.delay(attempt)):
                return None
        return outcome

    def _halt(self, intent: Intent, outcome: Outcome) -> None:
        reason = (f"token of follower {self.name} was refused ({outcome.code}): refresh it "
                  "(web.dhan.co > My Profile > Access DhanHQ APIs) and restart")
        self.halted_reason = reason
        with self.store.write():
            self.store.finish_intent(intent, IntentStatus.AUTH, outcome.describe())
            self.store.audit("account_stopped", reason, follower=self.name)
        self.on_halt(self.name, reason)

    def _place(self, intent: Intent, request: dict, mirror: MirrorOrder | None = None) -> None:
        mirror = mirror or self.store.mirror_by_id(intent.mirror_id)
        confirm = request.get("confirm_exit")
        if confirm and not self._confirm_exit(intent, mirror, request, confirm):
            return
        outcome = self._send(lambda: self.account.place(
            PlaceRequest(**request["order"]), mirror.correlation_id,
            slice_order=bool(request.get("slice"))))
        faultpoints.reached("after_send")
        if outcome is None:
            return
        if outcome.kind is OutcomeKind.AUTH:
            self._halt(intent, outcome)
            return
        if outcome.kind is OutcomeKind.UNKNOWN:
            self._resolve_unknown_place(intent, request, outcome)
            return
        with self.store.write():
            mirror = self.store.mirror_by_id(mirror.id)
            self.store.update_mirror(mirror, submitted_at=self.store.now(),
                                     lag_ms=_lag_ms(request, self.last_sent_at))
            if outcome.ok:
                self.store.finish_intent(intent, IntentStatus.DONE, ",".join(outcome.data))
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
            outcome = self.account.positions()
            if outcome.kind is OutcomeKind.AUTH:
                self._halt(intent, outcome)
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

    def _resolve_unknown_place(self, intent: Intent, request: dict, first: Outcome) -> None:
        """The order may exist: look it up by correlation id before anything else."""
        mirror = self.store.mirror_by_id(intent.mirror_id)
        for attempt in range(UNKNOWN_LOOKUPS):
            if self._wait(self.lookup_backoff.delay(attempt)):
                return
            found = self.account.order_by_correlation(mirror.correlation_id)
            if found.kind is OutcomeKind.AUTH:
                self._halt(intent, found)
                return
            if found.ok:
                reports: list[OrderReport] = found.data
                with self.store.write():
                    self.store.finish_intent(intent, IntentStatus.DONE,
                                             "adopted after " + first.describe())
                    self.updater.adopt_order_ids(mirror.id, [r.order_id for r in reports])
                    for report in reports:
                        self.updater.apply_report(mirror.id, report)
                return
        self._next_attempt(intent, request, first)

    def _next_attempt(self, intent: Intent, request: dict, first: Outcome) -> None:
        reason = f"not found after an unknown outcome ({first.describe()})"
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
        # A modify sets totals, so sending it again after an unknown outcome is safe.
        outcome: Outcome | None = None
        for attempt in range(UNKNOWN_LOOKUPS):
            outcome = self._send(lambda: self.account.modify(order_id, **request["modify"]))
            if outcome is None:
                return
            if outcome.kind is not OutcomeKind.UNKNOWN or self._wait(
                    self.lookup_backoff.delay(attempt)):
                break
        assert outcome is not None
        if outcome.kind is OutcomeKind.AUTH:
            self._halt(intent, outcome)
            return
        with self.store.write():
            status = intent_status(outcome)
            self.store.finish_intent(intent, status, outcome.describe())
            if not outcome.ok:
                self.store.audit("modify_failed", outcome.describe(), follower=self.name,
                                 leader_order_id=mirror.leader_order_id)

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
        results = []
        for order_id in open_legs:
            outcome = self._cancel_one(order_id)
            if outcome is None:
                return
            if outcome.kind is OutcomeKind.AUTH:
                self._halt(intent, outcome)
                return
            results.append(outcome)
            if not outcome.ok:  # already terminal, or still unknown: read what it is
                self._refresh_leg(mirror, order_id)
        with self.store.write():
            failures = [r.describe() for r in results if not r.ok]
            self.store.finish_intent(intent, IntentStatus.DONE if not failures else "CHECKED",
                                     "; ".join(failures))
            mirror = self.store.mirror_by_id(mirror.id)
            if any(r.ok for r in results) and not request.get("order_ids"):
                self.store.apply_trigger(mirror, Trigger.REQUEST_CANCEL, request.get("reason", ""))

    def _cancel_one(self, order_id: str) -> Outcome | None:
        """Cancel one order; a cancel is idempotent, so an unknown outcome is followed by a
        read and, while the order is still open, by the cancel again (bounded)."""
        outcome: Outcome | None = None
        for attempt in range(UNKNOWN_LOOKUPS):
            outcome = self._send(lambda: self.account.cancel(order_id))
            if outcome is None or outcome.kind is not OutcomeKind.UNKNOWN:
                return outcome
            if self._wait(self.lookup_backoff.delay(attempt)):
                return None
            current = self.account.order(order_id)
            if current.ok and current.data.is_terminal:
                return Outcome(OutcomeKind.SUCCESS, message="cancelled (seen after an "
                               f"unknown outcome: {outcome.describe()})")
        return outcome

    def _refresh_leg(self, mirror, order_id: str) -> None:
        found = self.account.order(order_id)
        if found.ok:
            with self.store.write():
                self.updater.apply_report(mirror.id, found.data)


def intent_status(outcome: Outcome) -> IntentStatus:
    """How a call's outcome finishes its intent."""
    return _STATUS_FOR_OUTCOME[outcome.kind]


_STATUS_FOR_OUTCOME = {
    OutcomeKind.SUCCESS: IntentStatus.DONE, OutcomeKind.REFUSED: IntentStatus.REFUSED,
    OutcomeKind.THROTTLED: IntentStatus.THROTTLED, OutcomeKind.UNKNOWN: IntentStatus.UNKNOWN,
    OutcomeKind.AUTH: IntentStatus.AUTH, OutcomeKind.NOT_FOUND: IntentStatus.NOT_FOUND,
}


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
