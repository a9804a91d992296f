"""The rules that move a schedule's runs on: a change through the API (plan_change, plan_removal) and
the dispatcher taking a run (plan_turn). Pure: the entries stored are given as a dictionary."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from callme.errors import Conflict, InvalidRequest
from callme.schedule import (
    Chain,
    Change,
    Schedule,
    Scheduled,
    ScheduleRequest,
    new_run,
    plan_change,
    plan_removal,
    plan_turn,
)
from callme.task import Task, TaskDefinition, TaskKey, TaskState
from tests.unit.conftest import CURRENT_MINUTE, NOW, PUBLIC_URL, make_task, rejected

MINUTE, HOUR = 60, 3600
RETENTION = 30 * 86400
DEFINITION = TaskDefinition(callback=PUBLIC_URL)
NEW_DEFINITION = TaskDefinition(callback=PUBLIC_URL, payload="new")


def request(at: float = NOW, **fields: Any) -> ScheduleRequest:
    values: dict[str, Any] = {
        "name": "job",
        "definition": DEFINITION,
        "cron": None,
        "every": "1h",
        "timezone": None,
        "start_at": None,
        "end_at": None,
        "paused": False,
        "received_at": at,
    }
    values.update(fields)
    return ScheduleRequest(**values)


def created(at: float = NOW, **fields: Any) -> tuple[Scheduled, dict[int, Task]]:
    """A schedule as PUT at ``at``, and the entries that PUT made, by minute."""
    change = plan_change(None, request(at, **fields), {}.get, RETENTION)
    assert change is not None
    return applied(change, {})


def applied(change: Change, stored: dict[int, Task]) -> tuple[Scheduled, dict[int, Task]]:
    """The state after ``change``, checking each write's condition as storage would."""
    entries = dict(stored)
    for task, expected in change.runs:
        current = entries.get(task.key.trigger_at)
        assert (current.revision if current else None) == expected, f"condition of {task.key} fails"
        entries[task.key.trigger_at] = task
    assert change.schedule is not None and change.chain is not None
    return Scheduled(change.schedule, change.chain), entries


def pending_runs(entries: dict[int, Task]) -> list[int]:
    return sorted(minute for minute, task in entries.items() if task.state.active)


# -- creating and changing a schedule -------------------------------------------------------------


def test_a_new_schedule_makes_its_first_run_and_names_it() -> None:
    # Given every hour, created at NOW: the anchor is the creation minute
    scheduled, entries = created()
    first = CURRENT_MINUTE + HOUR
    assert scheduled.chain.next_run == first
    assert pending_runs(entries) == [first]
    run = entries[first]
    assert (run.key, run.schedule, run.definition) == (TaskKey("job", first), "job", DEFINITION)
    assert scheduled.next_runs() == [first + k * HOUR for k in range(5)]


def test_a_run_can_be_as_soon_as_the_next_minute_never_in_the_current_one() -> None:
    scheduled, _ = created(every="1m")
    assert scheduled.chain.next_run == CURRENT_MINUTE + MINUTE


def test_a_start_at_in_the_future_is_the_first_run_of_every() -> None:
    start = CURRENT_MINUTE + 7 * HOUR
    scheduled, _ = created(every="1d", start_at=start)
    assert scheduled.next_runs(2) == [start, start + 86400]


def test_the_same_definition_again_changes_nothing() -> None:
    scheduled, entries = created()
    assert plan_change(scheduled, request(NOW + 600), entries.get, RETENTION) is None


def test_a_new_definition_replaces_the_pending_run_in_place() -> None:
    scheduled, entries = created()
    pending = entries[scheduled.chain.next_run or 0]
    change = plan_change(scheduled, request(NOW + 600, definition=NEW_DEFINITION), entries.get, RETENTION)
    assert change is not None
    after, entries = applied(change, entries)
    replaced = entries[pending.key.trigger_at]
    assert pending_runs(entries) == [pending.key.trigger_at]
    assert replaced.definition == NEW_DEFINITION and replaced.webhook_id != pending.webhook_id
    assert after.chain.next_run == pending.key.trigger_at
    assert change.chain_revision == scheduled.chain.revision


def test_a_new_timing_cancels_the_pending_run_and_makes_the_new_first_one() -> None:
    scheduled, entries = created()
    old = scheduled.chain.next_run or 0
    change = plan_change(scheduled, request(NOW, cron="30 * * * *", every=None), entries.get, RETENTION)
    assert change is not None
    after, entries = applied(change, entries)
    assert after.chain.next_run == CURRENT_MINUTE + 30 * MINUTE == pending_runs(entries)[0]
    assert pending_runs(entries) == [CURRENT_MINUTE + 30 * MINUTE]
    assert entries[old].state is TaskState.CANCELLED and not entries[old].in_due_index  # settled: the chain moved on


def test_a_pending_run_that_was_never_made_is_written_cancelled() -> None:
    # Given a dispatcher named the next run and stopped before making it
    scheduled, entries = created()
    missing = scheduled.chain.next_run or 0
    del entries[missing]
    change = plan_change(scheduled, request(NOW, every="2h"), entries.get, RETENTION)
    assert change is not None
    _, entries = applied(change, entries)
    # Then that key holds a cancelled run, so the dispatcher's insert there finds it taken
    assert entries[missing].state is TaskState.CANCELLED and not entries[missing].in_due_index
    assert pending_runs(entries) == [CURRENT_MINUTE + 2 * HOUR]


def test_a_run_whose_minute_has_begun_is_left_and_the_change_applies_after_it() -> None:
    scheduled, entries = created(every="1m")
    begun = scheduled.chain.next_run or 0
    at = begun + 5  # the dispatcher is taking it
    change = plan_change(scheduled, request(at, every="1m", definition=NEW_DEFINITION), entries.get, RETENTION)
    assert change is not None
    after, entries = applied(change, entries)
    assert entries[begun].definition == DEFINITION and entries[begun].state is TaskState.PENDING
    assert after.chain.last_run == begun and after.chain.next_run == begun + MINUTE
    assert entries[begun + MINUTE].definition == NEW_DEFINITION


def test_a_begun_run_never_made_is_made_with_the_definition_it_had() -> None:
    scheduled, entries = created(every="1m")
    begun = scheduled.chain.next_run or 0
    del entries[begun]
    change = plan_change(scheduled, request(begun + 5, every="1m", definition=NEW_DEFINITION), entries.get, RETENTION)
    assert change is not None
    _, entries = applied(change, entries)
    assert entries[begun].definition == DEFINITION and entries[begun].state is TaskState.PENDING


def test_pausing_cancels_the_pending_run_and_resuming_starts_after_now() -> None:
    scheduled, entries = created(every="1m")
    pending = scheduled.chain.next_run or 0
    change = plan_change(scheduled, request(NOW, every="1m", paused=True), entries.get, RETENTION)
    assert change is not None
    paused, entries = applied(change, entries)
    assert paused.chain.next_run is None and paused.next_runs() == []
    assert pending_runs(entries) == [] and entries[pending].state is TaskState.CANCELLED
    later = NOW + 2 * HOUR
    change = plan_change(paused, request(later, every="1m"), entries.get, RETENTION)
    assert change is not None
    resumed, entries = applied(change, entries)
    assert resumed.chain.next_run == CURRENT_MINUTE + 2 * HOUR + MINUTE == pending_runs(entries)[0]


def test_pausing_in_the_minute_of_the_pending_run_cancels_it_too() -> None:
    scheduled, entries = created(every="1m")
    begun = scheduled.chain.next_run or 0
    change = plan_change(scheduled, request(begun + 5, every="1m", paused=True), entries.get, RETENTION)
    assert change is not None
    _, entries = applied(change, entries)
    assert entries[begun].state is TaskState.CANCELLED


def test_a_skipped_run_stays_skipped_through_a_change() -> None:
    # Given the pending run was cancelled by a client (DELETE /task/job@<ts>)
    scheduled, entries = created()
    skipped = scheduled.chain.next_run or 0
    entries[skipped] = entries[skipped].cancelled(NOW, RETENTION)
    assert entries[skipped].in_due_index
    change = plan_change(scheduled, request(NOW, definition=NEW_DEFINITION), entries.get, RETENTION)
    assert change is not None
    after, entries = applied(change, entries)
    assert after.chain.next_run == skipped + HOUR == pending_runs(entries)[0]
    assert entries[skipped].state is TaskState.CANCELLED and not entries[skipped].in_due_index


def test_a_minute_another_entry_holds_is_passed_over() -> None:
    # Given a one-off entry of task job at the first run's minute
    first = CURRENT_MINUTE + HOUR
    one_off = make_task(trigger_at=first)
    change = plan_change(None, request(), {first: one_off}.get, RETENTION)
    assert change is not None
    scheduled, entries = applied(change, {first: one_off})
    assert scheduled.chain.next_run == first + HOUR and entries[first] is one_off


def test_a_cancelled_entry_at_the_minute_is_replaced_by_the_run() -> None:
    first = CURRENT_MINUTE + HOUR
    cancelled = make_task(trigger_at=first).cancelled(NOW, RETENTION)
    change = plan_change(None, request(), {first: cancelled}.get, RETENTION)
    assert change is not None
    _, entries = applied(change, {first: cancelled})
    assert entries[first].state is TaskState.PENDING and entries[first].schedule == "job"


def test_when_other_entries_hold_the_next_runs_the_change_is_refused() -> None:
    held = {CURRENT_MINUTE + k * MINUTE: make_task(trigger_at=CURRENT_MINUTE + k * MINUTE) for k in range(1, 20)}
    error = rejected(lambda: plan_change(None, request(every="1m"), held.get, RETENTION))
    assert isinstance(error, Conflict) and "other entries of task 'job'" in error.message


def test_a_schedule_with_no_run_after_now_is_refused() -> None:
    error = rejected(lambda: plan_change(None, request(end_at=CURRENT_MINUTE + 30 * MINUTE), {}.get, RETENTION))
    assert isinstance(error, InvalidRequest) and "no run after now" in error.message


def test_removal_cancels_the_pending_run_and_deletes_both_items() -> None:
    scheduled, entries = created()
    pending = scheduled.chain.next_run or 0
    change = plan_removal(scheduled, entries.get, NOW, RETENTION)
    assert (change.schedule, change.chain, change.chain_revision) == (None, None, scheduled.chain.revision)
    [(cancelled, expected)] = change.runs
    assert cancelled.key.trigger_at == pending and expected == entries[pending].revision
    assert cancelled.state is TaskState.CANCELLED and not cancelled.in_due_index


# -- the dispatcher taking a run ---------------------------------------------------------------------


def scheduled_with(next_run: int | None, last_run: int | None = None, **fields: Any) -> Scheduled:
    values: dict[str, Any] = {"every": "1m", "start_at": CURRENT_MINUTE}
    values.update(fields)
    schedule = Schedule(
        name="job",
        definition=DEFINITION,
        recurrence=request(**values).recurrence(CURRENT_MINUTE),
        paused=False,
        created_at=NOW,
        updated_at=NOW,
    )
    return Scheduled(schedule, Chain("job", next_run, schedule.revision, last_run))


def test_taking_the_pending_run_moves_the_chain_on_makes_the_next_and_calls_it() -> None:
    run = CURRENT_MINUTE + MINUTE
    current = scheduled_with(run)
    turn = plan_turn(current, run, run + 1.5)
    assert turn.chain is not None and turn.chain.revision != current.chain.revision
    assert (turn.chain.next_run, turn.chain.last_run) == (run + MINUTE, run)
    assert (turn.make, turn.skip, turn.call) == ((run + MINUTE,), (), run)


def test_the_last_run_before_end_at_ends_the_chain() -> None:
    run = CURRENT_MINUTE + MINUTE
    turn = plan_turn(scheduled_with(run, end_at=run), run, run + 1)
    assert turn.chain is not None and turn.chain.next_run is None
    assert (turn.make, turn.call) == ((), run)


def test_a_run_taken_again_after_the_chain_moved_on_makes_sure_of_the_next_and_is_called() -> None:
    run = CURRENT_MINUTE + MINUTE
    turn = plan_turn(scheduled_with(run + MINUTE, last_run=run), run, run + 20)
    assert (turn.chain, turn.make, turn.call) == (None, (run + MINUTE,), run)


def test_a_run_taken_again_once_the_next_minute_came_is_not_called() -> None:
    run = CURRENT_MINUTE + MINUTE
    turn = plan_turn(scheduled_with(run + MINUTE, last_run=run), run, run + MINUTE + 1)
    assert (turn.make, turn.call) == ((run + MINUTE,), None)


def test_a_run_older_than_the_last_one_taken_is_not_called() -> None:
    run = CURRENT_MINUTE + MINUTE
    turn = plan_turn(scheduled_with(run + 10 * MINUTE, last_run=run + 9 * MINUTE), run, run + 1)
    assert turn.call is None and turn.make == (run + 10 * MINUTE,)


def test_after_an_outage_only_the_most_recent_missed_run_is_called() -> None:
    # Given every 5 minutes, run 10:00 pending, and the dispatcher back at 10:17:30
    ten = CURRENT_MINUTE + 600 * 60  # a multiple of 5 minutes from the anchor
    current = scheduled_with(ten, every="5m")
    turn = plan_turn(current, ten, ten + 17 * MINUTE + 30)
    assert turn.call == ten + 15 * MINUTE
    assert turn.skip == (ten + 5 * MINUTE, ten + 10 * MINUTE)
    assert turn.chain is not None and (turn.chain.next_run, turn.chain.last_run) == (ten + 20 * MINUTE, turn.call)
    assert turn.make == (ten + 20 * MINUTE, ten + 15 * MINUTE)


def test_after_an_outage_nothing_is_called_once_max_delay_ran_out() -> None:
    # Given hourly runs, run 10:00 pending, and the dispatcher back at 13:20 (max_delay 10 minutes)
    ten = CURRENT_MINUTE + 10 * HOUR
    turn = plan_turn(scheduled_with(ten, every="1h"), ten, ten + 3 * HOUR + 20 * MINUTE)
    assert turn.call is None and turn.skip == (ten + HOUR, ten + 2 * HOUR, ten + 3 * HOUR)
    assert turn.chain is not None and (turn.chain.next_run, turn.chain.last_run) == (ten + 4 * HOUR, ten + 3 * HOUR)
    assert turn.make == (ten + 4 * HOUR,)


def test_a_run_of_a_deleted_schedule_is_an_ordinary_entry() -> None:
    assert plan_turn(None, CURRENT_MINUTE, NOW) == replace(plan_turn(None, CURRENT_MINUTE, NOW), call=CURRENT_MINUTE)


def test_a_run_the_chain_does_not_name_after_its_last_is_called() -> None:
    # Given a run made again at a minute the chain had left (PUT /task on a cancelled run)
    run = CURRENT_MINUTE + 5 * MINUTE
    turn = plan_turn(scheduled_with(run + HOUR, last_run=run - MINUTE), run, run + 1)
    assert turn.call == run and turn.chain is None


# -- runs as entries ----------------------------------------------------------------------------------


def test_a_cancelled_run_stays_due_until_settled_and_until_its_minute() -> None:
    run = new_run("job", CURRENT_MINUTE + 90 * 86400, DEFINITION, NOW)
    cancelled = run.cancelled(NOW, RETENTION)
    assert cancelled.in_due_index and not cancelled.settle(NOW).in_due_index
    assert cancelled.expires_at == run.key.trigger_at + RETENTION  # not deleted before its minute
    one_off = make_task(trigger_at=CURRENT_MINUTE + 90 * 86400).cancelled(NOW, RETENTION)
    assert not one_off.in_due_index and one_off.expires_at == int(NOW) + RETENTION


@pytest.mark.parametrize("state", [TaskState.PENDING, TaskState.CANCELLED])
def test_a_run_replaced_through_put_task_stays_a_run_of_its_schedule(state: TaskState) -> None:
    run = replace(new_run("job", CURRENT_MINUTE + HOUR, DEFINITION, NOW), state=state)
    assert run.replaced_by(NEW_DEFINITION, NOW).schedule == "job"
