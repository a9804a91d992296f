"""A schedule's runs through the dispatch engine, on DynamoDB (moto): exactly one pending next run
whatever duplicated dispatcher runs, crashes or concurrent changes do; an outage's missed runs;
changes, pause, delete and end_at as the dispatcher sees them."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from callme.clock import MINUTE, FixedClock
from callme.dispatch import DispatchEngine, FinishedListener, RunReport
from callme.dynamodb import DynamoDBLeaseStore, DynamoDBScheduleRepository, DynamoDBTaskRepository
from callme.errors import ServiceUnavailable
from callme.memory import InMemoryLeaseStore
from callme.ports import CallResult, LeaseStore
from callme.recurrence import MISSED_RUNS_LISTED
from callme.schedule import ScheduleRequest
from callme.schedule_service import ScheduleService
from callme.task import Task, TaskDefinition, TaskKey, TaskName, TaskState
from tests.conftest import default_limits, dispatch_config

T0 = 1858809600  # a minute; schedules are made a few seconds into the minute before it
SHARDS = 4
DEFINITION = TaskDefinition(callback="https://example.com/digest", max_delay=10)


@dataclass
class Caller:
    """Answers 200 to every call, after ``delay`` seconds (overlapping runs), and remembers them."""

    calls: list[Task] = field(default_factory=list)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, task: Task) -> CallResult:
        if self.delay:
            threading.Event().wait(self.delay)
        with self.lock:
            self.calls.append(task)
        return CallResult(started_at=0.0, duration_ms=3, status=200, body="ok")

    def minutes(self) -> Counter[int]:
        return Counter(task.key.trigger_at for task in self.calls)


class FailingInserts(DynamoDBTaskRepository):
    """The tasks table, where the inserts of the keys in ``fail`` fail (once each) as a crash would
    stop them: storage unavailable, nothing written."""

    def __init__(self, client: Any, fail: set[TaskKey]) -> None:
        super().__init__(client, "callme-tasks", SHARDS)
        self.fail = fail

    def insert(self, task: Task) -> None:
        if task.key in self.fail:
            self.fail.discard(task.key)
            raise ServiceUnavailable("the dispatcher stopped here")
        super().insert(task)


@dataclass
class World:
    client: Any
    clock: FixedClock
    caller: Caller
    tasks: DynamoDBTaskRepository
    leases: LeaseStore
    service: ScheduleService

    def schedules(self, tasks: DynamoDBTaskRepository) -> ScheduleService:
        repository = DynamoDBScheduleRepository(self.client, "callme-schedules", tasks)
        return ScheduleService(repository, tasks, self.clock, default_limits())

    def engine(
        self,
        tasks: DynamoDBTaskRepository | None = None,
        leases: LeaseStore | None = None,
        listeners: Sequence[FinishedListener] = (),
    ) -> DispatchEngine:
        tasks = tasks or self.tasks
        return DispatchEngine(
            tasks,
            leases or self.leases,
            self.caller,
            self.clock,
            dispatch_config(lease_wait_seconds=0.0),
            listeners=listeners,
            schedules=self.schedules(tasks),
        )

    def dispatch(self, at: float, engine: DispatchEngine | None = None) -> RunReport:
        """One dispatcher run at ``at`` over every shard."""
        self.clock.at = at
        return (engine or self.engine()).run(range(SHARDS))

    def put(self, name: str = "digest", at: float | None = None, **fields: Any) -> dict[str, Any]:
        if at is not None:
            self.clock.at = at
        values: dict[str, Any] = {
            "name": TaskName(name),
            "definition": DEFINITION,
            "cron": None,
            "every": "1m",
            "timezone": None,
            "start_at": None,
            "end_at": None,
            "paused": False,
            "received_at": self.clock.now(),
        }
        values.update(fields)
        scheduled, _ = self.service.put_schedule(ScheduleRequest(**values))
        return {"next_runs": scheduled.next_runs(), "chain": scheduled.chain}

    def runs(self, name: str = "digest") -> dict[int, Task]:
        return {task.key.trigger_at: task for task in self.tasks.entries_of(name, None, 0, 1000).tasks}

    def states(self, name: str = "digest") -> dict[int, str]:
        return {minute: task.state.value for minute, task in self.runs(name).items()}

    def pending(self, name: str = "digest") -> list[int]:
        return [minute for minute, task in self.runs(name).items() if task.state is TaskState.PENDING]

    def chain_next(self, name: str = "digest") -> int | None:
        found = self.service.schedules.get(name)
        assert found is not None
        return found.chain.next_run


@pytest.fixture
def world(aws: Any) -> Iterator[World]:
    clock = FixedClock(T0 - MINUTE + 7)
    tasks = DynamoDBTaskRepository(aws, "callme-tasks", SHARDS)
    world = World(aws, clock, Caller(), tasks, DynamoDBLeaseStore(aws, "callme-leases"), None)  # type: ignore[arg-type]
    world.service = world.schedules(tasks)
    yield world


def test_each_minute_calls_its_run_and_leaves_exactly_one_pending_next(world: World) -> None:
    world.put()
    assert world.pending() == [T0]
    for k in range(3):
        world.dispatch(T0 + k * MINUTE + 2)
        assert world.caller.minutes() == Counter({T0 + i * MINUTE: 1 for i in range(k + 1)})
        assert world.pending() == [T0 + (k + 1) * MINUTE] == [world.chain_next()]
    webhook_ids = {task.webhook_id for task in world.caller.calls}
    assert len(webhook_ids) == 3  # each run its own entry, its own webhook-id
    assert [world.runs()[T0 + k * MINUTE].state for k in range(3)] == [TaskState.SUCCESSFUL] * 3


def test_duplicated_takes_of_one_run_make_one_next_run(world: World) -> None:
    """Dispatcher runs that read the same pending run at once (a lease that ran out, a duplicated
    invocation) each take it: the chain moves once, and one next run exists."""
    world.put()
    world.clock.at = T0 + 3
    run = world.runs()[T0]
    services = [world.schedules(world.tasks) for _ in range(8)]
    barrier = threading.Barrier(len(services))

    def take(service: ScheduleService) -> None:
        barrier.wait()
        service.take(run, world.clock.now())

    threads = [threading.Thread(target=take, args=(service,)) for service in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert world.pending() == [T0, T0 + MINUTE]  # the run taken (still to be called) and the next
    assert world.chain_next() == T0 + MINUTE


def test_overlapping_dispatcher_runs_leave_one_pending_next_run(world: World) -> None:
    """Two dispatcher runs at the same minute that do not see each other's leases (each its own lease
    store): the run may be called twice (at least once), but one next run is made."""
    world.put()
    world.caller.delay = 0.3
    engines = [world.engine(leases=InMemoryLeaseStore()) for _ in range(2)]
    world.clock.at = T0 + 2
    threads = [threading.Thread(target=engine.run, args=(range(SHARDS),)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= world.caller.minutes()[T0] <= 2
    assert world.pending() == [T0 + MINUTE] == [world.chain_next()]
    assert world.states()[T0] == "successful"


def test_a_crash_between_moving_the_chain_and_making_the_next_run_is_completed_by_the_next_run(
    world: World,
) -> None:
    world.put()
    crashing = FailingInserts(world.client, {TaskKey("digest", T0 + MINUTE)})
    report = world.dispatch(T0 + 2, world.engine(tasks=crashing))
    assert report.deferred == 1 and world.caller.calls == []  # stopped before the call
    assert world.chain_next() == T0 + MINUTE and world.pending() == [T0]  # the next run is missing
    world.dispatch(T0 + 20)  # the next dispatcher run finds the taken run in the due index
    assert world.caller.minutes() == Counter({T0: 1})
    assert world.pending() == [T0 + MINUTE] == [world.chain_next()]
    world.dispatch(T0 + MINUTE + 2)
    assert world.caller.minutes() == Counter({T0: 1, T0 + MINUTE: 1})
    assert world.pending() == [T0 + 2 * MINUTE]


def test_a_crash_after_the_call_before_its_outcome_calls_it_again_and_keeps_one_next_run(world: World) -> None:
    world.put()
    world.clock.at = T0 + 2
    run = world.runs()[T0]
    taken = world.service.take(run, world.clock.now())  # chain moved, next made; then the crash
    assert taken.call == run
    world.dispatch(T0 + 30)
    assert world.caller.minutes() == Counter({T0: 1})
    assert world.pending() == [T0 + MINUTE] == [world.chain_next()]


def test_concurrent_puts_leave_one_pending_run_of_the_definition_that_won(world: World) -> None:
    world.put()
    barrier = threading.Barrier(6)
    errors: list[Exception] = []

    def put(k: int) -> None:
        barrier.wait()
        try:
            world.put(definition=replace(DEFINITION, payload=f"v{k}"), every=f"{k + 1}m")
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stored = world.service.schedules.get("digest")
    assert stored is not None
    [pending] = world.pending()
    assert pending == stored.chain.next_run
    assert world.runs()[pending].definition == stored.schedule.definition


def test_after_an_outage_only_the_most_recent_missed_run_is_called(world: World) -> None:
    world.put()
    finished: list[Task] = []

    class Told:
        def entry_finished(self, task: Task) -> None:
            finished.append(task)

    report = world.dispatch(T0 + 10 * MINUTE + 4, world.engine(listeners=[Told()]))  # ten minutes of outage
    assert world.caller.minutes() == Counter({T0 + 10 * MINUTE: 1})
    states = world.states()
    assert [states[T0 + k * MINUTE] for k in range(10)] == ["skipped"] * 10
    assert states[T0 + 10 * MINUTE] == "successful"
    assert world.pending() == [T0 + 11 * MINUTE] == [world.chain_next()]
    # each skipped run is an outcome like any other: counted, and told to the listeners
    assert (report.skipped, report.succeeded) == (10, 1)
    assert Counter(task.state.value for task in finished) == Counter({"skipped": 10, "successful": 1})


def test_an_outage_past_max_delay_calls_nothing_and_lists_a_bounded_number_of_skipped_runs(world: World) -> None:
    world.put(definition=replace(DEFINITION, max_delay=1), every="2m")  # runs at T0 - 1m + 2k minutes
    latest = T0 - MINUTE + 250 * 2 * MINUTE
    report = world.dispatch(latest + 90)  # 250 runs missed, and even the latest is past its max_delay
    assert world.caller.calls == []
    skipped = sorted(minute for minute, state in world.states().items() if state == "skipped")
    assert skipped[0] == T0 + MINUTE  # the run that was pending, taken
    assert skipped[1:] == [latest - 2 * MINUTE * k for k in reversed(range(MISSED_RUNS_LISTED))]
    assert report.skipped == len(skipped)
    assert world.pending() == [latest + 2 * MINUTE] == [world.chain_next()]


def test_a_new_definition_applies_from_the_next_run_that_has_not_started(world: World) -> None:
    world.put()
    world.dispatch(T0 + 2)
    world.put(at=T0 + 10, definition=replace(DEFINITION, payload="v2"))
    world.dispatch(T0 + MINUTE + 2)
    assert [task.definition.payload for task in world.caller.calls] == ["", "v2"]
    assert world.pending() == [T0 + 2 * MINUTE]


def test_pause_stops_the_runs_and_unpausing_resumes_from_now(world: World) -> None:
    world.put()
    world.put(paused=True, at=T0 - 20)
    assert world.pending() == [] and world.states() == {T0: "cancelled"}
    world.dispatch(T0 + 2)
    world.dispatch(T0 + 5 * MINUTE + 2)
    assert world.caller.calls == []
    world.put(at=T0 + 5 * MINUTE + 10)
    assert world.pending() == [T0 + 6 * MINUTE]  # from now, no catching up
    world.dispatch(T0 + 6 * MINUTE + 2)
    assert world.caller.minutes() == Counter({T0 + 6 * MINUTE: 1})


def test_delete_stops_the_schedule_and_keeps_its_past_runs(world: World) -> None:
    world.put()
    world.dispatch(T0 + 2)
    world.clock.at = T0 + 10
    removal = world.service.delete_schedule(TaskName("digest"))
    assert removal.cancelled == TaskKey("digest", T0 + MINUTE)
    world.dispatch(T0 + MINUTE + 2)
    world.dispatch(T0 + 2 * MINUTE + 2)
    assert world.caller.minutes() == Counter({T0: 1})
    assert world.states() == {T0: "successful", T0 + MINUTE: "cancelled"}
    assert world.service.schedules.get("digest") is None


def test_end_at_ends_the_schedule_after_its_last_run(world: World) -> None:
    world.put(end_at=T0 + MINUTE)
    for k in range(4):
        world.dispatch(T0 + k * MINUTE + 2)
    assert world.caller.minutes() == Counter({T0: 1, T0 + MINUTE: 1})
    assert world.pending() == [] and world.chain_next() is None


def test_a_run_a_client_skipped_is_not_called_and_the_schedule_goes_on(world: World) -> None:
    world.put()
    world.clock.at = T0 - 5
    run = world.runs()[T0]
    world.tasks.save(run.cancelled(world.clock.now(), 86400), run.revision)  # DELETE /task/digest@T0
    world.dispatch(T0 + 2)
    assert world.caller.calls == []
    assert world.pending() == [T0 + MINUTE] == [world.chain_next()]
    world.dispatch(T0 + MINUTE + 2)
    assert world.caller.minutes() == Counter({T0 + MINUTE: 1})
    assert world.states()[T0] == "cancelled"


def test_the_sweep_makes_a_lost_next_run_and_nothing_else(world: World) -> None:
    world.put()
    world.put("hourly", every="1h")
    world.put("paused", every="1h", paused=True)
    before = world.client.scan(TableName="callme-tasks")["Items"]
    assert world.service.sweep(world.clock.now()) == []
    assert world.client.scan(TableName="callme-tasks")["Items"] == before  # nothing written when all is well
    lost = {"task_name": {"S": "digest"}, "trigger_at": {"N": str(T0)}}
    world.client.delete_item(TableName="callme-tasks", Key=lost)  # a run lost behind the code's back
    assert world.service.sweep(world.clock.now()) == [TaskKey("digest", T0)]
    assert world.pending() == [T0] and world.pending("paused") == []
    world.dispatch(T0 + 2)
    assert world.caller.minutes() == Counter({T0: 1})
    assert world.pending() == [T0 + MINUTE]
