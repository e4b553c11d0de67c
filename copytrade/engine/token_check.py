"""What Dhan says of tokens now (`GET /v2/profile`), for `copytrade token set` and
`copytrade token status`: each account asked concurrently, each call bounded by the
timeout its TokenApi was built with, every answer judged by one pure function.

The composition root hands in how to reach each account's endpoints (its URL, egress and
timeout; the token inside), as it does for follow's token loop: nothing here knows the
configuration, and no token is ever in a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from copytrade.dhan.rest import Outcome, OutcomeKind
from copytrade.engine.tokens import WARN_BEFORE, TokenEndpoints

EXPIRING_SOON = WARN_BEFORE  # the same 30 minutes after which follow warns
MAX_THREADS = 8  # accounts asked at once; a family has a handful
_EXCEPTION = re.compile(r"([A-Za-z]+(?:Error|Timeout|Exception)):")

TokenState = Literal["valid", "expiring", "refused", "unknown"]


@dataclass(frozen=True)
class TokenCheck:
    state: TokenState
    valid_until: datetime | None = None  # UTC, when the profile said
    detail: str = ""  # refused: the code; unknown: why (redacted, short)

    @property
    def answered(self) -> bool:
        return self.state != "unknown"


def judge(outcome: Outcome, now: datetime,
          soon: timedelta = EXPIRING_SOON) -> TokenCheck:
    """One profile answer: valid (and for how long), refused (DH-901), or unknown (no
    answer, or an answer that says nothing of the token, like a static-IP refusal)."""
    if outcome.ok:
        until = outcome.data.valid_until
        return TokenCheck("expiring" if until - now <= soon else "valid", until)
    if outcome.kind is OutcomeKind.AUTH and not outcome.static_ip:
        return TokenCheck("refused", detail=outcome.code or "DH-901")
    if outcome.static_ip:
        return TokenCheck("unknown", detail=f"Dhan refused the request from this address "
                          f"({outcome.code}: static IP), so the token was not checked")
    return TokenCheck("unknown", detail=_why(outcome))


def _why(outcome: Outcome) -> str:
    """A short reason: the exception's name for a network failure, else Dhan's words."""
    if outcome.kind is OutcomeKind.UNKNOWN and (found := _EXCEPTION.match(outcome.message)):
        return f"no answer ({found.group(1)})"
    return outcome.describe()[:160]


def check_tokens(probes: Sequence[Callable[[], TokenEndpoints]],
                 now: Callable[[], datetime]) -> list[TokenCheck]:
    """Each account's profile read, all at once (threads: the calls are blocking I/O);
    judged against the time once they have all answered. In the order given."""
    if not probes:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(probes)),
                            thread_name_prefix="token-check") as pool:
        outcomes = list(pool.map(_profile, probes))
    moment = now()
    return [judge(outcome, moment) for outcome in outcomes]


def _profile(make: Callable[[], TokenEndpoints]) -> Outcome:
    endpoints = make()
    try:
        return endpoints.profile()
    finally:
        endpoints.close()


def time_left(until: datetime, now: datetime) -> str:
    """`23 h 59 min`, `12 min`, `expired`: whole minutes, rounded down."""
    minutes = int((until - now).total_seconds() // 60)
    if minutes < 0:
        return "expired"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
