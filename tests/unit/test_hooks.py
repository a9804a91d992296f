"""The failure hook: when it is owed, how its calls are judged and retried, what it reports."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from callme.headers import HeaderSet
from callme.hooks import HOOK_ATTEMPTS, HOOK_WAITS, HookCall, HookState
from callme.task import Attempt, TaskState, Verdict
from callme.views import failure_notice, task_view
from tests.unit.conftest import NOW, make_task

HOOK = "https://hooks.example.com/failed"
DAY = 86400


def owed(at: float = NOW) -> HookCall:
    return HookCall.owed(at)


# -- when it is owed --------------------------------------------------------------------------------


def failed_by_a_404(**definition: object) -> object:
    task = make_task(retry=0, **definition)
    return task.after_attempt(Attempt(at=NOW, duration_ms=10, status=404), "nope", Verdict.FAIL, None, DAY)


def test_an_entry_that_fails_owes_its_hook_a_call_with_its_own_webhook_id() -> None:
    failed = failed_by_a_404(on_failure=HOOK)
    assert failed.state is TaskState.FAILED
    assert failed.on_failure_call is not None
    assert failed.on_failure_call.state is HookState.PENDING and failed.on_failure_call.attempts == 0
    assert failed.on_failure_call.webhook_id.startswith("msg_")
    assert failed.on_failure_call.webhook_id != failed.webhook_id
    assert failed.hook_owed and failed.in_due_index


def test_an_entry_skipped_past_max_delay_owes_its_hook_a_call() -> None:
    skipped = make_task(on_failure=HOOK).missed(NOW + 3600, DAY)
    assert skipped.state is TaskState.SKIPPED and skipped.hook_owed


def test_an_entry_that_fails_after_retries_owes_one_call_not_one_per_attempt() -> None:
    task = make_task(retry=2, on_failure=HOOK)
    for n in range(2):
        task = task.after_attempt(Attempt(at=NOW + n, duration_ms=1, status=500), "", Verdict.RETRY, NOW + 60, DAY)
        assert task.state is TaskState.RUNNING and task.on_failure_call is None
    task = task.after_attempt(Attempt(at=NOW + 9, duration_ms=1, status=500), "", Verdict.RETRY, None, DAY)
    assert task.state is TaskState.FAILED and task.hook_owed


@pytest.mark.parametrize(
    "finish",
    [
        lambda t: t.after_attempt(Attempt(at=NOW, duration_ms=1, status=200), "", Verdict.SUCCESS, None, DAY),
        lambda t: t.cancelled(NOW, DAY),
    ],
    ids=["successful", "cancelled"],
)
def test_successful_and_cancelled_entries_owe_nothing(finish: object) -> None:
    done = finish(make_task(on_failure=HOOK))  # type: ignore[operator]
    assert done.on_failure_call is None and not done.in_due_index


def test_an_entry_without_on_failure_owes_nothing() -> None:
    failed = failed_by_a_404()
    assert failed.on_failure_call is None and not failed.in_due_index


def test_recording_a_hook_call_keeps_the_entry_as_it_ended() -> None:
    failed = failed_by_a_404(on_failure=HOOK)
    assert failed.on_failure_call is not None
    called = failed.after_hook_call(failed.on_failure_call.after_call(NOW + 1, 20, 200, None), NOW + 2)
    assert (called.state, called.expires_at, called.attempts) == (failed.state, failed.expires_at, failed.attempts)
    assert called.revision != failed.revision
    assert called.on_failure_call is not None and called.on_failure_call.state is HookState.DELIVERED
    assert not called.hook_owed and not called.in_due_index


# -- its calls, judged ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_delivers_it(status: int) -> None:
    call = owed().after_call(NOW, 10, status, None)
    assert (call.state, call.attempts, call.status, call.at, call.next_at) == (
        HookState.DELIVERED,
        1,
        status,
        NOW,
        None,
    )


@pytest.mark.parametrize("status", [None, 500, 502, 503, 408, 429])
def test_network_errors_5xx_408_and_429_are_tried_again_after_a_wait(status: int | None) -> None:
    error = None if status else "connection refused"
    soonest = owed().after_call(NOW, 1000, status, error, jitter=0.0)
    latest = owed().after_call(NOW, 1000, status, error, jitter=1.0)
    assert soonest.state is HookState.PENDING and soonest.attempts == 1 and soonest.error == error
    assert soonest.next_at == NOW + 1 + HOOK_WAITS[0] / 2
    assert latest.next_at == NOW + 1 + HOOK_WAITS[0]


@pytest.mark.parametrize("status", [301, 302, 400, 401, 403, 404, 410, 422])
def test_other_answers_give_up_at_once(status: int) -> None:
    call = owed().after_call(NOW, 10, status, None)
    assert call.state is HookState.FAILED and call.attempts == 1 and call.next_at is None


def test_a_refused_address_gives_up_at_once() -> None:
    call = owed().after_call(NOW, 0, None, "refused to connect: 10.0.0.1 is private", refused=True)
    assert call.state is HookState.FAILED and call.error is not None and call.next_at is None


def test_it_is_called_at_most_hook_attempts_times_with_growing_waits() -> None:
    call, waits = owed(), []
    at = NOW
    while call.state is HookState.PENDING:
        call = call.after_call(at, 0, 503, None)
        if call.next_at is not None:
            waits.append(call.next_at - at)
            at = call.next_at
    assert call.state is HookState.FAILED and call.attempts == HOOK_ATTEMPTS == 4
    assert waits == list(HOOK_WAITS)


def test_retry_after_is_honoured_up_to_the_longest_wait() -> None:
    assert owed().after_call(NOW, 0, 429, None, retry_after=90, jitter=0).next_at == NOW + 90
    assert owed().after_call(NOW, 0, 429, None, retry_after=99999, jitter=0).next_at == NOW + HOOK_WAITS[-1]
    assert owed().after_call(NOW, 0, 429, None, retry_after=1, jitter=1).next_at == NOW + HOOK_WAITS[0]


def test_the_webhook_id_and_the_time_it_was_owed_never_change() -> None:
    first = owed()
    later = first.after_call(NOW, 0, 500, None).after_call(NOW + 40, 0, 500, None)
    assert (later.webhook_id, later.since) == (first.webhook_id, first.since)


# -- what it reports ------------------------------------------------------------------------------


def test_the_notice_describes_the_entry_without_payload_or_header_values() -> None:
    task = make_task(
        on_failure=HOOK, payload='{"order": 42}', headers=HeaderSet((("Authorization", "Bearer s3cr3t"),)), retry=0
    )
    failed = task.after_attempt(Attempt(at=NOW, duration_ms=10, status=404), "nope", Verdict.FAIL, None, DAY)
    notice = failure_notice(failed)
    assert notice["type"] == "task.failed"
    assert notice["timestamp"].endswith("Z")
    data = notice["data"]
    assert data["task_name"] == "job" and data["task_state"] == "failed"
    assert data["on_failure"] == HOOK and data["response_status"] == 404
    assert data["webhook_id"] == failed.webhook_id
    assert data["headers"] == {"Authorization": "***"}
    assert "payload" not in data and "on_failure_call" not in data
    text = json.dumps(notice)
    assert "s3cr3t" not in text and "order" not in text


def test_the_notice_of_a_skipped_entry_says_so() -> None:
    skipped = make_task(on_failure=HOOK).missed(NOW + 3600, DAY)
    assert failure_notice(skipped)["type"] == "task.skipped"


def test_the_notice_is_the_same_on_every_call_of_the_hook() -> None:
    failed = failed_by_a_404(on_failure=HOOK)
    assert failed.on_failure_call is not None
    again = failed.after_hook_call(failed.on_failure_call.after_call(NOW + 5, 10, 503, None), NOW + 6)
    assert failure_notice(again) == failure_notice(failed)


def test_answers_show_the_hooks_outcome() -> None:
    failed = failed_by_a_404(on_failure=HOOK)
    assert failed.on_failure_call is not None
    call = replace(failed.on_failure_call.after_call(NOW + 1, 20, 503, None, jitter=0), webhook_id="msg_x")
    view = task_view(failed.after_hook_call(call, NOW + 2))
    assert view["on_failure"] == HOOK
    assert view["on_failure_call"] == {
        "state": "pending",
        "attempts": 1,
        "status": 503,
        "error": None,
        "at": NOW + 1,
        "next_at": NOW + 1.02 + HOOK_WAITS[0] / 2,
        "webhook_id": "msg_x",
    }
    assert task_view(make_task())["on_failure_call"] is None
