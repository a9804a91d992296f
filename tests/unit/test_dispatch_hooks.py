"""The failure hook in the dispatch engine (in-memory storage, scripted calls): called once per entry
that ends failed or skipped, after its last attempt, retried a few times, recorded on the entry, and
the entry's end told to the listeners once."""

from __future__ import annotations

from typing import Any

import pytest

from callme.clock import FixedClock
from callme.dispatch import DispatchEngine, host_of
from callme.hooks import HOOK_ATTEMPTS, HookState
from callme.memory import InMemoryLeaseStore, InMemoryTaskRepository
from callme.ports import CallResult
from callme.task import Task, TaskKey, TaskState
from tests.conftest import dispatch_config
from tests.unit.test_dispatch import SHARDS, T0, ScriptedCaller, add, state

HOOK = "http://hooks.example.com/failed"


class HookedCaller(ScriptedCaller):
    """A scripted caller that also answers failure hooks from ``hook_script`` (default 204) and
    remembers each hook call: the entry, the hook's webhook-id, and the entry as the call saw it."""

    def __init__(self, clock: FixedClock, default: int | None = 404) -> None:
        super().__init__(clock, default)
        self.hook_script: list[int | None] = []
        self.hook_calls: list[Task] = []
        self.during_hook: Any = None

    def call_on_failure(self, task: Task) -> CallResult:
        self.hook_calls.append(task)
        if self.during_hook is not None:
            self.during_hook(task)
        status = self.hook_script.pop(0) if self.hook_script else 204
        assert self.clock is not None
        if status is None:
            return CallResult(started_at=self.clock.now(), duration_ms=3, error="connection refused")
        return CallResult(started_at=self.clock.now(), duration_ms=3, status=status)


class Listener:
    def __init__(self) -> None:
        self.finished: list[tuple[str, TaskState]] = []

    def entry_finished(self, task: Task) -> None:
        self.finished.append((str(task.key), task.state))


@pytest.fixture
def repo() -> InMemoryTaskRepository:
    return InMemoryTaskRepository(SHARDS)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0 + 5)


def engine(
    repo: InMemoryTaskRepository, caller: HookedCaller, clock: FixedClock, listener: Any = None
) -> DispatchEngine:
    return DispatchEngine(
        repo,
        InMemoryLeaseStore(),
        caller,
        clock,
        dispatch_config(concurrency=8),
        sleep=clock.advance,
        listeners=[listener] if listener else (),
    )


def run(repo: InMemoryTaskRepository, caller: HookedCaller, clock: FixedClock, listener: Any = None) -> Any:
    return engine(repo, caller, clock, listener).run(range(SHARDS))


def test_an_entry_that_fails_after_its_retries_calls_its_hook_once_after_the_last_attempt(
    repo: InMemoryTaskRepository, clock: FixedClock
) -> None:
    add(repo, "job", retry=2, on_failure=HOOK)
    caller = HookedCaller(clock, default=500)
    listener = Listener()
    for _ in range(5):  # minutes go by; the retries and the hook all happen within them
        run(repo, caller, clock, listener)
        clock.advance(60)
    assert caller.count() == {f"job@{T0}": 3}
    [hooked] = caller.hook_calls
    assert (hooked.state, hooked.attempts) == (TaskState.FAILED, 3), "called once the entry ended, not per attempt"
    task = state(repo, "job")
    assert task.on_failure_call is not None
    assert (task.on_failure_call.state, task.on_failure_call.attempts, task.on_failure_call.status) == (
        HookState.DELIVERED,
        1,
        204,
    )
    assert task.on_failure_call.webhook_id == hooked.on_failure_call.webhook_id != task.webhook_id  # type: ignore[union-attr]
    assert listener.finished == [(f"job@{T0}", TaskState.FAILED)], "the listeners hear of the end once"
    assert not task.in_due_index


def test_an_entry_skipped_past_max_delay_calls_its_hook_once(repo: InMemoryTaskRepository, clock: FixedClock) -> None:
    add(repo, "late", max_delay=1, on_failure=HOOK)
    clock.advance(120)
    caller = HookedCaller(clock)
    report = run(repo, caller, clock)
    assert caller.calls == [] and [t.key.name for t in caller.hook_calls] == ["late"]
    assert state(repo, "late").state is TaskState.SKIPPED
    assert (report.skipped, report.hook_calls, report.hooks_delivered) == (1, 1, 1)
    run(repo, caller, clock)
    assert len(caller.hook_calls) == 1


@pytest.mark.parametrize("ends", ["successful", "failed without on_failure"])
def test_no_hook_is_called_for_an_entry_that_succeeds_or_has_none(
    repo: InMemoryTaskRepository, clock: FixedClock, ends: str
) -> None:
    if ends == "successful":
        add(repo, "job", on_failure=HOOK)
        caller = HookedCaller(clock, default=200)
    else:
        add(repo, "job", retry=0)
        caller = HookedCaller(clock, default=404)
    run(repo, caller, clock)
    assert caller.hook_calls == [] and state(repo, "job").on_failure_call is None


def test_a_hook_answering_5xx_is_called_again_a_few_times_with_its_webhook_id_then_given_up(
    repo: InMemoryTaskRepository, clock: FixedClock
) -> None:
    add(repo, "job", retry=0, on_failure=HOOK)
    caller = HookedCaller(clock)
    caller.hook_script = [503] * 10
    for _ in range(30):  # half an hour of dispatcher minutes
        run(repo, caller, clock)
        clock.advance(60)
    assert len(caller.hook_calls) == HOOK_ATTEMPTS
    assert len({t.on_failure_call.webhook_id for t in caller.hook_calls}) == 1  # type: ignore[union-attr]
    times = [t.on_failure_call.at for t in caller.hook_calls[1:]]  # type: ignore[union-attr]
    assert all(a is not None for a in times) and times == sorted(times)
    call = state(repo, "job").on_failure_call
    assert call is not None and (call.state, call.attempts, call.status) == (HookState.FAILED, HOOK_ATTEMPTS, 503)
    assert not state(repo, "job").in_due_index


def test_a_hook_answering_a_4xx_is_given_up_at_once(repo: InMemoryTaskRepository, clock: FixedClock) -> None:
    add(repo, "job", retry=0, on_failure=HOOK)
    caller = HookedCaller(clock)
    caller.hook_script = [400]
    for _ in range(3):
        run(repo, caller, clock)
        clock.advance(60)
    call = state(repo, "job").on_failure_call
    assert len(caller.hook_calls) == 1 and call is not None and call.state is HookState.FAILED


def test_a_reschedule_during_the_hook_call_does_not_make_it_called_again(
    repo: InMemoryTaskRepository, clock: FixedClock
) -> None:
    add(repo, "job", retry=0, on_failure=HOOK)
    caller = HookedCaller(clock)

    def rescheduled_meanwhile(task: Task) -> None:
        current = repo.get(task.key)
        assert current is not None
        repo.save(current.rescheduled(TaskKey("job", T0 + 600), clock.now()), current.revision)

    caller.during_hook = rescheduled_meanwhile
    for _ in range(3):
        run(repo, caller, clock)
        clock.advance(60)
    task = state(repo, "job")
    assert len(caller.hook_calls) == 1
    assert task.rescheduled_to == f"job@{T0 + 600}", "the reschedule stands"
    assert task.on_failure_call is not None and task.on_failure_call.state is HookState.DELIVERED


def test_a_hook_record_changed_by_another_run_meanwhile_is_left_as_it_is(
    repo: InMemoryTaskRepository, clock: FixedClock
) -> None:
    add(repo, "job", retry=0, on_failure=HOOK)
    caller = HookedCaller(clock)

    def delivered_by_another(task: Task) -> None:
        current = repo.get(task.key)
        assert current is not None and current.on_failure_call is not None
        other = current.after_hook_call(current.on_failure_call.after_call(clock.now(), 1, 200, None), 1.0)
        repo.save(other, current.revision)

    caller.during_hook = delivered_by_another
    report = run(repo, caller, clock)
    assert report.unrecorded == 1
    call = state(repo, "job").on_failure_call
    assert call is not None and (call.state, call.attempts) == (HookState.DELIVERED, 1)


def test_fairness_between_hosts_counts_a_hook_s_turn_against_the_hook_s_host(repo: InMemoryTaskRepository) -> None:
    task = add(repo, "job", retry=0, on_failure=HOOK)
    assert host_of(task) == "example.com"
    assert host_of(task.missed(T0 + 3600, 86400)) == "hooks.example.com"
