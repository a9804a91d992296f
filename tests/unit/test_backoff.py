"""When the next attempt is: task.backoff (exponential, jittered between half and all of the step,
capped) and task.next_attempt_at (a retry left, before max_delay runs out)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callme.task import TaskState, Verdict, backoff, next_attempt_at
from tests.unit.conftest import CURRENT_MINUTE, make_task

SAMPLES = 200
JITTERS = [i / (SAMPLES - 1) for i in range(SAMPLES)]  # from 0 to 1, both ends included


def samples(attempts: int, base: float = 1.0, cap: float = 120.0) -> list[float]:
    return [backoff(attempts, base, cap, jitter) for jitter in JITTERS]


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (4, 4.0, 8.0), (7, 32.0, 64.0), (8, 60.0, 120.0), (30, 60.0, 120.0)],
)
def test_backoff_doubles_per_attempt_between_half_and_all_of_the_step(attempts: int, low: float, high: float) -> None:
    values = samples(attempts, base=1.0, cap=120.0)
    assert all(low <= v <= high for v in values)
    assert (values[0], values[-1]) == (low, high), "jitter 0 waits half the step, jitter 1 all of it"


def test_first_backoff_is_about_the_base() -> None:
    assert all(2.5 <= v <= 5.0 for v in samples(1, base=5.0))


def test_backoff_before_any_attempt_is_like_the_first() -> None:
    assert all(0.5 <= v <= 1.0 for v in samples(0))


def test_backoff_is_jittered() -> None:
    assert len(set(samples(5))) > SAMPLES // 2


def test_backoff_never_shrinks_as_attempts_grow_below_the_cap() -> None:
    # Given base 1 s and cap 1024 s: the steps 1, 2, 4 ... 1024 are uncapped through attempt 11
    for attempts in range(1, 11):
        assert max(samples(attempts, cap=1024.0)) <= min(samples(attempts + 1, cap=1024.0))


def test_backoff_stays_under_the_cap_for_the_most_retries_allowed() -> None:
    assert all(30.0 <= v <= 60.0 for v in samples(101, base=1.0, cap=60.0))


@settings(max_examples=100, deadline=None)
@given(
    base=st.floats(min_value=0.1, max_value=10),
    cap=st.floats(min_value=10, max_value=600),
    attempts=st.integers(min_value=1, max_value=101),
    jitter=st.floats(min_value=0, max_value=1),
)
def test_backoff_is_within_half_and_all_of_the_capped_step(
    base: float, cap: float, attempts: int, jitter: float
) -> None:
    step = min(cap, base * 2 ** (attempts - 1))
    value = backoff(attempts, base, cap, jitter)
    assert step / 2 <= value <= step
    assert value <= cap


# -- next_attempt_at ------------------------------------------------------------------------------

ENDED = CURRENT_MINUTE + 5.0


def test_a_retry_with_one_left_is_due_the_wait_after_the_attempt_ended() -> None:
    task = make_task(retry=1, max_delay=10)
    assert next_attempt_at(task, Verdict.RETRY, ENDED, 1.5) == ENDED + 1.5


@pytest.mark.parametrize("verdict", [Verdict.SUCCESS, Verdict.FAIL])
def test_an_attempt_that_is_not_to_be_retried_has_no_next_one(verdict: Verdict) -> None:
    assert next_attempt_at(make_task(retry=3), verdict, ENDED, 1.0) is None


def test_no_retry_is_left_once_retry_plus_one_attempts_are_made() -> None:
    assert next_attempt_at(make_task(retry=0), Verdict.RETRY, ENDED, 1.0) is None
    last = make_task(TaskState.RUNNING, attempts=2, retry=2)  # the third and last attempt was just made
    assert next_attempt_at(last, Verdict.RETRY, ENDED, 1.0) is None
    one_more = make_task(TaskState.RUNNING, attempts=1, retry=2)
    assert next_attempt_at(one_more, Verdict.RETRY, ENDED, 1.0) == ENDED + 1.0


def test_no_retry_is_due_once_max_delay_has_run_out() -> None:
    task = make_task(retry=5, max_delay=1)  # calls may start until CURRENT_MINUTE + 60
    assert next_attempt_at(task, Verdict.RETRY, ENDED, 54.9) == ENDED + 54.9
    assert next_attempt_at(task, Verdict.RETRY, ENDED, 55.0) is None
