"""A dispatcher run that dies around a failure hook's call never makes the hook fire twice, except a
call whose record the crash lost: that one is made again by the next run, with the same webhook-id.

The runs use the DynamoDB adapters (on moto), the real HTTP caller and a loopback receiver that
verifies every call with standardwebhooks. A crash is a BaseException raised by the storage at the
chosen point, which ends the run as a dying process would: nothing after it is done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from standardwebhooks import Webhook

from callme.callback import HttpCaller
from callme.clock import FixedClock
from callme.dispatch import DispatchEngine
from callme.dynamodb import DynamoDBLeaseStore, DynamoDBTaskRepository
from callme.egress import EgressPolicy
from callme.hooks import HookState
from callme.signing import Signer, new_secret
from callme.task import Task, TaskDefinition, TaskKey, TaskState
from local.dynamodb import TABLE_NAMES
from tests.conftest import Sink, caller_config, dispatch_config

SHARDS = 2
SECRET = new_secret()


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the engine may catch it)."""


class CrashingStorage:
    """The DynamoDB repository, dying once around the first write that ``when`` picks: before it
    (the write is lost) or after it (the write landed, nothing after it happens)."""

    def __init__(self, inner: DynamoDBTaskRepository, when: Callable[[Task], bool], after: bool) -> None:
        self.inner = inner
        self.when = when
        self.after = after
        self.crashed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def save(self, task: Task, expected_revision: str) -> None:
        crash = not self.crashed and self.when(task)
        if crash and not self.after:
            self.crashed = True
            raise Crash()
        self.inner.save(task, expected_revision)
        if crash:
            self.crashed = True
            raise Crash()


def ends_owing_the_hook(task: Task) -> bool:
    return task.state is TaskState.FAILED and task.on_failure_call is not None and task.on_failure_call.attempts == 0


def records_the_hook_call(task: Task) -> bool:
    return task.on_failure_call is not None and task.on_failure_call.attempts == 1


def dispatcher(repository: Any, aws: Any, clock: FixedClock) -> DispatchEngine:
    caller = HttpCaller(
        EgressPolicy.from_text("127.0.0.0/8,::1/128"), lambda: Signer((SECRET,)), caller_config(call_budget=3.0)
    )
    leases = DynamoDBLeaseStore(aws, TABLE_NAMES["LeasesTable"])
    return DispatchEngine(repository, leases, caller, clock, dispatch_config(concurrency=4), sleep=clock.advance)


@pytest.mark.parametrize(
    ("point", "when", "after", "expected_calls"),
    [
        ("after the outcome write, before the hook's call", ends_owing_the_hook, True, 1),
        ("after the hook's call, before its record", records_the_hook_call, False, 2),
        ("after the hook's record", records_the_hook_call, True, 1),
    ],
    ids=["before-call", "call-in-flight", "after-record"],
)
def test_a_crash_around_the_hook_never_repeats_it_but_a_call_whose_record_was_lost(
    aws: Any, sink: Sink, point: str, when: Callable[[Task], bool], after: bool, expected_calls: int
) -> None:
    table = DynamoDBTaskRepository(aws, TABLE_NAMES["TasksTable"], SHARDS)
    trigger = int(time.time()) // 60 * 60
    definition = TaskDefinition(
        callback=sink.on("/down", 500), retry=0, on_failure=sink.on("/failed", 204), callback_method="POST"
    )
    table.insert(Task.new(TaskKey("doomed", trigger), definition, trigger - 60))
    clock = FixedClock(trigger + 5)
    crashing = CrashingStorage(table, when, after)
    with pytest.raises(Crash):
        dispatcher(crashing, aws, clock).run(range(SHARDS))
    assert crashing.crashed, point
    for _ in range(20):  # the next minutes' runs (a dead run's leases run out meanwhile)
        clock.advance(60)
        dispatcher(table, aws, clock).run(range(SHARDS))
    calls = sink.calls("/failed")
    assert len(calls) == expected_calls, point
    assert len({call.headers["webhook-id"] for call in calls}) == 1, "a repeated call carries the same webhook-id"
    for call in calls:
        Webhook(SECRET).verify(call.body, call.headers)
    assert len(sink.calls("/down")) == 1, "the callback itself is never repeated by the hook's crashes"
    entry = table.get(TaskKey("doomed", trigger))
    assert entry is not None and entry.on_failure_call is not None
    assert entry.on_failure_call.state is HookState.DELIVERED
    assert calls[0].headers["webhook-id"] == entry.on_failure_call.webhook_id
