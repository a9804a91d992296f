"""A shard run reads its due entries while it calls them (moto's DynamoDB, an index made slow).

A run used to read every page of its shard before its first call: a shard whose read outlasted the
run's window was never called at all. These runs read a shard of 120 entries ten at a time, each
page taking 0.15 s (about 2 s in all), and check when the calls start and that none is left.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from callme.clock import OffsetClock
from callme.dispatch import DispatchEngine
from callme.dynamodb import DUE_INDEX, DynamoDBLeaseStore, DynamoDBTaskRepository
from callme.ports import CallResult
from callme.task import Task, TaskDefinition, TaskKey, TaskState
from local.dynamodb import TABLE_NAMES
from tests.conftest import dispatch_config

T0 = 1858809600
ENTRIES = 120
PAGE = 10
PAGE_SECONDS = 0.15


class SlowIndex:
    """Makes every Query of the ``due`` index answer ``PAGE`` items at most, ``PAGE_SECONDS`` late,
    and notes when each page came back."""

    def __init__(self, client: Any) -> None:
        self.pages: list[float] = []
        client.meta.events.register("provide-client-params.dynamodb.Query", self._small_pages)
        client.meta.events.register("before-call.dynamodb.Query", self._slow)
        client.meta.events.register("after-call.dynamodb.Query", self._answered)

    @staticmethod
    def _reads_the_shard(params: dict[str, Any]) -> bool:
        return params.get("IndexName") == DUE_INDEX and params.get("Select") != "COUNT"

    def _small_pages(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if self._reads_the_shard(params):
            params["Limit"] = PAGE
            context["slow_page"] = True

    def _slow(self, context: dict[str, Any], **_: Any) -> None:
        if context.get("slow_page"):
            time.sleep(PAGE_SECONDS)

    def _answered(self, context: dict[str, Any], **_: Any) -> None:
        if context.get("slow_page"):
            self.pages.append(time.monotonic())


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def call(self, task: Task) -> CallResult:
        with self._lock:
            self.calls.append((str(task.key), time.monotonic()))
        return CallResult(started_at=time.time(), duration_ms=1, status=200, body="")


@pytest.fixture
def shard(aws: Any) -> DynamoDBTaskRepository:
    """One shard holding ENTRIES entries due at T0."""
    repository = DynamoDBTaskRepository(aws, TABLE_NAMES["TasksTable"], shards=1)
    for i in range(ENTRIES):
        definition = TaskDefinition(callback="http://example.com/x")
        repository.insert(Task.new(TaskKey(f"job-{i:03d}", T0), definition, T0 - 3600))
    return repository


def engine(aws: Any, repository: DynamoDBTaskRepository, caller: Recorder, **config: Any) -> DispatchEngine:
    clock = OffsetClock(T0 + 5 - time.time())
    leases = DynamoDBLeaseStore(aws, TABLE_NAMES["LeasesTable"])
    return DispatchEngine(repository, leases, caller, clock, dispatch_config(concurrency=8, **config))


def test_calls_start_while_the_shard_is_still_being_read(aws: Any, shard: DynamoDBTaskRepository) -> None:
    index, caller = SlowIndex(aws), Recorder()
    report = engine(aws, shard, caller).run([0])
    assert len(index.pages) >= ENTRIES // PAGE
    first_call = min(at for _, at in caller.calls)
    assert first_call < index.pages[1], "the first page's entries are called while the next is read"
    assert sorted(key for key, _ in caller.calls) == [f"job-{i:03d}@{T0}" for i in range(ENTRIES)]
    assert (report.due, report.succeeded, report.deferred) == (ENTRIES, ENTRIES, 0)
    stored = shard.get_many([TaskKey(f"job-{i:03d}", T0) for i in range(ENTRIES)])
    assert [t.state for t in stored] == [TaskState.SUCCESSFUL] * ENTRIES


def test_a_read_longer_than_the_window_still_calls_and_leaves_the_rest_pending(
    aws: Any, shard: DynamoDBTaskRepository
) -> None:
    SlowIndex(aws)
    caller = Recorder()
    first = engine(aws, shard, caller, run_seconds=1.0).run([0])
    assert first.succeeded > 0, "the run calls what it read within its window"
    assert first.succeeded < ENTRIES, "the read outlasts the window"
    runs = 1
    while len(caller.calls) < ENTRIES and runs < 6:
        engine(aws, shard, caller, run_seconds=1.0).run([0])
        runs += 1
    keys = [key for key, _ in caller.calls]
    assert sorted(keys) == [f"job-{i:03d}@{T0}" for i in range(ENTRIES)], "each entry called once, none left"
    assert not list(shard.due(0, T0))
