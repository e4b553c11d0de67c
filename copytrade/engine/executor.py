"""The one owner of a follower's broker calls (issue 8): place, modify, cancel until it
converges, lookup by correlation id then adopt, unknown-outcome resolution, throttling and
token refusal, with one set of retry bounds. `follow`'s worker, the reconciler,
`replay-missed` (through the worker) and `cancel-mirror` commit their intents, then hand
the calls to an Executor; none of them calls the broker for orders itself.

Outcome rules (DESIGN.md): success -> recorded; refused -> the caller records Dhan's
reason; throttled -> back off (at least a second) and send the same request again, it was
not accepted; unknown -> never resend a place blind: look it up by correlation id, adopt
what is found. Modify and cancel set a desired state, so after an unknown outcome they are
read back and sent again. DH-901, or an order refused for not coming from the account's
whitelisted static IP (Outcome.static_ip) -> no further call reaches this account
(`refused`); `halt` records it once, with the one wording of `token_refused_text`.

What the executor records is adoption (an order found at the broker becomes the mirror's,
through MirrorUpdater) and the account's halt; the callers record their intents' other
outcomes, each in its own words.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum

from copytrade.core.events import ENTRY_LEG, OPEN_STATUSES, OrderReport, OrderStatus
from copytrade.core.intents import IntentStatus
from copytrade.dhan.rest import STATIC_IP_CODE, Outcome, OutcomeKind, PlaceRequest
from copytrade.engine import faultpoints
from copytrade.engine.broker import Broker
from copytrade.engine.mirrors import MirrorUpdater
from copytrade.store.models import Intent, MirrorOrder
from copytrade.store.repo import Store, legs_of

# ---- the one set of retry bounds ----------------------------------------------------------
# Sends of one request while Dhan answers "throttled" (DH-904 / 429: not accepted). Each
# waits a backoff of at least a second, so eight outlast a per-second window many times
# over; a throttle that outlasts them (a per-minute or per-hour cap) is reported, not
# waited out with the order going stale.
THROTTLE_RETRIES = 8
# Reads by correlation id after a place's unknown outcome before "not found" (then the next
# attempt, with a new correlation id): a REST book can lag a new order (fault 10), so each
# read waits a lookup backoff first; DESIGN.md asks for at least two, a third is cheap.
UNKNOWN_LOOKUPS = 3
# Sends of a modify or cancel whose outcome stayed unknown: both set a desired state, so
# sending again is safe; each follows a backoff and (cancel) a read of the order, and
# three cover a lost reply and a 5xx in a row without hammering a sick server.
CONVERGE_ATTEMPTS = 3
MAX_PLACE_ATTEMPTS = 3  # correlation ids per mirror before it is abandoned and reported
RESUME_LOOKUPS = 2  # book reads without it before a place left over by a crash is sent
RESUME_READS = 8  # reads at most, when the broker answers with errors instead
RESUME_GAP = 0.5  # seconds between those two reads

_STOPPED = Outcome(OutcomeKind.UNKNOWN, message="stopped while waiting for the rate limit")
Write = Callable[[], AbstractContextManager[None]]


def token_refused_text(follower: str, code: str = "", *, then: str = "restart",
                       consequence: str = "", detail: str = "") -> str:
    """The one wording of a follower's refused token (DH-901), wherever it is met (follow,
    replay-missed, cancel-mirror). `consequence`: what it left undone, said first;
    `then`: what to do after refreshing it ("restart", "run again", ...). A refusal for
    the account's IP (code STATIC_IP_CODE) stops the account the same way, in its own
    words (`detail`: Dhan's message and what the account sent from)."""
    done = f"{consequence}; " if consequence else ""
    if code == STATIC_IP_CODE:
        return static_ip_text(follower, then=then, done=done, detail=detail)
    return (f"token of follower {follower} was refused ({code or 'DH-901'}): {done}refresh "
            f"it (web.dhan.co > My Profile > Access DhanHQ APIs) and {then}")


def static_ip_text(follower: str, *, then: str = "restart", done: str = "",
                   detail: str = "") -> str:
    """Dhan takes an account's orders only from the static IP whitelisted for it, and one
    IP serves one user: a host sending for several followers needs an egress per account."""
    said = f" ({detail})" if detail else ""
    return (f"follower {follower} was stopped: Dhan refused its order because it did not "
            f"come from the account's whitelisted static IP{said}. Dhan's rule: orders are "
            "placed, modified and cancelled only from the static IP registered for the "
            f"account, and no two users may share one. {done}Set `source_address` (a local "
            f"address on that IP) or `proxy` (an egress with that IP) for follower "
            f"{follower} in copytrade.toml, or register this host's IP for the account "
            f"(web.dhan.co > My Profile > Access DhanHQ APIs), and {then}")


def intent_status(outcome: Outcome) -> IntentStatus:
    """How a call's outcome finishes its intent."""
    return _STATUS_FOR_OUTCOME[outcome.kind]


_STATUS_FOR_OUTCOME = {
    OutcomeKind.SUCCESS: IntentStatus.DONE, OutcomeKind.REFUSED: IntentStatus.REFUSED,
    OutcomeKind.THROTTLED: IntentStatus.THROTTLED, OutcomeKind.UNKNOWN: IntentStatus.UNKNOWN,
    OutcomeKind.AUTH: IntentStatus.AUTH, OutcomeKind.NOT_FOUND: IntentStatus.NOT_FOUND,
}


@dataclass
class Backoff:
    """Exponential backoff with full jitter; throttling waits at least a second (Dhan)."""

    initial: float = 1.0
    maximum: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        ceiling = min(self.maximum, self.initial * 2**attempt)
        return max(self.initial, self.rng.uniform(0, ceiling))


# ---- typed results ----------------------------------------------------------------------

class PlaceKind(StrEnum):
    ACCEPTED = "accepted"  # the broker answered with order ids (Outcome.data)
    REFUSED = "refused"  # a definitive no, or still throttled after every retry
    ADOPTED = "adopted"  # unknown, then found by correlation id: adopted, intent DONE
    NOT_FOUND = "not found"  # unknown, and no lookup found it: a new attempt may follow
    AUTH = "auth"  # the token was refused (Executor.refused)
    STOPPED = "stopped"  # told to stop before an answer: the intent stays SENDING


@dataclass(frozen=True)
class PlaceResult:
    kind: PlaceKind
    outcome: Outcome | None = None  # the place call's answer (None: never sent)
    sent_at: float = 0.0  # wall-clock epoch seconds the request left


@dataclass(frozen=True)
class CallResult:
    """A modify's last answer, throttling and unknown outcomes retried."""

    outcome: Outcome | None  # None: told to stop before an answer

    @property
    def stopped(self) -> bool:
        return self.outcome is None


class LookupKind(StrEnum):
    FOUND = "found"  # and adopted
    NOT_FOUND = "not found"
    FAILED = "failed"  # the broker did not answer the read
    AUTH = "auth"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Lookup:
    kind: LookupKind
    reports: tuple[OrderReport, ...] = ()
    outcome: Outcome | None = None  # the last read's


class ResumeKind(StrEnum):
    ADOPTED = "adopted"  # it exists (or the stream showed it): the intent is DONE
    SEND = "send"  # two book reads without it: the caller sends it now
    UNRESOLVED = "unresolved"  # the broker never answered: left SENDING for the next start
    AUTH = "auth"  # the token was refused reading: left SENDING


@dataclass(frozen=True)
class ResumeResult:
    kind: ResumeKind
    reports: tuple[OrderReport, ...] = ()


@dataclass(frozen=True)
class CancelOutcome:
    """One follower order's cancel, converged: what the broker last answered and the order
    as last read (a refusal is read back: already cancelled, filled, ...)."""

    order_id: str
    sent: bool  # the broker took the cancel (or it was lost and the order reads CANCELLED)
    outcome: Outcome  # the last call's (or read's, when the read was refused)
    report: OrderReport | None = None  # the order as last read
    earlier: tuple[str, ...] = ()  # the calls before the last, described
    stopped: bool = False  # told to stop before an answer

    @property
    def refused_token(self) -> bool:
        return self.outcome.kind is OutcomeKind.AUTH

    def describe(self) -> str:
        read = f" -> {self.report.status}" if self.report is not None else ""
        return f"{self.order_id}: " + ", then ".join(
            (*self.earlier, f"{self.outcome.describe()}{read}"))


# ---- the executor -------------------------------------------------------------------------

class Executor:
    """Every broker call of one follower account. `acquire` takes a rate-limit slot (False:
    stopping); `wait(seconds)` sleeps and answers True when told to stop."""

    def __init__(self, name: str, broker: Broker, store: Store, updater: MirrorUpdater, *,
                 acquire: Callable[[], bool] = lambda: True,
                 wait: Callable[[float], bool] | None = None,
                 backoff: Backoff | None = None, lookup_backoff: Backoff | None = None,
                 wall: Callable[[], float] = time.time, write: Write | None = None,
                 on_halt: Callable[[str, str], None] = lambda name, reason: None,
                 then: str = "restart") -> None:
        self.name = name
        self.broker = broker
        self.store = store
        self.updater = updater
        self.acquire = acquire
        self.wait = wait or threading.Event().wait  # never set: a plain sleep
        self.backoff = backoff or Backoff()
        self.lookup_backoff = lookup_backoff or Backoff(initial=0.5, maximum=2.0)
        self.wall = wall
        self.write = write or store.write
        self.on_halt = on_halt
        self.then = then  # what the refused-token text tells the operator to do after
        self.sent = 0  # state-changing calls that reached the broker
        self.last_sent_at = 0.0
        self.refused: Outcome | None = None  # DH-901 seen: nothing more is sent or read
        self.halted_reason: str | None = None  # set once the halt is recorded
        self._halt_lock = threading.Lock()
        self._books_at_start: list[list[OrderReport]] | None = None

    # -- the two ways a call leaves ----------------------------------------------------------

    def send(self, call: Callable[[], Outcome]) -> Outcome | None:
        """A state-changing call: rate-limited, sent again while throttled (it was not
        accepted). None when told to stop; the refused outcome, unsent, once refused."""
        if self.refused is not None:
            return self.refused
        outcome: Outcome | None = None
        for attempt in range(THROTTLE_RETRIES):
            if attempt and self.wait(self.backoff.delay(attempt - 1)):
                return None
            if not self.acquire():
                return None
            self.last_sent_at = self.wall()
            outcome = self._seen(call())
            self.sent += 1
            if outcome.kind is not OutcomeKind.THROTTLED:
                return outcome
        return outcome

    def read(self, call: Callable[[], Outcome]) -> Outcome:
        """A read (not rate-limited here: Dhan counts reads apart from orders)."""
        if self.refused is not None:
            return self.refused
        return self._seen(call())

    def _seen(self, outcome: Outcome) -> Outcome:
        if outcome.kind is OutcomeKind.AUTH and self.refused is None:
            self.refused = outcome
        return outcome

    def order(self, order_id: str, leg: int = ENTRY_LEG) -> Outcome:
        """One leg of an order (a BO's or CO's exit legs share the entry's order id)."""
        return self.read(lambda: self.broker.order(order_id, leg))

    def positions(self) -> Outcome:
        return self.read(self.broker.positions)

    # -- place ----------------------------------------------------------------------------

    def place(self, intent: Intent, mirror: MirrorOrder, request: dict) -> PlaceResult:
        """Send a committed place; an unknown outcome is resolved by correlation id (the
        order adopted and the intent finished DONE when found), never by a blind resend."""
        outcome = self.send(lambda: self.broker.place(
            PlaceRequest(**request["order"]), mirror.correlation_id,
            slice_order=bool(request.get("slice"))))
        faultpoints.reached("after_send")
        sent_at = self.last_sent_at
        if outcome is None:
            return PlaceResult(PlaceKind.STOPPED, None, sent_at)
        if outcome.kind is OutcomeKind.AUTH:
            return PlaceResult(PlaceKind.AUTH, outcome, sent_at)
        if outcome.kind is OutcomeKind.UNKNOWN:
            found = self.lookup(mirror.id, mirror.correlation_id, reads=UNKNOWN_LOOKUPS,
                                grace=True, finish=(intent, "adopted after " + outcome.describe()))
            return PlaceResult(_PLACE_FOR_LOOKUP.get(found.kind, PlaceKind.NOT_FOUND),
                               outcome, sent_at)
        kind = PlaceKind.ACCEPTED if outcome.ok else PlaceKind.REFUSED
        return PlaceResult(kind, outcome, sent_at)

    def resume_place(self, intent: Intent, mirror: MirrorOrder) -> ResumeResult:
        """A place the last run committed but never recorded an answer for: the order may
        exist. Adopted if the broker has it; SEND only when two book reads lack it."""
        if legs_of(mirror):  # the follower's stream already showed it
            with self.write():
                self.store.finish_intent(intent, IntentStatus.DONE, "adopted on restart")
            return ResumeResult(ResumeKind.ADOPTED)
        books = self._resume_books()
        if books is None:
            if self.refused is not None:
                return ResumeResult(ResumeKind.AUTH)
            with self.write():
                self.store.audit("unresolved", "a place left over by a restart could not be "
                                 "looked up; it stays pending for the next start",
                                 follower=self.name, leader_order_id=mirror.leader_order_id)
            return ResumeResult(ResumeKind.UNRESOLVED)
        found = sorted((r for book in books for r in book
                        if r.correlation_id == mirror.correlation_id), key=lambda r: r.order_id)
        if found:
            self.adopt(mirror.id, found, finish=(intent, "adopted on restart"))
            return ResumeResult(ResumeKind.ADOPTED, tuple(found))
        with self.write():
            self.store.audit("resumed", "place not found on the broker after a restart: "
                             "sending it", follower=self.name,
                             leader_order_id=mirror.leader_order_id)
        return ResumeResult(ResumeKind.SEND)

    def _resume_books(self) -> list[list[OrderReport]] | None:
        """Two reads of the follower's order book, the second at least RESUME_GAP seconds
        after the first, shared by every place resumed in this run: an order the last run
        sent shows in them (a book can lag a new order by a moment, hence two). None when
        the broker does not answer, or refuses the token."""
        if self._books_at_start is not None:
            return self._books_at_start
        books: list[list[OrderReport]] = []
        for attempt in range(RESUME_READS):
            outcome = self.read(self.broker.order_book)
            if outcome.kind is OutcomeKind.AUTH:
                return None
            if outcome.ok:
                books.append(outcome.data)
                if len(books) == RESUME_LOOKUPS:
                    self._books_at_start = books
                    return books
                wait = RESUME_GAP
            else:
                wait = self.lookup_backoff.delay(attempt)
            if self.wait(wait):
                return None
        return None

    # -- lookup then adopt --------------------------------------------------------------------

    def lookup(self, mirror_id: int, correlation_id: str, *, reads: int = 1,
               grace: bool = False, finish: tuple[Intent, str] | None = None) -> Lookup:
        """Find the mirror's orders by correlation id and adopt them (`finish`: the intent
        to complete DONE in the same transaction). `grace`: wait a lookup backoff before
        each read, for an order sent a moment ago that a REST book may not show yet."""
        outcome = Outcome(OutcomeKind.NOT_FOUND)
        for attempt in range(reads):
            if grace and self.wait(self.lookup_backoff.delay(attempt)):
                return Lookup(LookupKind.STOPPED, outcome=outcome)
            outcome = self.read(lambda: self.broker.order_by_correlation(correlation_id))
            if outcome.kind is OutcomeKind.AUTH:
                return Lookup(LookupKind.AUTH, outcome=outcome)
            if outcome.ok:
                reports = tuple(outcome.data)
                self.adopt(mirror_id, reports, finish=finish)
                return Lookup(LookupKind.FOUND, reports, outcome)
        kind = LookupKind.NOT_FOUND if outcome.kind is OutcomeKind.NOT_FOUND else LookupKind.FAILED
        return Lookup(kind, outcome=outcome)

    def adopt(self, mirror_id: int, reports: Iterable[OrderReport], *,
              finish: tuple[Intent, str] | None = None) -> None:
        """Orders found at the broker become the mirror's, in one transaction."""
        reports = list(reports)
        with self.write():
            if finish is not None:
                self.store.finish_intent(finish[0], IntentStatus.DONE, finish[1])
            self.updater.adopt_order_ids(mirror_id, list(dict.fromkeys(
                r.order_id for r in reports)))
            for report in reports:
                self.updater.apply_report(mirror_id, report)

    # -- modify and cancel: converge on a desired state -------------------------------------

    def modify(self, order_id: str, changes: dict) -> CallResult:
        """A modify sets totals, so after an unknown outcome it is sent again (bounded)."""
        outcome: Outcome | None = None
        for attempt in range(CONVERGE_ATTEMPTS):
            if attempt and self.wait(self.lookup_backoff.delay(attempt - 1)):
                break
            outcome = self.send(lambda: self.broker.modify(order_id, **changes))
            if outcome is None or outcome.kind is not OutcomeKind.UNKNOWN:
                break
        return CallResult(outcome)

    def cancel(self, order_id: str, leg: int = ENTRY_LEG) -> CancelOutcome:
        """Cancel one order until it converges on "not open": an unknown outcome is read
        back after a backoff and, while the order is still open, sent again (a cancel is
        idempotent); a definitive answer is read back once and reported with the order's
        real state (already cancelled, filled, ...), never sent again."""
        earlier: list[str] = []
        outcome = _STOPPED
        report: OrderReport | None = None
        for attempt in range(CONVERGE_ATTEMPTS):
            if attempt:
                read = f" -> {report.status}" if report is not None else ""
                earlier.append(f"{outcome.describe()}{read}")
            sent = self.send(lambda: self.broker.cancel(order_id))
            if sent is None:
                return CancelOutcome(order_id, False, _STOPPED, report, tuple(earlier), True)
            outcome = sent
            if outcome.ok or outcome.kind is OutcomeKind.AUTH:
                return CancelOutcome(order_id, outcome.ok, outcome, None, tuple(earlier))
            unknown = outcome.kind is OutcomeKind.UNKNOWN
            if unknown and self.wait(self.lookup_backoff.delay(attempt)):
                return CancelOutcome(order_id, False, outcome, report, tuple(earlier), True)
            found = self.order(order_id, leg)
            if found.kind is OutcomeKind.AUTH:
                return CancelOutcome(order_id, False, found, None, tuple(earlier))
            report = found.data if found.ok else None
            if not unknown:
                return CancelOutcome(order_id, False, outcome, report, tuple(earlier))
            if report is not None and report.status not in OPEN_STATUSES:
                # CANCELLED: the call got through, only its reply was lost
                return CancelOutcome(order_id, report.status == OrderStatus.CANCELLED,
                                     outcome, report, tuple(earlier))
        return CancelOutcome(order_id, False, outcome, report, tuple(earlier))

    # -- token refusal ------------------------------------------------------------------------

    def refused_text(self) -> str:
        refused = self.refused
        code = refused.code if refused is not None else ""
        detail = refused.message if refused is not None and refused.static_ip else ""
        return token_refused_text(self.name, code, then=self.then, detail=detail)

    def halt(self, intent: Intent | None = None) -> str:
        """Record that this account stopped on a refused token or IP: `intent` finished AUTH
        (one left SENDING stays for the next start), the stop audited once, then on_halt."""
        refused = self.refused or Outcome(OutcomeKind.AUTH, code="DH-901")
        self.refused = refused
        reason = self.refused_text()
        with self._halt_lock:
            first = self.halted_reason is None
            with self.write():
                if intent is not None:
                    self.store.finish_intent(intent, IntentStatus.AUTH, refused.describe())
                if first:
                    self.store.audit("account_stopped", reason, follower=self.name)
            self.halted_reason = reason
        if first:
            self.on_halt(self.name, reason)
        return reason

    def resume(self) -> None:
        """The account has a new token (renewed, or reloaded from secrets.toml): calls go
        out again, and a place resumed now reads the order book afresh. Not after a
        refusal of the account's IP: a new token does not change where orders come from."""
        with self._halt_lock:
            if self.refused is not None and self.refused.static_ip:
                return
            self.refused = None
            self.halted_reason = None
            self._books_at_start = None


_PLACE_FOR_LOOKUP = {LookupKind.FOUND: PlaceKind.ADOPTED, LookupKind.AUTH: PlaceKind.AUTH,
                     LookupKind.STOPPED: PlaceKind.STOPPED}
