"""The schedules' storage port (callme.ports.ScheduleRepository), held by both implementations:
DynamoDB (on moto) and memory. A change is all or nothing with the entries it writes, on condition
that the chain is as read; the dispatcher's move is one conditional write of the chain; a cancelled
run not yet settled stays in the ``due`` listing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from callme.dynamodb import DynamoDBScheduleRepository, DynamoDBTaskRepository
from callme.memory import InMemoryScheduleRepository, InMemoryTaskRepository
from callme.ports import ScheduleRepository, StaleChain, StaleSchedule, TaskRepository, shard_of
from callme.schedule import Change, Scheduled, ScheduleRequest, new_run, plan_change
from callme.task import TaskDefinition, TaskKey, TaskName

T0 = 1858809600
SHARDS = 4
NOW = T0 - 3600.0 + 12.5
RETENTION = 86400
DEFINITION = TaskDefinition(callback="https://example.com/digest", payload="körper \x01 ✓", retry=2)


@dataclass
class Storage:
    tasks: TaskRepository
    schedules: ScheduleRepository


@pytest.fixture(params=["dynamodb", "memory"])
def storage(request: pytest.FixtureRequest) -> Iterator[Storage]:
    if request.param == "memory":
        tasks = InMemoryTaskRepository(SHARDS)
        yield Storage(tasks, InMemoryScheduleRepository(tasks))
        return
    client = request.getfixturevalue("aws")
    dynamodb_tasks = DynamoDBTaskRepository(client, "callme-tasks", SHARDS)
    yield Storage(dynamodb_tasks, DynamoDBScheduleRepository(client, "callme-schedules", dynamodb_tasks))


def creation(name: str = "digest", **fields: object) -> Change:
    values: dict[str, object] = {
        "name": TaskName(name),
        "definition": DEFINITION,
        "cron": None,
        "every": "1h",
        "timezone": "Europe/Lisbon",
        "start_at": None,
        "end_at": None,
        "paused": False,
        "received_at": NOW,
    }
    values.update(fields)
    change = plan_change(None, ScheduleRequest(**values), lambda minute: None, RETENTION)  # type: ignore[arg-type]
    assert change is not None
    return change


def after(change: Change) -> Scheduled:
    assert change.schedule is not None and change.chain is not None
    return Scheduled(change.schedule, change.chain)


def test_a_created_schedule_reads_back_with_its_chain_and_its_run(storage: Storage) -> None:
    change = creation()
    storage.schedules.apply(change)
    assert storage.schedules.get("digest") == after(change)
    [(run, _)] = change.runs
    assert storage.tasks.get(run.key) == run and run.schedule == "digest"
    assert storage.schedules.get("other") is None


def test_a_second_creation_of_the_same_name_is_refused_and_writes_nothing(storage: Storage) -> None:
    first = creation()
    storage.schedules.apply(first)
    second = creation(definition=replace(DEFINITION, payload="other"), every="2h")
    with pytest.raises(StaleSchedule):
        storage.schedules.apply(second)
    assert storage.schedules.get("digest") == after(first)
    [(run, _)] = first.runs
    assert storage.tasks.get(run.key) == run


def test_a_change_applies_only_on_the_chain_it_read(storage: Storage) -> None:
    first = creation()
    storage.schedules.apply(first)

    def change_to(every: str) -> Change:
        request = ScheduleRequest(TaskName("digest"), DEFINITION, None, every, None, None, None, False, NOW + 1)
        change = plan_change(after(first), request, lambda minute: storage.tasks.get(TaskKey("digest", minute)), 0)
        assert change is not None
        return change

    winner, loser = change_to("2h"), change_to("3h")  # both planned on the first chain
    storage.schedules.apply(winner)
    storage.schedules.apply(winner)  # the same change again (a retry after a lost answer): applied already
    with pytest.raises(StaleSchedule):
        storage.schedules.apply(loser)
    assert storage.schedules.get("digest") == after(winner)
    pending = [storage.tasks.get(task.key) for task, _ in winner.runs]
    assert pending == [task for task, _ in winner.runs]


def test_a_change_whose_entry_condition_fails_writes_nothing(storage: Storage) -> None:
    change = creation()
    [(run, _)] = change.runs
    storage.tasks.insert(new_run("digest", run.key.trigger_at, DEFINITION, NOW))  # the key is taken
    with pytest.raises(StaleSchedule):
        storage.schedules.apply(change)
    assert storage.schedules.get("digest") is None


def test_a_removal_deletes_both_items_on_the_chain_it_read(storage: Storage) -> None:
    change = creation()
    storage.schedules.apply(change)
    [(run, _)] = change.runs
    cancelled = run.cancelled(NOW, RETENTION).settle(NOW)
    removal = Change("digest", None, None, ((cancelled, run.revision),), after(change).chain.revision)
    storage.schedules.apply(removal)
    assert storage.schedules.get("digest") is None
    assert storage.tasks.get(run.key) == cancelled


def test_the_chain_moves_only_from_the_revision_it_was_read_at(storage: Storage) -> None:
    change = creation()
    storage.schedules.apply(change)
    current = after(change)
    first = current.chain.next_run
    assert first is not None
    moved = current.chain.moved(first + 3600, first)
    storage.schedules.move(moved, current.chain.revision)
    storage.schedules.move(moved, current.chain.revision)  # the same move again (a retry): done already
    assert storage.schedules.get("digest") == Scheduled(current.schedule, moved)
    with pytest.raises(StaleChain) as stale:  # a duplicated dispatcher run, on the chain it read
        storage.schedules.move(current.chain.moved(first + 7200, first), current.chain.revision)
    assert stale.value.current == moved
    with pytest.raises(StaleChain) as gone:
        storage.schedules.move(replace(moved, name="nothing"), moved.revision)
    assert gone.value.current is None


def test_schedules_are_listed_once_across_pages_in_a_stable_order(storage: Storage) -> None:
    names = [f"s{i:02}" for i in range(7)]
    for name in names:
        storage.schedules.apply(creation(name))
    seen: list[str] = []
    after_name: str | None = None
    for _ in range(10):
        page = storage.schedules.page(after_name, 3)
        seen += [scheduled.name for scheduled in page.schedules]
        if not page.more:
            break
        after_name = page.schedules[-1].name
    assert sorted(seen) == names and len(seen) == len(names)
    stopped = storage.schedules.page(None, 10, lambda scheduled: scheduled.name not in names[2:])
    assert len(stopped.schedules) < len(names) and stopped.more


def test_a_cancelled_run_stays_due_until_it_is_settled(storage: Storage) -> None:
    change = creation()
    storage.schedules.apply(change)
    [(run, _)] = change.runs
    minute, shard = run.key.trigger_at, shard_of(run.key, SHARDS)
    skipped = run.cancelled(NOW, RETENTION)
    storage.tasks.save(skipped, run.revision)
    assert [task.key for task in storage.tasks.due(shard, minute)] == [run.key]
    settled = skipped.settle(NOW)
    storage.tasks.save(settled, skipped.revision)
    assert list(storage.tasks.due(shard, minute)) == []
    assert storage.tasks.get(run.key) == settled
