"""From the emulator's timestamps to latencies: which frame triggered which place request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.procs import order_key

# The first frame in which a leader order is accepted by the exchange: what a follower acts
# on (copytrade's default; mirror_on_transit is off), and what the baseline acts on.
ACCEPTED = frozenset({"Pending", "Part_Traded", "Traded"})
PLACE_PATHS = ("/orders", "/orders/slicing")


@dataclass
class Placed:
    """One leader order of a run: its id and the key its mirrors carry."""

    order_id: str
    key: tuple[str, str, float]
    leader: str
    followers: list[str]
    placed_at: float = 0.0  # the bench's perf_counter when the control call returned


@dataclass
class Timings:
    frames: list[list[Any]] = field(default_factory=list)
    requests: list[list[Any]] = field(default_factory=list)
    logins: list[list[Any]] = field(default_factory=list)

    def extend(self, taken: dict[str, list[list[Any]]]) -> None:
        self.frames.extend(taken.get("frames", []))
        self.requests.extend(taken.get("requests", []))
        self.logins.extend(taken.get("logins", []))

    def triggers(self) -> dict[tuple[str, str], float]:
        """(leader client id, order id) -> when the emulator sent its first accepted frame."""
        found: dict[tuple[str, str], float] = {}
        for sent, client_id, order_no, status in self.frames:
            if status in ACCEPTED:
                key = (client_id, order_no)
                if key not in found or sent < found[key]:
                    found[key] = sent
        return found

    def places(self) -> dict[tuple[str, tuple[str, str, float]], list[list[Any]]]:
        """(follower client id, order key) -> its place requests, oldest first."""
        found: dict[tuple[str, tuple[str, str, float]], list[list[Any]]] = {}
        for request in self.requests:
            if request[3] == "POST" and request[4] in PLACE_PATHS:
                found.setdefault((request[2], order_key(request[6])), []).append(request)
        for requests in found.values():
            requests.sort(key=lambda r: r[0])
        return found


@dataclass
class Latencies:
    per_request: list[float] = field(default_factory=list)  # ms, every follower request
    first: list[float] = field(default_factory=list)  # ms, the first follower of each order
    last: list[float] = field(default_factory=list)  # ms, the last follower of each order
    spread: list[float] = field(default_factory=list)  # ms, first to last follower
    missing: int = 0  # follower requests never seen
    no_trigger: int = 0  # leader orders whose accepted frame was never sent


def latencies(timings: Timings, placed: list[Placed]) -> Latencies:
    """Trigger frame sent -> each follower's first place request for that order received."""
    triggers, places = timings.triggers(), timings.places()
    result = Latencies()
    for order in placed:
        sent = triggers.get((order.leader, order.order_id))
        if sent is None:
            result.no_trigger += 1
            continue
        arrived = []
        for follower in order.followers:
            requests = places.get((follower, order.key))
            if not requests:
                result.missing += 1
                continue
            arrived.append(requests[0][0])
        if not arrived:
            continue
        result.per_request.extend((at - sent) * 1000 for at in arrived)
        result.first.append((min(arrived) - sent) * 1000)
        result.last.append((max(arrived) - sent) * 1000)
        if len(arrived) == len(order.followers) and len(arrived) > 1:
            result.spread.append((max(arrived) - min(arrived)) * 1000)
    return result
