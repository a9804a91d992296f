"""The API's use cases (callme.service) on the in-memory storage: typed requests in, entries out,
every conditional write settled against concurrent ones. The API tier (tests/integration/test_api.py)
runs the same rules through the handler and DynamoDB."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest

from callme import service as service_module
from callme.clock import FixedClock
from callme.egress import EgressPolicy
from callme.errors import Conflict, InvalidRequest, ServiceUnavailable, TaskNotFound
from callme.memory import InMemoryTaskRepository
from callme.ports import StaleEntry
from callme.service import TaskService, settle
from callme.task import Task, TaskDefinition, TaskKey, TaskState, check_name
from callme.validation import Listing, RescheduleRequest, TaskRequest, parse_task_request
from tests.conftest import default_limits, put

T0 = 1858809600
NOW = T0 - 3600 + 7.5
BODY = {"trigger_at": str(T0), "callback": "https://example.com/x"}


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def repo() -> InMemoryTaskRepository:
    return InMemoryTaskRepository(4)


@pytest.fixture
def service(repo: InMemoryTaskRepository, clock: FixedClock) -> TaskService:
    return TaskService(repo, clock, default_limits())


def finished_as(service: TaskService, key: TaskKey, state: TaskState) -> Task:
    """The entry at ``key`` ended in ``state`` (as the dispatcher would record it)."""
    task = service.get_entry(key)
    ended = replace(task, state=state, attempts=1, expires_at=int(NOW) + 3600, revision="ended")
    service.repository.save(ended, task.revision)
    return ended


def request(trigger_at: int | None = None, everything: bool = False) -> RescheduleRequest:
    return RescheduleRequest(trigger_at, everything, NOW)


# -- register ---------------------------------------------------------------------------------------


def test_a_put_creates_the_entry_and_a_second_replaces_it_until_it_is_called(service: TaskService) -> None:
    created, new = put(service, "job", BODY)
    replaced, again = put(service, "job", {**BODY, "callback": "https://example.com/y"})
    assert (new, again) == (True, False)
    assert replaced.key == created.key == TaskKey("job", T0)
    assert service.get_entry(created.key).definition.callback == "https://example.com/y"
    finished_as(service, created.key, TaskState.FAILED)
    with pytest.raises(Conflict, match="has already been called"):
        put(service, "job", BODY)


def test_a_put_that_loses_a_race_replaces_what_the_winner_stored(
    repo: InMemoryTaskRepository, service: TaskService
) -> None:
    real_insert = repo.insert
    winners: list[Task] = []

    def insert(task: Task) -> None:
        if not winners:  # another request registers the entry between this one's parse and its write
            winners.append(Task.new(task.key, TaskDefinition("https://example.com/theirs"), NOW))
            real_insert(winners[0])
        real_insert(task)

    repo.insert = insert  # type: ignore[method-assign]
    task, created = put(service, "job", {**BODY, "payload": "mine"})
    assert (created, task.definition.payload) == (False, "mine"), "it replaced the winner's entry"
    assert task.webhook_id != winners[0].webhook_id
    assert repo.get(task.key) == task


# -- read and list ----------------------------------------------------------------------------------


def test_entries_are_listed_a_page_at_a_time_and_a_missing_task_is_not_found(service: TaskService) -> None:
    for i in range(5):
        put(service, "job", {**BODY, "trigger_at": str(T0 + 60 * i)})
    first = service.list_entries(check_name("job"), Listing(None, False, 2))
    assert ([t.key.trigger_at for t in first.tasks], first.next) == ([T0, T0 + 60], TaskKey("job", T0 + 60))
    rest = service.list_entries(check_name("job"), Listing(first.next, False, 10))
    assert ([t.key.trigger_at for t in rest.tasks], rest.next) == ([T0 + 120, T0 + 180, T0 + 240], None)
    with pytest.raises(TaskNotFound, match="no task named 'other'"):
        service.list_entries(check_name("other"), Listing(None, False, 10))
    with pytest.raises(TaskNotFound, match=f"no entry job@{T0 + 600}"):
        service.get_entry(TaskKey("job", T0 + 600))


# -- cancel -----------------------------------------------------------------------------------------


def test_a_cancel_takes_a_pending_entry_and_refuses_a_finished_or_missing_one(service: TaskService) -> None:
    task, _ = put(service, "job", BODY)
    done, _ = put(service, "done", BODY)
    finished_as(service, done.key, TaskState.SUCCESSFUL)
    assert service.cancel_entry(task.key).state is TaskState.CANCELLED
    with pytest.raises(Conflict, match="already successful"):
        service.cancel_entry(done.key)
    with pytest.raises(TaskNotFound):
        service.cancel_entry(TaskKey("nothing", T0))


def test_cancelling_a_task_cancels_its_active_entries_and_counts_them(service: TaskService) -> None:
    keys = [put(service, "job", {**BODY, "trigger_at": str(T0 + 60 * i)})[0].key for i in range(7)]
    finished_as(service, keys[0], TaskState.FAILED)
    done = service.cancel_name(check_name("job"))
    assert (done.count, [t.key for t in done.first], done.unfinished) == (6, keys[1:], None)
    assert {service.get_entry(k).state for k in keys[1:]} == {TaskState.CANCELLED}
    assert service.get_entry(keys[0]).state is TaskState.FAILED, "a finished entry keeps its outcome"
    with pytest.raises(TaskNotFound):
        service.cancel_name(check_name("other"))


# -- reschedule ------------------------------------------------------------------------------------


def test_a_failed_entry_gets_one_successor_pointing_back_to_it(service: TaskService) -> None:
    task, _ = put(service, "job", BODY)
    finished_as(service, task.key, TaskState.FAILED)
    [successor] = service.reschedule_entry(task.key, request(T0 + 600))
    assert (successor.key, successor.state, successor.rescheduled_from) == (
        TaskKey("job", T0 + 600),
        TaskState.PENDING,
        str(task.key),
    )
    assert service.get_entry(task.key).rescheduled_to == str(successor.key)
    with pytest.raises(Conflict, match=f"already rescheduled to {successor.key}"):
        service.reschedule_entry(task.key, request(T0 + 1200))


def test_only_failed_and_skipped_entries_are_rescheduled_unless_everything_is_asked(service: TaskService) -> None:
    task, _ = put(service, "job", BODY)
    finished_as(service, task.key, TaskState.SUCCESSFUL)
    with pytest.raises(Conflict, match="only failed or skipped entries are rescheduled"):
        service.reschedule_entry(task.key, request())
    [successor] = service.reschedule_entry(task.key, request(everything=True))
    assert successor.key == TaskKey("job", int(NOW // 60 * 60) + 60), "without trigger_at: the next minute"


def test_a_task_s_failed_entries_collapse_into_one_successor(service: TaskService) -> None:
    keys = [put(service, "job", {**BODY, "trigger_at": str(T0 + 60 * i)})[0].key for i in range(3)]
    for key in keys:
        finished_as(service, key, TaskState.FAILED)
    [successor] = service.reschedule_task(check_name("job"), request(T0 + 600))
    assert {service.get_entry(k).rescheduled_to for k in keys} == {str(successor.key)}
    assert service.reschedule_task(check_name("job"), request(T0 + 1200)) == [], "nothing is left to do"


def test_entries_with_different_definitions_are_not_collapsed(service: TaskService) -> None:
    first, _ = put(service, "job", BODY)
    other, _ = put(service, "job", {**BODY, "trigger_at": str(T0 + 60), "payload": "other"})
    for task in (first, other):
        finished_as(service, task.key, TaskState.SKIPPED)
    with pytest.raises(Conflict, match="with different definitions"):
        service.reschedule_task(check_name("job"), request(T0 + 600))
    with pytest.raises(InvalidRequest, match="is the minute of the entry being rescheduled"):
        service.reschedule_entry(first.key, request(T0))


def test_a_successor_minute_held_by_another_entry_is_a_conflict(service: TaskService) -> None:
    task, _ = put(service, "job", BODY)
    put(service, "job", {**BODY, "trigger_at": str(T0 + 600)})
    finished_as(service, task.key, TaskState.FAILED)
    with pytest.raises(Conflict, match=f"entry job@{T0 + 600} already exists"):
        service.reschedule_entry(task.key, request(T0 + 600))
    assert service.get_entry(task.key).rescheduled_to is None, "and nothing was marked"


# -- settle: the one loop for writes that may lose races -------------------------------------------


def test_settle_writes_again_with_what_the_winner_stored() -> None:
    seen: list[Any] = []
    winners = iter(["first winner", "second winner"])

    def write(current: Any) -> str:
        seen.append(current)
        if len(seen) < 3:
            raise StaleEntry(next(winners))  # type: ignore[arg-type]
        return "written"

    assert settle("job@1", write, "as read") == "written"  # type: ignore[arg-type]
    assert seen == ["as read", "first winner", "second winner"]


def test_settle_gives_up_after_its_time_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "RACE_SECONDS", 0.05)
    rounds: list[int] = []

    def write(current: Task | None) -> None:
        rounds.append(1)
        raise StaleEntry(None)

    with pytest.raises(ServiceUnavailable, match="job@1 is changing too fast; retry the request"):
        settle("job@1", write)
    assert len(rounds) > 1, "it tried again before giving up"


def test_a_cancel_racing_another_write_cancels_the_entry_as_the_winner_left_it(
    repo: InMemoryTaskRepository, service: TaskService
) -> None:
    task, _ = put(service, "job", BODY)

    real_save = repo.save
    raced: list[Task] = []

    def save(updated: Task, expected: str) -> None:
        if not raced:  # another writer changes the entry between the read and this write
            raced.append(replace(task, revision="theirs"))
            real_save(raced[0], task.revision)
        real_save(updated, expected)

    repo.save = save  # type: ignore[method-assign]
    cancelled = service.cancel_entry(task.key)
    assert cancelled.state is TaskState.CANCELLED
    stored = repo.get(task.key)
    assert stored == cancelled and stored is not None and stored.revision != "theirs"


# -- register a batch -------------------------------------------------------------------------------


def task_request(name: str, **fields: Any) -> TaskRequest:
    return parse_task_request(check_name(name), {**BODY, **fields}, NOW, default_limits(), EgressPolicy())


def test_a_batch_is_written_concurrently_and_answered_in_order(
    repo: InMemoryTaskRepository, service: TaskService, monkeypatch: pytest.MonkeyPatch
) -> None:
    together = threading.Barrier(3, timeout=5)  # three inserts in flight at once, or this breaks
    insert = repo.insert

    def insert_together(task: Task) -> None:
        together.wait()
        insert(task)

    monkeypatch.setattr(repo, "insert", insert_together)
    refused = InvalidRequest("task_name is required")
    results = service.put_tasks([task_request("a"), refused, task_request("b"), task_request("c")])
    assert [r if isinstance(r, InvalidRequest) else (r[0].key.name, r[1]) for r in results] == [
        ("a", True),
        refused,
        ("b", True),
        ("c", True),
    ]


def test_one_write_that_fails_fails_only_its_own_item(
    repo: InMemoryTaskRepository, service: TaskService, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert = repo.insert

    def insert_but_b(task: Task) -> None:
        if task.key.name == "b":
            raise ServiceUnavailable("storage is unavailable (test); retry the request")
        insert(task)

    monkeypatch.setattr(repo, "insert", insert_but_b)
    first, second, third = service.put_tasks([task_request("a"), task_request("b"), task_request("c")])
    assert isinstance(second, ServiceUnavailable)
    assert not isinstance(first, Exception) and not isinstance(third, Exception)
    assert sorted(t.key.name for t in repo.all_entries(None, None, NOW, 10).tasks) == ["a", "c"]
