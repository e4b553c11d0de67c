"""The composition root (copytrade/cli/context.py) and the store reads the engine was given
in place of its own SQL: what is built, what is not built until asked, where tokens go."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from copytrade.cli.context import Context
from copytrade.core.events import OrderReport, OrderStatus, ReportSource
from copytrade.core.orders import MirrorState, Trigger
from copytrade.engine.follow import KEEPALIVE_PING_SECONDS, FollowEngine
from copytrade.engine.limits import AccountLimiter
from copytrade.engine.wiring import StreamLogin
from copytrade.errors import UsageError
from copytrade.home import home_paths
from copytrade.store.db import open_store, scratch_copy
from copytrade.store.models import database
from copytrade.store.repo import Store

LEADER_TOKEN = "tok-LEADER-ctx-5f2a9c"
F1_TOKEN = "tok-FOLLOWER1-ctx-8d1e07"
F2_TOKEN = "tok-FOLLOWER2-ctx-c3b6a4"
ENV = {"T_LEADER": LEADER_TOKEN, "T_F1": F1_TOKEN, "T_F2": F2_TOKEN}
CONFIG = """
[leader]
client_id = "1000000001"
access_token_env = "T_LEADER"
api_url = "http://127.0.0.1:1/v2"
order_ws_url = "ws://127.0.0.1:2"

[[followers]]
name = "f1"
client_id = "1000000002"
access_token_env = "T_F1"
api_url = "http://127.0.0.1:1/v2"
order_ws_url = "ws://127.0.0.1:3"
multiplier = 1.0

[[followers]]
name = "f2"
client_id = "1000000003"
access_token_env = "T_F2"
fixed_lots = 1
enabled = false

[settings]
reconcile_interval_seconds = 1.5
order_rate_scale = 2.0
"""


@pytest.fixture
def context(tmp_path: Path) -> Context:
    path = tmp_path / "copytrade.toml"
    path.write_text(CONFIG)
    return Context.load(path, environ=ENV)


def test_nothing_is_opened_or_built_until_asked(context: Context) -> None:
    assert context.paths == home_paths()
    assert not context.paths.database_file.exists()
    assert context._brokers == {}
    assert list(context.accounts) == ["f1"]  # enabled followers only, none built yet
    assert context._brokers == {}


def test_accounts_are_built_once_each_from_their_configuration(context: Context) -> None:
    f1 = context.accounts["f1"]
    assert f1.client_id == "1000000002"
    assert context.accounts["f1"] is f1 is context.broker("1000000002")
    assert context.leader.client_id == "1000000001"
    assert set(context._brokers) == {"1000000001", "1000000002"}
    with pytest.raises(KeyError):
        context.accounts["f2"]  # disabled: no account


def test_the_settings_hold_tokens_as_secrets_and_never_show_them(context: Context) -> None:
    settings = context.settings
    assert settings.leader_stream == StreamLogin("ws://127.0.0.1:2", "1000000001",
                                                 context.tokens["1000000001"])
    assert settings.leader_stream.token.reveal() == LEADER_TOKEN
    assert set(settings.follower_streams) == {"f1"}
    assert settings.follower_streams["f1"].token.reveal() == F1_TOKEN
    assert settings.reconcile_interval_seconds == 1.5
    shown = f"{context!r} {settings!r} {settings.leader_stream!r} {context.wiring!r}"
    for token in ENV.values():
        assert token not in shown


def test_limiters_share_the_homes_limits_file_at_the_configured_scale(
        context: Context) -> None:
    limiter = context.limiter_for("1000000002", lambda seconds: True)
    try:
        assert isinstance(limiter, AccountLimiter)
        assert limiter._bucket.rates[0].limit == 18  # Dhan's 9 a second, scaled by 2
        assert context.limits_path == context.paths.data_dir / "limits.db"
        assert context.limits_path.exists()
    finally:
        limiter.close()


def test_the_engine_is_built_from_the_wiring(context: Context) -> None:
    engine = context.follow_engine()
    assert isinstance(engine, FollowEngine)
    assert [f.name for f in engine.followers] == ["f1"]
    assert engine.accounts == {"f1": context.accounts["f1"]}
    assert engine.stream_options["ping_interval"] == KEEPALIVE_PING_SECONDS  # Dhan-tolerant
    for worker in engine.workers.values():
        worker.limiter.close()


def test_selecting_a_follower_names_the_file_and_refuses_a_disabled_one(
        context: Context) -> None:
    assert [f.name for f in context.wiring.select("F1", 30).settings.followers] == ["f1"]
    assert context.wiring.select("f1", 30).settings.followers[0].max_order_age_seconds == 30
    with pytest.raises(UsageError, match=r"no follower named 'nobody' in .*copytrade.toml"):
        context.wiring.select("nobody", None)
    with pytest.raises(UsageError, match="disabled"):
        context.wiring.select("f2", None)
    with pytest.raises(UsageError, match="--max-age"):
        context.wiring.select(None, 0)


def test_a_dry_run_store_is_a_copy_and_leaves_the_real_one_bound(context: Context) -> None:
    with context.run_store(dry_run=True) as scratch:
        assert scratch.path != context.paths.database_file
    assert not context.paths.database_file.exists()  # a dry run creates none
    real = context.store
    with real.write():
        real.audit("mark", "before the dry run")
    with context.run_store(dry_run=True) as scratch:
        with scratch.write():
            scratch.audit("mark", "only in the copy")
        assert scratch.db.execute_sql("SELECT COUNT(*) FROM auditevent").fetchone()[0] == 2
    assert database.obj is real.db  # the models are bound back to the real store
    assert real.db.execute_sql("SELECT COUNT(*) FROM auditevent").fetchone()[0] == 1
    with context.run_store(dry_run=False) as same:
        assert same is real


# ---- the store reads that replaced the engine's SQL ----------------------------------------

NOW = datetime(2025, 1, 6, 4, 0, tzinfo=UTC)


def leader(store: Store, order_id: str, status: str = OrderStatus.PENDING) -> None:
    store.save_leader(OrderReport(
        order_id=order_id, status=status, exchange_segment="NSE_EQ", security_id="1333",
        transaction_type="BUY", product_type="CNC", order_type="LIMIT", validity="DAY",
        quantity=10, traded_quantity=10 if status == OrderStatus.TRADED else 0, price=100.0,
        source=ReportSource.REST), (), date(2025, 1, 6).isoformat())


def mirror(store: Store, order_id: str, follower: str = "f1", *, attempt: int = 1,
           state: MirrorState = MirrorState.SUBMITTED):
    return store.create_mirror(leader_order=order_id, follower=follower, attempt=attempt,
                               correlation_id=f"CT-{order_id}-{follower}-{attempt}",
                               state=state.value, quantity=10)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    clock = [NOW]
    return Store(open_store(tmp_path / "s.db"), lambda: clock[0])


def test_intent_rows_and_last_ids(store: Store) -> None:
    assert store.last_ids() == (0, 0)
    with store.write():
        leader(store, "L1")
        m = mirror(store, "L1")
        first = store.add_intent(m, "PLACE", {"order": {"quantity": 10}})
        second = store.add_intent(m, "CANCEL", {"reason": "r"})
        store.finish_intent(second, "DONE", "ok")
    assert store.last_ids() == (second.id, m.id)
    assert [r.id for r in store.intent_rows_after(0)] == [first.id, second.id]
    assert [r.id for r in store.intent_rows_after(first.id)] == [second.id]
    assert [r.id for r in store.sending_intent_rows()] == [first.id]
    row = store.intent_rows({second.id, first.id})[0]
    assert (row.follower, row.leader_order_id, row.leg, row.mirror_id, row.action,
            row.status, row.request) == ("f1", "L1", 1, m.id, "PLACE", "SENDING",
                                         {"order": {"quantity": 10}})
    assert store.intent_rows(()) == []
    assert store.cancel_asked(m.id)


def test_mirrors_to_cancel_by_leader_order_or_state(store: Store) -> None:
    with store.write():
        for order_id in ("L1", "L2"):
            leader(store, order_id)
        a = mirror(store, "L1", "f1")
        b = mirror(store, "L1", "f2", state=MirrorState.FILLED)
        c = mirror(store, "L2", "f1", state=MirrorState.ACCEPTED)
    ids = lambda mirrors: [m.id for m in mirrors]  # noqa: E731
    assert ids(store.mirrors_to_cancel(follower=None, leader_order_ids=["L1"],
                                       states=None)) == [a.id, b.id]
    assert ids(store.mirrors_to_cancel(follower="f1", leader_order_ids=["L1", "L2"],
                                       states=None)) == [a.id, c.id]
    assert ids(store.mirrors_to_cancel(follower=None, leader_order_ids=(),
                                       states={"SUBMITTED", "ACCEPTED"})) == [a.id, c.id]
    found = store.mirrors_to_cancel(follower="f2", leader_order_ids=["L1"], states=None)
    assert (found[0].leader_order_id, found[0].state, json.loads(found[0].legs)) == (
        "L1", "FILLED", {})


def test_fill_lag_reads(store: Store) -> None:
    with store.write():
        leader(store, "L1", OrderStatus.TRADED)
        m = mirror(store, "L1")
        store.apply_trigger(m, Trigger.FILL)
    assert store.leader_traded_at("L1") == NOW
    assert store.leader_traded_at("nope") is None
    assert store.filled_without_fill_lag("L1") == [(m.id, NOW)]
    store.set_fill_lag(m.id, -5.0)
    assert store.filled_without_fill_lag("L1") == []
    assert not store.cancel_asked(m.id)


def test_scratch_copy_of_a_missing_database_starts_empty(tmp_path: Path) -> None:
    with scratch_copy(tmp_path / "none.db", lambda: NOW + timedelta(0)) as scratch:
        assert scratch.last_ids() == (0, 0)
    assert not (tmp_path / "none.db").exists()
