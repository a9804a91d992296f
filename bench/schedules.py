"""DynamoDB write units per run of a recurring schedule, counted as bench.capacity counts a one-off
entry's: the requests the code makes, priced by DynamoDB's rules.

The lifecycle measured: one ``PUT /schedule`` (``every: 1m``, the payload of the capacity run), then
``runs`` minutes dispatched one after the other, each run called and answered 200. Per run the
dispatcher moves the schedule's chain on (one small Put on the schedules table), makes the next run
(a Put on the tasks table, and its entry in the ``due`` index) and records the outcome (a Put, and
the run's entry leaving the index): a one-off entry's writes, plus the chain's. The reads per run
here include each minute's look at every shard, which a real minute shares among all its entries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.capacity import CALLBACK, CALLME, LEASE_TABLE, TASK_TABLE, CapacityMeter, client_for, payload_of
from bench.report import Figure, figure
from callme.clock import MINUTE, FixedClock, minute_of
from callme.dispatch import DispatchEngine
from callme.dynamodb import DynamoDBLeaseStore, DynamoDBScheduleRepository, DynamoDBTaskRepository
from callme.ports import CallResult
from callme.schedule import ScheduleRequest
from callme.schedule_service import ScheduleService
from callme.task import Task, TaskDefinition, TaskName

SCHEDULE_TABLE = "callme-schedules"


class _Answers200:
    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock

    def call(self, task: Task) -> CallResult:
        return CallResult(started_at=self.clock.now(), duration_ms=1, status=200, body="ok")

    def call_on_failure(self, task: Task) -> CallResult:
        return self.call(task)


def measure(endpoint: str, runs: int, shards: int, payload_bytes: int, now: float) -> dict[str, Any]:
    """Create one schedule, dispatch ``runs`` of its minutes, and price every request per run."""
    plain = client_for(endpoint)
    meter = CapacityMeter(plain)
    hooked = client_for(endpoint)
    meter.attach(hooked)
    tasks = DynamoDBTaskRepository(hooked, TASK_TABLE, shards)
    clock = FixedClock(now)
    service = ScheduleService(DynamoDBScheduleRepository(hooked, SCHEDULE_TABLE, tasks), tasks, clock, CALLME.limits)
    definition = TaskDefinition(CALLBACK, "POST", payload_of(payload_bytes))
    request = ScheduleRequest(TaskName("invoice-digest"), definition, None, "1m", None, None, None, False, now)

    meter.phase = "create"
    scheduled, _ = service.put_schedule(request)
    first = scheduled.chain.next_run
    assert first is not None and first == minute_of(now) + MINUTE
    engine = DispatchEngine(
        tasks,
        DynamoDBLeaseStore(hooked, LEASE_TABLE),
        _Answers200(clock),
        clock,
        CALLME.dispatch,
        sleep=clock.advance,
        schedules=service,
    )
    meter.phase = "runs"
    succeeded = 0
    for k in range(runs):
        clock.at = first + k * MINUTE + 1
        succeeded += engine.run(engine.busy_shards(minute_of(clock.at))).succeeded
    if succeeded != runs:
        raise RuntimeError(f"schedule run: {succeeded} of {runs} runs succeeded")

    entries = meter.totals("runs", [TASK_TABLE])
    chain = meter.totals("runs", [SCHEDULE_TABLE])
    per_run = {
        "entries": entries.as_dict(runs),
        "chain": chain.as_dict(runs),
    }
    entry_writes = (entries.base_write + entries.index_write) / runs
    chain_writes = (chain.base_write + chain.index_write) / runs
    return {
        "runs": runs,
        "payload_bytes": len(definition.payload.encode()),
        "per_run": per_run,
        "write_units_per_run": round(entry_writes + chain_writes, 6),
        "entry_write_units_per_run": round(entry_writes, 6),
        "chain_write_units_per_run": round(chain_writes, 6),
    }


def repeated(
    database: Any, repetitions: int, runs: int, scenario: Any, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """``measure`` ``repetitions`` times, each on emptied tables of ``database`` (a DynamoDBService)."""
    log("schedules: dispatching a schedule's runs through the metered client")
    measured = []
    for _ in range(repetitions):
        database.reset()
        measured.append(measure(database.url, runs, scenario.shards, scenario.payload_bytes, time.time()))
    return measured


def over_a_one_off(schedule_runs: list[dict[str, Any]], capacity_runs: list[dict[str, Any]]) -> list[float]:
    """Each repetition's write units per run, less a one-off entry's (create + dispatch) of the same run."""
    return [
        s["write_units_per_run"] - c["write_units_per_task"] for s, c in zip(schedule_runs, capacity_runs, strict=True)
    ]


def figures(schedule_runs: list[dict[str, Any]], capacity_runs: list[dict[str, Any]]) -> list[Figure]:
    """The table's rows: write units per run, the chain's share, and the excess over a one-off entry."""
    return [
        figure(
            "schedules.write_units_per_run",
            "write units per scheduled run",
            [run["write_units_per_run"] for run in schedule_runs],
            "WRU",
        ),
        figure(
            "schedules.chain_write_units_per_run",
            "  of which the schedule's chain",
            [run["chain_write_units_per_run"] for run in schedule_runs],
            "WRU",
        ),
        figure(
            "schedules.write_units_over_a_one_off",
            "  more than a one-off entry's",
            over_a_one_off(schedule_runs, capacity_runs),
            "WRU",
            "<= 1 (one small write)",
            1.0,
        ),
    ]
