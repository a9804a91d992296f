"""Shard leases: short, renewed while a run lives, and never holding two runs' calls at once.

A run starts a call only while its leases have room for the whole call and its recording, so a
run that cannot renew (storage trouble), is paused past its lease or dies has ended every call it
started before another run can take its shards; and a dead run costs at most one short lease.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from callme.clock import FixedClock
from callme.dispatch import DispatchEngine, RunReport, SilentObserver
from callme.errors import ServiceUnavailable
from callme.memory import InMemoryLeaseStore, InMemoryTaskRepository
from callme.ports import CallResult, Lease, LeaseStore, TaskRepository, shard_of
from callme.task import Task, TaskKey, TaskState, Verdict
from tests.conftest import dispatch_config
from tests.unit.test_dispatch import SHARDS, T0, add, real_clock_from, state

ENTRIES = 20
CALL = 0.1  # seconds each call takes, well inside the budget even on a loaded machine
# Small numbers so that a lease (2 x heartbeat + budget + recording) lasts 1.4 s of real time.
QUICK = {"heartbeat_seconds": 0.3, "call_budget": 0.6, "record_seconds": 0.2, "concurrency": 1}


class TimedCaller:
    """Answers 200 after ``delay`` seconds; notes each call's start and end on ``clock``."""

    def __init__(self, clock: Any, delay: float = 0.0) -> None:
        self.clock = clock
        self.delay = delay
        self.calls: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()

    def call(self, task: Task) -> CallResult:
        started = self.clock.now()
        time.sleep(self.delay)
        with self._lock:
            self.calls.append((str(task.key), started, self.clock.now()))
        return CallResult(started_at=started, duration_ms=int(self.delay * 1000), status=200, body="ok")

    def keys(self) -> list[str]:
        return [key for key, _, _ in self.calls]


class LeaseLog:
    """The real leases, noting when each was taken; ``renewals_fail`` breaks renewals."""

    def __init__(self, real: LeaseStore, clock: Any, renewals_fail: bool = False) -> None:
        self.real = real
        self.clock = clock
        self.renewals_fail = renewals_fail
        self.acquired: list[tuple[int, float, float]] = []  # shard, when, until
        self.renewed: list[float] = []

    def acquire(self, shard: int, owner: str, now: float, until: float) -> Lease | None:
        lease = self.real.acquire(shard, owner, now, until)
        if lease is not None:
            self.acquired.append((shard, self.clock.now(), until))
        return lease

    def renew(self, shard: int, owner: str, until: float) -> bool:
        if self.renewals_fail:
            raise ServiceUnavailable("storage is unavailable (InternalServerError); retry the request")
        self.renewed.append(until)
        return self.real.renew(shard, owner, until)

    def release(self, shard: int, owner: str, now: float) -> None:
        self.real.release(shard, owner, now)


@pytest.fixture
def repo() -> InMemoryTaskRepository:
    return InMemoryTaskRepository(SHARDS)


@pytest.fixture
def leases() -> InMemoryLeaseStore:
    return InMemoryLeaseStore()


def one_shard_entries(count: int) -> list[str]:
    """Names of ``count`` entries due at T0 that all fall in one shard, so one lease covers them."""
    names = [f"job{i}" for i in range(1000) if shard_of(TaskKey(f"job{i}", T0), SHARDS) == 0]
    return names[:count]


def start(engine: DispatchEngine, shards: list[int], reports: list[RunReport]) -> threading.Thread:
    thread = threading.Thread(target=lambda: reports.append(engine.run(shards)))
    thread.start()
    return thread


def test_a_run_renews_its_lease_and_keeps_its_shard_for_longer_than_one_lease(
    repo: TaskRepository, leases: LeaseStore
) -> None:
    for name in one_shard_entries(ENTRIES):
        add(repo, name)
    clock = real_clock_from(T0 + 1)
    config = dispatch_config(**QUICK)
    first, second = TimedCaller(clock, CALL), TimedCaller(clock)
    logged = LeaseLog(leases, clock)
    reports: list[RunReport] = []
    running = start(DispatchEngine(repo, logged, first, clock, config), [0], reports)
    time.sleep(0.1)
    waiting = DispatchEngine(repo, logged, second, clock, dispatch_config(**{**QUICK, "lease_wait_seconds": 3.0}))
    report = waiting.run([0])
    running.join()
    assert len(first.calls) == ENTRIES, "the first run made every call"
    assert first.calls[-1][2] - first.calls[0][1] > 1.3 * config.lease_seconds, "for longer than a lease"
    assert logged.renewed, "by renewing its lease"
    assert second.calls == [] and report.due == 0, "the second run got the shard only once all was done"
    assert logged.acquired[1][1] >= first.calls[-1][2]


def test_a_run_that_cannot_renew_ends_its_calls_before_its_lease_runs_out(
    repo: TaskRepository, leases: LeaseStore
) -> None:
    names = one_shard_entries(ENTRIES)
    for name in names:
        add(repo, name)
    clock = real_clock_from(T0 + 1)
    config = dispatch_config(**QUICK)
    first, second = TimedCaller(clock, CALL), TimedCaller(clock, CALL)
    broken = LeaseLog(leases, clock, renewals_fail=True)
    reports: list[RunReport] = []
    running = start(DispatchEngine(repo, broken, first, clock, config), [0], reports)
    time.sleep(0.1)
    # A second run waits for the shard, and takes it the moment the first run's lease runs out
    taker = LeaseLog(leases, clock)
    waiting = DispatchEngine(repo, taker, second, clock, dispatch_config(**{**QUICK, "lease_wait_seconds": 5.0}))
    waiting.sleep = lambda _: time.sleep(0.01)
    later = waiting.run([0])
    running.join()
    [(_, _, first_until)] = broken.acquired
    [(_, taken_at, _)] = taker.acquired
    assert 1 <= len(first.calls) < ENTRIES, "the first run stopped starting calls"
    assert reports[0].deferred == ENTRIES - len(first.calls)
    assert all(end <= first_until - config.record_seconds for _, _, end in first.calls), "and ended them in time"
    assert taken_at >= first_until
    assert sorted(first.keys() + second.keys()) == sorted(f"{n}@{T0}" for n in names), "each called exactly once"
    assert later.succeeded == ENTRIES - len(first.calls)
    assert {state(repo, n).state for n in names} == {TaskState.SUCCESSFUL}


def test_a_run_paused_past_its_lease_starts_no_call_once_it_wakes(repo: TaskRepository, leases: LeaseStore) -> None:
    names = one_shard_entries(ENTRIES)
    for name in names:
        add(repo, name)
    clock = FixedClock(T0 + 1)
    config = dispatch_config(concurrency=1)
    first = TimedCaller(clock)
    second = TimedCaller(clock, 0.02)
    taken = threading.Event()
    reports: list[RunReport] = []
    threads: list[threading.Thread] = []

    class PauseAfterFirstCall(SilentObserver):
        """After the first recorded call the first run's process stalls for 30 s (more than a
        lease); meanwhile the next run takes the shard and starts calling."""

        def attempted(self, task: Task, result: CallResult, verdict: Verdict, lateness: float) -> None:
            if threads:
                return
            clock.advance(config.lease_seconds + 5)
            other = DispatchEngine(repo, leases, second, clock, config, on_leased=lambda _: taken.set())
            threads.append(start(other, [0], reports))
            assert taken.wait(10)

    report = DispatchEngine(repo, leases, first, clock, config, PauseAfterFirstCall(), sleep=clock.advance).run([0])
    threads[0].join()
    assert len(first.calls) == 1, "the paused run made no call after it woke"
    assert report.deferred == ENTRIES - 1
    assert sorted(first.keys() + second.keys()) == sorted(f"{n}@{T0}" for n in names), "each called exactly once"
    assert reports[0].succeeded == ENTRIES - 1


def test_a_dead_run_costs_at_most_one_lease(repo: TaskRepository, leases: LeaseStore) -> None:
    # A run took the shard at T0 + 5, then died without a word (kill -9)
    add(repo, "orphan")
    shard = shard_of(TaskKey("orphan", T0), SHARDS)
    config = dispatch_config()
    assert config.lease_seconds == 25
    assert leases.acquire(shard, "dead-run", T0 + 5, T0 + 5 + config.lease_seconds) is not None
    # When the next run starts 10 s later, it waits for the shard (its lease_wait is a whole lease)
    clock = FixedClock(T0 + 15)
    caller = TimedCaller(clock)
    report = DispatchEngine(repo, leases, caller, clock, config, sleep=clock.advance).run([shard])
    # Then it calls the entry as soon as the dead run's lease ran out, 25 s after it was taken
    [(_, started, _)] = caller.calls
    assert T0 + 5 + config.lease_seconds <= started <= T0 + 5 + config.lease_seconds + 0.5
    assert (report.busy_shards, report.succeeded) == ([shard], 1)
    assert state(repo, "orphan").state is TaskState.SUCCESSFUL


class CountingClock:
    """Real time from ``start``, counting how often it is read."""

    def __init__(self, start: float) -> None:
        self.inner = real_clock_from(start)
        self.reads = 0

    def now(self) -> float:
        self.reads += 1
        return self.inner.now()


class SlowRenewals(LeaseLog):
    """The real leases, each renewal taking ``delay`` seconds (a slow or throttled table)."""

    def __init__(self, real: LeaseStore, clock: Any, delay: float) -> None:
        super().__init__(real, clock)
        self.delay = delay

    def renew(self, shard: int, owner: str, until: float) -> bool:
        time.sleep(self.delay)
        return super().renew(shard, owner, until)


def test_a_run_waits_without_spinning_while_its_leases_are_being_renewed(
    repo: TaskRepository, leases: LeaseStore
) -> None:
    # One call of 1.2 s, with the lease renewed every 0.3 s and each renewal taking 0.25 s: the
    # run's loop has nothing to do for most of that time, and must wait for it, not poll for it
    # (a loop polling the clock burns a core the calls and writes need)
    [name] = one_shard_entries(1)
    add(repo, name)
    clock = CountingClock(T0 + 1)
    config = dispatch_config(heartbeat_seconds=0.3, call_budget=3.0, record_seconds=0.2, concurrency=1)
    slow = SlowRenewals(leases, clock, 0.25)
    report = DispatchEngine(repo, slow, TimedCaller(clock, 1.2), clock, config).run([0])
    assert report.succeeded == 1
    assert len(slow.renewed) >= 2, "its leases were renewed during the call"
    assert clock.reads < 200, f"the clock was read {clock.reads} times"
