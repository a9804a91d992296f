"""Task names and keys, the verdict on one call, and the entry's state machine."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callme.errors import Conflict, InvalidRequest
from callme.task import (
    HISTORY_LIMIT,
    NAME_PATTERN,
    NAME_PATTERN_TEXT,
    RESPONSE_BODY_LIMIT,
    Attempt,
    Task,
    TaskDefinition,
    TaskKey,
    TaskState,
    Verdict,
    check_name,
    judge,
)
from tests.unit.conftest import CURRENT_MINUTE, NOW, make_task, rejected

NEXT_MINUTE = CURRENT_MINUTE + 60

RETENTION = 30 * 86400
NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
NAMES = st.text(alphabet=NAME_CHARS, min_size=1, max_size=128).filter(lambda n: n not in (".", ".."))

# -- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "simpletask", "faraway", "Job-1.retry_2", "...", "x" * 128])
def test_valid_name_is_accepted(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "a@b", "a/b", "a b", "x" * 129, "tâche", "a\n", "a:b", "a%20b", "a?b"])
def test_invalid_name_is_rejected_stating_the_rule(name: str) -> None:
    error = rejected(lambda: check_name(name))
    assert isinstance(error, InvalidRequest)
    assert f"task name {name!r} is invalid" in error.message
    assert "1 to 128 characters" in error.message


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_segments_are_rejected_as_names(name: str) -> None:
    # Clients resolve them away (curl sends GET /task/.. as GET /): such an entry could not be read back.
    error = rejected(lambda: check_name(name))
    assert isinstance(error, InvalidRequest)
    assert f"task name {name!r} is invalid" in error.message
    assert "other than '.' and '..'" in error.message


def test_the_published_name_pattern_is_the_one_enforced() -> None:
    assert NAME_PATTERN_TEXT == r"^(?!\.{1,2}$)[A-Za-z0-9._-]{1,128}$"
    assert NAME_PATTERN.pattern == NAME_PATTERN_TEXT


@settings(max_examples=100, deadline=None)
@given(name=NAMES)
def test_any_name_of_allowed_characters_is_accepted(name: str) -> None:
    assert check_name(name) == name


@settings(max_examples=100, deadline=None)
@given(prefix=st.text(alphabet=NAME_CHARS, max_size=60), bad=st.characters(), suffix=st.text(NAME_CHARS, max_size=60))
def test_any_name_with_another_character_is_rejected(prefix: str, bad: str, suffix: str) -> None:
    if bad in NAME_CHARS:
        return
    with pytest.raises(InvalidRequest, match="is invalid"):
        check_name(prefix + bad + suffix)


# -- keys ------------------------------------------------------------------------------------------


def test_key_is_parsed_from_name_at_timestamp() -> None:
    assert TaskKey.parse("faraway@1858809600") == TaskKey("faraway", 1858809600)


def test_key_prints_as_name_at_timestamp() -> None:
    assert str(TaskKey("faraway", 1858809600)) == "faraway@1858809600"


@settings(max_examples=100, deadline=None)
@given(name=NAMES, minute=st.integers(0, 10**13))
def test_printed_key_parses_back_to_itself(name: str, minute: int) -> None:
    key = TaskKey(name, minute * 60)
    assert TaskKey.parse(str(key)) == key


def test_key_without_at_sign_is_rejected_showing_the_form() -> None:
    error = rejected(lambda: TaskKey.parse("faraway", "start_from"))
    assert isinstance(error, InvalidRequest)
    assert error.message == "start_from 'faraway' must have the form <task_name>@<trigger_at>"


@pytest.mark.parametrize(
    "text", ["faraway@", "faraway@soon", "faraway@-60", "faraway@+60", "faraway@\u0661\u0662\u0660", "a@1@60"]
)
def test_key_with_a_timestamp_that_is_not_digits_is_rejected(text: str) -> None:
    error = rejected(lambda: TaskKey.parse(text))
    assert isinstance(error, InvalidRequest)
    assert error.message.startswith(f"entry {text!r}: trigger_at")
    assert "not a Unix timestamp" in error.message


def test_key_off_a_minute_boundary_is_rejected() -> None:
    error = rejected(lambda: TaskKey.parse("faraway@1858809601"))
    assert "not on a minute boundary" in error.message


def test_key_with_an_invalid_name_is_rejected() -> None:
    error = rejected(lambda: TaskKey.parse("bad name@60"))
    assert "task name 'bad name' is invalid" in error.message


# -- judge -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected", "verdict"),
    [
        (200, 200, Verdict.SUCCESS),
        (204, 204, Verdict.SUCCESS),
        (500, 500, Verdict.SUCCESS),
        (404, 404, Verdict.SUCCESS),
        (200, 204, Verdict.FAIL),  # success is exactly the expected status
        (201, 200, Verdict.FAIL),
        (500, 200, Verdict.RETRY),
        (502, 200, Verdict.RETRY),
        (503, 204, Verdict.RETRY),
        (599, 200, Verdict.RETRY),
        (408, 200, Verdict.RETRY),
        (429, 200, Verdict.RETRY),
        (None, 200, Verdict.RETRY),  # network error or timeout
        (400, 200, Verdict.FAIL),
        (401, 200, Verdict.FAIL),
        (404, 200, Verdict.FAIL),
        (410, 200, Verdict.FAIL),
        (301, 200, Verdict.FAIL),  # redirects are not followed
        (302, 200, Verdict.FAIL),
        (304, 200, Verdict.FAIL),
        (100, 200, Verdict.FAIL),
    ],
)
def test_judge(status: int | None, expected: int, verdict: Verdict) -> None:
    assert judge(status, expected) is verdict


@settings(max_examples=200, deadline=None)
@given(status=st.integers(100, 599), expected=st.integers(100, 599))
def test_judge_retries_only_server_errors_timeouts_and_throttling(status: int, expected: int) -> None:
    verdict = judge(status, expected)
    if status == expected:
        assert verdict is Verdict.SUCCESS
    elif status >= 500 or status in (408, 429):
        assert verdict is Verdict.RETRY
    else:
        assert verdict is Verdict.FAIL


# -- states ------------------------------------------------------------------------------------------


def test_only_pending_and_running_are_active() -> None:
    assert {s for s in TaskState if s.active} == {TaskState.PENDING, TaskState.RUNNING}


def test_new_entry_is_pending_with_no_attempts() -> None:
    task = Task.new(TaskKey("job", CURRENT_MINUTE), TaskDefinition("https://example.com/"), NOW)
    assert task.state is TaskState.PENDING
    assert task.attempts == 0
    assert task.history == ()
    assert task.webhook_id.startswith("msg_")
    assert task.expires_at is None


def test_each_entry_gets_its_own_webhook_id() -> None:
    assert make_task().webhook_id != make_task().webhook_id


# -- replaced_by (re-PUT) ----------------------------------------------------------------------------


@pytest.mark.parametrize("state", [TaskState.PENDING, TaskState.CANCELLED])
def test_entry_not_yet_called_is_replaced_by_a_pending_one(state: TaskState) -> None:
    # Given an entry that has not been called, due the next minute
    old = make_task(state=state, trigger_at=NEXT_MINUTE, callback_method="GET")
    new_definition = TaskDefinition("https://example.org/new", callback_method="POST", retry=3)
    # When it is PUT again
    replaced = old.replaced_by(new_definition, NOW + 5)
    # Then the same key holds the new definition, pending again
    assert replaced.key == old.key
    assert replaced.definition == new_definition
    assert replaced.state is TaskState.PENDING
    assert replaced.attempts == 0
    assert replaced.updated_at == NOW + 5


def test_replacement_keeps_where_the_entry_was_rescheduled_from() -> None:
    old = replace(make_task(trigger_at=NEXT_MINUTE), rescheduled_from="job@1799999940")
    assert old.replaced_by(TaskDefinition("https://example.org/"), NOW).rescheduled_from == "job@1799999940"


@pytest.mark.parametrize("state", [TaskState.RUNNING, TaskState.SUCCESSFUL, TaskState.FAILED, TaskState.SKIPPED])
def test_entry_that_already_ran_cannot_be_replaced(state: TaskState) -> None:
    task = make_task(state=state, attempts=0 if state is TaskState.SKIPPED else 1)
    error = rejected(lambda: task.replaced_by(TaskDefinition("https://example.org/"), NOW))
    assert isinstance(error, Conflict)
    assert isinstance(error, Conflict)
    assert f"entry job@{CURRENT_MINUTE} is {state}" in error.message
    assert "POST /reschedule/" in error.message


def test_pending_entry_that_was_already_called_cannot_be_replaced() -> None:
    task = make_task(state=TaskState.PENDING, attempts=1)
    error = rejected(lambda: task.replaced_by(TaskDefinition("https://example.org/"), NOW))
    assert isinstance(error, Conflict)


@pytest.mark.parametrize("state", [TaskState.PENDING, TaskState.CANCELLED])
def test_entry_is_replaced_until_the_last_instant_before_its_minute(state: TaskState) -> None:
    task = make_task(state=state, trigger_at=NEXT_MINUTE)
    replaced = task.replaced_by(TaskDefinition("https://example.org/new"), NEXT_MINUTE - 0.001)
    assert replaced.definition.callback == "https://example.org/new"


@pytest.mark.parametrize("state", [TaskState.PENDING, TaskState.CANCELLED])
@pytest.mark.parametrize("seconds_in", [0.0, 42.5, 3600.0])
def test_entry_whose_minute_has_begun_cannot_be_replaced(state: TaskState, seconds_in: float) -> None:
    # Given an entry not called yet, whose minute has begun: the dispatcher may be calling it now
    task = make_task(state=state, trigger_at=CURRENT_MINUTE)
    # When it is PUT again
    error = rejected(lambda: task.replaced_by(TaskDefinition("https://example.org/"), CURRENT_MINUTE + seconds_in))
    # Then it is a conflict that says why and what to do instead
    assert isinstance(error, Conflict)
    assert isinstance(error, Conflict)
    assert f"entry job@{CURRENT_MINUTE} is due" in error.message
    assert "the dispatcher may be calling it" in error.message
    assert "another trigger_at" in error.message


# -- rescheduled ------------------------------------------------------------------------------------


def test_rescheduled_entry_points_at_its_successor() -> None:
    task = make_task(state=TaskState.FAILED, attempts=2)
    marked = task.rescheduled(TaskKey("job", CURRENT_MINUTE + 60), NOW)
    assert marked.rescheduled_to == f"job@{CURRENT_MINUTE + 60}"
    assert marked.revision != task.revision, "the mark is a write of its own, conditional on the entry as read"


@pytest.mark.parametrize("minute", [CURRENT_MINUTE + 60, CURRENT_MINUTE + 120])
def test_an_entry_has_at_most_one_successor(minute: int) -> None:
    marked = make_task(state=TaskState.FAILED, attempts=2).rescheduled(TaskKey("job", CURRENT_MINUTE + 60), NOW)
    error = rejected(lambda: marked.rescheduled(TaskKey("job", minute), NOW))
    assert isinstance(error, Conflict)
    assert error.message.startswith(
        f"entry job@{CURRENT_MINUTE} was already rescheduled to job@{CURRENT_MINUTE + 60} (its rescheduled_to)"
    )


# -- cancelled --------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [TaskState.PENDING, TaskState.RUNNING])
def test_active_entry_is_cancelled_and_expires_after_the_retention(state: TaskState) -> None:
    task = replace(make_task(state=state), next_attempt_at=NOW + 30)
    cancelled = task.cancelled(NOW, RETENTION)
    assert cancelled.state is TaskState.CANCELLED
    assert cancelled.expires_at == int(NOW) + RETENTION
    assert cancelled.next_attempt_at is None
    assert cancelled.revision != task.revision


@pytest.mark.parametrize("state", [TaskState.SUCCESSFUL, TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED])
def test_finished_entry_cannot_be_cancelled(state: TaskState) -> None:
    task = make_task(state=state)
    error = rejected(lambda: task.cancelled(NOW, RETENTION))
    assert isinstance(error, Conflict)
    assert error.message == f"entry job@{CURRENT_MINUTE} is already {state} and cannot be cancelled"


# -- after_attempt ----------------------------------------------------------------------------------


def attempt(status: int | None = 200, at: float = CURRENT_MINUTE + 1.0, duration_ms: int = 250) -> Attempt:
    return Attempt(at=at, duration_ms=duration_ms, status=status, error=None if status else "connection refused")


def test_successful_attempt_finishes_the_entry() -> None:
    # Given a pending entry
    task = make_task()
    # When its call gets the expected status
    done = task.after_attempt(
        attempt(200, at=CURRENT_MINUTE + 2.0, duration_ms=1500), "ok", Verdict.SUCCESS, None, RETENTION
    )
    # Then it is successful, the attempt is recorded, and it expires after the retention
    assert done.state is TaskState.SUCCESSFUL
    assert done.attempts == 1
    assert done.response_status == 200
    assert done.response_body == "ok"
    assert done.executed_at == CURRENT_MINUTE + 2.0
    assert done.expires_at == CURRENT_MINUTE + 3 + RETENTION
    assert done.next_attempt_at is None
    assert done.history == (attempt(200, at=CURRENT_MINUTE + 2.0, duration_ms=1500),)


def test_retryable_attempt_with_a_slot_left_keeps_the_entry_running() -> None:
    task = make_task(retry=2)
    retry_at = CURRENT_MINUTE + 5.0
    running = task.after_attempt(attempt(503), "busy", Verdict.RETRY, retry_at, RETENTION)
    assert running.state is TaskState.RUNNING
    assert running.state.active
    assert running.next_attempt_at == retry_at
    assert running.attempts == 1
    assert running.response_status == 503
    assert running.expires_at is None


def test_retryable_attempt_without_a_slot_fails_the_entry() -> None:
    task = make_task(state=TaskState.RUNNING, attempts=1, retry=1)
    failed = task.after_attempt(attempt(None), None, Verdict.RETRY, None, RETENTION)
    assert failed.state is TaskState.FAILED
    assert failed.attempts == 2
    assert failed.response_status is None
    assert failed.history[-1].error == "connection refused"
    assert failed.expires_at is not None


def test_failing_attempt_fails_the_entry_even_with_a_slot_offered() -> None:
    failed = make_task(retry=5).after_attempt(attempt(404), "nope", Verdict.FAIL, CURRENT_MINUTE + 9.0, RETENTION)
    assert failed.state is TaskState.FAILED
    assert failed.next_attempt_at is None


def test_response_body_is_cut_to_its_limit() -> None:
    body = "a" * 300 + "b" * 10
    recorded = make_task().after_attempt(attempt(200), body, Verdict.SUCCESS, None, RETENTION)
    assert RESPONSE_BODY_LIMIT == 256
    assert recorded.response_body == "a" * 256


def test_short_response_body_is_kept_whole() -> None:
    recorded = make_task().after_attempt(attempt(200), "é" * 10, Verdict.SUCCESS, None, RETENTION)
    assert recorded.response_body == "é" * 10


def test_history_keeps_only_the_latest_attempts() -> None:
    # Given an entry whose history is full
    old = tuple(attempt(503, at=CURRENT_MINUTE + i) for i in range(HISTORY_LIMIT))
    task = replace(make_task(state=TaskState.RUNNING, attempts=HISTORY_LIMIT, retry=50), history=old)
    # When one more attempt is recorded
    latest = attempt(503, at=CURRENT_MINUTE + 1000)
    updated = task.after_attempt(latest, None, Verdict.RETRY, CURRENT_MINUTE + 1100.0, RETENTION)
    # Then the oldest is dropped and the count still says how many calls were made
    assert len(updated.history) == HISTORY_LIMIT
    assert updated.history == (*old[1:], latest)
    assert updated.attempts == HISTORY_LIMIT + 1


def test_every_attempt_is_added_to_the_history_in_order() -> None:
    task = make_task(retry=2)
    first, second = attempt(500, at=CURRENT_MINUTE + 1), attempt(200, at=CURRENT_MINUTE + 4)
    task = task.after_attempt(first, None, Verdict.RETRY, CURRENT_MINUTE + 4.0, RETENTION)
    task = task.after_attempt(second, None, Verdict.SUCCESS, None, RETENTION)
    assert task.history == (first, second)
    assert task.attempts == 2


def test_each_recorded_change_gets_a_new_revision() -> None:
    task = make_task(retry=2)
    running = task.after_attempt(attempt(500), None, Verdict.RETRY, CURRENT_MINUTE + 4.0, RETENTION)
    done = running.after_attempt(attempt(200), None, Verdict.SUCCESS, None, RETENTION)
    assert len({task.revision, running.revision, done.revision}) == 3


# -- missed -----------------------------------------------------------------------------------------


def test_missed_entry_never_called_is_skipped() -> None:
    skipped = make_task().missed(NOW, RETENTION)
    assert skipped.state is TaskState.SKIPPED
    assert skipped.expires_at == int(NOW) + RETENTION


def test_missed_entry_called_before_is_failed() -> None:
    failed = make_task(state=TaskState.RUNNING, attempts=1).missed(NOW, RETENTION)
    assert failed.state is TaskState.FAILED
    assert failed.next_attempt_at is None


# -- retries_left and deadline ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry", "attempts", "left"), [(1, 0, 2), (1, 1, 1), (1, 2, 0), (0, 0, 1), (0, 1, 0), (5, 3, 3)]
)
def test_retries_left_counts_the_first_call_plus_the_retries(retry: int, attempts: int, left: int) -> None:
    assert make_task(retry=retry, attempts=attempts).retries_left() == left


@pytest.mark.parametrize(("max_delay", "deadline"), [(1, CURRENT_MINUTE + 60), (10, CURRENT_MINUTE + 600)])
def test_deadline_is_trigger_minute_plus_max_delay_minutes(max_delay: int, deadline: int) -> None:
    assert make_task(max_delay=max_delay).deadline() == deadline
