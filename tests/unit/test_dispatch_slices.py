"""Slices: a shard with more work due than one run is split across runs, one per busy slice, and no
two runs ever call one entry (in-memory storage). Each slice is its own due slot with its own lease;
a light shard is one run holding all its busy slices' leases."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from callme.clock import FixedClock
from callme.dispatch import DispatchEngine
from callme.memory import InMemoryLeaseStore, InMemoryTaskRepository
from callme.ports import RunShare, TaskRepository, due_slot, shard_of, slot_of
from callme.settings import DispatchConfig
from callme.task import Task, TaskKey, TaskState
from tests.conftest import dispatch_config
from tests.unit.test_dispatch import T0, ScriptedCaller, add, make_engine, real_clock_from

SPLIT_AT = 10


def names_in(shard: int, shards: int, count: int, prefix: str = "job") -> list[str]:
    """``count`` entry names due at T0 that fall in ``shard``."""
    names = (f"{prefix}{i}" for i in range(10_000))
    return [name for name in names if shard_of(TaskKey(name, T0), shards) == shard][:count]


def slices_of(repo: TaskRepository, names: list[str]) -> set[int]:
    return {slot_of(TaskKey(name, T0), repo.shards, repo.slices) // 1000 for name in names}


class CountingRepository:
    """The real repository, noting each look at a due slot (peek or bounded count)."""

    def __init__(self, real: InMemoryTaskRepository) -> None:
        self.real = real
        self.shards = real.shards
        self.slices = real.slices
        self.peeks: list[int] = []
        self.counts: list[tuple[int, int]] = []  # slot, most

    def has_due(self, slot: int, up_to: int) -> bool:
        self.peeks.append(slot)
        return self.real.has_due(slot, up_to)

    def count_due(self, slot: int, up_to: int, most: int) -> int:
        self.counts.append((slot, most))
        return self.real.count_due(slot, up_to, most)

    def due(self, slot: int, up_to: int) -> Iterator[Task]:
        return self.real.due(slot, up_to)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_heavy_shard_is_split_one_run_per_busy_slice_and_a_light_one_is_one_run() -> None:
    repo = InMemoryTaskRepository(2, 4)
    light, heavy = names_in(0, 2, 6), names_in(1, 2, 10 * SPLIT_AT)
    for name in light + heavy:
        add(repo, name)
    assert len(slices_of(repo, light)) > 1, "the light shard's entries are in several slices"
    engine = make_engine(repo, InMemoryLeaseStore(), ScriptedCaller(), FixedClock(T0 + 5), split_at=SPLIT_AT)
    plan = engine.plan(T0)
    assert plan[0] == RunShare(0, tuple(sorted(slices_of(repo, light)))), "one run holds the light shard's slices"
    assert plan[1:] == [RunShare(1, (part,)) for part in range(4)], "one run per slice of the heavy shard"


def test_a_shard_of_a_few_runs_work_is_split_into_as_many_runs_holding_its_slices_apart() -> None:
    repo = InMemoryTaskRepository(1, 8)
    for name in names_in(0, 1, 3 * SPLIT_AT - 2):
        add(repo, name)
    busy = slices_of(repo, names_in(0, 1, 3 * SPLIT_AT - 2))
    engine = make_engine(repo, InMemoryLeaseStore(), ScriptedCaller(), FixedClock(T0 + 5), split_at=SPLIT_AT)
    plan = engine.plan(T0)
    held = [part for share in plan for part in share.slices]
    assert 2 <= len(plan) <= 4, "about one run per split's worth, estimated from the slices counted"
    assert sorted(held) == sorted(busy) and len(held) == len(set(held)), "every busy slice, in one run"


def test_a_shard_at_the_split_is_still_one_run() -> None:
    repo = InMemoryTaskRepository(1, 4)
    for name in names_in(0, 1, SPLIT_AT):
        add(repo, name)
    engine = make_engine(repo, InMemoryLeaseStore(), ScriptedCaller(), FixedClock(T0 + 5), split_at=SPLIT_AT)
    assert engine.plan(T0) == [RunShare(0, (0, 1, 2, 3))]
    add(repo, "one-more")
    assert len(engine.plan(T0)) == 2


def test_with_one_slice_each_shard_costs_one_peek_as_before_slices() -> None:
    real = InMemoryTaskRepository(4)
    for name in names_in(1, 4, 3 * SPLIT_AT) + names_in(3, 4, 2):
        add(real, name)
    repo = CountingRepository(real)
    engine = DispatchEngine(repo, InMemoryLeaseStore(), ScriptedCaller(), FixedClock(T0 + 5), make_config())
    assert engine.plan(T0) == [RunShare(1, (0,)), RunShare(3, (0,))]
    assert sorted(repo.peeks) == [0, 1, 2, 3] and repo.counts == [], "a one-item peek per shard, nothing counted"


def test_counting_a_shard_reads_no_further_than_one_past_the_split() -> None:
    real = InMemoryTaskRepository(1, 4)
    for name in names_in(0, 1, 100):
        add(real, name)
    repo = CountingRepository(real)
    engine = DispatchEngine(repo, InMemoryLeaseStore(), ScriptedCaller(), FixedClock(T0 + 5), make_config())
    assert len(engine.plan(T0)) == 4
    assert sum(most for _, most in repo.counts) <= SPLIT_AT + 1 + 3, "the split's worth, then a peek per slice"
    assert [slot for slot, _ in repo.counts] == [due_slot(0, part) for part in range(4)]


def make_config() -> DispatchConfig:
    return dispatch_config(concurrency=8, split_at=SPLIT_AT)


def fanned_out(repo: InMemoryTaskRepository, leases: InMemoryLeaseStore, caller: ScriptedCaller) -> list[RunShare]:
    """One minute in AWS, twice over (a duplicated scheduled invocation), overlapping a run that
    takes every busy slot at once (the local stack's way): each share of each look at the shards in
    a run of its own, all at the same time."""
    clock = real_clock_from(T0 + 5)

    def engine() -> DispatchEngine:
        return make_engine(repo, leases, caller, clock, split_at=SPLIT_AT, concurrency=4, lease_wait_seconds=10)

    plans = [engine().plan(T0) for _ in range(2)]
    runs = [share.slots for plan in plans for share in plan] + [engine().busy_shards(T0)]
    threads = [threading.Thread(target=engine().run, args=(slots,)) for slots in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return plans[0]


def test_overlapping_runs_of_slices_and_of_whole_shards_call_each_entry_once() -> None:
    repo, leases = InMemoryTaskRepository(2, 3), InMemoryLeaseStore()
    caller = ScriptedCaller()
    names = names_in(0, 2, 3 * SPLIT_AT) + names_in(1, 2, 4)
    for name in names:
        add(repo, name)
        caller.delay[f"{name}@{T0}"] = 0.01
    for name in names[::5]:
        caller.scripts[f"{name}@{T0}"] = [503, 200]  # retried: rewritten while the other runs look
    plan = fanned_out(repo, leases, caller)
    assert len(plan) == 4, "shard 0 split in its 3 slices (30 due), shard 1 one run"
    expected = Counter({f"{name}@{T0}": 1 for name in names}) + Counter(f"{name}@{T0}" for name in names[::5])
    assert caller.count() == expected
    assert {repo.get(TaskKey(name, T0)).state for name in names} == {TaskState.SUCCESSFUL}  # type: ignore[union-attr]


def test_raising_then_lowering_the_slice_count_between_minutes_loses_and_repeats_nothing() -> None:
    repo, leases = InMemoryTaskRepository(2), InMemoryLeaseStore()
    caller = ScriptedCaller()
    make_engine(repo, leases, caller, FixedClock(T0 - 60)).plan(T0 - 60)  # the stack runs with one slice
    before = names_in(0, 2, 2 * SPLIT_AT, "before")
    for name in before:
        add(repo, name)
    for name in before[::3]:
        caller.scripts[f"{name}@{T0}"] = [503, 200]  # retried: its outcome written under the new count
    repo.slices = 4  # redeployed with slices; the minute after, the dispatcher notes them
    make_engine(repo, leases, caller, FixedClock(T0 - 60)).plan(T0 - 60)
    after = names_in(0, 2, 2 * SPLIT_AT, "after")
    for name in after:
        add(repo, name)
    assert {repo.get(TaskKey(n, T0)).due_slot for n in before} == {0}  # type: ignore[union-attr]
    assert len(slices_of(repo, after)) == 4
    repo.slices = 1  # lowered again before the minute: the new entries keep their slices
    fanned_out(repo, leases, caller)
    expected = Counter(f"{name}@{T0}" for name in before + after + before[::3])
    assert caller.count() == expected
    assert not any(list(repo.due(due_slot(0, part), T0)) for part in range(4))
