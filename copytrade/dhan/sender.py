"""A lean send path for order calls: one kept-alive connection per account, headers built
once, the SDK's wire body and the SDK's reply shape.

Measured (issue 8): the SDK's requests path costs about 1 ms a call, a kept-alive
http.client with prebuilt headers about 0.09 ms. Order calls (place, modify, cancel) are
on the copy's critical path, so they go through here; reads stay with the SDK. The reply
is the SDK's dict (`status`, `remarks`, `data`) plus `http_status`, so `rest.classify`
reads both alike: a refusal's JSON body becomes dict remarks, anything else (timeout,
reset, a non-JSON body) string remarks, i.e. an UNKNOWN outcome that is looked up, never
resent blind; but a 429 is THROTTLED whatever its body.

Used from one thread per account (the follower's worker), like DhanAccount itself.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

IDLE_RECONNECT_SECONDS = 15.0  # servers drop idle keep-alive connections; don't meet one
BODY_EXCERPT_CHARS = 200  # of a reply that is not JSON, kept as its remarks


class OrderSender:
    def __init__(self, client_id: str, token: str, *, api_url: str, timeout: float,
                 source_address: str | None = None) -> None:
        parts = urlsplit(api_url.rstrip("/"))
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path
        self._timeout = timeout
        self._source = (source_address, 0) if source_address else None
        self._client_id = client_id
        self._headers = {"access-token": token, "client-id": client_id,
                         "Content-type": "application/json", "Accept": "application/json",
                         "Connection": "keep-alive"}
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def __repr__(self) -> str:  # never the token
        return f"OrderSender({self._client_id})"

    def post(self, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._send("POST", endpoint, payload)

    def put(self, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._send("PUT", endpoint, payload)

    def delete(self, endpoint: str) -> dict[str, Any]:
        return self._send("DELETE", endpoint, None)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _send(self, method: str, endpoint: str, payload: dict[str, Any] | None) -> dict:
        body = None
        if payload:
            body = json.dumps({**payload, "dhanClientId": self._client_id}).encode()
        try:
            conn = self._connection()
            conn.request(method, self._prefix + endpoint, body=body, headers=self._headers)
            response = conn.getresponse()
            raw = response.read()
            self._last_used = time.monotonic()
            if response.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            # Sent or not, we cannot tell: the caller looks the order up.
            self.close()
            return {"status": "failure", "remarks": f"{type(exc).__name__}: {exc}", "data": ""}
        return _sdk_reply(response.status, raw)

    def _connection(self) -> http.client.HTTPConnection:
        if (self._conn is not None
                and time.monotonic() - self._last_used > IDLE_RECONNECT_SECONDS):
            self.close()
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout,
                    source_address=self._source, context=ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout, source_address=self._source)
        return self._conn


def _sdk_reply(status: int, raw: bytes) -> dict[str, Any]:
    """What dhanhq's DhanHTTP._parse_response makes of a reply, plus what it throws away
    and `rest.classify` needs: the HTTP status (a 429 means "slow down" whatever its body)
    and the start of a body that is not JSON (a gateway's page can say why)."""
    reply = _parsed(status, raw)
    reply["http_status"] = status
    return reply


def _parsed(status: int, raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except ValueError:  # includes an empty body
        return {"status": "failure", "remarks": body_excerpt(status, raw), "data": ""}
    if 200 <= status <= 299:
        return {"status": "success", "remarks": "", "data": parsed}
    if not isinstance(parsed, dict):
        return {"status": "failure", "remarks": body_excerpt(status, raw), "data": ""}
    return {"status": "failure", "data": "", "remarks": {
        "error_code": parsed.get("errorCode"), "error_type": parsed.get("errorType"),
        "error_message": parsed.get("errorMessage")}}


def body_excerpt(status: int, raw: bytes) -> str:
    """A reply that is not JSON, as string remarks: its status and the start of its body
    (the SDK path says the same: see rest._keeping_status)."""
    text = raw[:BODY_EXCERPT_CHARS].decode("utf-8", "replace").strip()
    return f"HTTP {status}, not JSON" + (f": {text}" if text else " (empty body)")
