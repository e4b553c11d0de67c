"""Bus fixtures: a real nats-server (never a mock), one per test, reaped whatever happens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from natsserver import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A started server: JetStream, file store under tmp_path/nats, 127.0.0.1, a free port."""
    server = NatsServer(tmp_path / "nats")
    try:
        server.start()
        yield server
    finally:
        server.stop()
