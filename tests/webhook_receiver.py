"""A local webhook receiver for alert tests: http.server on 127.0.0.1 (port 0) in a thread.

    with WebhookReceiver(statuses=[500, 200]) as hook:
        ... post to hook.url + "/any/path" ...
        eventually(lambda: len(hook.bodies) == 2)

Each request is recorded (path, JSON body, raw text) before it is answered; answers follow
`statuses` in order, then `default`. `hold()` makes requests wait (bounded) until
`release()`: a webhook that does not answer in time. `hold_body()` does the same to the
body only, once the status and headers are out: a webhook slow to finish its answer.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOLD_LIMIT = 10.0  # a held request is answered after this long whatever the test does


@dataclass(frozen=True)
class Received:
    path: str
    raw: str
    content_type: str

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.raw)


class WebhookReceiver:
    def __init__(self, statuses: list[int] | None = None, *, default: int = 200,
                 headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.default = default
        self.headers = dict(headers or {})
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        self._body_released = threading.Event()
        self._body_released.set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.received]

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def hold_body(self) -> None:
        self._body_released.clear()

    def release_body(self) -> None:
        self._body_released.set()

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.release_body()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _answer(self) -> int:
        with self._lock:
            return self.statuses.pop(0) if self.statuses else self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8")
                with receiver._lock:
                    receiver.received.append(
                        Received(self.path, raw, self.headers.get("Content-Type", "")))
                receiver._released.wait(HOLD_LIMIT)
                status = receiver._answer()
                try:
                    self.send_response(status)
                    for name, value in receiver.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()  # sent at once (the writer is unbuffered)
                    receiver._body_released.wait(HOLD_LIMIT)
                    self.wfile.write(b"{}")
                except OSError:  # the client gave up (its timeout): nothing to answer
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test asserts on what was received

        return Handler
