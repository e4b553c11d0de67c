"""ReportPipeline: order, failures, futures, and `busy` while a report is unapplied."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from copytrade.engine.pipeline import ReportPipeline

BOUND = 10.0  # seconds any wait here may take at most


@pytest.fixture
def pipeline() -> Iterator[ReportPipeline]:
    pipe = ReportPipeline("test")
    pipe.start()
    yield pipe
    pipe.stop(timeout=BOUND)


def test_work_is_applied_in_the_order_it_was_queued(pipeline: ReportPipeline) -> None:
    seen: list[int] = []
    for n in range(200):
        pipeline.put(seen.append, n)
    pipeline.call(lambda: None).result(BOUND)
    assert seen == list(range(200))


def test_busy_from_queued_until_applied(pipeline: ReportPipeline) -> None:
    release, started = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        assert release.wait(BOUND)

    assert not pipeline.busy
    pipeline.put(slow)
    assert pipeline.busy  # queued, not yet applied
    assert started.wait(BOUND)
    assert pipeline.busy  # being applied: still not done
    release.set()
    pipeline.call(lambda: None).result(BOUND)
    assert not pipeline.busy


def test_a_failing_report_is_counted_and_the_next_applied(pipeline: ReportPipeline) -> None:
    failures: list[BaseException] = []
    pipeline.on_failure = failures.append
    pipeline.put(lambda: 1 / 0)
    done = pipeline.call(lambda: "after")
    assert done.result(BOUND) == "after"
    assert pipeline.failures == 1 and isinstance(failures[0], ZeroDivisionError)
    assert not pipeline.busy


def test_a_call_hands_back_its_exception(pipeline: ReportPipeline) -> None:
    with pytest.raises(ZeroDivisionError):
        pipeline.call(lambda: 1 / 0).result(BOUND)
    assert pipeline.failures == 0 and not pipeline.busy


def test_a_cancelled_call_is_skipped_and_not_left_busy() -> None:
    pipe = ReportPipeline("not started")
    future = pipe.call(lambda: pytest.fail("a cancelled call ran"))
    assert future.cancel()
    pipe.start()
    try:
        pipe.call(lambda: None).result(BOUND)
        assert not pipe.busy
    finally:
        pipe.stop(timeout=BOUND)
