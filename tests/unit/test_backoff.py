"""DispatchEngine.backoff: exponential, jittered between half and all of the step, capped."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callme.clock import FixedClock
from callme.dispatch import DispatchEngine
from tests.conftest import dispatch_config

SAMPLES = 200


def engine(base: float = 1.0, cap: float = 120.0) -> DispatchEngine:
    # backoff uses neither the repository nor the caller
    unused: Any = None
    return DispatchEngine(unused, unused, unused, FixedClock(0), dispatch_config(backoff_base=base, backoff_cap=cap))


def samples(e: DispatchEngine, attempts: int) -> list[float]:
    return [e.backoff(attempts) for _ in range(SAMPLES)]


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (4, 4.0, 8.0), (7, 32.0, 64.0), (8, 60.0, 120.0), (30, 60.0, 120.0)],
)
def test_backoff_doubles_per_attempt_between_half_and_all_of_the_step(attempts: int, low: float, high: float) -> None:
    values = samples(engine(base=1.0, cap=120.0), attempts)
    assert all(low <= v <= high for v in values)


def test_first_backoff_is_about_the_base() -> None:
    values = samples(engine(base=5.0), 1)
    assert all(2.5 <= v <= 5.0 for v in values)


def test_backoff_before_any_attempt_is_like_the_first() -> None:
    assert all(0.5 <= v <= 1.0 for v in samples(engine(), 0))


def test_backoff_is_jittered() -> None:
    assert len(set(samples(engine(), 5))) > SAMPLES // 2


def test_backoff_never_shrinks_as_attempts_grow_below_the_cap() -> None:
    # Given base 1 s and cap 1024 s: the steps 1, 2, 4 ... 1024 are uncapped through attempt 11
    e = engine(base=1.0, cap=1024.0)
    for attempts in range(1, 11):
        assert max(samples(e, attempts)) <= min(samples(e, attempts + 1))


def test_backoff_stays_under_the_cap_for_the_most_retries_allowed() -> None:
    assert all(30.0 <= v <= 60.0 for v in samples(engine(base=1.0, cap=60.0), 101))


@settings(max_examples=100, deadline=None)
@given(
    base=st.floats(min_value=0.1, max_value=10),
    cap=st.floats(min_value=10, max_value=600),
    attempts=st.integers(min_value=1, max_value=101),
)
def test_backoff_is_within_half_and_all_of_the_capped_step(base: float, cap: float, attempts: int) -> None:
    step = min(cap, base * 2 ** (attempts - 1))
    value = engine(base, cap).backoff(attempts)
    assert step / 2 <= value <= step
    assert value <= cap
