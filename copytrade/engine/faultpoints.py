"""Named points where a test may have follow killed (kill -9), to prove that a crash at
any of them loses nothing and duplicates nothing. Used only by tests: set
COPYTRADE_FAULT_POINT=<name> in the environment of the process to kill."""

from __future__ import annotations

import os
import signal

POINTS = ("after_intent_commit", "after_send", "in_barrier")
_ARMED = os.environ.get("COPYTRADE_FAULT_POINT", "")


def reached(name: str) -> None:
    if name == _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
