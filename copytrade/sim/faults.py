"""REST faults the emulator injects on request: throttling, server errors, lost replies,
and a broker that echoes the request's credentials in its error."""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import asdict, dataclass

# Answered before the request is looked at ("429_empty": a 429 with no body at all, as
# Dhan's gateway sometimes answers).
BEFORE_KINDS = ("429", "429_empty", "5xx", "timeout", "echo_token")
# Answered after the request took effect: the order exists, the reply is lost.
AFTER_KINDS = ("accept_then_timeout",)
# Order lookups answer "not found" although the order exists (lookup lag after create).
LOOKUP_KINDS = ("not_found",)
KINDS = BEFORE_KINDS + AFTER_KINDS + LOOKUP_KINDS
MAX_PENDING_FAULTS = 1_000
MAX_FAULT_COUNT = 1_000_000
MAX_PATTERN_LENGTH = 256  # path globs, methods and client ids of a fault


@dataclass
class RestFault:
    kind: str
    path: str = "*"  # glob on the path after /v2, e.g. "/orders" or "/orders/*"
    method: str | None = None
    count: int = 1
    client_id: str | None = None
    status: int = 500  # for kind "5xx": 500 answers DH-908 JSON, others an HTML gateway page

    def matches(self, method: str, path: str, client_id: str | None) -> bool:
        return ((self.method is None or self.method.upper() == method)
                and fnmatch.fnmatchcase(path, self.path)
                and (self.client_id is None or self.client_id == client_id))


class FaultPlan:
    """Pending faults, each used up by the requests it matches; thread-safe."""

    def __init__(self) -> None:
        self.delay_seconds = 0.0
        self.hold_seconds = 30.0
        self._faults: list[RestFault] = []
        self._lock = threading.Lock()

    def add(self, fault: RestFault) -> None:
        if not isinstance(fault.path, str) or not (fault.method is None
                                                   or isinstance(fault.method, str)):
            raise ValueError("a fault's path must be a string and its method a string or null")
        if fault.client_id is not None and not isinstance(fault.client_id, str):
            raise ValueError("a fault's client_id must be a string or null")
        if any(len(text) > MAX_PATTERN_LENGTH for text in (fault.path, fault.method or "",
                                                           fault.client_id or "")):
            raise ValueError(f"a fault's path, method and client_id are at most "
                             f"{MAX_PATTERN_LENGTH} characters")
        if not isinstance(fault.kind, str) or fault.kind not in KINDS:
            raise ValueError(f"unknown fault kind {str(fault.kind)[:40]!r}; expected one of "
                             f"{KINDS}")
        if isinstance(fault.count, bool) or not isinstance(fault.count, int) \
                or not 1 <= fault.count <= MAX_FAULT_COUNT:
            raise ValueError(f"fault count must be from 1 to {MAX_FAULT_COUNT}")
        if fault.kind == "5xx" and not 500 <= fault.status <= 599:
            raise ValueError("a 5xx fault's status must be 500-599")
        with self._lock:
            if len(self._faults) >= MAX_PENDING_FAULTS:
                raise ValueError("too many pending faults")
            self._faults.append(fault)

    def take(self, method: str, path: str, client_id: str | None,
             kinds: tuple[str, ...]) -> RestFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(method, path, client_id):
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.delay_seconds = 0.0

    def pending(self) -> list[dict]:
        with self._lock:
            return [asdict(fault) for fault in self._faults]
