"""The emulator's REST server: Dhan's v2 paths, shapes, errors, rate limits and faults.

A threading HTTP/1.1 server from the standard library: one thread per connection
is plenty for a loopback emulator, and it keeps the book free of event-loop code.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from copytrade.sim import errors
from copytrade.sim.accounts import Account
from copytrade.sim.book import Book, token_digest
from copytrade.sim.errors import ApiError
from copytrade.sim.faults import AFTER_KINDS, BEFORE_KINDS, LOOKUP_KINDS, FaultPlan
from copytrade.sim.timing import TimingLog
from copytrade.sim.wire import MAX_BODY_BYTES, BadBody, decode, encode

log = logging.getLogger(__name__)

API_PREFIX = "/v2"
CONTROL_PREFIX = "/_sim"
SCRIP_MASTER_PATH = "/api-data/api-scrip-master.csv"
# An oversized body is read and thrown away up to this much, so the client gets its 400
# instead of a reset; beyond it the connection is closed after the answer.
MAX_DISCARD_BYTES = 16 * 1024 * 1024

Handler = Callable[[Book, Account, dict[str, str], Any], Any]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    order_api: bool = False  # counts against the order-API rate windows
    data_api: bool = False  # counts against the data-API window (market quotes)
    lookup: bool = False  # subject to the "not_found" lookup-lag fault
    token: bool = False  # the handler gets the caller's token digest (params "token")


def _route(method: str, path: str, handler: Handler, **flags: bool) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Route(method, re.compile(regex + r"\Z"), handler, **flags)


def _placed(orders: list) -> dict:
    return {"orderId": orders[0].order_id, "orderStatus": orders[0].status}


ROUTES: tuple[Route, ...] = (
    _route("POST", "/orders/slicing", lambda b, a, p, body: [
        {"orderId": o.order_id, "orderStatus": o.status}
        for o in b.place(a, body, slicing=True)], order_api=True),
    _route("POST", "/orders", lambda b, a, p, body: _placed(b.place(a, body)), order_api=True),
    # Dhan answers a modify with TRANSIT whatever the book says: the book is the truth.
    _route("PUT", "/orders/{order_id}", lambda b, a, p, body: {
        "orderId": b.modify(a, p["order_id"], body).order_id, "orderStatus": "TRANSIT"},
        order_api=True),
    _route("DELETE", "/orders/{order_id}", lambda b, a, p, body: {
        "orderId": p["order_id"], "orderStatus": b.cancel(a, p["order_id"]).status},
        order_api=True),
    _route("GET", "/orders", lambda b, a, p, body: b.order_list(a)),
    _route("GET", "/orders/external/{correlation_id}",
           lambda b, a, p, body: b.order_by_correlation(a, p["correlation_id"]), lookup=True),
    _route("GET", "/orders/{order_id}", lambda b, a, p, body: b.order(a, p["order_id"]),
           lookup=True),
    _route("GET", "/trades/?", lambda b, a, p, body: b.trade_list(a)),
    _route("GET", "/trades/{order_id}", lambda b, a, p, body: b.trade_list(a, p["order_id"]),
           lookup=True),
    _route("GET", "/positions", lambda b, a, p, body: b.position_list(a)),
    _route("GET", "/fundlimit", lambda b, a, p, body: b.fund_limits(a)),
    _route("GET", "/profile", lambda b, a, p, body: b.profile(a, p["token"]), token=True),
    _route("GET", "/RenewToken", lambda b, a, p, body: b.renew_token(a, p["token"]),
           token=True),
    _route("POST", "/marketfeed/ltp", lambda b, a, p, body: b.quote(a, body),
           data_api=True),
)


def find_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        if route.method == method:
            found = route.pattern.match(path)
            if found:
                return route, found.groupdict()
    return None


class LostReply(Exception):
    """The request is held, then the connection closed with no reply (a client timeout)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 100+ clients may connect at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that resets or goes away mid-request is normal, not a traceback.
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("REST client %s went away: %s", client_address, type(error).__name__)
            return
        super().handle_error(request, client_address)


class RestServer:
    def __init__(self, book: Book, faults: FaultPlan, *,
                 control: Callable[[str, str, Any], Any] | None = None,
                 host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> None:
        self.book = book
        self.faults = faults
        self.control = control
        self.verbose = verbose
        self.timing: TimingLog | None = None  # benchmarks only (Emulator.enable_timing)
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._httpd = _Server((host, port), _make_handler(self))
        # A short poll keeps stop() quick: shutdown() waits for the serve loop to notice.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        name="sim-rest", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()
        with self._connections_lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def track(self, conn: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def hold(self) -> None:
        """Keep the client waiting (bounded, released on stop), then drop the reply."""
        self.stopping.wait(self.faults.hold_seconds)
        raise LostReply

    def pause(self, share: float) -> None:
        if self.faults.delay_seconds:
            self.stopping.wait(self.faults.delay_seconds * share)

    def log(self, line: str) -> None:
        if self.verbose:
            print(line, file=sys.stderr, flush=True)


def _make_handler(server: RestServer) -> type[BaseHTTPRequestHandler]:
    class DhanHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in one write with no Nagle wait: a split reply meets the
        # client's delayed ACK and costs 40 ms a request.
        disable_nagle_algorithm = True
        wbufsize = 64 * 1024
        timeout = 30  # idle keep-alive connections are closed, so threads do not pile up

        def setup(self) -> None:
            super().setup()
            server.track(self.connection, True)

        def finish(self) -> None:
            server.track(self.connection, False)
            super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # request lines are logged by us, headers (tokens) never

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            try:
                raw = self._read_body()
            except OSError as exc:  # the client reset or timed out: nobody to answer
                log.debug("REST client went away during %s %s: %s", method, path,
                          type(exc).__name__)
                self.close_connection = True
                return
            except BadBody as exc:  # an oversized or unframed body, on any path
                raw, refusal = b"", exc
            else:
                refusal = None
            received = time.perf_counter()
            try:
                if refusal is not None:
                    status, payload = 400, errors.bad_input(
                        self._refusal(method, path, refusal)).body()
                elif path.startswith(API_PREFIX + "/") or path == API_PREFIX:
                    status, payload = self._api(method, path[len(API_PREFIX):], raw)
                elif path.startswith(CONTROL_PREFIX + "/") and server.control:
                    status, payload = self._control(method, path[len(CONTROL_PREFIX):], raw)
                elif method == "GET" and path == SCRIP_MASTER_PATH:
                    self._send(200, server.book.scrip_master().encode(), "text/csv")
                    return
                else:
                    status, payload = 404, errors.bad_input(f"No such endpoint {path}").body()
            except LostReply:
                server.log(f"{method} {path} -> (no reply)")
                self.close_connection = True
                return
            except Exception as exc:  # an emulator bug answers like Dhan's DH-908, not silence
                server.log(f"internal error: {type(exc).__name__}: {exc}")
                status, payload = 500, errors.server_error().body()
            server.log(f"{method} {path} -> {status}")
            if isinstance(payload, bytes):
                self._send(status, payload, "text/html")
            else:
                try:
                    data = encode(payload)
                except (TypeError, ValueError) as exc:  # NaN or a stray object: an emulator bug
                    server.log(f"internal error: unencodable reply: {exc}")
                    status, data = 500, encode(errors.server_error().body())
                self._send(status, data, "application/json")
            timing = server.timing
            if timing is not None and path.startswith(API_PREFIX + "/"):
                timing.request_served(received, time.perf_counter(),
                                      self.headers.get("client-id") or "", method,
                                      path[len(API_PREFIX):], status, raw)

        @staticmethod
        def _refusal(method: str, path: str, exc: Exception) -> str:
            if path.startswith(CONTROL_PREFIX + "/"):
                return f"control {method} {path[len(CONTROL_PREFIX):]}: {exc}"
            return f"Request {exc}"

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True  # its chunks would be read as the next request
                raise BadBody("body must be sent with Content-Length, not chunked")
            declared = (self.headers.get("Content-Length") or "0").strip()
            if not (declared.isascii() and declared.isdigit() and len(declared) <= 12):
                self.close_connection = True  # where this body ends is unknown
                raise BadBody("body has an invalid Content-Length")
            length = int(declared)
            if length > MAX_BODY_BYTES:
                self._discard(length)
                raise BadBody(f"body is larger than {MAX_BODY_BYTES} bytes")
            raw = self.rfile.read(length) if length else b""
            if len(raw) < length:
                self.close_connection = True  # the client stopped sending
            return raw

        def _discard(self, length: int) -> None:
            left = min(length, MAX_DISCARD_BYTES)
            while left > 0:
                chunk = self.rfile.read(min(left, 64 * 1024))
                if not chunk:
                    break
                left -= len(chunk)
            if left > 0 or length > MAX_DISCARD_BYTES:
                self.close_connection = True

        def _api(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
            # RenewToken names the account in a `dhanClientId` header (dhan-api.md).
            client_id = self.headers.get("client-id") or self.headers.get("dhanClientId")
            server.pause(0.5)
            fault = server.faults.take(method, path, client_id, BEFORE_KINDS)
            if fault is not None:
                return self._answer_fault(fault)
            found = find_route(method, path)
            if found is None:
                return 404, errors.bad_input(f"No such endpoint {method} {path}").body()
            route, params = found
            try:
                status, payload = 200, self._call(route, params, client_id, raw)
            except ApiError as refusal:
                status, payload = refusal.http_status, refusal.body()
            if server.faults.take(method, path, client_id, AFTER_KINDS):
                server.hold()
            server.pause(0.5)
            return status, payload

        def _call(self, route: Route, params: dict[str, str], client_id: str | None,
                  raw: bytes) -> Any:
            book = server.book
            token = self.headers.get("access-token") or ""
            account = book.authenticate(client_id or "", token)
            if route.token:  # only its digest: no token is kept
                params = {**params, "token": token_digest(token)}
            del token
            now_ms = int(book.clock.now().timestamp() * 1000)
            bucket = (account.order_bucket if route.order_api
                      else account.data_bucket if route.data_api else account.read_bucket)
            if not account.admit(bucket, now_ms):
                raise errors.rate_limited()
            if route.lookup and server.faults.take(route.method, self._api_path(), client_id,
                                                   LOOKUP_KINDS):
                raise errors.order_error("Order not found", http_status=404)
            body = None
            if route.method in ("POST", "PUT"):
                try:
                    body = decode(raw or b"null")
                except BadBody as exc:
                    raise errors.bad_input(f"Request {exc}") from None
            try:
                return route.handler(book, account, params, body)
            except ApiError:
                raise
            except Exception as exc:  # an emulator bug must look like Dhan's DH-908, not hang
                server.log(f"internal error: {type(exc).__name__}: {exc}")
                raise errors.server_error() from exc

        def _api_path(self) -> str:
            return self.path.split("?", 1)[0][len(API_PREFIX):]

        def _answer_fault(self, fault: Any) -> tuple[int, Any]:
            if fault.kind == "429":
                return 429, errors.rate_limited().body()
            if fault.kind == "429_empty":
                return 429, b""  # not JSON: the SDK can only answer a string remark
            if fault.kind == "timeout":
                server.hold()
            if fault.kind == "echo_token":
                # Verbatim, as a careless proxy or broker would: the client must redact it.
                token = self.headers.get("access-token") or ""
                client_id = self.headers.get("client-id") or ""
                return 400, errors.bad_input(f"Invalid request header access-token: {token}, "
                                             f"client-id: {client_id}").body()
            if fault.status == 500:
                return 500, errors.server_error().body()
            return fault.status, b"<html><body><h1>Bad Gateway</h1></body></html>"

        def _control(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
            try:
                body = decode(raw) if raw else {}
                return 200, server.control(method, path, body)  # type: ignore[misc]
            except ApiError as refusal:
                return refusal.http_status, refusal.body()
            except KeyError as exc:
                return 400, errors.bad_input(f"control {method} {path}: missing key {exc}").body()
            except (ValueError, TypeError, AttributeError, OverflowError) as exc:
                return 400, errors.bad_input(f"control {method} {path}: {exc}").body()

        def _send(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return DhanHandler
