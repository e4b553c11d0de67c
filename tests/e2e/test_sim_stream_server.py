"""The emulated Dhan order-update stream, over real loopback websockets."""

from __future__ import annotations

import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.sync.client import ClientConnection, connect

from copytrade.sim import stream
from copytrade.sim.stream import OrderStreamServer

GOOD_TOKEN = "good-token"
RECV_TIMEOUT = 5.0
QUIET = 0.3  # how long "nothing arrives" is watched for
# websockets >= 17 warns unless a connection opened outside a with-block says it means to.
LEGACY_CONNECT = {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}


def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def login_message(client_id: str, token: str = GOOD_TOKEN) -> str:
    return json.dumps(
        {"LoginReq": {"MsgCode": 42, "ClientId": client_id, "Token": token}, "UserType": "SELF"}
    )


def order(n: int) -> dict[str, Any]:
    return {"OrderNo": f"O{n}", "Status": "PENDING", "Quantity": n}


def connected(server: OrderStreamServer, client_id: str) -> int:
    return server.stats()["connections"].get(client_id, 0)


def open_client(server: OrderStreamServer, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("ping_interval", None)  # tests ping by hand when they need to
    kwargs.setdefault("open_timeout", RECV_TIMEOUT)
    kwargs.setdefault("close_timeout", 2)
    return connect(server.url, **LEGACY_CONNECT, **kwargs)


def login(server: OrderStreamServer, client_id: str, **kwargs: Any) -> ClientConnection:
    """Log in and wait until the server streams to it (Dhan sends no acknowledgement)."""
    before = connected(server, client_id)
    ws = open_client(server, **kwargs)
    ws.send(login_message(client_id))
    eventually(lambda: connected(server, client_id) > before)
    return ws


def received(ws: ClientConnection, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def received_orders(ws: ClientConnection, count: int) -> list[str]:
    return [received(ws)["Data"]["OrderNo"] for _ in range(count)]


def assert_quiet(ws: ClientConnection) -> None:
    with pytest.raises(TimeoutError):
        ws.recv(timeout=QUIET)


def close_frame_code(ws: ClientConnection) -> int | None:
    """Read until the connection ends; the close code received, or None if no close frame."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=RECV_TIMEOUT)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


@pytest.fixture
def server() -> Iterator[OrderStreamServer]:
    srv = OrderStreamServer(lambda client_id, token: token == GOOD_TOKEN)
    srv.start()
    yield srv
    srv.stop()


def test_good_login_streams_frames_in_publish_order(server: OrderStreamServer) -> None:
    assert server.url == f"ws://127.0.0.1:{server.port}"
    with login(server, "C1") as ws:
        for n in range(20):
            server.publish("C1", order(n))
        first = received(ws)
        assert first == {"Type": "order_alert", "Data": order(0)}
        assert received_orders(ws, 19) == [f"O{n}" for n in range(1, 20)]
        eventually(lambda: server.stats()["frames_sent"] == 20)


def test_messages_after_login_are_ignored(server: OrderStreamServer) -> None:
    with login(server, "C1") as ws:
        ws.send("hello")
        ws.send(login_message("C1"))
        assert ws.ping().wait(RECV_TIMEOUT)  # still read: pings get answered
        server.publish("C1", order(1))
        assert received_orders(ws, 1) == ["O1"]


BAD_LOGINS = {
    "not json": "LoginReq please",
    "json but not an object": "[42]",
    "wrong MsgCode": json.dumps(
        {"LoginReq": {"MsgCode": 41, "ClientId": "C1", "Token": GOOD_TOKEN}, "UserType": "SELF"}
    ),
    "MsgCode as text": json.dumps(
        {"LoginReq": {"MsgCode": "42", "ClientId": "C1", "Token": GOOD_TOKEN}, "UserType": "SELF"}
    ),
    "missing ClientId": json.dumps(
        {"LoginReq": {"MsgCode": 42, "Token": GOOD_TOKEN}, "UserType": "SELF"}
    ),
    "numeric ClientId": json.dumps(
        {"LoginReq": {"MsgCode": 42, "ClientId": 1, "Token": GOOD_TOKEN}, "UserType": "SELF"}
    ),
    "missing Token": json.dumps(
        {"LoginReq": {"MsgCode": 42, "ClientId": "C1"}, "UserType": "SELF"}
    ),
    "numeric Token": json.dumps(
        {"LoginReq": {"MsgCode": 42, "ClientId": "C1", "Token": 7}, "UserType": "SELF"}
    ),
    "UserType not SELF": json.dumps(
        {"LoginReq": {"MsgCode": 42, "ClientId": "C1", "Token": GOOD_TOKEN}, "UserType": "X"}
    ),
    "missing UserType": json.dumps(
        {"LoginReq": {"MsgCode": 42, "ClientId": "C1", "Token": GOOD_TOKEN}}
    ),
    "wrong token": login_message("C1", token="bad-token"),
}


@pytest.mark.parametrize("message", BAD_LOGINS.values(), ids=BAD_LOGINS.keys())
def test_bad_login_is_refused_without_frames(server: OrderStreamServer, message: str) -> None:
    with open_client(server) as ws:
        ws.send(message)
        eventually(lambda: server.stats()["logins_refused"] == 1)
        server.publish("C1", order(1))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=RECV_TIMEOUT)  # the first thing seen is the close: no frames
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "login refused")
    assert connected(server, "C1") == 0


def test_authenticate_gets_client_id_and_token_and_may_raise() -> None:
    seen: list[tuple[str, str]] = []

    def authenticate(client_id: str, token: str) -> bool:
        seen.append((client_id, token))
        raise RuntimeError(f"boom {token}")

    srv = OrderStreamServer(authenticate)
    srv.start()
    try:
        with open_client(srv) as ws:
            ws.send(login_message("C9", token="tok-9"))
            assert close_frame_code(ws) == 1008
        assert seen == [("C9", "tok-9")]
        assert srv.stats()["logins_refused"] == 1
    finally:
        srv.stop()


def test_silent_client_is_refused_after_login_timeout() -> None:
    srv = OrderStreamServer(lambda client_id, token: True, login_timeout=0.3)
    srv.start()
    try:
        with open_client(srv) as ws:
            assert close_frame_code(ws) == 1008
        assert srv.stats()["logins_refused"] == 1
    finally:
        srv.stop()


def test_token_never_logged(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "s3cret-token-value"
    srv = OrderStreamServer(lambda client_id, token: client_id == "OK")
    caplog.set_level(logging.DEBUG)
    srv.start()
    try:
        with open_client(srv) as accepted:
            accepted.send(login_message("OK", token=secret))
            eventually(lambda: connected(srv, "OK") == 1)
            accepted.send(login_message("OK", token=secret))  # read and ignored
            srv.publish("OK", order(1))
            assert received_orders(accepted, 1) == ["O1"]
        with open_client(srv) as refused:
            refused.send(login_message("NOPE", token=secret))
            assert close_frame_code(refused) == 1008
    finally:
        srv.stop()
    assert caplog.records  # logging did run at DEBUG
    assert secret not in caplog.text
    out, err = capsys.readouterr()
    assert secret not in out + err


def test_frames_of_another_account_are_not_received(server: OrderStreamServer) -> None:
    with login(server, "A") as ws_a, login(server, "B") as ws_b:
        server.publish("B", order(1))
        server.publish("A", order(2))
        server.publish("B", order(3))
        assert received_orders(ws_a, 1) == ["O2"]  # O1 would have come first
        assert received_orders(ws_b, 2) == ["O1", "O3"]
        assert_quiet(ws_a)


def test_frames_published_without_connection_are_lost(server: OrderStreamServer) -> None:
    server.publish("C1", order(1))
    eventually(lambda: server.stats()["frames_dropped"] == 1)
    with login(server, "C1") as ws:
        server.publish("C1", order(2))
        assert received_orders(ws, 1) == ["O2"]


def test_every_connection_of_an_account_gets_the_frame(server: OrderStreamServer) -> None:
    with login(server, "C1") as first, login(server, "C1") as second:
        server.publish("C1", order(1))
        assert received_orders(first, 1) == ["O1"]
        assert received_orders(second, 1) == ["O1"]


def test_drop_clean_sends_close_1001(server: OrderStreamServer) -> None:
    with login(server, "A") as ws_a, login(server, "B") as ws_b:
        assert server.drop("A") == 1
        assert close_frame_code(ws_a) == 1001
        server.publish("B", order(1))
        assert received_orders(ws_b, 1) == ["O1"]
        eventually(lambda: server.stats()["connections"] == {"B": 1})


def test_drop_unclean_closes_without_close_frame(server: OrderStreamServer) -> None:
    with login(server, "A") as ws:
        assert server.drop(clean=False) == 1
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=RECV_TIMEOUT)
        assert closed.value.rcvd is None  # code 1006: abnormal closure
    assert server.drop() == 0


def test_stall_goes_silent_then_delivers_held_frames(server: OrderStreamServer) -> None:
    with login(server, "A") as ws:
        assert server.stall("A", seconds=30) == 1
        pong = ws.ping()
        server.publish("A", order(1))
        server.publish("A", order(2))
        assert not pong.wait(0.5)  # no pong while stalled
        assert_quiet(ws)
        assert server.unstall("A") == 1
        assert pong.wait(RECV_TIMEOUT)
        assert received_orders(ws, 2) == ["O1", "O2"]
        assert server.unstall("A") == 0


def test_stall_ends_by_itself(server: OrderStreamServer) -> None:
    with login(server, "A") as ws:
        server.stall(seconds=0.3)
        server.publish("A", order(1))
        assert received_orders(ws, 1) == ["O1"]
        assert ws.ping().wait(RECV_TIMEOUT)


def test_stall_suspends_server_keepalive() -> None:
    # With pings every 0.1 s and a 0.2 s pong timeout, a stall that kept the server's own
    # keepalive running would close the connection long before the stall ends.
    srv = OrderStreamServer(lambda client_id, token: True, ping_interval=0.1)
    srv.start()
    try:
        with login(srv, "A") as ws:
            srv.stall("A", seconds=1.0)
            srv.publish("A", order(1))
            assert received_orders(ws, 1) == ["O1"]
            assert connected(srv, "A") == 1
    finally:
        srv.stop()


def test_unfilled_reorder_group_is_flushed_in_bounded_time(
    server: OrderStreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "REORDER_MAX_WAIT", 0.2)
    with login(server, "A") as ws:
        server.reorder_next(5)
        server.publish("A", order(1))
        server.publish("A", order(2))
        assert received_orders(ws, 2) == ["O2", "O1"]
        server.publish("A", order(3))  # the fault is used up
        assert received_orders(ws, 1) == ["O3"]


def test_duplicate_next(server: OrderStreamServer) -> None:
    with login(server, "A") as ws:
        server.duplicate_next(2)
        for n in range(1, 4):
            server.publish("A", order(n))
        assert received_orders(ws, 5) == ["O1", "O1", "O2", "O2", "O3"]


def test_account_fault_consumed_only_by_that_account(server: OrderStreamServer) -> None:
    with login(server, "A") as ws_a, login(server, "B") as ws_b:
        server.duplicate_next(1, client_id="B")
        server.publish("A", order(1))
        server.publish("B", order(2))
        server.publish("B", order(3))
        server.publish("A", order(4))
        assert received_orders(ws_a, 2) == ["O1", "O4"]
        assert received_orders(ws_b, 3) == ["O2", "O2", "O3"]


def test_delayed_frame_is_overtaken(server: OrderStreamServer) -> None:
    with login(server, "A") as ws:
        server.delay_next(1, seconds=0.3)
        server.publish("A", order(1))
        server.publish("A", order(2))
        assert received_orders(ws, 2) == ["O2", "O1"]


def test_reorder_reverses_a_group(server: OrderStreamServer) -> None:
    with login(server, "A") as ws:
        server.reorder_next(3)
        for n in range(1, 5):
            server.publish("A", order(n))
        assert received_orders(ws, 4) == ["O3", "O2", "O1", "O4"]


def test_clear_faults_releases_held_frames(server: OrderStreamServer) -> None:
    with login(server, "A") as ws:
        server.reorder_next(5)
        server.duplicate_next(5)
        server.publish("A", order(1))
        server.publish("A", order(2))
        assert_quiet(ws)
        server.clear_faults()
        server.publish("A", order(3))
        assert received_orders(ws, 5) == ["O2", "O2", "O1", "O1", "O3"]


def test_fault_arguments_are_checked(server: OrderStreamServer) -> None:
    with pytest.raises(ValueError):
        server.reorder_next(1)
    with pytest.raises(ValueError):
        server.delay_next(1, seconds=-1)
    with pytest.raises(ValueError):
        server.stall(seconds=10_000)


def test_disconnect_account_closes_with_1008(server: OrderStreamServer) -> None:
    with login(server, "A") as ws_a, login(server, "A") as ws_a2, login(server, "B") as ws_b:
        assert server.disconnect_account("A") == 2
        assert close_frame_code(ws_a) == 1008
        assert close_frame_code(ws_a2) == 1008
        server.publish("B", order(1))
        assert received_orders(ws_b, 1) == ["O1"]


def test_slow_consumer_is_closed_with_1011() -> None:
    srv = OrderStreamServer(lambda client_id, token: True, queue_limit=4)
    srv.start()
    try:
        # The client buffers one message and stops reading, so socket buffers fill up.
        with login(srv, "A", max_queue=1, max_size=None) as ws:
            big = {"OrderNo": "big", "Remarks": "x" * 256 * 1024}
            deadline = time.monotonic() + 10
            while connected(srv, "A") and time.monotonic() < deadline:
                srv.publish("A", big)
            assert connected(srv, "A") == 0
            assert close_frame_code(ws) == 1011
        assert srv.stats()["frames_dropped"] >= 1
    finally:
        srv.stop()


def test_hundred_concurrent_connections_all_receive() -> None:
    srv = OrderStreamServer(lambda client_id, token: True)
    srv.start()
    clients: list[ClientConnection] = []
    try:
        for n in range(100):
            ws = open_client(srv)
            ws.send(login_message(f"C{n % 4}"))
            clients.append(ws)
        eventually(lambda: sum(srv.stats()["connections"].values()) == 100)
        for account in range(4):
            srv.publish(f"C{account}", order(account))
        for n, ws in enumerate(clients):
            assert received_orders(ws, 1) == [f"O{n % 4}"]
    finally:
        for ws in clients:
            ws.close()
        srv.stop()


def test_concurrent_publishers_lose_nothing(server: OrderStreamServer) -> None:
    with login(server, "A") as ws:
        threads = [
            threading.Thread(
                target=lambda t=t: [server.publish("A", order(t * 100 + i)) for i in range(50)]
            )
            for t in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(RECV_TIMEOUT)
        got = received_orders(ws, 200)
        assert sorted(got) == sorted(f"O{t * 100 + i}" for t in range(4) for i in range(50))
        for t in range(4):  # each publisher's own frames keep their order
            mine = [o for o in got if int(o[1:]) // 100 == t]
            assert mine == [f"O{t * 100 + i}" for i in range(50)]


def test_stop_is_fast_and_idempotent_with_a_stalled_connection() -> None:
    srv = OrderStreamServer(lambda client_id, token: True)
    srv.start()
    silent = open_client(srv)  # connected, never logs in
    with login(srv, "A") as ws:
        assert srv.stall("A") == 1
        started = time.monotonic()
        srv.stop()
        srv.stop()
        assert time.monotonic() - started < 3.5
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=RECV_TIMEOUT)
    with pytest.raises(ConnectionClosed):
        silent.recv(timeout=RECV_TIMEOUT)
    srv.publish("A", order(1))  # after stop: lost, not an error
    assert srv.stats()["connections"] == {}


def test_stop_before_start_and_restart() -> None:
    srv = OrderStreamServer(lambda client_id, token: True)
    srv.stop()
    srv.start()
    srv.stop()
    srv.start()
    try:
        with login(srv, "A") as ws:
            srv.publish("A", order(1))
            assert received_orders(ws, 1) == ["O1"]
    finally:
        srv.stop()


def test_start_on_a_busy_port_fails(server: OrderStreamServer) -> None:
    clash = OrderStreamServer(lambda client_id, token: True, port=server.port)
    with pytest.raises(RuntimeError):
        clash.start()
    clash.stop()
