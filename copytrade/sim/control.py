"""The control plane over HTTP: `/_sim/...` routes on the REST port, one per Emulator method.

Bodies are JSON objects whose keys are the method's parameters; docs/sim.md lists them.
The alert receiver (`POST /_sim/alerts`) alone takes any JSON value: it is a webhook.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from copytrade.sim.errors import bad_input

if TYPE_CHECKING:
    from copytrade.sim.server import Emulator

Action = Callable[["Emulator", dict], Any]
MAX_ID_LENGTH = 64
MAX_NUMBER_TEXT = 32  # numeric text is refused before int()/float() if longer
_REQUIRED: Any = object()


def _ok(value: Any = None) -> dict:
    return {"ok": True} if value is None else {"ok": True, "result": value}


def _flag(body: dict, key: str, default: bool) -> bool:
    """JSON booleans only: the string "false" must not count as true."""
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false")
    return value


def _value(body: dict, key: str, default: Any) -> Any:
    return body[key] if default is _REQUIRED else body.get(key, default)


def _number_text(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{key} must be a number")
    if isinstance(value, str) and len(value) > MAX_NUMBER_TEXT:
        raise ValueError(f"{key} must be a number, not {MAX_NUMBER_TEXT}+ characters of text")


def _int(body: dict, key: str, default: Any = _REQUIRED) -> int:
    """A whole number, also as numeric text; ranges are checked by the method called."""
    value = _value(body, key, default)
    _number_text(key, value)
    if isinstance(value, float) and not (math.isfinite(value) and value == int(value)):
        raise ValueError(f"{key} must be a whole number")
    return int(value)


def _float(body: dict, key: str, default: Any = _REQUIRED) -> float:
    value = _value(body, key, default)
    _number_text(key, value)
    number = float(value)  # JSON ints are at most 18 digits (wire.MAX_INT_DIGITS)
    if not math.isfinite(number):
        raise ValueError(f"{key} must be a finite number")
    return number


def _id(body: dict, key: str, default: Any = _REQUIRED) -> Any:
    """An id (client, order, security) as text; numbers are accepted and turned into text."""
    value = _value(body, key, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{key} must be a string")
    text = str(value)
    if not 0 < len(text) <= MAX_ID_LENGTH:
        raise ValueError(f"{key} must be 1 to {MAX_ID_LENGTH} characters")
    return text


def _frames(sim: Emulator, body: dict) -> dict:
    mode, count, client_id = body["mode"], _int(body, "count"), _id(body, "client_id", None)
    if mode == "duplicate":
        sim.duplicate_frames(count, client_id)
    elif mode == "delay":
        sim.delay_frames(count, _float(body, "seconds"), client_id)
    elif mode == "reorder":
        sim.reorder_frames(count, client_id)
    else:
        raise ValueError(f"unknown frame fault mode {str(mode)[:40]!r}: duplicate, delay or "
                         "reorder")
    return _ok()


ACTIONS: dict[tuple[str, str], Action] = {
    ("GET", "/snapshot"): lambda sim, body: sim.snapshot(),
    ("POST", "/prices"): lambda sim, body: _ok(sim.set_price(_id(body, "security_id"),
                                                             _float(body, "price"))),
    ("POST", "/prices/step"): lambda sim, body: _ok(sim.step_prices(_int(body, "steps", 1))),
    ("POST", "/fill-size"): lambda sim, body: _ok(sim.set_fill_size(
        body.get("quantity"), _id(body, "security_id", None))),
    ("POST", "/match"): lambda sim, body: _ok(sim.match()),
    ("POST", "/accounts/funds"): lambda sim, body: _ok(sim.set_funds(
        _id(body, "client_id"), _float(body, "funds"))),
    ("POST", "/accounts/dialect"): lambda sim, body: _ok(sim.set_dialect(
        _id(body, "client_id"), body.get("dialect"), body.get("flags"))),
    ("POST", "/accounts/static-ip"): lambda sim, body: _ok(sim.set_ip_whitelisted(
        _id(body, "client_id"), _flag(body, "whitelisted", True))),
    ("POST", "/accounts/bo-co"): lambda sim, body: _ok(sim.set_bo_co_allowed(
        _id(body, "client_id"), _flag(body, "allowed", True))),
    ("POST", "/app/place"): lambda sim, body: _ok(sim.app_place(
        _id(body, "client_id"), body["order"])),
    ("POST", "/app/modify"): lambda sim, body: _ok(sim.app_modify(
        _id(body, "client_id"), _id(body, "order_id"), body["order"])),
    ("POST", "/app/cancel"): lambda sim, body: _ok(sim.app_cancel(
        _id(body, "client_id"), _id(body, "order_id"))),
    ("POST", "/orders/reject"): lambda sim, body: _ok(sim.reject(
        _id(body, "order_id"), body.get("reason", "Rejected by the exchange"))),
    ("POST", "/faults"): lambda sim, body: _ok(sim.fail_next(
        body["kind"], body.get("path", "*"), method=body.get("method"),
        count=_int(body, "count", 1), client_id=body.get("client_id"),
        status=_int(body, "status", 500))),
    ("POST", "/faults/clear"): lambda sim, body: _ok(sim.clear_faults()),
    ("POST", "/delay"): lambda sim, body: _ok(sim.set_delay(_float(body, "ms"))),
    ("POST", "/hold"): lambda sim, body: _ok(sim.set_hold(_float(body, "seconds"))),
    ("POST", "/stream/drop"): lambda sim, body: _ok(sim.drop_stream(
        _id(body, "client_id", None), clean=_flag(body, "clean", True))),
    ("POST", "/stream/stall"): lambda sim, body: _ok(sim.stall_stream(
        _id(body, "client_id", None), seconds=_float(body, "seconds", 60))),
    ("POST", "/stream/unstall"): lambda sim, body: _ok(sim.unstall_stream(
        _id(body, "client_id", None))),
    ("POST", "/stream/frames"): _frames,
    ("POST", "/stream/raw"): lambda sim, body: _ok(sim.send_raw_frame(
        _id(body, "client_id"), body["text"])),
    ("POST", "/tokens/expire"): lambda sim, body: _ok(sim.expire_token(_id(body, "client_id"))),
    ("POST", "/session/end"): lambda sim, body: _ok(sim.end_session()),
    ("POST", "/session/start"): lambda sim, body: _ok(sim.start_session(
        _flag(body, "new_day", False))),
    ("POST", "/alerts"): lambda sim, body: _ok(sim.receive_alert(body)),
    ("GET", "/alerts"): lambda sim, body: _ok(sim.alerts()),
}
# Calls whose body is any JSON value, not an object of parameters.
ANY_BODY = frozenset({("POST", "/alerts")})


def dispatch(sim: Emulator, method: str, path: str, body: object) -> Any:
    call = (method, path.rstrip("/"))
    action = ACTIONS.get(call)
    if action is None:
        raise bad_input(f"No such control call {method} /_sim{path}")
    if call not in ANY_BODY and not isinstance(body, dict):
        raise ValueError("control body must be a JSON object")
    return action(sim, body)
