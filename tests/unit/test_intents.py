"""Intent statuses: a closed vocabulary, and one move only: SENDING -> an outcome."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from copytrade.core.intents import (
    ALLOWED_MOVES,
    FINISHED,
    IntentAction,
    IntentStatus,
    InvalidIntentMove,
    check_move,
)
from copytrade.dhan.rest import Outcome, OutcomeKind
from copytrade.engine.worker import intent_status


@pytest.mark.parametrize("after", sorted(FINISHED))
def test_a_sending_intent_finishes_with_any_outcome(after: IntentStatus) -> None:
    check_move(IntentStatus.SENDING, after)


@pytest.mark.parametrize("before", sorted(FINISHED))
@pytest.mark.parametrize("after", sorted(IntentStatus))
def test_a_finished_intent_never_moves(before: IntentStatus, after: IntentStatus) -> None:
    with pytest.raises(InvalidIntentMove):
        check_move(before, after)


def test_the_table_covers_every_status() -> None:
    assert set(ALLOWED_MOVES) == set(IntentStatus)


@pytest.mark.parametrize("kind", list(OutcomeKind))
def test_every_outcome_kind_finishes_an_intent(kind: OutcomeKind) -> None:
    assert intent_status(Outcome(kind)) in FINISHED


def test_the_store_enforces_the_moves_and_the_vocabulary(tmp_path: Path) -> None:
    from copytrade.store.db import open_store
    from copytrade.store.models import Intent, LeaderOrder, MirrorOrder
    from copytrade.store.repo import Store

    db = open_store(tmp_path / "copytrade.db")
    store = Store(db, lambda: datetime.now(UTC))
    now = datetime.now(UTC)
    LeaderOrder.create(order_id="L1", trading_date="2026-11-30", status="PENDING",
                       exchange_segment="NSE_EQ", security_id="1333", transaction_type="BUY",
                       product_type="CNC", order_type="LIMIT", validity="DAY", quantity=1,
                       version="[]", first_seen_at=now)
    mirror = store.create_mirror(leader_order="L1", follower="f1", leg=1, attempt=1,
                                 correlation_id="cid", state="SUBMITTED", reason="")
    with pytest.raises(ValueError):
        store.add_intent(mirror, "PLACE_TWICE", {})
    intent = store.add_intent(mirror, IntentAction.PLACE, {})
    with pytest.raises(ValueError):
        store.finish_intent(intent, "FINE", "")
    store.finish_intent(intent, IntentStatus.DONE, "1001")
    with pytest.raises(InvalidIntentMove):
        store.finish_intent(intent, IntentStatus.REFUSED, "late")
    assert Intent.get_by_id(intent.id).outcome == "1001"
    assert MirrorOrder.select().count() == 1
    db.close()
