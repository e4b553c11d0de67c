"""Agents' results (issue 12): the payload and its decoder (core/bus_results.py: any bytes
decode or are rejected in one masked line, never raise), the leader's record of them
(store/results_queries.py: newest snapshot kept, each result once) and what shows them
(mappings, the audit export, the live view and status at 80 and 120 columns)."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console, RenderableType

from copytrade.cli import live_view as lv
from copytrade.cli import render_reports
from copytrade.cli.status import StatusReport, remote_line, status_lines
from copytrade.core.bus_decode import Rejected
from copytrade.core.bus_results import (
    MIRROR_FIELDS,
    AgentResult,
    ResultMirror,
    decode_result,
    result_bytes,
    result_msg_id,
    result_payload,
)
from copytrade.core.events import OrderReport, ReportSource
from copytrade.engine.status_file import AccountState, FollowState, Verdict, _parse, to_json
from copytrade.store import results_queries
from copytrade.store.db import open_store
from copytrade.store.queries import recent_orders
from copytrade.store.repo import Store
from copytrade.store.reports import followers_recorded, mapping_rows
from copytrade.store.status_queries import today_counts
from copytrade.store.trail import trail_rows

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)  # 09:30 IST
DAY = "2026-11-30"
PREFIX = "copytrade"
FOLLOWERS = ("f2", "f3")
STORE_ID = "0123456789abcdef"


def mirror(**changes: object) -> ResultMirror:
    base = ResultMirror(
        leg=1, attempt=1, correlation_id="CT1125113000123f2", state="FILLED", reason="",
        reason_code="", quantity=10, carried_quantity=0, filled_quantity=10,
        average_price=1398.55, follower_order_id="7725113000999", price=1398.5,
        trigger_price=0.0, order_type="LIMIT", security_id="2885", transaction_type="BUY",
        product_type="INTRADAY", lag_ms=3.2, fill_lag_ms=120.0,
        updated_at=datetime(2026, 11, 30, 3, 50, 2, tzinfo=UTC))
    return replace(base, **changes)


def result(trail_id: int = 42, *, follower: str = "f2", store_id: str = STORE_ID,
           kind: str = "transition", message: str = "ACCEPTED -> FILLED (FILL)",
           snapshot: ResultMirror | None = None, order_id: str | None = "1125113000123",
           with_mirror: bool = True) -> AgentResult:
    return AgentResult(follower, store_id, trail_id, kind, datetime(2026, 11, 30, 3, 50, 2,
                                                                     tzinfo=UTC),
                       order_id, message, (snapshot or mirror()) if with_mirror else None)


def decode(data: bytes, subject: str = "copytrade.results.f2",
           msg_id: str | None = None) -> AgentResult | Rejected:
    if msg_id is None:
        try:
            payload = json.loads(data)
            msg_id = f"{payload['follower']}:{payload['store_id']}:{payload['trail_id']}"
        except (ValueError, KeyError, TypeError):
            msg_id = "x"
    return decode_result(data, subject=subject, msg_id=msg_id, prefix=PREFIX,
                         followers=FOLLOWERS)


def tampered(**changes: object) -> bytes:
    payload = result_payload(result())
    mirror_changes = changes.pop("mirror_changes", None)
    payload.update(changes)
    if isinstance(mirror_changes, dict):
        payload["mirror"].update(mirror_changes)
    return json.dumps(payload).encode()


# ---- the payload and its decoder ---------------------------------------------------------------


def test_a_result_round_trips_with_the_contracts_fields() -> None:
    sent = result()
    payload = json.loads(result_bytes(sent))
    assert set(payload) == {"v", "follower", "store_id", "trail_id", "kind", "at",
                            "leader_order_id", "message", "mirror"}
    assert set(payload["mirror"]) == set(MIRROR_FIELDS)
    assert result_msg_id(sent) == f"f2:{STORE_ID}:42"
    assert decode(result_bytes(sent)) == sent
    plain = result(7, kind="bus_event_stale", with_mirror=False, order_id=None)
    assert decode(result_bytes(plain)) == plain
    assert result_bytes(sent) == result_bytes(sent)  # the same row, the same bytes


def test_a_client_id_never_leaves_the_agent() -> None:
    sent = result(message="follower f2 (1000000003): token renewed",
                  snapshot=mirror(reason="RMS: 1000000003 margin"))
    body = result_bytes(sent).decode()
    assert "1000000003" not in body and "10******03" in body


@pytest.mark.parametrize(("data", "subject", "msg_id", "why"), [
    (tampered(follower="f9"), "copytrade.results.f9", None, "not one served remotely"),
    (result_bytes(result()), "copytrade.results.f3", None, "subject"),
    (result_bytes(result()), "copytrade.results.f2", "f2:other:42", "Nats-Msg-Id"),
    (result_bytes(result()), "copytrade.results.f2", None, None),  # (accepted)
    (tampered(v=2), "copytrade.results.f2", None, "version"),
    (tampered(kind="DROP TABLE"), "copytrade.results.f2", None, "kind"),
    (tampered(trail_id=-1), "copytrade.results.f2", None, "trail_id"),
    (tampered(trail_id=True), "copytrade.results.f2", None, "trail_id"),
    (tampered(store_id="x"), "copytrade.results.f2", None, "store_id"),
    (tampered(at="2026-11-30T09:20:00"), "copytrade.results.f2", None, "at"),
    (tampered(message="x" * 1001), "copytrade.results.f2", None, "message"),
    (tampered(leader_order_id=None), "copytrade.results.f2", None, "without its leader"),
    (tampered(mirror_changes={"state": "HACKED"}), "copytrade.results.f2", None, "state"),
    (tampered(mirror_changes={"quantity": -5}), "copytrade.results.f2", None, "quantity"),
    (tampered(mirror_changes={"average_price": "1.0"}), "copytrade.results.f2", None,
     "average_price"),
    (tampered(mirror_changes={"correlation_id": "a b"}), "copytrade.results.f2", None,
     "correlation_id"),
    (tampered(mirror_changes={"leg": 7}), "copytrade.results.f2", None, "leg"),
    (b'{"v": 1, "v": 1}', "copytrade.results.f2", None, "twice"),
    (b"x" * 20_000, "copytrade.results.f2", None, "bytes"),
    (b"[1, 2]", "copytrade.results.f2", None, "not a JSON object"),
    (b'{"v": NaN}', "copytrade.results.f2", None, "NaN"),
])
def test_what_the_leader_refuses(data: bytes, subject: str, msg_id: str | None,
                                 why: str | None) -> None:
    decoded = decode(data, subject, msg_id)
    if why is None:
        assert isinstance(decoded, AgentResult)
        return
    assert isinstance(decoded, Rejected), decoded
    assert why in decoded.reason
    assert "\n" not in decoded.reason + decoded.excerpt


def test_a_token_shaped_run_in_a_rejected_result_is_masked() -> None:
    data = tampered(kind="eyJhbGciOiJIUzUxMiJ9abc123")
    decoded = decode(data)
    assert isinstance(decoded, Rejected)
    assert "eyJhbGciOiJIUzUxMiJ9abc123" not in decoded.reason + decoded.excerpt


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_decode_or_are_rejected(data: bytes) -> None:
    assert isinstance(decode(data), AgentResult | Rejected)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(max_size=40), lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["v", "follower", "store_id", "trail_id", "kind", "at",
                        "leader_order_id", "message", "mirror", *MIRROR_FIELDS]), _JSON)
def test_any_field_replaced_by_any_json_decodes_or_is_rejected(key: str, value: object
                                                               ) -> None:
    payload = result_payload(result())
    (payload["mirror"] if key in MIRROR_FIELDS and key not in payload else payload)[key] = value
    decoded = decode(json.dumps(payload).encode())
    assert isinstance(decoded, AgentResult | Rejected)
    if isinstance(decoded, Rejected):
        assert "\n" not in decoded.reason


# ---- the leader's record ------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Store:
    clock = [NOW]
    opened = Store(open_store(tmp_path / "leader.db"), lambda: clock[0])
    with opened.write():
        opened.save_leader(OrderReport(
            order_id="1125113000123", status="TRADED", exchange_segment="NSE_EQ",
            security_id="2885", transaction_type="BUY", product_type="INTRADAY",
            order_type="LIMIT", validity="DAY", quantity=10, traded_quantity=10,
            price=1398.5, average_price=1398.45, symbol="RELIANCE",
            source=ReportSource.STREAM), (), DAY)
        local = opened.create_mirror(
            leader_order="1125113000123", follower="f1", correlation_id="CTf1",
            state="FILLED", quantity=10, filled_quantity=10, average_price=1398.5,
            transaction_type="BUY", order_type="LIMIT")
        assert local.id
    return opened


def outcome(store: Store) -> tuple:
    [row] = results_queries.remote_outcomes(store.db, "1125113000123")
    return row["state"], row["filled_quantity"], row["store_id"], row["trail_id"]


def test_an_older_snapshot_never_overwrites_a_newer_one(store: Store) -> None:
    accepted = mirror(state="ACCEPTED", filled_quantity=0, average_price=0.0)
    assert results_queries.save_results(store, [result(9)]) == 1
    assert results_queries.save_results(store, [result(4, snapshot=accepted)]) == 1
    assert outcome(store) == ("FILLED", 10, STORE_ID, 9)
    # a new agent database (another store id) starts its own history
    assert results_queries.save_results(
        store, [result(2, store_id="fedcba9876543210", snapshot=accepted)]) == 1
    assert outcome(store) == ("ACCEPTED", 0, "fedcba9876543210", 2)


def test_a_result_delivered_again_changes_nothing(store: Store) -> None:
    assert results_queries.save_results(store, [result(9), result(9)]) == 1
    assert results_queries.save_results(store, [result(9)]) == 0
    kinds = [row[0] for row in store.db.execute_sql(
        "SELECT kind FROM auditevent WHERE follower = 'f2'").fetchall()]
    assert kinds == ["remote_transition"]


def test_a_rejected_result_is_recorded(store: Store) -> None:
    results_queries.save_results(store, [], [("bad kind: 'x'", "{...", "copytrade.results.f2")])
    [(message, data)] = store.db.execute_sql(
        "SELECT message, data FROM auditevent WHERE kind = 'bus_result_rejected'").fetchall()
    assert "bad kind" in message and json.loads(data)["subject"] == "copytrade.results.f2"


def test_mappings_and_the_audit_export_show_the_remote_follower(store: Store) -> None:
    results_queries.save_results(store, [result(9)])
    rows = mapping_rows(store.db, trading_date=DAY)
    assert [(r.follower, r.remote, r.state, r.filled) for r in rows] == [
        ("f1", False, "FILLED", 10), ("f2", True, "FILLED", 10)]
    remote = rows[1]
    assert remote.follower_order_ids == ("7725113000999",) and remote.send_lag_ms == 3.2
    assert followers_recorded(store.db) == ["f1", "f2"]
    assert render_reports.mapping_record(remote)["remote"] is True
    assert "f2 (remote)" in render_reports.mappings_plain(rows)
    for width in (80, 120):
        shown = text_of(render_reports.mappings_table(rows, width), width)
        assert "f2 (remote)" in shown and "filled" in shown
        assert max(len(line) for line in shown.splitlines()) <= width
    [row] = [r for r in trail_rows(store.db) if r.kind == "remote_transition"]
    assert (row.follower, row.leader_order_id, row.data["remote"]) == (
        "f2", "1125113000123", True)
    counts = today_counts(store.path, DAY)
    assert counts is not None and counts.followers["f2"].remote
    assert counts.followers["f2"].filled == 1


def text_of(renderable: RenderableType, width: int) -> str:
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def state(remote: dict[str, int | None]) -> FollowState:
    leader = AccountState("leader", "leader", "1000000001", "connected")
    f1 = AccountState("follower", "f1", "1000000002", "connected")
    return FollowState(4242, NOW, NOW, True, (leader, f1), remote=remote)


@pytest.mark.parametrize("width", [80, 120])
def test_the_live_view_has_a_column_and_the_lag_of_each_remote_follower(
        store: Store, width: int) -> None:
    results_queries.save_results(store, [result(9)])
    view = lv.live_view(state({"f2": 3, "f3": None}), recent_orders(10), ["f1"],
                        title="copytrade follow", now=NOW, width=width)
    shown = text_of(view, width)
    assert "agent lag: f2 3, f3 ?" in shown
    header = next(line for line in shown.splitlines() if "symbol" in line)
    assert "f1" in header and "f2" in header
    order = next(line for line in shown.splitlines() if "RELIANCE" in line)
    assert order.count("filled 10/10") == 2  # f1's mirror and f2's, as its agent reported
    assert max(len(line) for line in shown.splitlines()) <= width


def test_follows_plain_lines_tell_what_an_agent_reported(store: Store) -> None:
    from copytrade.store.queries import events_after

    results_queries.save_results(store, [result(9), result(10, kind="intent")])
    lines = [lv.event_line(event) for event in events_after(0)
             if event.kind.startswith("remote_")]
    assert len(lines) == 2 and lines[1] is None  # an intent: its outcome tells it
    assert "f2" in lines[0] and "transition (its agent): ACCEPTED -> FILLED" in lines[0]


def test_a_skip_with_no_mirror_gets_its_line_on_both_hosts(store: Store) -> None:
    """A skip is told by its mirror's SKIPPED line, except one about no mirror: an agent's
    event of an earlier trading day (its own plain line, and the leader's)."""
    from copytrade.store.queries import events_after

    stale = "leader event of 2026-11-29 arrived on 2026-11-30: orders are mirrored on ..."
    with store.write():
        store.audit("skipped", stale, leader_order_id="1125113000123", follower="f2",
                    data={"no_mirror": True})
        store.audit("skipped", "told by the mirror", leader_order_id="1125113000123",
                    follower="f1")
    results_queries.save_results(store, [
        result(11, kind="skipped", message=stale, with_mirror=False),
        result(12, kind="skipped", message="told by the mirror")])
    lines = [line for event in events_after(0) if event.kind in ("skipped", "remote_skipped")
             if (line := lv.event_line(event))]
    assert len(lines) == 2, lines
    assert "skipped: leader event of 2026-11-29" in lines[0]
    assert "skipped (its agent): leader event of 2026-11-29" in lines[1]


def test_status_says_each_remote_followers_lag() -> None:
    written = state({"f2": 0, "f3": None})
    assert _parse(json.loads(to_json(written))).remote == {"f2": 0, "f3": None}
    report = StatusReport(Path("/home"), NOW, Verdict(True, True, ""), written, None)
    lines = status_lines(report)
    assert remote_line("f2", 0) in lines
    assert "follower f2 (remote, mirrored by its agent): 0 leader event(s) not yet " \
           "acknowledged" in lines
    assert any(line.startswith("follower f3 (remote") and "not known" in line
               for line in lines)


def test_explain_on_the_leader_tells_a_remote_followers_outcome(store: Store) -> None:
    from copytrade.core.story import FollowerSetup, build_story
    from copytrade.store.explain_queries import order_record

    def verdicts(setups: tuple[FollowerSetup, ...]) -> dict[str, str]:
        record = order_record(store.db, "1125113000123")
        assert record is not None
        story = build_story(replace(record, setups=setups))
        return {f.name: f.verdict for f in story.followers}

    setups = (FollowerSetup("f1", True, False, "multiplier 1", ()),
              FollowerSetup("f2", True, False, "multiplier 1", (), remote=True))
    # no result from its agent yet: said so, not "replay-missed" (that is the agent's job)
    assert verdicts(setups)["f2"].startswith("not mirrored: mirrored by its agent on another "
                                             "host, which has sent no result for it yet")
    results_queries.save_results(store, [result(9)])
    assert verdicts(setups) == {"f1": "mirrored: filled 10/10", "f2": "mirrored: filled 10/10"}
    record = order_record(store.db, "1125113000123")
    assert record is not None
    [remote] = [f for f in build_story(replace(record, setups=setups)).followers
                if f.name == "f2"]
    assert remote.follower_order_ids == ("7725113000999",)
    assert remote.sizing.leader_position_before is None  # in the agent's record, not here
