"""follow's own runs on the record: each start with the configuration it runs on (as
`config show` prints it: no token), and what changed in it since the previous start."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from copytrade.store.repo import Store

STARTED = "follow_started"
CHANGED = "config_changed"


def record_start(store: Store, configuration: Mapping[str, Any]) -> list[str]:
    """Audit this start; returns the configuration keys changed since the last one
    (dotted paths, e.g. `followers.f1.multiplier`), also audited as `config_changed`."""
    now = _flat(configuration)
    with store.write():
        before = store.last_audit_data(STARTED)
        old = _flat(before) if before is not None else now  # a first start changes nothing
        changed = sorted(k for k in now.keys() | old.keys() if now.get(k) != old.get(k))
        if changed:
            store.audit(CHANGED, f"configuration changed since the last start: "
                        f"{', '.join(changed)}"[:1000], data={"keys": changed})
        store.audit(STARTED, "follow started", data=dict(configuration))
    return changed


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested configuration as dotted keys; followers (a list) keyed by their names."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{path}."))
        elif isinstance(value, list) and all(isinstance(v, Mapping) and "name" in v
                                             for v in value):
            for item in value:
                flat.update(_flat(item, f"{path}.{item['name']}."))
        else:
            flat[path] = json.dumps(value, sort_keys=True, default=str)
    return flat
