"""The control plane over HTTP: `/_sim/...` routes on the REST port, one per Emulator method.

Bodies are JSON objects whose keys are the method's parameters; docs/sim.md lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from copytrade.sim.errors import bad_input

if TYPE_CHECKING:
    from copytrade.sim.server import Emulator

Action = Callable[["Emulator", dict], Any]


def _ok(value: Any = None) -> dict:
    return {"ok": True} if value is None else {"ok": True, "result": value}


def _flag(body: dict, key: str, default: bool) -> bool:
    """JSON booleans only: the string "false" must not count as true."""
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false")
    return value


def _frames(sim: Emulator, body: dict) -> dict:
    mode, count, client_id = body["mode"], int(body["count"]), body.get("client_id")
    if mode == "duplicate":
        sim.duplicate_frames(count, client_id)
    elif mode == "delay":
        sim.delay_frames(count, float(body["seconds"]), client_id)
    elif mode == "reorder":
        sim.reorder_frames(count, client_id)
    else:
        raise ValueError(f"unknown frame fault mode {mode!r}: duplicate, delay or reorder")
    return _ok()


ACTIONS: dict[tuple[str, str], Action] = {
    ("GET", "/snapshot"): lambda sim, body: sim.snapshot(),
    ("POST", "/prices"): lambda sim, body: _ok(sim.set_price(str(body["security_id"]),
                                                             float(body["price"]))),
    ("POST", "/prices/step"): lambda sim, body: _ok(sim.step_prices(int(body.get("steps", 1)))),
    ("POST", "/fill-size"): lambda sim, body: _ok(sim.set_fill_size(
        body.get("quantity"), body.get("security_id"))),
    ("POST", "/match"): lambda sim, body: _ok(sim.match()),
    ("POST", "/accounts/funds"): lambda sim, body: _ok(sim.set_funds(
        str(body["client_id"]), float(body["funds"]))),
    ("POST", "/app/place"): lambda sim, body: _ok(sim.app_place(
        str(body["client_id"]), body["order"])),
    ("POST", "/app/modify"): lambda sim, body: _ok(sim.app_modify(
        str(body["client_id"]), str(body["order_id"]), body["order"])),
    ("POST", "/app/cancel"): lambda sim, body: _ok(sim.app_cancel(
        str(body["client_id"]), str(body["order_id"]))),
    ("POST", "/orders/reject"): lambda sim, body: _ok(sim.reject(
        str(body["order_id"]), body.get("reason", "Rejected by the exchange"))),
    ("POST", "/faults"): lambda sim, body: _ok(sim.fail_next(
        body["kind"], body.get("path", "*"), method=body.get("method"),
        count=int(body.get("count", 1)), client_id=body.get("client_id"),
        status=int(body.get("status", 500)))),
    ("POST", "/faults/clear"): lambda sim, body: _ok(sim.clear_faults()),
    ("POST", "/delay"): lambda sim, body: _ok(sim.set_delay(float(body["ms"]))),
    ("POST", "/hold"): lambda sim, body: _ok(sim.set_hold(float(body["seconds"]))),
    ("POST", "/stream/drop"): lambda sim, body: _ok(sim.drop_stream(
        body.get("client_id"), clean=_flag(body, "clean", True))),
    ("POST", "/stream/stall"): lambda sim, body: _ok(sim.stall_stream(
        body.get("client_id"), seconds=float(body.get("seconds", 60)))),
    ("POST", "/stream/unstall"): lambda sim, body: _ok(sim.unstall_stream(body.get("client_id"))),
    ("POST", "/stream/frames"): _frames,
    ("POST", "/tokens/expire"): lambda sim, body: _ok(sim.expire_token(str(body["client_id"]))),
    ("POST", "/session/end"): lambda sim, body: _ok(sim.end_session()),
    ("POST", "/session/start"): lambda sim, body: _ok(sim.start_session(
        _flag(body, "new_day", False))),
}


def dispatch(sim: Emulator, method: str, path: str, body: object) -> Any:
    action = ACTIONS.get((method, path.rstrip("/")))
    if action is None:
        raise bad_input(f"No such control call {method} /_sim{path}")
    if not isinstance(body, dict):
        raise ValueError("control body must be a JSON object")
    return action(sim, body)
