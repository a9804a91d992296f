"""Outcome events: their shape, their batches within PutEvents' limits, and the publisher's promises
(off the path of calls, refused events sent again, every event published or reported)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callme.memory import InMemoryEventBus
from callme.outcomes import OutcomePublisher, batches, billed_events, outcome_event
from callme.ports import EVENTS_PER_PUT, PUT_BYTES, BusEvent
from callme.task import Attempt, TaskState
from callme.views import task_view
from tests.conftest import publish_config
from tests.unit.conftest import CURRENT_MINUTE, make_task


def finished(count: int, state: TaskState = TaskState.SUCCESSFUL, **definition: object) -> list[object]:
    return [make_task(state, 1, name=f"job-{i}", **definition) for i in range(count)]


# -- the event -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "detail_type"),
    [
        (TaskState.SUCCESSFUL, "Task Succeeded"),
        (TaskState.FAILED, "Task Failed"),
        (TaskState.SKIPPED, "Task Skipped"),
    ],
)
def test_a_finished_entry_is_an_event_of_its_outcome_without_its_payload(state: TaskState, detail_type: str) -> None:
    task = replace(make_task(state, 1, payload='{"secret": "order 42"}'), updated_at=CURRENT_MINUTE + 7.25)
    event = outcome_event(task)
    assert event is not None
    assert (event.source, event.detail_type, event.entry, event.time) == (
        "callme",
        detail_type,
        f"job@{CURRENT_MINUTE}",
        CURRENT_MINUTE + 7.25,
    )
    detail = json.loads(event.detail)
    assert "payload" not in detail
    assert "order 42" not in event.detail
    assert detail == {name: value for name, value in task_view(task).items() if name != "payload"}


@pytest.mark.parametrize("state", [TaskState.PENDING, TaskState.RUNNING, TaskState.CANCELLED])
def test_an_entry_that_has_no_outcome_is_no_event(state: TaskState) -> None:
    assert outcome_event(make_task(state)) is None


def test_an_entry_too_large_for_an_event_is_described_not_dropped() -> None:
    task = replace(make_task(TaskState.FAILED, 1), response_body="x" * PUT_BYTES)
    event = outcome_event(task)
    assert event is not None
    assert event.size < PUT_BYTES
    detail = json.loads(event.detail)
    assert detail["task_name"] == "job" and detail["trigger_at"] == CURRENT_MINUTE
    assert detail["task_state"] == "failed" and detail["webhook_id"] == task.webhook_id
    assert f"GET /task/job@{CURRENT_MINUTE}" in detail["trimmed"]


def test_size_is_counted_as_eventbridge_counts_an_entry() -> None:
    event = BusEvent("e@60", "callme", "Task Failed", '{"é":1}', 0.0)
    assert event.size == 14 + len("callme") + len("Task Failed") + len('{"é":1}'.encode())
    assert billed_events(replace(event, detail="x" * (64 * 1024 - event.size + len('{"é":1}'.encode())))) == 1
    assert billed_events(replace(event, detail="x" * 64 * 1024)) == 2


# -- batches ---------------------------------------------------------------------------------------


def event_of(size: int, name: str = "e") -> BusEvent:
    bare = BusEvent(name, "callme", "Task Succeeded", "", 0.0)
    return replace(bare, detail="x" * (size - bare.size))


def test_25_events_are_three_batches() -> None:
    assert [len(b) for b in batches([event_of(500)] * 25)] == [10, 10, 5]


@given(st.lists(st.integers(40, PUT_BYTES - 1), max_size=40))
def test_batches_keep_order_and_stay_within_putevents_limits(sizes: list[int]) -> None:
    events = [event_of(size, str(i)) for i, size in enumerate(sizes)]
    found = list(batches(events))
    assert [e for batch in found for e in batch] == events
    for batch in found:
        assert 1 <= len(batch) <= EVENTS_PER_PUT
        assert sum(e.size for e in batch) < PUT_BYTES or len(batch) == 1
    for batch, following in itertools.pairwise(found):  # a batch closes only when the next would not fit
        assert len(batch) == EVENTS_PER_PUT or sum(e.size for e in batch) + following[0].size >= PUT_BYTES


# -- the publisher ---------------------------------------------------------------------------------


def test_events_are_sent_in_full_batches_and_the_rest_at_close() -> None:
    bus = InMemoryEventBus()
    publisher = OutcomePublisher(bus, publish_config())
    for task in finished(25):
        publisher.entry_finished(task)
    report = publisher.close()
    assert [len(put) for put in bus.puts] == [10, 10, 5]
    assert (report.published, report.puts, report.failed) == (25, 3, [])
    assert sorted(e.entry for e in bus.events) == sorted(f"job-{i}@{CURRENT_MINUTE}" for i in range(25))


def test_entries_without_an_outcome_are_not_published() -> None:
    bus = InMemoryEventBus()
    publisher = OutcomePublisher(bus, publish_config())
    for state in (TaskState.CANCELLED, TaskState.PENDING, TaskState.FAILED):
        publisher.entry_finished(make_task(state, name=state.value))
    assert publisher.close().published == 1
    assert [e.detail_type for e in bus.events] == ["Task Failed"]


def test_refused_events_are_sent_again_after_a_growing_wait() -> None:
    bus = InMemoryEventBus(refusals=[{2: "ThrottlingException", 7: "InternalFailure"}, {1: "InternalFailure"}])
    waits: list[float] = []
    publisher = OutcomePublisher(bus, publish_config(tries=4, backoff=0.2), sleep=waits.append)
    for task in finished(10):
        publisher.entry_finished(task)
    report = publisher.close()
    assert [len(put) for put in bus.puts] == [10, 2, 1]
    assert (report.published, report.puts, report.failed) == (10, 3, [])
    assert len(bus.events) == 10 and len({e.entry for e in bus.events}) == 10
    assert 0.1 <= waits[0] <= 0.2 and 0.2 <= waits[1] <= 0.4


def test_an_event_refused_every_time_is_reported_with_its_last_error() -> None:
    bus = InMemoryEventBus(refusals=[{0: "ThrottlingException"}] * 3 + [{0: "InternalFailure"}])
    publisher = OutcomePublisher(bus, publish_config(tries=4), sleep=lambda _: None)
    for task in finished(3):
        publisher.entry_finished(task)
    report = publisher.close()
    assert report.published == 2 and report.puts == 4
    assert report.failed == [(f"job-0@{CURRENT_MINUTE}", "refused 4 times, last: InternalFailure")]


def test_a_bus_that_raises_counts_as_refusing_the_batch() -> None:
    class Broken:
        def put(self, events: list[BusEvent]) -> list[str | None]:
            raise RuntimeError("bug")

    publisher = OutcomePublisher(Broken(), publish_config(tries=2), sleep=lambda _: None)
    publisher.entry_finished(make_task(TaskState.SUCCESSFUL, 1))
    report = publisher.close()
    assert report.published == 0
    assert report.failed == [(f"job@{CURRENT_MINUTE}", "refused 2 times, last: internal error: RuntimeError")]


def test_a_slow_bus_never_holds_up_the_caller_and_close_keeps_to_its_time() -> None:
    release = threading.Event()
    bus = InMemoryEventBus(before_put=release.wait)
    publisher = OutcomePublisher(bus, publish_config(), sleep=lambda _: None)
    started = time.monotonic()
    for task in finished(35):
        publisher.entry_finished(task)
    assert time.monotonic() - started < 0.5, "finished() waited for the bus"
    report = publisher.close(time.monotonic() + 0.2)
    assert time.monotonic() - started < 3
    release.set()
    assert report.published == 0
    assert len(report.failed) == 35
    assert {why for _, why in report.failed} == {"not published before the run ended"}


def test_no_resend_starts_after_the_time_given() -> None:
    clock = [0.0]
    bus = InMemoryEventBus(refusals=[{0: "ThrottlingException"}] * 10)

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    publisher = OutcomePublisher(bus, publish_config(tries=10, backoff=1.0), sleep=sleep, clock=lambda: clock[0])
    publisher.entry_finished(make_task(TaskState.SUCCESSFUL, 1))
    report = publisher.close(give_up_at=1.4)
    assert len(bus.puts) == 2  # at 0 and 0.5-1 s later; the next wait (1-2 s) would pass 1.4
    assert report.failed == [(f"job@{CURRENT_MINUTE}", "not published before the run ended")]


def test_a_closed_publisher_takes_no_more() -> None:
    publisher = OutcomePublisher(InMemoryEventBus(), publish_config())
    publisher.close()
    with pytest.raises(RuntimeError):
        publisher.entry_finished(make_task(TaskState.SUCCESSFUL, 1))


def test_history_is_part_of_the_detail() -> None:
    task = replace(make_task(TaskState.FAILED, 2), history=(Attempt(at=1.5, duration_ms=3, status=500),))
    event = outcome_event(task)
    assert event is not None
    assert json.loads(event.detail)["history"] == [{"at": 1.5, "status": 500, "error": None, "duration_ms": 3}]
