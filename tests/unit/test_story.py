"""The story of one leader order (core/story.py): pure assembly of what the store recorded
into sections per follower, each with its verdict, sizing and events in time order."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from copytrade.core.sizing import Caps, SizingRule
from copytrade.core.story import (
    NO_TRAIL_NOTE,
    AuditFacts,
    FollowerSetup,
    IntentFacts,
    LeaderFacts,
    LegFacts,
    MirrorFacts,
    OrderRecord,
    ReportFacts,
    TransitionFacts,
    build_story,
    caps_text,
    describe_request,
    rule_text,
    sizing_facts,
    story_as_dict,
)

SEEN = datetime(2026, 11, 30, 3, 45, 0, tzinfo=UTC)  # 09:15:00 IST


def at(ms: float) -> datetime:
    return SEEN + timedelta(milliseconds=ms)


LEADER = LeaderFacts(
    order_id="L1", trading_date="2026-11-30", status="TRADED", exchange_segment="NSE_EQ",
    security_id="11536", symbol="TCS", transaction_type="BUY", product_type="CNC",
    order_type="LIMIT", validity="DAY", quantity=3, traded_quantity=3, price=3296.0,
    trigger_price=0.0, average_price=3200.0, lot_size=1, placed_in_app=False,
    after_market_order=False, correlation_id="", reason="", first_seen_at=SEEN,
    leader_updated_at=datetime(2026, 11, 30, 9, 15, 0, tzinfo=UTC) + timedelta(hours=0),
    traded_at=at(6))


def mirror(mirror_id: int, follower: str, state: str, *, attempt: int = 1, leg: int = 1,
           quantity: int = 3, filled: int = 0, carried: int = 0, reason: str = "",
           ids: tuple[str, ...] = ("F1",), lag: float | None = 3.2,
           fill_lag: float | None = None) -> MirrorFacts:
    return MirrorFacts(
        id=mirror_id, follower=follower, leg=leg, attempt=attempt,
        correlation_id=f"ct{mirror_id}", follower_order_ids=ids, state=state,
        quantity=quantity, carried_quantity=carried, filled_quantity=filled,
        order_type="LIMIT", price=3296.0, trigger_price=0.0, sliced=False, shadow=False,
        leader_position_before=10, follower_position_before=4, modifications=0,
        reason=reason, reason_code="", created_at=at(2), submitted_at=at(3), lag_ms=lag,
        fill_lag_ms=fill_lag)


PLACE = {"order": {"transaction_type": "BUY", "quantity": 3, "order_type": "LIMIT",
                   "price": 3296.0, "trigger_price": 0.0, "product_type": "CNC",
                   "validity": "DAY"}, "slice": False, "seen_at": 1.0}


def setup(name: str, *, enabled: bool = True) -> FollowerSetup:
    return FollowerSetup(name, enabled, False, "multiplier 1", ())


def filled_record() -> OrderRecord:
    return OrderRecord(
        leader=LEADER,
        mirrors=(mirror(1, "f1", "FILLED", filled=3, fill_lag=21.3),),
        intents=(IntentFacts(1, 1, "PLACE", "DONE", {**PLACE, "sizing": sizing_facts(
            SizingRule("multiplier", 1.0), Caps(max_quantity=100), ["reduced by a cap"])},
            "F1", at(2.8), at(16.6)),),
        transitions=(
            TransitionFacts(1, "ACCEPTED", "FILLED", "FILL", at(27.1), ""),
            TransitionFacts(1, "PLANNED", "SUBMITTED", "SUBMIT", at(2.6), "3 units"),
            TransitionFacts(1, "SUBMITTED", "ACCEPTED", "ACK", at(16.6), "order accepted"),
        ),
        setups=(setup("f1"),))


# ---- verdicts ----------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "filled", "reason", "mirrored", "verdict"), [
    ("FILLED", 3, "", True, "mirrored: filled 3/3"),
    ("ACCEPTED", 0, "", True, "mirrored, open: accepted 0/3"),
    ("PARTIALLY_FILLED", 1, "", True, "mirrored, open: partially_filled 1/3"),
    ("CANCELED", 0, "leader order cancelled", True,
     "mirrored, then cancelled: leader order cancelled"),
    ("CANCELED", 1, "leader order cancelled", True,
     "mirrored, then cancelled, 1/3 filled: leader order cancelled"),
    ("EXPIRED", 0, "", True, "mirrored, expired with 0/3 filled"),
    ("SKIPPED", 0, "product INTRADAY is on the product deny list", False,
     "not mirrored: product INTRADAY is on the product deny list"),
    ("SKIPPED", 0, "", False, "not mirrored: skipped"),
    ("REJECTED", 0, "RMS:Margin Exceeds", False,
     "rejected by the follower's broker: RMS:Margin Exceeds"),
])
def test_each_outcome_has_its_verdict(state: str, filled: int, reason: str, mirrored: bool,
                                      verdict: str) -> None:
    record = OrderRecord(LEADER, mirrors=(mirror(1, "f1", state, filled=filled,
                                                 reason=reason),))
    [story] = build_story(record).followers
    assert (story.mirrored, story.verdict, story.state, story.reason) == (
        mirrored, verdict, state, reason)


def test_a_configured_follower_with_nothing_recorded_is_not_mirrored_and_says_why() -> None:
    record = OrderRecord(LEADER, setups=(setup("f1"), setup("f3", enabled=False)))
    f1, f3 = build_story(record).followers
    assert not f1.mirrored and f1.state == "" and f1.events == ()
    assert f1.verdict.startswith("not mirrored: no decision recorded")
    assert "replay-missed" in f1.verdict
    assert f3.verdict == ("not mirrored: the follower is disabled in the configuration "
                          "(enabled = false)")


def test_a_follower_stopped_before_the_order_came_is_named_as_the_reason() -> None:
    stopped = AuditFacts(7, SEEN - timedelta(seconds=30), "account_stopped", "f1", None,
                         "token of follower f1 was refused (DH-901): refresh it")
    [f1] = build_story(OrderRecord(LEADER, context=(stopped,),
                                   setups=(setup("f1"),))).followers
    assert f1.verdict == ("not mirrored: the follower was stopped (token of follower f1 was "
                          "refused (DH-901): refresh it)")
    assert [e.title for e in f1.events] == ["account_stopped"]  # shown in its story too
    resumed = AuditFacts(8, SEEN - timedelta(seconds=10), "account_resumed", "f1", None,
                         "follower f1 resumed")
    [f1] = build_story(OrderRecord(LEADER, context=(stopped, resumed),
                                   setups=(setup("f1"),))).followers
    assert f1.verdict.startswith("not mirrored: no decision recorded")


def test_followers_come_in_configured_order_then_any_other_the_record_names() -> None:
    record = OrderRecord(LEADER, mirrors=(mirror(1, "zeta", "FILLED"),
                                          mirror(2, "alpha", "FILLED")),
                         audits=(AuditFacts(1, at(1), "skipped", "beta", "L1", "why"),),
                         setups=(setup("f2"), setup("f1")))
    assert [f.name for f in build_story(record).followers] == [
        "f2", "f1", "alpha", "beta", "zeta"]
    # without the configuration, only the record's
    unconfigured = replace(record, setups=None)
    assert [f.name for f in build_story(unconfigured).followers] == ["alpha", "beta", "zeta"]


# ---- events --------------------------------------------------------------------------------


def test_events_come_in_time_order_with_requests_and_responses() -> None:
    [f1] = build_story(filled_record()).followers
    assert [(e.kind, e.title, e.detail) for e in f1.events] == [
        ("state", "PLANNED -> SUBMITTED", "3 units"),
        ("request", "request PLACE", "BUY 3 LIMIT @ 3296 CNC DAY"),
        ("response", "response PLACE: DONE", "F1"),
        ("state", "SUBMITTED -> ACCEPTED", "order accepted"),
        ("state", "ACCEPTED -> FILLED", ""),
    ]
    assert [e.after_seen_ms for e in f1.events] == [2.6, 2.8, 16.6, 16.6, 27.1]
    assert (f1.lag_ms, f1.fill_lag_ms, f1.follower_order_ids) == (3.2, 21.3, ("F1",))


def test_an_unanswered_request_says_so_and_sorts_by_its_commit() -> None:
    record = replace(filled_record(), intents=(
        IntentFacts(1, 1, "PLACE", "SENDING", PLACE, "", at(2.8), None),))
    [f1] = build_story(record).followers
    request = next(e for e in f1.events if e.kind == "request")
    assert request.detail.endswith("; no answer recorded yet")
    assert not any(e.kind == "response" for e in f1.events)


def test_an_audit_row_saying_what_a_state_change_said_is_not_told_twice() -> None:
    why = "product INTRADAY is on the product deny list"
    record = OrderRecord(
        LEADER, mirrors=(mirror(1, "f2", "SKIPPED", reason=why, ids=()),),
        transitions=(TransitionFacts(1, "PLANNED", "SKIPPED", "SKIP", at(3), why),),
        audits=(AuditFacts(1, at(3), "skipped", "f2", "L1", why),
                AuditFacts(2, at(9), "divergence", "f2", "L1", "something else")))
    [f2] = build_story(record).followers
    assert [(e.kind, e.title) for e in f2.events] == [("state", "PLANNED -> SKIPPED"),
                                                      ("audit", "divergence")]


def test_leader_wide_rows_go_to_the_context_not_to_a_follower() -> None:
    record = replace(filled_record(), audits=(
        AuditFacts(3, at(1), "lot_size_mismatch", None, "L1", "a report says lot size 2"),),
        context=(AuditFacts(1, at(-500), "stream_closed", None, None, "leader stream closed"),))
    story = build_story(record)
    assert [e.title for e in story.context] == ["stream_closed", "lot_size_mismatch"]
    assert story.context[0].after_seen_ms == -500.0
    assert all(e.kind != "audit" for e in story.followers[0].events)


def test_attempts_add_up_and_legs_are_listed() -> None:
    record = OrderRecord(LEADER, mirrors=(
        mirror(1, "f1", "CANCELED", quantity=3, filled=1, ids=("A",), lag=3.0),
        mirror(2, "f1", "FILLED", attempt=2, quantity=2, filled=2, carried=1, ids=("B",),
               lag=1.0, fill_lag=40.0),
        mirror(3, "f1", "ACCEPTED", leg=2, quantity=3, ids=("A",), lag=None)))
    [f1] = build_story(record).followers
    assert (f1.quantity, f1.filled, f1.attempts) == (3, 3, 2)
    assert f1.follower_order_ids == ("A", "B")
    assert (f1.lag_ms, f1.fill_lag_ms) == (3.0, 40.0)  # the first send; the last fill
    assert [(leg.leg, leg.state) for leg in f1.legs] == [(1, "FILLED"), (2, "ACCEPTED")]
    assert f1.verdict == "mirrored: filled 3/3"


# ---- sizing --------------------------------------------------------------------------------


def test_sizing_as_recorded_with_the_place() -> None:
    [f1] = build_story(filled_record()).followers
    sizing = f1.sizing
    assert sizing.recorded
    assert (sizing.leader_position_before, sizing.follower_position_before, sizing.placed) == (
        10, 4, 3)
    assert (sizing.rule, sizing.caps, sizing.notes) == (
        "multiplier 1", ("max_quantity 100",), ("reduced by a cap",))
    assert sizing.configured_now == "multiplier 1; no caps"


def test_sizing_not_recorded_still_shows_the_positions_and_the_configuration_now() -> None:
    record = replace(filled_record(), intents=(
        IntentFacts(1, 1, "PLACE", "DONE", PLACE, "F1", at(2.8), at(16.6)),),
        setups=(FollowerSetup("f1", True, False, "fixed_lots 2",
                              ("deny products INTRADAY",)),))
    sizing = build_story(record).followers[0].sizing
    assert not sizing.recorded and sizing.rule == "" and sizing.notes == ()
    assert (sizing.leader_position_before, sizing.placed) == (10, 3)
    assert sizing.configured_now == "fixed_lots 2; caps: deny products INTRADAY"


def test_sizing_facts_name_the_rule_and_every_cap() -> None:
    caps = Caps(max_quantity=500, max_order_value=250000.0, allowed_segments=["NSE_EQ"],
                denied_products=["INTRADAY", "MTF"], denied_securities=["1333"])
    assert caps_text(caps) == ("max_quantity 500", "max_order_value 250000",
                               "allow segments NSE_EQ", "deny products INTRADAY, MTF",
                               "deny securities 1333")
    assert caps_text(Caps()) == ()
    assert rule_text(SizingRule("capital_ratio", 0.5)) == "capital_ratio 0.5"
    facts = sizing_facts(SizingRule("fixed_lots", 2), caps, ("a", "b"))
    assert facts == {"rule": "fixed_lots 2", "caps": list(caps_text(caps)),
                     "notes": ["a", "b"]}
    facts["caps"].append("mutated")  # what one place holds is its own
    assert sizing_facts(SizingRule("fixed_lots", 2), caps, ())["caps"] == list(caps_text(caps))
    json.dumps(facts)  # it goes into the intent's request JSON


@pytest.mark.parametrize(("action", "request_", "text"), [
    ("PLACE", PLACE, "BUY 3 LIMIT @ 3296 CNC DAY"),
    ("PLACE", {"order": {**PLACE["order"], "order_type": "STOP_LOSS", "trigger_price": 3290},
               "slice": True},
     "BUY 3 STOP_LOSS @ 3296 trigger 3290 CNC DAY (through the slicing endpoint)"),
    ("MODIFY", {"modify": {"quantity": 8, "order_type": "LIMIT", "price": 3160.0,
                           "validity": "DAY"}}, "8 LIMIT @ 3160 DAY"),
    ("CANCEL", {"reason": "leader order cancelled"}, "leader order cancelled"),
    ("CANCEL", {}, ""),
    ("PLACE", {"order": "not a mapping"}, ""),
])
def test_a_request_in_one_line(action: str, request_: dict, text: str) -> None:
    assert describe_request(action, request_) == text


# ---- reports and JSON ------------------------------------------------------------------------


def test_reports_from_the_trail_in_time_order() -> None:
    reports = (ReportFacts(at(28), "stream frame", "CANCELLED", "changed: ..."),
               ReportFacts(at(0), "stream frame", "TRANSIT", "first seen: ..."),
               ReportFacts(at(1.3), "REST read", "PENDING", "changed: ..."))
    story = build_story(OrderRecord(LEADER, reports=reports, reports_from_trail=True))
    assert [e.title for e in story.reports] == [
        "stream frame: TRANSIT", "REST read: PENDING", "stream frame: CANCELLED"]
    assert [e.after_seen_ms for e in story.reports] == [0.0, 1.3, 28.0]
    assert story.notes == ()


def test_without_a_trail_the_broker_clock_comes_last_without_a_lag_and_a_note_says_so() -> None:
    reports = (ReportFacts(at(-900), "leader's broker", "TRADED (latest)", "", our_clock=False),
               ReportFacts(at(6), "record", "TRADED", ""),
               ReportFacts(at(0), "record", "first seen", ""))
    story = build_story(OrderRecord(LEADER, reports=reports, notes=("earlier note",)))
    assert [e.title for e in story.reports] == [
        "record: first seen", "record: TRADED", "leader's broker: TRADED (latest)"]
    assert story.reports[-1].after_seen_ms is None
    assert story.notes == ("earlier note", NO_TRAIL_NOTE)


def test_the_story_as_json_has_every_time_in_ist_with_its_offset() -> None:
    legs = (LegFacts(2, "PENDING", "STOP_LOSS_MARKET", 3, 0, 0.0, 3100.0, 0.0, 3100.0,
                     at(50)),)
    data = story_as_dict(build_story(replace(filled_record(), legs=legs)))
    text = json.dumps(data)  # serialisable as it is
    assert data["leader"]["first_seen_at"] == "2026-11-30T09:15:00.000+05:30"
    assert data["followers"][0]["events"][0]["at"] == "2026-11-30T09:15:00.002+05:30"
    assert data["legs"][0]["updated_at"] == "2026-11-30T09:15:00.050+05:30"
    assert data["followers"][0]["sizing"]["caps"] == ["max_quantity 100"]
    assert "+00:00" not in text


def test_an_empty_record_is_a_story_too() -> None:
    story = build_story(OrderRecord(LEADER))
    assert story.followers == () and story.reports == () and story.context == ()
