"""What the API acknowledged before an entry's call began is what the call does, however late the
``due`` index is.

DynamoDB's global secondary indexes are eventually consistent; the in-memory storage's is not. ``LaggingIndex``
makes the lag happen on purpose: the dispatcher's index queries answer from a snapshot taken
earlier, before the cancels and re-PUTs made through the API's service.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from callme.clock import FixedClock
from callme.dispatch import DispatchEngine, RunReport, SilentObserver
from callme.errors import Conflict
from callme.memory import InMemoryLeaseStore, InMemoryTaskRepository
from callme.ports import CallResult, TaskRepository
from callme.service import TaskService
from callme.task import Task, TaskKey, TaskState, Verdict
from tests.conftest import default_limits, dispatch_config, put
from tests.unit.test_dispatch import SHARDS, T0, ScriptedCaller, real_clock_from, state

ENTRIES = 200


class LaggingIndex:
    """The real repository, except that the ``due`` index answers as it was at ``freeze()``."""

    def __init__(self, real: TaskRepository) -> None:
        self.real = real
        self.shards = real.shards
        self.snapshot: dict[int, list[Task]] | None = None
        self.reads: list[tuple[float, float, list[TaskKey]]] = []  # (sent, returned, keys) of get_many
        self.clock: Any = FixedClock(0)
        self.read_seconds = 0.0  # how long a consistent read takes, in real time

    def freeze(self, up_to: int) -> None:
        self.snapshot = {shard: list(self.real.due(shard, up_to)) for shard in range(self.shards)}

    def due(self, shard: int, up_to: int) -> Iterator[Task]:
        if self.snapshot is None:
            return self.real.due(shard, up_to)
        return iter([t for t in self.snapshot[shard] if t.key.trigger_at <= up_to])

    def has_due(self, shard: int, up_to: int) -> bool:
        return any(True for _ in self.due(shard, up_to))

    def get_many(self, keys: list[TaskKey]) -> list[Task]:
        sent = self.clock.now()
        found = self.real.get_many(keys)
        time.sleep(self.read_seconds)
        self.reads.append((sent, self.clock.now(), list(keys)))
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class RecordingCaller(ScriptedCaller):
    """Also keeps the definition each call was made with, and runs ``during`` inside each call."""

    def __init__(self, clock: Any = None) -> None:
        super().__init__(clock)
        self.made: list[tuple[str, str, str, str, float]] = []  # key, callback, method, payload, start
        self.during: Any = None

    def call(self, task: Task) -> CallResult:
        now = self.clock.now() if self.clock else time.time()
        d = task.definition
        with self._lock:
            self.made.append((str(task.key), d.callback, d.callback_method, d.payload, now))
        if self.during is not None:
            self.during(task)
        return super().call(task)


@pytest.fixture
def repo() -> InMemoryTaskRepository:
    return InMemoryTaskRepository(SHARDS)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0 - 60)


@pytest.fixture
def service(repo: TaskRepository, clock: FixedClock) -> TaskService:
    return TaskService(repo, clock, default_limits())


def engine(repository: Any, caller: ScriptedCaller, clock: FixedClock, **config: Any) -> DispatchEngine:
    return DispatchEngine(
        repository, _leases(), caller, clock, dispatch_config(**{"concurrency": 16, **config}), sleep=clock.advance
    )


def _leases() -> InMemoryLeaseStore:
    return InMemoryLeaseStore()  # each run's own: these runs follow one another, and leave nothing held


def register(service: TaskService, count: int, **fields: Any) -> list[TaskKey]:
    keys = []
    for i in range(count):
        task, _ = put(service, f"job{i:03d}", {"trigger_at": T0, "callback": f"http://example.com/old/{i}", **fields})
        keys.append(task.key)
    return keys


def indexed(repo: TaskRepository, service: TaskService, count: int) -> tuple[list[TaskKey], LaggingIndex]:
    """``count`` entries due at T0, and the index frozen as it shows them now: it misses what follows."""
    keys = register(service, count)
    index = LaggingIndex(repo)
    index.freeze(T0)
    return keys, index


def dispatch(repository: Any, caller: ScriptedCaller, clock: FixedClock, at: float) -> RunReport:
    clock.at = at
    return engine(repository, caller, clock).run(range(SHARDS))


def test_entries_cancelled_in_the_last_two_seconds_before_their_minute_are_never_called(
    repo: TaskRepository, clock: FixedClock, service: TaskService
) -> None:
    # Given 200 entries due at T0, seen by the index
    keys, index = indexed(repo, service, ENTRIES)
    # When every one is cancelled in the last 2 seconds before T0 (the index still shows them)
    clock.at = T0 - 2
    for key in keys:
        service.cancel_entry(key)
        clock.advance(1.9 / ENTRIES)
    caller = RecordingCaller(clock)
    report = dispatch(index, caller, clock, T0 + 1)
    # Then the dispatcher found them in the index, called none, and they stay cancelled
    assert report.due == ENTRIES, "the stale index showed every entry"
    assert caller.made == []
    assert report.withdrawn == ENTRIES
    assert {state(repo, key.name).state for key in keys} == {TaskState.CANCELLED}
    # And a later run, the index still lagging, does not call them either
    assert dispatch(index, caller, clock, T0 + 61).calls == 0
    assert caller.made == []


def test_entries_re_put_in_the_last_two_seconds_are_called_once_with_the_new_definition(
    repo: TaskRepository, clock: FixedClock, service: TaskService
) -> None:
    # Given 200 entries due at T0 (GET, old URL), seen by the index
    keys, index = indexed(repo, service, ENTRIES)
    # When each is re-PUT in the last 2 seconds with a new URL, method and payload
    clock.at = T0 - 2
    for i, key in enumerate(keys):
        _, created = put(
            service,
            key.name,
            {"trigger_at": T0, "callback": f"http://example.com/new/{i}", "callback_method": "POST", "payload": "v2"},
        )
        assert not created
        clock.advance(1.9 / ENTRIES)
    caller = RecordingCaller(clock)
    first = dispatch(index, caller, clock, T0 + 1)
    second = dispatch(index, caller, clock, T0 + 61)  # the index still shows the old definitions
    # Then each entry was called exactly once, at its new URL with its new method and payload
    assert first.due == second.due == ENTRIES, "the stale index showed the old definitions both times"
    assert sorted(key for key, *_ in caller.made) == sorted(str(k) for k in keys)
    assert all("/new/" in url for _, url, _, _, _ in caller.made), "no call went to an old URL"
    assert {(method, payload) for _, _, method, payload, _ in caller.made} == {("POST", "v2")}
    stored = [state(repo, key.name) for key in keys]
    assert {(t.state, t.attempts, t.definition.callback_method) for t in stored} == {(TaskState.SUCCESSFUL, 1, "POST")}
    assert (first.unrecorded, second.calls, second.withdrawn) == (0, 0, ENTRIES)


def test_a_re_put_while_the_call_is_in_flight_is_refused_and_the_entry_is_called_once(
    repo: TaskRepository, clock: FixedClock, service: TaskService
) -> None:
    [key], index = indexed(repo, service, 1)
    answers: list[str] = []

    def re_put(task: Task) -> None:
        try:
            put(service, key.name, {"trigger_at": T0, "callback": "http://example.com/changed"})
            answers.append("accepted")
        except Conflict as conflict:
            answers.append(conflict.message)

    caller = RecordingCaller(clock)
    caller.during = re_put
    dispatch(index, caller, clock, T0 + 1)
    caller.during = None
    dispatch(index, caller, clock, T0 + 61)
    dispatch(repo, caller, clock, T0 + 121)
    [refused] = answers
    assert f"entry {key} is due" in refused and "the dispatcher may be calling it" in refused
    assert [url for _, url, *_ in caller.made] == ["http://example.com/old/0"], "called once, as defined"
    task = state(repo, key.name)
    assert (task.state, task.attempts, task.definition.callback) == (
        TaskState.SUCCESSFUL,
        1,
        "http://example.com/old/0",
    )


def test_a_cancel_while_the_call_is_in_flight_stands_and_the_entry_is_not_called_again(
    repo: TaskRepository, clock: FixedClock, service: TaskService
) -> None:
    [key], index = indexed(repo, service, 1)
    answers: list[str] = []

    def cancel_then_re_put(task: Task) -> None:
        answers.append(str(service.cancel_entry(key).state))
        try:  # nor can the cancelled entry be brought back for a second call
            put(service, key.name, {"trigger_at": T0, "callback": "http://example.com/again"})
            answers.append("accepted")
        except Conflict:
            answers.append("refused")

    caller = RecordingCaller(clock)
    caller.during = cancel_then_re_put
    report = dispatch(index, caller, clock, T0 + 1)
    caller.during = None
    later = dispatch(index, caller, clock, T0 + 61)
    assert answers == ["cancelled", "refused"]
    assert len(caller.made) == 1
    assert report.unrecorded == 1, "the outcome was not written over the cancel"
    assert (later.calls, later.withdrawn) == (0, 1)
    task = state(repo, key.name)
    assert (task.state, task.attempts) == (TaskState.CANCELLED, 0)


def test_a_cancel_while_a_retry_waits_is_honoured(
    repo: TaskRepository, clock: FixedClock, service: TaskService
) -> None:
    [key] = register(service, 1, retry=3)
    caller = RecordingCaller(clock)
    caller.scripts = {str(key): [500, 200]}

    class CancelAfterFirstAttempt(SilentObserver):
        def attempted(self, task: Task, result: CallResult, verdict: Verdict, lateness: float) -> None:
            service.cancel_entry(task.key)  # the failed attempt is recorded: the retry waits

    clock.at = T0 + 1
    config = dispatch_config(concurrency=4)
    report = DispatchEngine(repo, _leases(), caller, clock, config, CancelAfterFirstAttempt(), sleep=clock.advance).run(
        range(SHARDS)
    )
    assert len(caller.made) == 1, "the retry was not made"
    assert (report.retried, report.withdrawn) == (1, 1)
    task = state(repo, key.name)
    assert (task.state, task.attempts) == (TaskState.CANCELLED, 1)


def test_entries_are_read_in_batches_just_before_their_calls(
    repo: TaskRepository, clock: FixedClock, service: TaskService
) -> None:
    keys = register(service, 150)
    index = LaggingIndex(repo)
    real = real_clock_from(T0 + 1)
    index.clock = real
    index.read_seconds = 0.01
    caller = RecordingCaller(real)
    caller.delay = {str(k): 0.02 for k in keys}
    config = dispatch_config(concurrency=8)
    report = DispatchEngine(index, _leases(), caller, real, config).run(range(SHARDS))
    assert report.succeeded == 150
    # Every call started within read_window of the consistent read that returned its entry
    last_read: dict[str, float] = {}
    for sent, _, read_keys in sorted(index.reads):
        last_read.update((str(read_key), sent) for read_key in read_keys)
    for key, _, _, _, started in caller.made:
        assert 0 <= started - last_read[key] <= config.read_window
    # Reads are batched (fewer requests than entries), and made as entries become ready to start,
    # not all at the start of the run: no read asks for more entries than there are callers
    assert len(index.reads) <= 150 / 2
    assert max(len(read_keys) for _, _, read_keys in index.reads) <= config.concurrency


class SlowReads(LaggingIndex):
    """Consistent reads that take 3 s of the clock (longer than the window) the first ``slow`` times."""

    def __init__(self, real: TaskRepository, clock: FixedClock, slow: int) -> None:
        super().__init__(real)
        self.clock = clock
        self.slow = slow

    def get_many(self, keys: list[TaskKey]) -> list[Task]:
        sent = self.clock.now()
        found = self.real.get_many(keys)
        if self.slow:
            self.slow -= 1
            self.clock.advance(3)
        self.reads.append((sent, self.clock.now(), list(keys)))
        return found


def test_an_entry_whose_read_took_longer_than_the_window_is_read_again(
    repo: TaskRepository, clock: FixedClock, service: TaskService
) -> None:
    register(service, 1)
    slow = SlowReads(repo, clock, slow=1)
    caller = RecordingCaller(clock)
    report = dispatch(slow, caller, clock, T0 + 1)
    assert [len(keys) for _, _, keys in slow.reads] == [1, 1], "read a second time"
    [(_, _, _, _, started)] = caller.made
    assert started - slow.reads[-1][0] <= dispatch_config().read_window
    assert report.succeeded == 1


def test_an_entry_that_cannot_be_read_within_the_window_is_left_pending(
    repo: TaskRepository, clock: FixedClock, service: TaskService
) -> None:
    [key] = register(service, 1)
    caller = RecordingCaller(clock)
    report = dispatch(SlowReads(repo, clock, slow=1000), caller, clock, T0 + 1)
    assert caller.made == []
    assert report.deferred == 1
    assert state(repo, key.name).state is TaskState.PENDING, "left for a later run"
    dispatch(repo, caller, clock, T0 + 61)
    assert len(caller.made) == 1
