"""A hypothesis state machine drives the real follow engine (in this process, against the
emulator on 127.0.0.1) through the leader's trading and the faults of DESIGN.md, and after
every step, once everything has settled, checks the promise of "Identity and
exactly-once":

- per leader order and follower, at most one live follower order on the broker;
- every leader order the broker accepted is mirrored on every follower, or has a mirror
  recorded as not mirrored (SKIPPED, REJECTED, CANCELED) with a reason;
- no follower order carries a correlation id the store does not know;
- and, converged: no live follower order for a leader order that ended unfilled, and a
  resting mirror has the leader's price and its sized quantity.

The rules: the leader places (market or limit, equity or F&O option, through the API or
Dhan's app), modifies, cancels; prices move (resting limits fill); the leader's stream is
dropped or stalled; frames of any account are duplicated, reordered or delayed; a
follower's next place meets 429, 5xx, a timeout before or after the order was created.
Faults on a follower's cancel are replayed by the explicit test at the end (a cancel
meeting an unknown outcome is sent again until the order is seen ended).

One emulator and engine per example, built in `initialize` and torn down after it; every
wait is bounded. Settled ("quiescent") means: the store knows the leader's book as the
broker has it, no intent is SENDING, no worker has a backlog, and the broker's books have
not changed for a moment.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import traceback
from contextlib import ExitStack
from pathlib import Path

import pytest
from followtools import LEADER_ID, Follower, FollowRun, follower, running_follow
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from simtools import sim_dialect

from copytrade.core.ids import correlation_id
from copytrade.sim.server import Emulator
from copytrade.store.models import Intent, LeaderOrder, MirrorOrder

F1 = follower("f1", "1000000002")  # multiplier 1.0
F2 = follower("f2", "1000000003", "fixed_lots = 2")
FOLLOWERS = (F1, F2)
ACCOUNTS = {"leader": LEADER_ID, "f1": F1.client_id, "f2": F2.client_id}

# (security id, segment, product, lot size, tick, a resting BUY limit, a price that fills
# it, the starting price)
INSTRUMENTS = {
    "equity": ("1333", "NSE_EQ", "CNC", 1, 0.05, 1600.0, 1590.0, 1650.0),
    "option": ("52201", "NSE_FNO", "INTRADAY", 65, 0.05, 240.0, 235.0, 250.0),
}
LIVE = frozenset({"TRANSIT", "PENDING", "PART_TRADED", "TRIGGERED"})
OPEN = frozenset({"PENDING", "PART_TRADED"})
ACCEPTED = frozenset({"PENDING", "PART_TRADED", "TRADED", "TRIGGERED"})
ENDED_UNFILLED = frozenset({"CANCELLED", "EXPIRED", "REJECTED"})
NOT_MIRRORED = frozenset({"SKIPPED", "REJECTED", "CANCELED"})  # ended; must say why
INSTRUMENT = st.sampled_from(sorted(INSTRUMENTS))
ORDER_TYPE = st.sampled_from(["MARKET", "LIMIT"])
VIA = st.sampled_from(["api", "app"])
LOTS = st.integers(1, 4)
TICKS = st.integers(-4, 4)
ACTION = st.sampled_from(["place", "resting", "modify", "cancel", "fill"])
QUIET_SECONDS = 0.3  # the broker's books unchanged this long (after all else settled)
SETTLE_TIMEOUT = 20.0


def stem(cid: str) -> str:
    return cid.rsplit("-", 1)[0]


class _ErrorCollector(logging.Handler):
    """Errors the engine only logs (a worker's failed intent, a report that could not be
    applied), for the failure message: no audit row carries them."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.threadName} {record.name}: {record.getMessage()}"
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            where = traceback.extract_tb(exc.__traceback__)[-1:]
            at = f" at {where[0].filename}:{where[0].lineno}" if where else ""
            text += f": {type(exc).__name__}: {exc}{at}"
        self.sink.append(text[:500])


class FollowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.stack = ExitStack()
        self.sim: Emulator | None = None
        self.run: FollowRun | None = None
        self.trading_date = None
        self.steps: list[str] = []  # what each rule did, for failure messages
        self.errors: list[str] = []  # errors the engine logged, for failure messages

    def _did(self, what: str) -> None:
        self.steps.append(what)

    # ---- life of one example -------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        home = Path(tempfile.mkdtemp(prefix="ct-stateful-"))
        self.stack.callback(shutil.rmtree, home, ignore_errors=True)
        collector = _ErrorCollector(self.errors)
        logging.getLogger("copytrade").addHandler(collector)
        self.stack.callback(logging.getLogger("copytrade").removeHandler, collector)
        self.sim = self.stack.enter_context(Emulator(seed=5, dialect=sim_dialect()))
        self.sim.set_hold(1)  # a timed-out request is held 1 s: longer than http_timeout
        self.run = self.stack.enter_context(running_follow(
            self.sim, home, list(FOLLOWERS), http_timeout=0.5,
            settings="reconcile_interval_seconds = 1.0"))
        self.trading_date = self.run.engine.trading_date()

    def teardown(self) -> None:
        run = self.run
        try:
            self.stack.close()  # the engine (bounded), then the emulator, then the home
        finally:
            if run is not None:
                run.store.db.close()

    # ---- the leader trades ---------------------------------------------------------------

    def _place(self, instrument: str, order_type: str, lots: int, via: str) -> None:
        security_id, segment, product, lot, _tick, resting, _fill, _base = INSTRUMENTS[
            instrument]
        price = resting if order_type == "LIMIT" else 0.0
        if via == "api":
            reply = self.run.leader_api.place_order(security_id, segment, "BUY", lots * lot,
                                                    order_type, product, price)
            assert reply["status"] == "success", reply
            order_ids = [reply["data"]["orderId"]]
        else:
            order_ids = self.sim.app_place(LEADER_ID, {
                "transactionType": "BUY", "exchangeSegment": segment, "productType": product,
                "orderType": order_type, "validity": "DAY", "securityId": security_id,
                "quantity": lots * lot, "price": price})
        self._did(f"{via} place {order_type} {lots * lot} {security_id} @{price} -> "
                  f"{order_ids}")

    def _open_limits(self) -> list[dict]:
        return sorted((o for o in self._book("leader") if o["orderStatus"] in OPEN
                       and o["orderType"] == "LIMIT"), key=lambda o: o["orderId"])

    def _modify(self, order: dict, lots: int, ticks: int, via: str) -> None:
        lot, tick = next((v[3], v[4]) for v in INSTRUMENTS.values()
                         if v[0] == order["securityId"])
        quantity = max(lots * lot, order["filledQty"] + lot)
        price = round(order["price"] + ticks * tick, 2)
        if via == "api":
            reply = self.run.leader_api.modify_order(order["orderId"], "LIMIT", "ENTRY_LEG",
                                                     quantity, price, 0, 0, "DAY")
            outcome = reply["status"]
        else:
            outcome = self.sim.app_modify(LEADER_ID, order["orderId"], {
                "orderType": "LIMIT", "quantity": quantity, "price": price,
                "triggerPrice": 0, "disclosedQuantity": 0, "validity": "DAY"})
        self._did(f"{via} modify {order['orderId']} to {quantity} @{price}: {outcome}")

    def _cancel(self, order: dict, via: str) -> None:
        if via == "api":
            outcome = self.run.leader_api.cancel_order(order["orderId"])["status"]
        else:
            outcome = self.sim.app_cancel(LEADER_ID, order["orderId"])
        self._did(f"{via} cancel {order['orderId']}: {outcome}")

    def _move_price(self, instrument: str, fill: bool) -> None:
        """Down through the resting limits (they fill, the leader's and the mirrors'), or
        back up to where they rest."""
        security_id, *_, fill_price, base = INSTRUMENTS[instrument]
        self.sim.set_price(security_id, fill_price if fill else base)
        self._did(f"price {security_id} -> {fill_price if fill else base}")

    def _act(self, data: st.DataObject, kind: str) -> None:
        """One leader action of `kind`, its details drawn; a modify or cancel with no open
        limit order to act on places a resting one instead."""
        orders = self._open_limits()
        if kind in ("modify", "cancel") and orders:
            order = data.draw(st.sampled_from(orders), label="order")
            if kind == "modify":
                self._modify(order, data.draw(LOTS, label="lots"),
                             data.draw(TICKS, label="ticks"), data.draw(VIA, label="via"))
            else:
                self._cancel(order, data.draw(VIA, label="via"))
        elif kind == "fill":
            self._move_price(data.draw(INSTRUMENT, label="instrument"),
                             data.draw(st.booleans(), label="fill"))
        else:
            order_type = "LIMIT" if kind != "place" else data.draw(ORDER_TYPE, label="type")
            self._place(data.draw(INSTRUMENT, label="instrument"), order_type,
                        data.draw(st.integers(1, 3), label="lots"), data.draw(VIA, label="via"))

    @rule(instrument=INSTRUMENT, order_type=ORDER_TYPE, lots=st.integers(1, 3), via=VIA)
    def leader_places(self, instrument: str, order_type: str, lots: int, via: str) -> None:
        self._place(instrument, order_type, lots, via)

    @rule(data=st.data())
    def leader_modifies(self, data: st.DataObject) -> None:
        self._act(data, "modify")

    @rule(data=st.data())
    def leader_cancels(self, data: st.DataObject) -> None:
        self._act(data, "cancel")

    @rule(instrument=INSTRUMENT, fill=st.booleans())
    def price_moves(self, instrument: str, fill: bool) -> None:
        self._move_price(instrument, fill)

    # ---- faults, each followed by a leader action that can meet it -------------------------

    @rule(clean=st.booleans(), then=ACTION, data=st.data())
    def leader_stream_dropped(self, clean: bool, then: str, data: st.DataObject) -> None:
        dropped = self.sim.drop_stream(LEADER_ID, clean=clean)
        self._did(f"leader stream dropped (clean={clean}): {dropped}")
        self._act(data, then)

    @rule(seconds=st.sampled_from([0.2, 0.6, 1.0]), then=ACTION, data=st.data())
    def leader_stream_stalled(self, seconds: float, then: str, data: st.DataObject) -> None:
        stalled = self.sim.stall_stream(LEADER_ID, seconds=seconds)
        self._did(f"leader stream stalled {seconds}s: {stalled}")
        self._act(data, then)

    @rule(kind=st.sampled_from(["duplicate", "reorder", "delay"]),
          account=st.sampled_from(sorted(ACCOUNTS)), count=st.integers(2, 4),
          seconds=st.sampled_from([0.1, 0.5]), then=ACTION, data=st.data())
    def frames_disturbed(self, kind: str, account: str, count: int, seconds: float,
                         then: str, data: st.DataObject) -> None:
        client_id = ACCOUNTS[account]
        if kind == "duplicate":
            self.sim.duplicate_frames(count, client_id)
        elif kind == "reorder":
            self.sim.reorder_frames(count, client_id)
        else:
            self.sim.delay_frames(count, seconds, client_id)
        self._did(f"{account} frames: {kind} next {count}" + (
            f" by {seconds}s" if kind == "delay" else ""))
        self._act(data, then)

    @rule(kind=st.sampled_from(["429", "5xx", "timeout", "accept_then_timeout"]),
          who=st.sampled_from(FOLLOWERS), data=st.data())
    def follower_place_fails(self, kind: str, who: Follower, data: st.DataObject) -> None:
        """The follower's next place meets this: the leader places at once."""
        self.sim.fail_next(kind, "/orders", method="POST", client_id=who.client_id)
        self._did(f"{who.name} next place: {kind}")
        self._act(data, "place")

    # ---- settling and the invariants -----------------------------------------------------

    def _book(self, account: str, snapshot: dict | None = None) -> list[dict]:
        snapshot = snapshot or self.sim.snapshot()
        return snapshot["accounts"].get(ACCOUNTS[account], {}).get("orders", [])

    def _engine_caught_up(self, snapshot: dict) -> bool:
        known = {o.order_id: (o.status, o.quantity, o.traded_quantity, o.price)
                 for o in LeaderOrder.select()}
        return all(known.get(o["orderId"]) == (o["orderStatus"], o["quantity"],
                                               o["filledQty"], o["price"])
                   for o in self._book("leader", snapshot))

    def _disputed(self) -> bool:
        """A REST read that disagreed with what the stream said waits for a second read to
        settle it (a late frame of the same second): the engine is not done until then."""
        replicator = self.run.engine.replicator
        return replicator is not None and any(
            merged.rest_disagrees is not None for merged in list(replicator.leaders.values()))

    def _books(self, snapshot: dict) -> tuple:
        return tuple(tuple(sorted((o["orderId"], o["orderStatus"], o["quantity"],
                                   o["filledQty"], o["price"])
                                  for o in self._book(a, snapshot)))
                     for a in ACCOUNTS)

    def _settle(self) -> dict:
        """The emulator's snapshot, once everything has settled (bounded). The snapshot
        returned is taken after nothing was seen in flight: one taken before could miss
        an order a worker sent just before its intent was seen done."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        last, since = None, time.monotonic()
        while True:
            snapshot = self.sim.snapshot()
            books = self._books(snapshot)
            now = time.monotonic()
            if books != last:
                last, since = books, now
            sending = Intent.select().where(Intent.status == "SENDING").count()
            backlog = sum(w.backlog for w in self.run.engine.workers.values())
            caught_up = self._engine_caught_up(snapshot) and not self._disputed()
            if (not sending and not backlog and caught_up and self.run.thread.is_alive()
                    and now - since >= QUIET_SECONDS):
                after = self.sim.snapshot()
                if self._books(after) == books:
                    return after
            if now > deadline or not self.run.thread.is_alive():
                raise AssertionError(
                    f"not settled within {SETTLE_TIMEOUT}s: sending={sending} "
                    f"backlog={backlog} caught_up={caught_up} "
                    f"engine alive={self.run.thread.is_alive()} failure={self.run.failure}; "
                    f"{self._describe(snapshot)}")
            time.sleep(0.05)

    def _describe(self, snapshot: dict) -> str:
        mirrors = [(m.leader_order_id, m.follower, m.attempt, m.state, m.reason)
                   for m in MirrorOrder.select().order_by(MirrorOrder.id)]
        intents = [(i.mirror_id, i.action, i.status, i.outcome[:80])
                   for i in Intent.select().order_by(Intent.id)]
        books = {a: [(o["orderId"], o["orderStatus"], o["quantity"], o["filledQty"],
                      o["price"], o["correlationId"]) for o in self._book(a, snapshot)]
                 for a in ACCOUNTS}
        workers = [(name, w.backlog, w._thread.is_alive())
                   for name, w in self.run.engine.workers.items()]
        return (f"steps={self.steps} books={books} mirrors={mirrors} intents={intents} "
                f"audit={[(a.kind, a.message) for a in self.run.audit()][-8:]} "
                f"logged errors={self.errors[-6:]} "
                f"workers (name, backlog, alive)={workers}")

    @invariant()
    def promises(self) -> None:
        """After every step, once settled: the promises of DESIGN.md hold."""
        if self.run is not None:
            self.check(self._settle())

    def check(self, snapshot: dict) -> None:
        leader_orders = self._book("leader", snapshot)
        mirrors = list(MirrorOrder.select().order_by(MirrorOrder.id))
        context = self._describe(snapshot)
        for who in FOLLOWERS:
            book = self._book(who.name, snapshot)
            ours = {m.correlation_id for m in mirrors if m.follower == who.name}
            # no follower order under a correlation id the store does not know
            strangers = [o for o in book if o["correlationId"] not in ours]
            assert not strangers, f"{who.name}: unknown orders {strangers}; {context}"
            by_stem: dict[str, list[dict]] = {}
            for order in book:
                by_stem.setdefault(stem(order["correlationId"]), []).append(order)
            for leader in leader_orders:
                key = stem(correlation_id(self.trading_date, leader["orderId"], who.name, 1, 1))
                orders = by_stem.get(key, [])
                # at most one live follower order per leader order
                live = [o for o in orders if o["orderStatus"] in LIVE]
                assert len(live) <= 1, (f"{who.name}: {len(live)} live orders for leader "
                                        f"{leader['orderId']}: {live}; {context}")
                self._check_converged(who, leader, live, context)
                accepted = leader["orderStatus"] in ACCEPTED or (
                    leader["orderStatus"] in ("CANCELLED", "EXPIRED")
                    and leader["exchangeOrderId"])
                if not accepted or orders:
                    continue
                # accepted, no follower order: recorded as not mirrored, with the reason
                attempts = [m for m in mirrors if m.leader_order_id == leader["orderId"]
                            and m.follower == who.name]
                assert attempts, (f"{who.name}: leader order {leader['orderId']} "
                                  f"({leader['orderStatus']}) has no mirror; {context}")
                last = attempts[-1]
                assert last.state in NOT_MIRRORED and last.reason, (
                    f"{who.name}: leader order {leader['orderId']} "
                    f"({leader['orderStatus']}) neither mirrored nor recorded as not "
                    f"mirrored: mirror {last.state} {last.reason!r}; {context}")

    @staticmethod
    def _check_converged(who: Follower, leader: dict, live: list[dict], context: str) -> None:
        """The follower's live order follows the leader's: none once the leader's order
        ended unfilled ("cancelled -> cancel follower remainder"), and the leader's price
        and the sized quantity while both rest untouched."""
        if leader["orderStatus"] in ENDED_UNFILLED:
            assert not live, (f"{who.name}: live order {live} for leader order "
                              f"{leader['orderId']}, which is {leader['orderStatus']}; "
                              f"{context}")
        if (leader["orderStatus"] == "PENDING" and leader["orderType"] == "LIMIT" and live
                and live[0]["filledQty"] == 0):
            lot = next(v[3] for v in INSTRUMENTS.values() if v[0] == leader["securityId"])
            want = (leader["quantity"] if who is F1 else 2 * lot, leader["price"])
            got = (live[0]["quantity"], live[0]["price"])
            assert got == want, (f"{who.name}: live order {live[0]['orderId']} has "
                                 f"(quantity, price) {got}, the leader's "
                                 f"{leader['orderId']} wants {want}; {context}")


# No shrinking: each example runs a real engine for seconds, and shrinking a failure took
# over five minutes; the failure message already lists every step and the books.
FollowMachine.TestCase.settings = settings(
    max_examples=5, stateful_step_count=8, deadline=None, database=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestFollowStateful = FollowMachine.TestCase


# ---- a sequence the machine found, replayed as is -------------------------------------------

@pytest.mark.parametrize("kind", ["5xx", "timeout"])
def test_cancel_meeting_an_unknown_outcome_still_cancels_the_follower(kind: str) -> None:
    machine = FollowMachine()
    try:
        machine.start()
        machine._place("equity", "LIMIT", 1, "api")
        machine.promises()
        machine.sim.fail_next(kind, "/orders/*", method="DELETE", client_id=F1.client_id)
        machine._did(f"f1 next DELETE: {kind}")
        [order] = machine._open_limits()
        machine._cancel(order, "api")
        machine.promises()
    finally:
        machine.teardown()
