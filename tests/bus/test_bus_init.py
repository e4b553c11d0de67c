"""`copytrade bus init`'s server configuration, enforced by a real nats-server: the leader
runs the streams, each agent reads only its own consumer and writes only its own results.

One server for the module (started with the written configuration); the leader's set-up is
part of the fixture, so each test stands alone whichever worker runs it.
"""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from natsserver import NatsServer

from copytrade.cli.app import run
from copytrade.cli.exit_codes import ExitCode
from copytrade.config.bus import BusConfig, connect_options, consumer_name
from copytrade.config.bus_init import plan_bus_init, write_bus_init

FOLLOWERS = ("A", "B")
BUS = BusConfig(mode="nats", role="leader")  # the default stream and subject names
REFUSAL_TIMEOUT = 5.0  # seconds for the server's -ERR to arrive (it takes milliseconds)


@dataclass(frozen=True)
class Bus:
    server: NatsServer
    directory: Path
    setup: dict[str, Any]  # what the leader saw while setting up

    def options(self, user: str) -> dict[str, Any]:
        bus = replace(BUS, url=self.server.url, creds_file=self.directory / f"{user}.creds")
        return connect_options(bus)


class Client:
    """A connection whose asynchronous errors (permission violations) are collected."""

    def __init__(self) -> None:
        self.errors: asyncio.Queue[str] = asyncio.Queue()
        self.nc: Any = None

    async def connect(self, options: dict[str, Any]) -> Client:
        async def on_error(error: Exception) -> None:
            await self.errors.put(str(error))

        self.nc = await nats.connect(**options, error_cb=on_error, connect_timeout=2,
                                     max_reconnect_attempts=0, allow_reconnect=False)
        return self

    async def refusal(self) -> str:
        return await asyncio.wait_for(self.errors.get(), REFUSAL_TIMEOUT)

    async def close(self) -> None:
        await self.nc.close()


async def leader_sets_up(options: dict[str, Any]) -> dict[str, Any]:
    """What the leader's publisher does: both streams, one consumer per agent, one event."""
    client = await Client().connect(options)
    try:
        js = client.nc.jetstream()
        await js.add_stream(StreamConfig(name=BUS.stream, subjects=[BUS.leader_subjects],
                                         storage=StorageType.FILE, duplicate_window=600))
        await js.add_stream(StreamConfig(name=BUS.results_stream,
                                         subjects=[BUS.results_subjects]))
        for name in FOLLOWERS:
            await js.add_consumer(BUS.stream, ConsumerConfig(
                durable_name=consumer_name(name), filter_subject=BUS.leader_subjects,
                ack_policy=AckPolicy.EXPLICIT, max_deliver=-1, ack_wait=30))
        ack = await js.publish(BUS.leader_subject("2026-11-30", "1001"), b'{"v": 1}',
                               headers={"Nats-Msg-Id": "2026-11-30:1001:1"})
        info = await js.consumer_info(BUS.stream, consumer_name("B"))
        return {"seq": ack.seq, "pending_B": info.num_pending, "errors": client.errors.qsize()}
    finally:
        await client.close()


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    directory = tmp_path_factory.mktemp("bus") / "init"
    plan = plan_bus_init(FOLLOWERS, directory=directory)
    write_bus_init(plan)
    config_text = (directory / "nats-server.conf").read_text()
    with NatsServer(tmp_path_factory.mktemp("nats"), config_text=config_text) as server:
        placeholder = Bus(server, directory, {})
        setup = asyncio.run(leader_sets_up(placeholder.options("leader")))
        yield Bus(server, directory, setup)


def test_the_leader_creates_the_streams_and_consumers_and_publishes(bus: Bus) -> None:
    assert bus.setup == {"seq": 1, "pending_B": 1, "errors": 0}


def test_an_agent_pulls_and_acks_from_its_own_consumer_and_publishes_its_results(
    bus: Bus,
) -> None:
    async def agent_a() -> tuple[bytes, int, int]:
        client = await Client().connect(bus.options("agent-A"))
        try:
            js = client.nc.jetstream()
            sub = await js.pull_subscribe_bind(consumer_name("A"), stream=BUS.stream)
            (message,) = await sub.fetch(1, timeout=5)
            await message.ack_sync(timeout=5)
            info = await js.consumer_info(BUS.stream, consumer_name("A"))
            result = await js.publish(BUS.results_subject("A"), b'{"state": "PLACED"}',
                                      headers={"Nats-Msg-Id": "A:2026-11-30:1001:1"})
            assert client.errors.empty()
            return message.data, info.num_ack_pending, result.seq
        finally:
            await client.close()

    data, unacknowledged, result_seq = asyncio.run(agent_a())
    assert data == b'{"v": 1}'
    assert unacknowledged == 0
    assert result_seq >= 1  # stored in the results stream


@pytest.mark.parametrize("attempt", ["pull agent-B", "info agent-B", "own consumer",
                                     "publish P.leader.x", "publish P.results.B",
                                     "read every inbox", "read the results"])
def test_an_agent_is_refused_what_is_not_its_own(bus: Bus, attempt: str) -> None:
    async def agent_a() -> str:
        client = await Client().connect(bus.options("agent-A"))
        nc = client.nc
        try:
            match attempt:
                case "pull agent-B":
                    await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{BUS.stream}.agent-B",
                                     b'{"batch": 1}', reply=nc.new_inbox())
                case "info agent-B":
                    await nc.publish(f"$JS.API.CONSUMER.INFO.{BUS.stream}.agent-B", b"",
                                     reply=nc.new_inbox())
                case "own consumer":  # one of its own would read every leader event anew
                    await nc.publish(f"$JS.API.CONSUMER.CREATE.{BUS.stream}.mine", b"{}",
                                     reply=nc.new_inbox())
                case "publish P.leader.x":
                    await nc.publish("copytrade.leader.x", b"forged")
                case "publish P.results.B":
                    await nc.publish(BUS.results_subject("B"), b"forged")
                case "read every inbox":
                    await nc.subscribe("_INBOX.>")
                case "read the results":
                    await nc.subscribe(BUS.results_subjects)
            return await client.refusal()
        finally:
            await client.close()

    refusal = asyncio.run(agent_a()).lower()
    kind = "subscription" if attempt.startswith("read") else "publish"
    assert f"permissions violation for {kind}" in refusal


def test_what_an_agent_was_refused_changed_nothing(bus: Bus) -> None:
    async def check() -> tuple[int, int]:
        client = await Client().connect(bus.options("leader"))
        try:
            js = client.nc.jetstream()
            stream = await js.stream_info(BUS.stream)
            info = await js.consumer_info(BUS.stream, consumer_name("B"))
            return stream.state.messages, info.delivered.consumer_seq
        finally:
            await client.close()

    messages, delivered_to_b = asyncio.run(check())
    assert messages == 1  # no forged leader event
    assert delivered_to_b == 0  # nobody pulled B's event


def test_a_wrong_password_or_no_user_is_refused(bus: Bus, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.creds"
    wrong.write_text('user = "agent-A"\npassword = "not-the-password-0123456789abcdef"\n')
    wrong.chmod(0o600)
    bad = connect_options(replace(BUS, url=bus.server.url, creds_file=wrong))
    for options in (bad, {"servers": [bus.server.url]}):
        with pytest.raises(NatsError):
            asyncio.run(Client().connect(options))


# --- the command itself ---------------------------------------------------------------------


def test_bus_init_writes_private_files_prints_no_password_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "bus"
    args = ["bus", "init", "A", "B", "--output", str(out_dir), "--url", "nats://10.0.0.5:4333"]
    assert run(args) == ExitCode.OK
    out = capsys.readouterr().out
    names = {"nats-server.conf", "leader.creds", "agent-A.creds", "agent-B.creds"}
    assert {p.name for p in out_dir.iterdir() if p.is_file()} == names
    assert stat.S_IMODE(out_dir.stat().st_mode) == 0o700
    for path in out_dir.iterdir():
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert str(path) in out
    passwords = [line.split('"')[1] for path in out_dir.glob("*.creds")
                 for line in path.read_text().splitlines() if line.startswith("password")]
    assert len(passwords) == 3 and all(len(p) >= 32 for p in passwords)
    assert not any(p in out for p in passwords)
    assert 'listen: "10.0.0.5:4333"' in (out_dir / "nats-server.conf").read_text()
    assert 'url = "nats://10.0.0.5:4333"' in out and "nats-server -c" in out

    before = (out_dir / "leader.creds").read_text()
    assert run(args) == ExitCode.CONFIG  # not without --force
    assert "already exists" in capsys.readouterr().err
    assert (out_dir / "leader.creds").read_text() == before
    assert run([*args, "--force"]) == ExitCode.OK
    assert (out_dir / "leader.creds").read_text() != before  # new passwords
    assert json.dumps(passwords[0]) not in (out_dir / "nats-server.conf").read_text()


def test_bus_init_with_tls_writes_a_tls_block_and_says_where_the_certificate_goes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "bus"
    assert run(["bus", "init", "A", "--output", str(out_dir), "--url",
                "tls://[2001:db8::5]:4443", "--leader-user", "boss"]) == ExitCode.OK
    out = capsys.readouterr().out
    conf = (out_dir / "nats-server.conf").read_text()
    assert 'listen: "[2001:db8::5]:4443"' in conf
    assert f'cert_file: "{out_dir / "server-cert.pem"}"' in conf
    assert "put the server's certificate at" in out and "unencrypted" not in out
    assert (out_dir / "boss.creds").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["bus", "init"], "name at least one follower served by an agent"),
    (["bus", "init", "a.b"], "no '.'"),
    (["bus", "init", "A", "a"], "named twice"),
    (["bus", "init", "A", "--url", "http://127.0.0.1:4222"], "tls:// (or nats://)"),
    (["bus", "init", "A", "--url", "nats://u:hunter2@127.0.0.1:4222"], "user or password"),
    (["bus", "init", "A", "--url", "nats://127.0.0.1:0"], "port 0"),
    (["bus", "init", "A", "--leader-user", "agent-A"], "also an agent's"),
    (["bus", "init", "A", "--leader-user", "bad name"], "--leader-user"),
])
def test_bus_init_refuses_bad_arguments_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert run([*args, "--output", str(tmp_path / "out")]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert message in err
    assert "hunter2" not in err
    assert not (tmp_path / "out").exists()
