"""A thread that applies reports, in the order they arrived, off the stream's event loop.

The stream's loop only parses and enqueues: pings keep flowing whatever SQLite costs
(DESIGN.md: "the stream loop never waits on SQLite or REST"). follow runs two: the
leader's frames and book catch-ups through one, the followers' through the other. On each,
a catch-up and the frames held behind it are applied in the order they were read.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)

MAX_BACKLOG = 200_000  # reports; past it a report is dropped, counted, and caught up later
_STOP = object()


class ReportPipeline:
    def __init__(self, name: str = "reports") -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.failures = 0  # work items that raised (logged with their traceback)
        self.dropped = 0  # reports refused because the backlog was full
        self.on_failure: Callable[[BaseException], None] = lambda exc: None
        # Work queued and work finished: `busy` while they differ. Several threads queue
        # (the stream loop, catch-ups), so the count they share takes a lock.
        self._queued = 0
        self._finished = 0
        self._count_lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def put(self, work: Callable[..., object], *args: object) -> bool:
        """Queue work; False (and counted) when the backlog is full: the caller's periodic
        read of the book brings what was dropped."""
        if self._queue.qsize() >= MAX_BACKLOG:
            self.dropped += 1
            return False
        self._count()
        self._queue.put((work, args, None))
        return True

    def call(self, work: Callable[..., Any], *args: object) -> Future[Any]:
        """Queue work and get its result (or exception) back; never dropped."""
        future: Future[Any] = Future()
        self._count()
        self._queue.put((work, args, future))
        return future

    def _count(self) -> None:
        with self._count_lock:
            self._queued += 1

    @property
    def busy(self) -> bool:
        """Whether work was queued that has not finished (a report not yet applied)."""
        return self._queued != self._finished

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout: float = 30.0) -> None:
        """Apply what is queued, then stop."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self._apply(*item)
            finally:
                self._finished += 1  # this thread alone writes it

    def _apply(self, work: Callable[..., Any], args: tuple[object, ...],
               future: Future[Any] | None) -> None:
        if future is not None and not future.set_running_or_notify_cancel():
            return  # its caller went away (a catch-up cancelled by a reconnect)
        try:
            result = work(*args)
        except Exception as exc:  # handed to the caller, or logged: never lost
            if future is not None:
                future.set_exception(exc)
                return
            self.failures += 1
            log.error("applying a report failed", exc_info=exc)
            try:
                self.on_failure(exc)
            except Exception:
                log.exception("recording a failed report failed")
        else:
            if future is not None:
                future.set_result(result)
