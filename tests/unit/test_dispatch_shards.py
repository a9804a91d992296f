"""Changing the number of ``due`` shards on a live stack, with entries pending (in-memory storage):
entries already written stay findable and none is called twice."""

from __future__ import annotations

from collections import Counter

from callme.clock import FixedClock
from callme.memory import InMemoryLeaseStore, InMemoryTaskRepository
from callme.task import TaskState
from tests.unit.test_dispatch import T0, ScriptedCaller, add, make_engine


def dispatch_minute(repo: InMemoryTaskRepository, leases: InMemoryLeaseStore, caller: ScriptedCaller) -> None:
    """A scheduled invocation as the dispatcher handler makes it: look at the shards, run the busy ones."""
    clock = FixedClock(T0 + 5)
    caller.clock = clock
    engine = make_engine(repo, leases, caller, clock)
    engine.run(engine.busy_shards(T0))


def test_raising_the_shard_count_keeps_every_entry_called_once() -> None:
    repo, leases, caller = InMemoryTaskRepository(4), InMemoryLeaseStore(), ScriptedCaller()
    make_engine(repo, leases, caller, FixedClock(T0 - 60)).busy_shards(T0 - 60)  # the stack runs with 4
    before = [add(repo, f"before{i}").key for i in range(40)]
    for key in before[:10]:
        caller.scripts[str(key)] = [500, 200]  # retried: its outcome is written in the new count's time
    repo.shards = 16  # redeployed
    after = [add(repo, f"after{i}").key for i in range(40)]
    dispatch_minute(repo, leases, caller)
    expected = Counter({str(k): 2 for k in before[:10]}) + Counter(str(k) for k in before[10:] + after)
    assert caller.count() == expected
    assert all(repo.get(key).state is TaskState.SUCCESSFUL for key in before + after)  # type: ignore[union-attr]


def test_lowering_the_shard_count_still_finds_the_entries_of_the_shards_left_out() -> None:
    repo, leases, caller = InMemoryTaskRepository(8), InMemoryLeaseStore(), ScriptedCaller()
    make_engine(repo, leases, caller, FixedClock(T0 - 60)).busy_shards(T0 - 60)  # the stack runs with 8
    before = [add(repo, f"before{i}").key for i in range(40)]
    assert {repo.get(key).due_slot for key in before} >= {4, 5, 6, 7}  # type: ignore[union-attr]
    repo.shards = 4  # redeployed
    after = [add(repo, f"after{i}").key for i in range(40)]
    dispatch_minute(repo, leases, caller)
    assert caller.count() == Counter(str(k) for k in before + after)
    assert not any(list(repo.due(shard, T0)) for shard in range(8))
