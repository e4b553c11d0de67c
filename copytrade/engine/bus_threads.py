"""What the bus's threads share (the leader's publisher, an agent's feed and results
publisher, the leader's results consumer): each runs its own asyncio loop and nats-py
connection on a thread of its own, and must end it, and its store connection, quietly."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from copytrade.redact import redact

if TYPE_CHECKING:
    from nats.aio.client import Client

    from copytrade.store.repo import Store

log = logging.getLogger(__name__)


def run_bus_loop(main: Callable[[], Coroutine[Any, Any, None]], store: Store,
                 what: str) -> bool:
    """`main()` on this thread's own loop, then this thread's store connection closed.
    False when it ended on an unexpected error (logged with its traceback)."""
    try:
        asyncio.run(main())
        return True
    except asyncio.CancelledError:
        return True  # stopped
    except Exception:
        log.exception("bus: the %s stopped on an unexpected error", what)
        return False
    finally:
        try:
            store.db.close()  # this thread's connection
        except Exception:
            log.debug("bus: closing the %s's store connection failed", what, exc_info=True)


async def close_quietly(nc: Client | None, what: str) -> None:
    """Close a connection still open (bounded); a failure there is only logged."""
    if nc is None or nc.is_closed:
        return
    try:
        await asyncio.wait_for(nc.close(), 2.0)
    except Exception:
        log.debug("bus: closing the %s's connection failed", what, exc_info=True)


async def pause(halt: threading.Event, seconds: float) -> None:
    """Wait `seconds`, or less if halted, without holding up the loop."""
    await asyncio.to_thread(halt.wait, seconds)


def describe(exc: BaseException) -> str:
    """An error, one line, redacted, bounded."""
    text = str(exc).strip() or type(exc).__name__
    return redact(" ".join(text.split()))[:200]
