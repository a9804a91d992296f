"""The dispatch engine's per-minute stats: one item per run and minute with what the run did, stored
when it ends; and a stats store that fails changes nothing about the calls."""

from __future__ import annotations

import pytest

from callme.clock import FixedClock
from callme.dispatch import DispatchEngine
from callme.errors import ServiceUnavailable
from callme.memory import InMemoryLeaseStore, InMemoryStatsStore, InMemoryTaskRepository
from callme.stats import MinuteStats, window_view
from callme.task import TaskState
from tests.conftest import dispatch_config
from tests.unit.test_dispatch import SHARDS, T0, ScriptedCaller, add, run_all, state


class CountingStats(InMemoryStatsStore):
    """The in-memory store, counting its writes by run."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, int]] = []

    def add(self, run: str, stats: MinuteStats, expires_at: int) -> None:
        self.writes.append((run, stats.minute))
        super().add(run, stats, expires_at)


class BrokenStats:
    """A stats store that cannot store anything."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.tries = 0

    def add(self, run: str, stats: MinuteStats, expires_at: int) -> None:
        self.tries += 1
        raise self.error

    def between(self, first: int, last: int) -> list[MinuteStats]:
        return []


def engine_with(
    repo: InMemoryTaskRepository, clock: FixedClock, caller: ScriptedCaller, stats: object
) -> DispatchEngine:
    return DispatchEngine(
        repo,
        InMemoryLeaseStore(),
        caller,
        clock,
        dispatch_config(),
        sleep=clock.advance,
        stats=stats,  # type: ignore[arg-type]
    )


def a_busy_minute(repo: InMemoryTaskRepository, caller: ScriptedCaller) -> None:
    """Three successes, one failure, one retried then successful, one skipped entry."""
    for i in range(3):
        add(repo, f"ok{i}")
    add(repo, "gone", retry=0)
    add(repo, "flaky", retry=1)
    add(repo, "stale", T0 - 600, max_delay=10)
    caller.scripts = {f"gone@{T0}": [404], f"flaky@{T0}": [500, 200]}


def test_a_run_stores_one_item_per_minute_with_its_counts_and_lateness() -> None:
    repo, clock = InMemoryTaskRepository(SHARDS), FixedClock(T0 + 2)
    caller = ScriptedCaller(clock)
    a_busy_minute(repo, caller)
    stats = CountingStats()
    report = run_all(engine_with(repo, clock, caller, stats))
    assert (report.calls, report.succeeded, report.failed, report.retried, report.skipped) == (6, 4, 1, 1, 1)
    assert len(stats.writes) == 1, "one write for the whole run, not one per entry"
    [(run, minute)] = stats.writes
    assert minute == T0
    [stored] = stats.between(T0, T0)
    assert (stored.calls, stored.succeeded, stored.failed, stored.retried, stored.skipped) == (6, 4, 1, 1, 1)
    assert stored.lateness.count == 6
    assert stored.lateness.low == 2.0, "lateness: the call's start after its trigger minute began"
    assert stats.expiry(T0, run) == T0 + dispatch_config().retention_seconds


def test_a_run_across_a_minute_boundary_stores_each_minute_it_worked_in() -> None:
    repo, clock = InMemoryTaskRepository(SHARDS), FixedClock(T0 + 59.5)
    caller = ScriptedCaller(clock)
    add(repo, "flaky", retry=1)  # called at :59.5, retried about a second later: in the next minute
    caller.scripts = {f"flaky@{T0}": [500, 200]}
    stats = CountingStats()
    run_all(engine_with(repo, clock, caller, stats))
    assert sorted(minute for _, minute in stats.writes) == [T0, T0 + 60]
    view = window_view(T0, T0 + 60, stats.between(T0, T0 + 60))
    first, second = view["minutes"]
    assert (first["calls"], first["retried"], first["succeeded"]) == (1, 1, 0)
    assert (second["calls"], second["retried"], second["succeeded"]) == (1, 0, 1)


def test_two_runs_in_one_minute_are_two_items_that_merge() -> None:
    repo, clock = InMemoryTaskRepository(SHARDS), FixedClock(T0 + 1)
    stats = CountingStats()
    add(repo, "first")
    run_all(engine_with(repo, clock, ScriptedCaller(clock), stats))
    add(repo, "second", retry=0)
    caller = ScriptedCaller(clock)
    caller.scripts = {f"second@{T0}": [500]}
    run_all(engine_with(repo, clock, caller, stats))
    assert len({run for run, _ in stats.writes}) == 2
    [minute] = window_view(T0, T0, stats.between(T0, T0))["minutes"]
    assert (minute["calls"], minute["succeeded"], minute["failed"]) == (2, 1, 1)


def test_a_run_without_calls_stores_nothing() -> None:
    repo, clock = InMemoryTaskRepository(SHARDS), FixedClock(T0 + 1)
    stats = CountingStats()
    add(repo, "later", T0 + 3600)
    run_all(engine_with(repo, clock, ScriptedCaller(clock), stats))
    assert stats.writes == []


@pytest.mark.parametrize("error", [ServiceUnavailable("storage is unavailable"), RuntimeError("a bug")])
def test_stats_that_cannot_be_stored_neither_fail_the_run_nor_repeat_a_call(error: Exception) -> None:
    repo, clock = InMemoryTaskRepository(SHARDS), FixedClock(T0 + 2)
    caller = ScriptedCaller(clock)
    a_busy_minute(repo, caller)
    broken = BrokenStats(error)
    report = run_all(engine_with(repo, clock, caller, broken))
    assert broken.tries == 1
    assert (report.calls, report.succeeded, report.failed, report.skipped) == (6, 4, 1, 1)
    assert state(repo, "ok0").state is TaskState.SUCCESSFUL
    assert state(repo, "flaky").state is TaskState.SUCCESSFUL
    calls_so_far = caller.count()
    assert max(calls_so_far.values()) <= 2 and calls_so_far[f"flaky@{T0}"] == 2
    again = run_all(engine_with(repo, clock, caller, broken))
    assert again.calls == 0 and caller.count() == calls_so_far, "nothing is called again"
