"""The dispatch engine on the in-memory storage, with a scripted caller: who is called, when, and what
is kept. (tests/integration/test_storage_contract.py holds DynamoDB to the same storage contract.)"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from callme.clock import FixedClock, OffsetClock
from callme.dispatch import DispatchEngine, RunReport
from callme.errors import ServiceUnavailable
from callme.memory import InMemoryLeaseStore, InMemoryTaskRepository
from callme.ports import CallResult, LeaseStore, TaskRepository, shard_of
from callme.task import Task, TaskDefinition, TaskKey, TaskState
from tests.conftest import dispatch_config

T0 = 1858809600  # a trigger minute; the clock is set relative to it
SHARDS = 4


class ScriptedCaller:
    """Answers each entry from a script: a list of statuses (None means a network error)."""

    def __init__(self, clock: FixedClock | None = None, default: int | None = 200) -> None:
        self.scripts: dict[str, list[Any]] = {}
        self.calls: list[tuple[str, float]] = []
        self.default = default
        self.clock = clock
        self.delay: dict[str, float] = {}
        self.retry_after: dict[str, float] = {}
        self._lock = threading.Lock()

    def call(self, task: Task) -> CallResult:
        key = str(task.key)
        with self._lock:
            self.calls.append((key, time.monotonic()))
            script = self.scripts.get(key, [])
            status = script.pop(0) if script else self.default
        if key in self.delay:
            time.sleep(self.delay[key])
        started = self.clock.now() if self.clock else time.time()
        if status is None:
            return CallResult(started_at=started, duration_ms=5, error="connection refused")
        return CallResult(
            started_at=started,
            duration_ms=5,
            status=status,
            body=f"answer {status}",
            retry_after=self.retry_after.get(key),
        )

    def count(self) -> Counter[str]:
        return Counter(key for key, _ in self.calls)


@pytest.fixture
def repo() -> InMemoryTaskRepository:
    return InMemoryTaskRepository(SHARDS)


@pytest.fixture
def leases() -> InMemoryLeaseStore:
    return InMemoryLeaseStore()


def real_clock_from(start: float) -> OffsetClock:
    """Real time, shifted to read ``start`` now."""
    return OffsetClock(start - time.time())


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0 + 5)


def make_engine(repo: TaskRepository, leases: Any, caller: ScriptedCaller, clock: Any, **config: Any) -> DispatchEngine:
    sleep: Callable[[float], None] = clock.advance if isinstance(clock, FixedClock) else time.sleep
    return DispatchEngine(repo, leases, caller, clock, dispatch_config(**{"concurrency": 8, **config}), sleep=sleep)


def add(repo: TaskRepository, name: str, at: int = T0, **definition: Any) -> Task:
    task = Task.new(TaskKey(name, at), TaskDefinition(callback="http://example.com/x", **definition), at - 3600)
    repo.insert(task)
    return task


def state(repo: TaskRepository, name: str, at: int = T0) -> Task:
    task = repo.get(TaskKey(name, at))
    assert task is not None
    return task


def run_all(engine: DispatchEngine) -> RunReport:
    return engine.run(range(SHARDS))


def test_a_due_entry_is_called_once_and_recorded_successful(
    repo: TaskRepository, clock: FixedClock, leases: LeaseStore
) -> None:
    add(repo, "job")
    caller = ScriptedCaller(clock)
    report = run_all(make_engine(repo, leases, caller, clock))
    assert caller.count() == {f"job@{T0}": 1}
    task = state(repo, "job")
    assert (task.state, task.attempts, task.response_status, task.response_body) == (
        TaskState.SUCCESSFUL,
        1,
        200,
        "answer 200",
    )
    assert task.executed_at == pytest.approx(T0 + 5)
    assert task.expires_at is not None
    assert (report.calls, report.succeeded) == (1, 1)
    assert run_all(make_engine(repo, leases, caller, clock)).calls == 0, "a finished entry is not called again"


def test_entries_of_a_later_minute_wait(repo: TaskRepository, clock: FixedClock, leases: LeaseStore) -> None:
    add(repo, "later", T0 + 60)
    caller = ScriptedCaller(clock)
    run_all(make_engine(repo, leases, caller, clock))
    assert caller.calls == []
    assert state(repo, "later", T0 + 60).state is TaskState.PENDING


def test_missed_minutes_are_caught_up_within_max_delay(
    repo: TaskRepository, clock: FixedClock, leases: LeaseStore
) -> None:
    add(repo, "missed", T0 - 5 * 60, max_delay=10)
    caller = ScriptedCaller(clock)
    run_all(make_engine(repo, leases, caller, clock))
    assert caller.count() == {f"missed@{T0 - 300}": 1}


def test_an_entry_past_max_delay_is_skipped_without_a_call(
    repo: TaskRepository, clock: FixedClock, leases: LeaseStore
) -> None:
    add(repo, "stale", T0 - 10 * 60, max_delay=10)
    caller = ScriptedCaller(clock)
    report = run_all(make_engine(repo, leases, caller, clock))
    assert caller.calls == []
    task = state(repo, "stale", T0 - 600)
    assert (task.state, task.attempts) == (TaskState.SKIPPED, 0)
    assert report.skipped == 1


def test_success_is_exactly_the_expected_status(repo: TaskRepository, clock: FixedClock, leases: LeaseStore) -> None:
    add(repo, "wants204", expected_http_status=204, retry=0)
    add(repo, "gets204", expected_http_status=204)
    caller = ScriptedCaller(clock)
    caller.scripts = {f"wants204@{T0}": [200], f"gets204@{T0}": [204]}
    run_all(make_engine(repo, leases, caller, clock))
    assert state(repo, "wants204").state is TaskState.FAILED
    assert state(repo, "gets204").state is TaskState.SUCCESSFUL


def test_a_500_then_200_ends_successful_after_one_retry(
    repo: TaskRepository, clock: FixedClock, leases: LeaseStore
) -> None:
    add(repo, "flaky", retry=1)
    caller = ScriptedCaller(clock)
    caller.scripts = {f"flaky@{T0}": [500, 200]}
    report = run_all(make_engine(repo, leases, caller, clock))
    task = state(repo, "flaky")
    assert (task.state, task.attempts) == (TaskState.SUCCESSFUL, 2)
    assert [a.status for a in task.history] == [500, 200]
    gap = task.history[1].at - task.history[0].at
    assert 0.5 <= gap <= 1.5, "the retry waits an exponential backoff with jitter (base 1 s)"
    assert report.retried == 1


def test_a_404_fails_at_once_without_retry(repo: TaskRepository, clock: FixedClock, leases: LeaseStore) -> None:
    add(repo, "gone", retry=3)
    caller = ScriptedCaller(clock)
    caller.scripts = {f"gone@{T0}": [404, 200]}
    run_all(make_engine(repo, leases, caller, clock))
    task = state(repo, "gone")
    assert (task.state, task.attempts, task.response_status) == (TaskState.FAILED, 1, 404)


@pytest.mark.parametrize("status", [None, 500, 503, 408, 429])
def test_network_errors_5xx_408_and_429_are_retried_up_to_retry_times(
    repo: Any, clock: FixedClock, status: int | None, leases: Any
) -> None:
    add(repo, "down", retry=2)
    caller = ScriptedCaller(clock)
    caller.scripts = {f"down@{T0}": [status, status, status, 200]}
    run_all(make_engine(repo, leases, caller, clock))
    task = state(repo, "down")
    assert (task.state, task.attempts) == (TaskState.FAILED, 3)
    assert caller.count()[f"down@{T0}"] == 3
    if status is None:
        assert task.history[-1].error == "connection refused"


def test_retry_zero_means_one_attempt(repo: TaskRepository, clock: FixedClock, leases: LeaseStore) -> None:
    add(repo, "once", retry=0)
    caller = ScriptedCaller(clock, default=500)
    run_all(make_engine(repo, leases, caller, clock))
    assert (state(repo, "once").state, caller.count()[f"once@{T0}"]) == (TaskState.FAILED, 1)


def test_retry_after_is_honoured(repo: TaskRepository, clock: FixedClock, leases: LeaseStore) -> None:
    add(repo, "busy", retry=1)
    caller = ScriptedCaller(clock)
    caller.scripts = {f"busy@{T0}": [429, 200]}
    caller.retry_after = {f"busy@{T0}": 20.0}
    run_all(make_engine(repo, leases, caller, clock))
    task = state(repo, "busy")
    assert task.state is TaskState.SUCCESSFUL
    assert task.history[1].at - task.history[0].at >= 20.0


def test_no_retry_is_made_past_max_delay(repo: TaskRepository, clock: FixedClock, leases: LeaseStore) -> None:
    add(repo, "late", retry=5, max_delay=1)
    caller = ScriptedCaller(clock)
    caller.scripts = {f"late@{T0}": [429, 200]}
    caller.retry_after = {f"late@{T0}": 120.0}
    run_all(make_engine(repo, leases, caller, clock))
    task = state(repo, "late")
    assert (task.state, task.attempts) == (TaskState.FAILED, 1)


def test_a_retry_beyond_the_run_waits_for_a_later_run(
    repo: TaskRepository, clock: FixedClock, leases: LeaseStore
) -> None:
    add(repo, "slowretry", retry=1, max_delay=10)
    caller = ScriptedCaller(clock)
    caller.scripts = {f"slowretry@{T0}": [503, 200]}
    caller.retry_after = {f"slowretry@{T0}": 150.0}
    report = make_engine(repo, leases, caller, clock, run_seconds=40).run(range(SHARDS))
    task = state(repo, "slowretry")
    assert (task.state, task.attempts, report.deferred) == (TaskState.RUNNING, 1, 1)
    retry_at = task.next_attempt_at
    assert retry_at is not None and retry_at >= T0 + 5 + 150

    clock.at = T0 + 60 + 5  # the next minute's run ends before the retry is due
    run_all(make_engine(repo, leases, caller, clock, run_seconds=40))
    assert caller.count()[f"slowretry@{T0}"] == 1

    clock.at = T0 + 120 + 5  # this run's window holds the retry time: it waits for it
    run_all(make_engine(repo, leases, caller, clock, run_seconds=40))
    task = state(repo, "slowretry")
    assert (task.state, task.attempts) == (TaskState.SUCCESSFUL, 2)
    assert task.history[1].at >= retry_at


def test_calls_stop_starting_at_the_run_budget(repo: TaskRepository, leases: LeaseStore) -> None:
    for i in range(6):
        add(repo, f"job{i}")
    caller = ScriptedCaller()
    caller.delay = {f"job{i}@{T0}": 0.3 for i in range(6)}
    clock = real_clock_from(T0 + 5)
    report = make_engine(repo, leases, caller, clock, concurrency=1, run_seconds=0.5).run(range(SHARDS))
    assert 1 <= report.calls < 6
    assert report.deferred == 6 - report.calls
    pending = [t for i in range(6) if (t := state(repo, f"job{i}")).state is TaskState.PENDING]
    assert len(pending) == report.deferred, "entries not started stay pending for the next run"


def test_one_slow_endpoint_does_not_delay_the_others(repo: TaskRepository, leases: LeaseStore) -> None:
    add(repo, "slow")
    for i in range(20):
        add(repo, f"fast{i}")
    caller = ScriptedCaller()
    caller.delay = {f"slow@{T0}": 2.0}
    started = time.monotonic()
    report = make_engine(repo, leases, caller, real_clock_from(T0 + 5), concurrency=4).run(range(SHARDS))
    fast_calls = [at - started for key, at in caller.calls if key.startswith("fast")]
    assert report.succeeded == 21
    assert max(fast_calls) < 1.0, "the fast entries were all called while the slow one hung"


def test_two_overlapping_runs_call_each_entry_once(repo: TaskRepository, leases: LeaseStore) -> None:
    for i in range(30):
        add(repo, f"job{i}")
    caller = ScriptedCaller()
    caller.delay = {f"job{i}@{T0}": 0.05 for i in range(30)}
    clock = real_clock_from(T0 + 5)
    engines = [make_engine(repo, leases, caller, clock, concurrency=4, lease_wait_seconds=10) for _ in range(2)]
    threads = [threading.Thread(target=e.run, args=(range(SHARDS),)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(caller.count().values()) == {1}
    assert len(caller.count()) == 30


def test_a_run_that_died_holding_its_lease_is_recovered_after_the_lease(
    repo: Any, clock: FixedClock, leases: Any
) -> None:
    add(repo, "orphan")
    shard = shard_of(TaskKey("orphan", T0), SHARDS)
    lease = dispatch_config().lease_seconds
    assert leases.acquire(shard, "dead-run", clock.now(), clock.now() + lease) is not None

    caller = ScriptedCaller(clock)
    report = make_engine(repo, leases, caller, clock, lease_wait_seconds=5).run([shard])
    assert (caller.calls, report.busy_shards) == ([], [])

    clock.at = T0 + 5 + lease + 1
    run_all(make_engine(repo, leases, caller, clock))
    assert caller.count() == {f"orphan@{T0}": 1}
    assert state(repo, "orphan").state is TaskState.SUCCESSFUL


class StaleIndex:
    """A repository whose ``due`` index still shows entries a previous run already recorded."""

    def __init__(self, real: TaskRepository, stale: list[Task]) -> None:
        self.real = real
        self.stale = stale
        self.shards = real.shards

    def due(self, shard: int, up_to: int) -> Any:
        return [t for t in self.stale if shard_of(t.key, self.shards) == shard]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_run_right_after_a_release_reads_entries_consistently(
    repo: TaskRepository, clock: FixedClock, leases: LeaseStore
) -> None:
    before = add(repo, "done")
    caller = ScriptedCaller(clock)
    run_all(make_engine(repo, leases, caller, clock))
    assert caller.count() == {f"done@{T0}": 1}

    clock.advance(1)  # the index still shows the entry the first run just recorded
    stale = StaleIndex(repo, [before])
    engine = DispatchEngine(stale, leases, caller, clock, dispatch_config(concurrency=4), sleep=clock.advance)  # type: ignore[arg-type]
    engine.run(range(SHARDS))
    assert caller.count() == {f"done@{T0}": 1}, "the stale index copy was not called again"


class FlakyWrites:
    """A repository whose outcome writes fail (storage down) a given number of times."""

    def __init__(self, real: TaskRepository, failures: int) -> None:
        self.real = real
        self.failures = failures
        self.shards = real.shards

    def save(self, task: Task, expected_revision: str) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ServiceUnavailable("storage is unavailable (ProvisionedThroughputExceededException)")
        self.real.save(task, expected_revision)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_an_outcome_write_that_fails_briefly_is_retried(
    repo: TaskRepository, clock: FixedClock, leases: LeaseStore
) -> None:
    add(repo, "job")
    caller = ScriptedCaller(clock)
    engine = DispatchEngine(FlakyWrites(repo, 2), leases, caller, clock, dispatch_config(), sleep=clock.advance)  # type: ignore[arg-type]
    engine.run(range(SHARDS))
    assert state(repo, "job").state is TaskState.SUCCESSFUL


def test_an_outcome_that_cannot_be_written_leaves_the_entry_to_be_called_again(
    repo: Any, clock: FixedClock, leases: Any
) -> None:
    add(repo, "job")
    caller = ScriptedCaller(clock)
    down = FlakyWrites(repo, 1000)
    report = DispatchEngine(down, leases, caller, clock, dispatch_config(), sleep=clock.advance).run(range(SHARDS))  # type: ignore[arg-type]
    assert report.unrecorded == 1
    assert state(repo, "job").state is TaskState.PENDING, "never lost: still pending"
    clock.advance(60)
    run_all(make_engine(repo, leases, caller, clock))
    assert caller.count() == {f"job@{T0}": 2}
    assert state(repo, "job").state is TaskState.SUCCESSFUL


def test_an_entry_cancelled_during_its_call_stays_cancelled(
    repo: TaskRepository, clock: FixedClock, leases: LeaseStore
) -> None:
    task = add(repo, "job")

    class CancellingCaller(ScriptedCaller):
        def call(self, t: Task) -> CallResult:
            current = repo.get(t.key)
            assert current is not None
            repo.save(current.cancelled(clock.now(), 3600), current.revision)
            return super().call(t)

    report = run_all(make_engine(repo, leases, CancellingCaller(clock), clock))
    assert report.unrecorded == 1
    assert state(repo, task.key.name).state is TaskState.CANCELLED


def test_more_than_a_megabyte_of_due_entries_is_all_dispatched(clock: FixedClock, leases: LeaseStore) -> None:
    repo = InMemoryTaskRepository(1)  # one shard (DynamoDB reads it in pages: the storage contract)
    for i in range(24):
        add(repo, f"big{i:02d}", payload="x" * 60_000)
    caller = ScriptedCaller(clock)
    report = make_engine(repo, leases, caller, clock).run([0])
    assert report.succeeded == 24
    assert len(caller.count()) == 24


def test_busy_shards_are_found_by_a_peek(repo: TaskRepository, clock: FixedClock, leases: LeaseStore) -> None:
    add(repo, "job")
    engine = make_engine(repo, leases, ScriptedCaller(clock), clock)
    assert engine.busy_shards(T0) == [shard_of(TaskKey("job", T0), SHARDS)]
    assert engine.busy_shards(T0 - 60) == []


def test_a_run_dispatches_free_shards_while_another_run_holds_one(repo: TaskRepository, leases: LeaseStore) -> None:
    add(repo, "held")
    held = shard_of(TaskKey("held", T0), SHARDS)
    free_name = next(f"free{i}" for i in range(100) if shard_of(TaskKey(f"free{i}", T0), SHARDS) != held)
    add(repo, free_name)
    clock = real_clock_from(T0 + 5)
    assert leases.acquire(held, "other-run", clock.now(), clock.now() + 80) is not None
    caller = ScriptedCaller()
    engine = make_engine(repo, leases, caller, clock, lease_wait_seconds=10)
    started = time.monotonic()
    runner = threading.Thread(target=engine.run, args=(range(SHARDS),))
    runner.start()
    while not caller.calls and time.monotonic() - started < 5:
        time.sleep(0.01)
    assert [key for key, _ in caller.calls] == [f"{free_name}@{T0}"], "the free shard did not wait"
    assert caller.calls[0][1] - started < 2
    leases.release(held, "other-run", clock.now())  # the other run ends
    runner.join(timeout=15)
    assert caller.count() == {f"{free_name}@{T0}": 1, f"held@{T0}": 1}


# -- what follows an entry's end: the recorder's listeners -----------------------------------------


class Finished:
    """A FinishedListener noting each entry it is told of, with its state as stored at that moment."""

    def __init__(self, repo: TaskRepository, fails: bool = False) -> None:
        self.repo = repo
        self.fails = fails
        self.told: list[tuple[str, TaskState, TaskState]] = []
        self._lock = threading.Lock()

    def entry_finished(self, task: Task) -> None:
        stored = self.repo.get(task.key)
        assert stored is not None
        with self._lock:
            self.told.append((str(task.key), task.state, stored.state))
        if self.fails:
            raise RuntimeError("a listener's bug")


def test_listeners_are_told_of_each_entry_that_finished_once_its_outcome_is_stored(
    repo: TaskRepository, clock: FixedClock, leases: LeaseStore
) -> None:
    add(repo, "ok")
    add(repo, "flaky", retry=1)
    add(repo, "gone", retry=0)
    add(repo, "stale", T0 - 600, max_delay=10)
    caller = ScriptedCaller(clock)
    caller.scripts = {f"flaky@{T0}": [500, 200], f"gone@{T0}": [404]}
    first, broken = Finished(repo, fails=True), Finished(repo)
    engine = DispatchEngine(
        repo, leases, caller, clock, dispatch_config(), sleep=clock.advance, listeners=[first, broken]
    )
    report = run_all(engine)
    expected = {
        (f"ok@{T0}", TaskState.SUCCESSFUL, TaskState.SUCCESSFUL),
        (f"flaky@{T0}", TaskState.SUCCESSFUL, TaskState.SUCCESSFUL),
        (f"gone@{T0}", TaskState.FAILED, TaskState.FAILED),
        (f"stale@{T0 - 600}", TaskState.SKIPPED, TaskState.SKIPPED),
    }
    assert sorted(first.told) == sorted(broken.told) == sorted(expected), "once each, after the write, never a retry"
    assert (report.succeeded, report.failed, report.skipped, report.retried) == (2, 1, 1, 1)
    assert state(repo, "ok").state is TaskState.SUCCESSFUL, "a listener that raises leaves the outcome stored"


def test_listeners_are_not_told_of_an_outcome_that_was_not_stored(clock: FixedClock, leases: LeaseStore) -> None:
    repo = InMemoryTaskRepository(SHARDS)
    add(repo, "job")
    listener = Finished(repo)
    down = FlakyWrites(repo, 1000)
    engine = DispatchEngine(
        down, leases, ScriptedCaller(clock), clock, dispatch_config(), sleep=clock.advance, listeners=[listener]
    )  # type: ignore[arg-type]
    assert engine.run(range(SHARDS)).unrecorded == 1
    assert listener.told == []


def test_entries_failing_together_retry_at_different_moments(
    repo: TaskRepository, clock: FixedClock, leases: LeaseStore
) -> None:
    names = [f"job{i}" for i in range(20)]
    for name in names:
        add(repo, name, retry=1)
    caller = ScriptedCaller(clock, default=503)
    make_engine(repo, leases, caller, clock, run_seconds=0.1).run(range(SHARDS))  # retries wait for a later run
    retries = [state(repo, name).next_attempt_at for name in names]
    assert all(r is not None for r in retries)
    assert len(set(retries)) > len(names) // 2, "the backoff is jittered, so they do not all come back at once"
