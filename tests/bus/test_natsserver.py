"""The test server itself: JetStream through nats-py, a kill -9, a restart that keeps the data."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import nats
import pytest
from natsserver import NatsServer


async def publish_two(url: str) -> None:
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        await js.add_stream(name="SMOKE", subjects=["smoke.>"])
        for n in (1, 2):
            ack = await js.publish(f"smoke.{n}", f"m{n}".encode(),
                                   headers={"Nats-Msg-Id": f"id{n}"})
            assert ack.seq == n
        dup = await js.publish("smoke.1", b"m1", headers={"Nats-Msg-Id": "id1"})
        assert dup.duplicate
    finally:
        await nc.close()


async def pull_all(url: str, count: int) -> list[bytes]:
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe("smoke.>", durable="reader")
        messages = await sub.fetch(count, timeout=5)
        for message in messages:
            await message.ack_sync(timeout=5)
        return [m.data for m in messages]
    finally:
        await nc.close()


def test_publish_and_pull_survive_a_kill_and_restart(nats_server: NatsServer) -> None:
    assert nats_server.url.startswith("nats://127.0.0.1:")
    asyncio.run(publish_two(nats_server.url))
    port = nats_server.port
    nats_server.kill()
    assert not nats_server.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    nats_server.start()
    assert nats_server.port == port  # the same address after the restart
    assert asyncio.run(pull_all(nats_server.url, 2)) == [b"m1", b"m2"]  # the file store kept both


def test_context_manager_reaps_the_process_and_a_bad_config_fails_fast(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "ok") as server:
        process = server._process
        assert process is not None and server.running
    assert process.poll() is not None  # reaped, not left running

    broken = NatsServer(tmp_path / "bad", config_text="this is { not a config")
    with pytest.raises(RuntimeError, match="nats-server exited"):
        broken.start()
    assert not broken.running
