"""Optional timestamps for benchmarks (`python -m bench`): off by default.

When on (`Emulator.enable_timing()`), the order stream records `time.perf_counter()` just
before it writes each frame to a connection and when a connection logs in, and the REST server
records it when it has read a `/v2` request (line, headers and body) and when it has written
the reply. All are this process's clock (on Linux CLOCK_MONOTONIC, shared by every process), so
a frame sent and a request received can be subtracted. Recording costs one clock read and one
deque append; parsing is left to `take()`, off the serving path.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

MAX_EVENTS = 200_000  # per kind; the oldest are dropped beyond it (bench drains as it goes)


class TimingLog:
    def __init__(self, limit: int = MAX_EVENTS) -> None:
        # deque.append and popleft are atomic: REST threads and the stream loop append,
        # take() drains from any thread.
        self.frames: deque[tuple[float, str, str]] = deque(maxlen=limit)
        self.requests: deque[tuple[float, float, str, str, str, int, bytes]] = deque(
            maxlen=limit)
        self.logins: deque[tuple[float, str]] = deque(maxlen=limit)

    def frame_sent(self, sent: float, client_id: str, text: str) -> None:
        self.frames.append((sent, client_id, text))

    def logged_in(self, at: float, client_id: str) -> None:
        self.logins.append((at, client_id))

    def request_served(self, received: float, answered: float, client_id: str, method: str,
                       path: str, status: int, body: bytes) -> None:
        self.requests.append((received, answered, client_id, method, path, status, body))

    def take(self) -> dict[str, list[list[Any]]]:
        """Everything recorded since the last take, parsed, oldest first (see `parse`)."""
        frames, requests, logins = [], [], []
        while self.frames:
            frames.append(self.frames.popleft())
        while self.requests:
            requests.append(self.requests.popleft())
        while self.logins:
            logins.append(self.logins.popleft())
        return parse(frames, requests, logins)


def parse(frames: list[tuple[float, str, str]],
          requests: list[tuple[float, float, str, str, str, int, bytes]],
          logins: list[tuple[float, str]]) -> dict[str, list[list[Any]]]:
    """frames:   [sent, client_id, order_no, status]       (order_alert frames only)
    requests: [received, answered, client_id, method, path, status, body]
              (body: the JSON object sent, or {} when it was not one)
    logins:   [at, client_id]                              (stream logins accepted)"""
    parsed_frames: list[list[Any]] = []
    for sent, client_id, text in frames:
        try:
            data = json.loads(text)["Data"]
            parsed_frames.append([sent, client_id, str(data["OrderNo"]), str(data["Status"])])
        except (ValueError, TypeError, KeyError):
            continue  # a raw (hostile) frame: not an order alert
    parsed_requests: list[list[Any]] = []
    for received, answered, client_id, method, path, status, raw in requests:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        parsed_requests.append([received, answered, client_id, method, path, status,
                                body if isinstance(body, dict) else {}])
    return {"frames": parsed_frames, "requests": parsed_requests,
            "logins": [[at, client_id] for at, client_id in logins]}
