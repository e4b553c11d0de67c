"""Correlation ids: valid for Dhan, deterministic, distinct, recognisably ours."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from copytrade.core.ids import MAX_ATTEMPT, PREFIX, attempt_of, correlation_id, is_ours

DHAN_TAG = re.compile(r"[A-Za-z0-9_-]{1,30}")

dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
order_ids = st.text(min_size=1, max_size=40)
followers = st.text(min_size=1, max_size=40)
legs = st.integers(min_value=-5, max_value=10**6)
attempts = st.integers(min_value=1, max_value=MAX_ATTEMPT)
inputs = st.tuples(dates, order_ids, followers, legs, attempts)

DAY = date(2026, 12, 1)


@given(inputs)
def test_every_id_is_a_valid_dhan_tag_with_our_prefix(args: tuple) -> None:
    cid = correlation_id(*args)
    assert DHAN_TAG.fullmatch(cid)
    assert cid.startswith(PREFIX)
    assert is_ours(cid)


@given(inputs)
def test_same_inputs_always_give_the_same_id(args: tuple) -> None:
    assert correlation_id(*args) == correlation_id(*args)


@settings(max_examples=50)
@given(st.sets(inputs, min_size=50, max_size=400))
def test_distinct_inputs_give_distinct_ids(all_inputs: set[tuple]) -> None:
    ids = {correlation_id(*args) for args in all_inputs}
    assert len(ids) == len(all_inputs)


def test_no_collisions_over_a_busy_season() -> None:
    # Shaped like real traffic: many orders, few followers, three legs, some retries.
    ids = {correlation_id(date(2026, 1, 1 + day), str(10**11 + order), follower, leg, attempt)
           for day in range(3) for order in range(2000) for follower in ("a", "b", "c")
           for leg in (1, 2) for attempt in (1, 2)}
    assert len(ids) == 3 * 2000 * 3 * 2 * 2


@given(inputs, attempts)
def test_the_attempt_changes_the_id_and_shows_at_the_end(args: tuple, other: int) -> None:
    day, order, follower, leg, attempt = args
    first = correlation_id(day, order, follower, leg, attempt)
    second = correlation_id(day, order, follower, leg, other)
    assert (first == second) == (attempt == other)
    assert first.endswith(f"-{attempt}")
    assert attempt_of(first) == attempt
    # Every attempt at one mirror shares its stem: a search by stem finds them all.
    assert first.rsplit("-", 1)[0] == second.rsplit("-", 1)[0]


@pytest.mark.parametrize("changed", [
    (date(2026, 12, 2), "1001", "alice", 1),
    (DAY, "1002", "alice", 1),
    (DAY, "1001", "bob", 1),
    (DAY, "1001", "alice", 2),
])
def test_each_input_changes_the_id(changed: tuple) -> None:
    assert correlation_id(*changed, 1) != correlation_id(DAY, "1001", "alice", 1, 1)


def test_fields_cannot_run_into_each_other() -> None:
    # A naive "order|follower" join would make these two the same.
    assert correlation_id(DAY, "1|2", "3", 1, 1) != correlation_id(DAY, "1", "2|3", 1, 1)
    assert correlation_id(DAY, "12", "3", 1, 1) != correlation_id(DAY, "1", "23", 1, 1)


def test_the_longest_id_fits_dhans_limit() -> None:
    assert len(correlation_id(DAY, "9" * 200, "f" * 200, 3, MAX_ATTEMPT)) <= 30


def test_known_value_is_stable_across_releases() -> None:
    # Ids are looked up in order books after restarts and upgrades: the layout must not drift.
    assert correlation_id(DAY, "1000000001", "alice", 1, 1) == "ctf3xtzp2t3m2up3pbuduu-1"


@pytest.mark.parametrize("tag", [
    "", "ct", "ct-1", "CTF3XTZP2T3M2UP3PBUDUU-1", "ctf3xtzp2t3m2up3pbuduu",
    "ctf3xtzp2t3m2up3pbuduu-0", "ctf3xtzp2t3m2up3pbuduu-01", "xxf3xtzp2t3m2up3pbuduu-1",
    "ctf3xtzp2t3m2up3pbudu-1",
    "ctf3xtzp2t3m2up3pbuduu-1x", "ct-manual-order", "ctf3xtzp2t3m2up3pbudu1-1",
])
def test_tags_of_other_shapes_are_not_ours(tag: str) -> None:
    assert not is_ours(tag)
    assert attempt_of(tag) is None


@pytest.mark.parametrize(("args", "error"), [
    ((datetime(2026, 12, 1, 9, 15), "1", "a", 1, 1), TypeError),
    (("2026-12-01", "1", "a", 1, 1), TypeError),
    ((DAY, "", "a", 1, 1), ValueError),
    ((DAY, "1", "", 1, 1), ValueError),
    ((DAY, "1", "a", "1", 1), TypeError),
    ((DAY, "1", "a", 1, True), TypeError),
    ((DAY, "1", "a", 1, 0), ValueError),
    ((DAY, "1", "a", 1, MAX_ATTEMPT + 1), ValueError),
])
def test_bad_inputs_are_refused(args: tuple, error: type[Exception]) -> None:
    with pytest.raises(error):
        correlation_id(*args)
