"""A leader event off the bus -> LeaderEvent or Rejected (copytrade/core/bus_decode.py): the
round trip of every report the leader can build, and whatever a hostile network sends."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_frames import FIELD_VALUES, alert, rest_row  # the frame tests' own strategies

from copytrade import redact
from copytrade.core import order_checks
from copytrade.core.bus_decode import (
    MAX_EVENT_BYTES,
    LeaderEvent,
    Rejected,
    decode_leader_event,
)
from copytrade.core.bus_events import (
    LeaderChange,
    change_msg_id,
    change_subject,
    event_bytes,
    event_payload,
)
from copytrade.core.events import OrderReport, ReportSource
from copytrade.dhan import frames
from copytrade.dhan.frames import MalformedFrame, parse_frame, report_from_rest

IST = timezone(timedelta(hours=5, minutes=30))
DAY = date(2026, 11, 30)
PREFIX = "copytrade"
JWT = "eyJhbGciOiJIUzUxMiJ9.eyJpc3MiOiJkaGFuIiwiZXhwIjoxNzk5OTk5OTk5fQ.c2lnbmF0dXJl"


def report(**changes: Any) -> OrderReport:
    base = OrderReport("100000000001", "PENDING", "NSE_EQ", "11536", "BUY", "CNC", "LIMIT",
                       "DAY", 3, 0, price=3296.0, symbol="TCS", lot_size=1,
                       created_at=datetime(2026, 11, 30, 9, 15, 1, tzinfo=IST))
    return replace(base, **changes)


def decode_change(change: LeaderChange) -> LeaderEvent | Rejected:
    return decode_leader_event(event_bytes(change), subject=change_subject(PREFIX, change),
                               msg_id=change_msg_id(change), expected_prefix=PREFIX)


def round_trips(change: LeaderChange) -> None:
    event = decode_change(change)
    assert isinstance(event, LeaderEvent), event
    assert event.report == change.report
    assert event.identity == (change.trading_date, change.order_id, change.seq)
    assert event.source == event_payload(change)["source"]


# ---- the round trip: every report the leader can build comes back equal ---------------------

CHANGE_IDS = st.tuples(st.dates(), st.integers(1, 2**63 - 1))


def _via(parse: Any, value: Any) -> OrderReport | None:
    with contextlib.suppress(MalformedFrame):
        return parse(value)
    return None


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(alert())), FIELD_VALUES, max_size=4), CHANGE_IDS)
def test_any_report_parsed_from_a_frame_round_trips(changes: dict[str, Any],
                                                     ids: tuple[date, int]) -> None:
    parsed = _via(parse_frame, json.dumps({"Type": "order_alert", "Data": alert(**changes)}))
    if parsed is not None:
        round_trips(LeaderChange(1, ids[0], ids[1], parsed))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(rest_row())), FIELD_VALUES, max_size=4),
       CHANGE_IDS)
def test_any_report_parsed_from_a_rest_row_round_trips(changes: dict[str, Any],
                                                        ids: tuple[date, int]) -> None:
    parsed = _via(report_from_rest, rest_row(**changes))
    if parsed is not None:
        round_trips(LeaderChange(1, ids[0], ids[1], parsed))


IDS = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=64)
TEXT = st.text(max_size=300).map(order_checks.safe_text)
PRICES = st.floats(0, order_checks.MAX_PRICE) | st.floats(0, 10**12)  # average: advisory
TIMES = st.none() | st.datetimes(timezones=st.sampled_from([IST, UTC]))
REPORTS = st.builds(
    OrderReport, order_id=IDS, security_id=IDS,
    status=st.sampled_from(["TRANSIT", "PENDING", "TRADED", "SOMETHING_NEW"]),
    exchange_segment=st.sampled_from(sorted(order_checks.SEGMENTS)),
    transaction_type=st.sampled_from(sorted(order_checks.SIDES)),
    product_type=st.sampled_from(sorted(order_checks.PRODUCTS)),
    order_type=st.sampled_from(sorted(order_checks.ORDER_TYPES)),
    validity=st.text(min_size=1, max_size=8).map(
        lambda word: order_checks.validity_word(word, "validity")),
    quantity=st.integers(1, order_checks.MAX_QUANTITY), traded_quantity=st.integers(0, 10**9),
    price=PRICES, trigger_price=PRICES, average_price=PRICES, disclosed_quantity=st.integers(0),
    after_market_order=st.booleans(), amo_time=st.sampled_from(["", *order_checks.AMO_TIMES]),
    correlation_id=TEXT, reason=TEXT, symbol=TEXT, lot_size=st.none() | st.integers(1, 10**6),
    leg=st.sampled_from([1, 2, 3]), bo_profit_value=PRICES, bo_stop_loss_value=PRICES,
    placed_in_app=st.booleans(), updated_at=TIMES, created_at=TIMES,
    source=st.sampled_from(list(ReportSource)))


@settings(max_examples=80, deadline=None)
@given(REPORTS, CHANGE_IDS)
def test_any_consistent_report_round_trips(built: OrderReport, ids: tuple[date, int]) -> None:
    leader_report = _via(order_checks.consistent, built)  # what the leader's checks keep
    if leader_report is not None:
        round_trips(LeaderChange(1, ids[0], ids[1], leader_report))


def test_an_id_with_subject_separators_round_trips() -> None:
    round_trips(LeaderChange(1, DAY, 2, report(order_id="A.B*C>D%E:9")))


def test_the_identity_is_the_date_the_order_and_the_seq() -> None:
    event = decode_change(LeaderChange(9, DAY, 4, report()))
    assert isinstance(event, LeaderEvent)
    assert event.identity == (DAY, "100000000001", 4)


def test_frames_map_onto_the_one_vocabulary() -> None:
    assert set(frames._SIDES.values()) == order_checks.SIDES
    assert set(frames._PRODUCTS.values()) == order_checks.PRODUCTS
    assert set(frames._ORDER_TYPES.values()) == order_checks.ORDER_TYPES
    assert set(frames._SEGMENTS_BY_CODE.values()) <= order_checks.SEGMENTS
    assert set(frames._LEGS.values()) == order_checks.LEGS


# ---- hostile input: Rejected with a one-line reason, never an exception -----------------------


def payload(**top: Any) -> dict[str, Any]:
    """A valid event's payload with changes; `order` as a dict of field changes."""
    body = event_payload(LeaderChange(1, DAY, 3, report()))
    body["order"].update(top.pop("order", {}))
    body.update(top)
    return body


def decode(body: Any, *, subject: str = "copytrade.leader.20261130.100000000001",
           msg_id: str | None = "20261130:100000000001:3", raw: bool = False,
           **options: Any) -> LeaderEvent | Rejected:
    data = body if raw else json.dumps(body).encode()
    return decode_leader_event(data, subject=subject, msg_id=msg_id, expected_prefix=PREFIX,
                               **options)


def rejected(outcome: LeaderEvent | Rejected, reason: str) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    assert reason in outcome.reason
    assert "\n" not in outcome.reason and "\n" not in outcome.excerpt
    assert len(outcome.reason) <= 256 and len(outcome.excerpt) <= 80
    return outcome


def test_the_valid_payload_decodes() -> None:
    assert isinstance(decode(payload()), LeaderEvent)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "not JSON"), (b"not json", "not JSON"), (b"\xff\xfe{}", "not JSON"),
    (b"[1, 2]", "not a JSON object"), (b'"text"', "not a JSON object"),
    (b"[" * 100_000, "payload of"), (b"[" * 60_000 + b"]" * 60_000, "payload of"),
    (b"{" * 30_000, "not JSON"), (b'{"a": ' * 20 + b"1" + b"}" * 20, "nested deeper"),
])
def test_what_is_not_a_small_json_object_is_refused(data: bytes, reason: str) -> None:
    rejected(decode(data, raw=True), reason)


def test_a_huge_payload_is_refused_before_parsing() -> None:
    body = payload(padding="x" * MAX_EVENT_BYTES)
    rejected(decode(body), f"above {MAX_EVENT_BYTES}")


def test_a_nested_extra_field_is_refused_past_the_depth_limit() -> None:
    rejected(decode(payload(extra={"a": {"b": [1]}})), "nested deeper")


def test_not_bytes_is_refused() -> None:
    rejected(decode("{}", raw=True), "not bytes")


@pytest.mark.parametrize("version", [2, 0, "1", True, 1.0, None])
def test_another_payload_version_is_refused(version: object) -> None:
    rejected(decode(payload(v=version)), "payload version")


def test_a_payload_without_a_version_is_refused() -> None:
    body = payload()
    del body["v"]
    rejected(decode(body), "payload version")


@pytest.mark.parametrize("seq", [0, -1, "3", True, 3.0, 2**63, None])
def test_a_bad_seq_is_refused(seq: object) -> None:
    rejected(decode(payload(seq=seq)), "bad seq")


@pytest.mark.parametrize("day", ["2026-02-30", "20261130", "2026-W48-1", "", 20261130, None,
                                 "2026-11-30T00:00:00"])
def test_a_trading_date_must_be_a_real_date(day: object) -> None:
    rejected(decode(payload(trading_date=day)), "bad trading_date")


@pytest.mark.parametrize("order_id", ["", "a b", "x" * 65, "é1", 100000000001, None])
def test_an_implausible_order_id_is_refused(order_id: object) -> None:
    assert isinstance(rejected(decode(payload(order_id=order_id)), "order_id"), Rejected)


@pytest.mark.parametrize("source", ["STREAM", "ws", "", 1, None])
def test_an_unknown_source_is_refused(source: object) -> None:
    rejected(decode(payload(source=source)), "unknown source")


@pytest.mark.parametrize(("subject", "msg_id", "reason"), [
    ("copytrade.leader.20261130.100000000002", "20261130:100000000001:3", "subject"),
    ("copytrade.leader.20261201.100000000001", "20261130:100000000001:3", "subject"),
    ("other.leader.20261130.100000000001", "20261130:100000000001:3", "subject"),
    ("copytrade.leader.20261130.100000000001", "20261130:100000000001:4", "Nats-Msg-Id"),
    ("copytrade.leader.20261130.100000000001", "20261130:100000000002:3", "Nats-Msg-Id"),
    ("copytrade.leader.20261130.100000000001", "20261201:100000000001:3", "Nats-Msg-Id"),
    ("copytrade.leader.20261130.100000000001", None, "no Nats-Msg-Id"),
])
def test_the_subject_and_msg_id_must_match_the_payload(subject: str, msg_id: str | None,
                                                       reason: str) -> None:
    rejected(decode(payload(), subject=subject, msg_id=msg_id), reason)


def test_the_snapshot_must_be_of_the_envelopes_order_and_source() -> None:
    rejected(decode(payload(order={"order_id": "100000000002"})), "differs")
    rejected(decode(payload(order={"source": "rest"})), "differs")


@pytest.mark.parametrize(("order", "reason"), [
    ({"traded_quantity": 4}, "above the order's quantity"),
    ({"disclosed_quantity": 9}, "above the order's quantity"),
    ({"quantity": 0}, "quantity 0 out of range"),
    ({"quantity": -3}, "bad quantity"),
    ({"quantity": 3.5}, "bad quantity"),
    ({"quantity": "3"}, "bad quantity"),
    ({"quantity": True}, "bad quantity"),
    ({"price": -1.0}, "bad price"),
    ({"trigger_price": "10.5"}, "bad trigger_price"),
    ({"price": 2e9}, "price out of range"),
    ({"price": None}, "bad price"),
    ({"exchange_segment": "NYSE"}, "unknown exchange_segment"),
    ({"transaction_type": "B"}, "unknown transaction_type"),
    ({"product_type": "SPOT"}, "unknown product_type"),
    ({"order_type": "LMT"}, "unknown order_type"),
    ({"amo_time": "LATER"}, "unknown amo_time"),
    ({"leg": 4}, "unknown leg"), ({"leg": "1"}, "unknown leg"), ({"leg": True}, "unknown leg"),
    ({"source": "socket"}, "unknown source"),
    ({"status": ""}, "missing status"), ({"status": "PENDING\u00e9"}, "bad status"),
    ({"status": 5}, "bad status"),
    ({"security_id": "11 536"}, "bad security_id"),
    ({"after_market_order": 0}, "bad after_market_order"),
    ({"lot_size": "65"}, "bad lot_size"), ({"lot_size": -1}, "bad lot_size"),
    ({"updated_at": "2026-11-30 09:15:02"}, "bad updated_at"),
    ({"created_at": "yesterday"}, "bad created_at"),
    ({"symbol": 5}, "bad symbol"),
    ({"validity": None}, "bad validity"),
])
def test_an_order_value_the_leader_would_refuse_is_refused(order: dict[str, Any],
                                                           reason: str) -> None:
    rejected(decode(payload(order=order)), reason)


@pytest.mark.parametrize(("literal", "reason"), [
    (b"NaN", "NaN is not a JSON number"), (b"Infinity", "Infinity is not a JSON number"),
    (b"-Infinity", "-Infinity is not a JSON number"), (b"1e400", "bad price"),
    (b"-0.5", "bad price"), (b"1" * 5000, "not JSON"),
])
def test_numbers_that_are_not_prices_are_refused(literal: bytes, reason: str) -> None:
    data = json.dumps(payload()).encode().replace(b'"price": 3296.0', b'"price": ' + literal)
    rejected(decode(data, raw=True), reason)


@pytest.mark.parametrize("position", ["-50", 1.5, True, 2**53, [1]])
def test_a_bad_leader_position_is_refused(position: object) -> None:
    rejected(decode(payload(position_before=position)), "bad position_before")


@pytest.mark.parametrize("position", [None, 0, -75, 300])
def test_the_leader_position_before_the_order_is_carried(position: int | None) -> None:
    event = decode(payload(position_before=position))
    assert isinstance(event, LeaderEvent) and event.position_before == position


@pytest.mark.parametrize("key", ["trading_date", "order_id", "seq", "source",
                                 "position_before", "order"])
def test_a_missing_envelope_field_is_refused(key: str) -> None:
    body = payload()
    del body[key]
    rejected(decode(body), "missing")


@pytest.mark.parametrize("key", ["quantity", "status", "updated_at", "lot_size", "source"])
def test_a_missing_order_field_is_refused(key: str) -> None:
    body = payload()
    del body["order"][key]
    rejected(decode(body), f"lacks {key}")


def test_an_order_that_is_not_an_object_is_refused() -> None:
    body = payload()
    body["order"] = [1]
    rejected(decode(body), "order is not an object")


def test_extra_fields_are_ignored() -> None:
    # `v` marks incompatible changes; a key we never read cannot steer anything.
    event = decode(payload(note="new in a later leader", order={"exchange_order_id": "9"}))
    assert isinstance(event, LeaderEvent) and event.report == report()


def test_a_key_given_twice_is_refused() -> None:
    data = json.dumps(payload()).encode().replace(b'"seq": 3', b'"seq": 3, "seq": 4')
    rejected(decode(data, raw=True), "a key appears twice")


def test_text_is_made_safe_as_from_dhan() -> None:
    event = decode(payload(order={"symbol": " TCS\x00\u202e ", "reason": "x" * 400}))
    assert isinstance(event, LeaderEvent)
    assert event.report.symbol == "TCS\ufffd\ufffd" and len(event.report.reason) == 256


def test_a_token_in_a_field_is_never_shown_in_a_rejection() -> None:
    for body in (payload(order={"quantity": JWT}), payload(seq=JWT),
                 payload(order={"exchange_segment": JWT}), payload(trading_date=JWT)):
        outcome = rejected(decode(body), "")
        shown = outcome.reason + outcome.excerpt
        assert JWT[:16] not in shown and "eyJhbGciOiJIUzUx" not in shown
        assert "***" in shown


def test_a_known_token_is_redacted_by_the_callers_filter() -> None:
    secret = "dhan-token-abc"  # too short to be token-shaped, known to the filter
    redact.register_secret(secret)
    try:
        outcome = rejected(decode(payload(order={"status": secret + "\u00e9"}),
                                  redact=redact.redact), "bad status")
        assert secret not in outcome.reason + outcome.excerpt
    finally:
        redact._clear_for_tests()


def test_ids_made_of_digits_stay_readable() -> None:
    outcome = rejected(decode(payload(), subject="copytrade.leader.20261130.52240101000001"),
                       "subject")
    assert "52240101000001" in outcome.reason


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_decode_or_are_rejected(data: bytes) -> None:
    outcome = decode(data, raw=True)
    assert isinstance(outcome, Rejected) and outcome.reason


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(payload()["order"])), FIELD_VALUES)
def test_any_value_in_any_order_field_decodes_or_is_rejected(key: str, value: Any) -> None:
    outcome = decode(payload(order={key: value}))
    if isinstance(outcome, LeaderEvent):
        assert 0 <= outcome.report.traded_quantity <= outcome.report.quantity
    else:
        assert outcome.reason
