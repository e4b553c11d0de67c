"""follow's starts on the record, with what changed in the configuration since the last."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from copytrade.engine.runlog import CHANGED, STARTED, record_start
from copytrade.store.db import open_store
from copytrade.store.models import AuditEvent
from copytrade.store.repo import Store

CONFIG = {"leader": {"client_id": "1000000001", "access_token": "set (env)"},
          "followers": [{"name": "f1", "multiplier": 1.0}, {"name": "f2", "fixed_lots": 2}],
          "settings": {"market_hours": True}}


def test_a_start_is_recorded_and_a_change_names_its_keys(tmp_path: Path) -> None:
    store = Store(open_store(tmp_path / "copytrade.db"), lambda: datetime.now(UTC))
    assert record_start(store, CONFIG) == []  # the first start: nothing to compare with
    assert record_start(store, CONFIG) == []
    changed = {**CONFIG, "followers": [{"name": "f1", "multiplier": 2.0}],
               "settings": {"market_hours": False}}
    assert record_start(store, changed) == ["followers.f1.multiplier",
                                            "followers.f2.fixed_lots",
                                            "followers.f2.name", "settings.market_hours"]
    kinds = [e.kind for e in AuditEvent.select().order_by(AuditEvent.id)]
    assert kinds == [STARTED, STARTED, CHANGED, STARTED]
    assert "access_token" in str(AuditEvent.select().first().data)  # only its status
