"""Dispatch throughput, its two ceilings, slow endpoints and lateness, on the local stack.

One repetition, all on this machine and in this order:

1. the sink alone: how many requests per second it answers to a plain keep-alive client;
2. ceiling "HTTP only": the same calls through callme's HttpCaller, at the dispatcher's concurrency,
   with no storage at all;
3. ceiling "storage only": ``entries`` due entries in the embedded DynamoDB, dispatched by the real
   engine with a caller that answers 200 without any HTTP (the same queries and outcome writes);
4. the dispatch itself: the same entries again, dispatched by the real engine and HttpCaller to the
   sink, which answers at once;
5. slow endpoints: ``slow_entries`` entries whose endpoint answers after ``slow_delay`` seconds.

The dispatcher runs as the dispatcher handler runs it (a look at every shard, then one run over the
busy ones) on a clock that reads the entries' trigger minute, second 0, when the run starts, as if
EventBridge Scheduler had invoked it right on the minute. Lateness is then measured from that instant
to the moment the sink received the call, and to the moment the outcome write returned.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from callme.callback import HttpCaller
from callme.clock import OffsetClock, minute_of
from callme.dispatch import DispatchEngine, RunReport
from callme.dynamodb import DynamoDBLeaseStore, DynamoDBTaskRepository, connect
from callme.egress import EgressPolicy
from callme.ports import Caller, CallResult, Fits, Lease, LeaseStore, Page
from callme.signing import Signer, new_secret
from callme.task import Task, TaskDefinition, TaskKey, Verdict

from . import floor
from .capacity import CALLME, LEASE_TABLE, TASK_TABLE, InstantCaller, payload_of
from .services import DynamoDBService, Service, SinkService, use_local_credentials

LOOPBACK = "127.0.0.0/8,::1/128"
REGION = "us-east-1"


@dataclass(frozen=True)
class Scenario:
    entries: int = 2000
    slow_entries: int = 1000
    slow_delay: float = 1.0
    concurrency: int = 64  # the dispatcher's default (CALLME_DISPATCH_CONCURRENCY)
    shards: int = 8  # the template's default (DueShards)
    payload_bytes: int = 200
    insert_threads: int = 16


# -- instrumentation -----------------------------------------------------------------------------


@dataclass
class StorageTimes:
    """How long the run's storage requests took (wall) and the CPU of the thread making them: what
    the simulation (bench/simulate.py) is calibrated from."""

    reads: int = 0
    read_items: int = 0
    read_wall: float = 0.0
    read_cpu: float = 0.0
    write_wall: list[float] = field(default_factory=list)
    write_cpu: list[float] = field(default_factory=list)
    lease_wall: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        writes = len(self.write_wall) or 1
        return {
            "reads": self.reads,
            "read_items": self.read_items,
            "read_wall_s": round(self.read_wall, 4),
            "read_cpu_s": round(self.read_cpu, 4),
            "writes": len(self.write_wall),
            "write_wall_ms_mean": round(sum(self.write_wall) * 1000 / writes, 4),
            "write_wall_ms_p50": round(percentile(self.write_wall, 50) * 1000, 4),
            "write_cpu_ms_mean": round(sum(self.write_cpu) * 1000 / writes, 4),
            "lease_wall_ms_mean": round(sum(self.lease_wall) * 1000 / (len(self.lease_wall) or 1), 4),
        }


class TimedRepository:
    """The real repository, noting when each entry's final outcome write returned and how long its
    storage requests took."""

    def __init__(self, inner: DynamoDBTaskRepository) -> None:
        self.inner = inner
        self.shards = inner.shards
        self.slices = inner.slices
        self.recorded: dict[str, float] = {}
        self.times = StorageTimes()

    def save(self, task: Task, expected_revision: str) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        self.inner.save(task, expected_revision)
        self.times.write_cpu.append(time.thread_time() - cpu)
        self.times.write_wall.append(time.perf_counter() - started)
        if not task.state.active:
            self.recorded[str(task.key)] = time.time()

    def insert(self, task: Task) -> None:
        self.inner.insert(task)

    def reschedule(self, successor: Task | None, marked: list[tuple[Task, str]]) -> None:
        self.inner.reschedule(successor, marked)

    def get(self, key: TaskKey) -> Task | None:
        return self.inner.get(key)

    def get_many(self, keys: list[TaskKey]) -> list[Task]:
        """The consistent read before the calls, noted as a read like the index's."""
        started, cpu = time.perf_counter(), time.thread_time()
        found = self.inner.get_many(keys)
        self.times.read_cpu += time.thread_time() - cpu
        self.times.read_wall += time.perf_counter() - started
        self.times.read_items += len(keys)
        self.times.reads += 1
        return found

    def entries_of(
        self, name: str, lowest: int | None, now: float, limit: int, fits: Fits | None = None, active_only: bool = False
    ) -> Page:
        return self.inner.entries_of(name, lowest, now, limit, fits, active_only)

    def all_entries(
        self, after: TaskKey | None, lowest: int | None, now: float, limit: int, fits: Fits | None = None
    ) -> Page:
        return self.inner.all_entries(after, lowest, now, limit, fits)

    def has_due(self, slot: int, up_to: int) -> bool:
        return self.inner.has_due(slot, up_to)

    def count_due(self, slot: int, up_to: int, most: int) -> int:
        return self.inner.count_due(slot, up_to, most)

    def due(self, shard: int, up_to: int) -> Iterator[Task]:
        """The shard's entries; the time to read them all is noted once they have been."""
        started, cpu, items = time.perf_counter(), time.thread_time(), 0
        for task in self.inner.due(shard, up_to):
            items += 1
            yield task
        self.times.read_cpu += time.thread_time() - cpu
        self.times.read_wall += time.perf_counter() - started
        self.times.read_items += items
        self.times.reads += 1


class TimedLeases:
    """The real leases, noting how long each lease write took."""

    def __init__(self, inner: LeaseStore, times: StorageTimes) -> None:
        self.inner = inner
        self.times = times

    def acquire(self, shard: int, owner: str, now: float, until: float) -> Lease | None:
        started = time.perf_counter()
        lease = self.inner.acquire(shard, owner, now, until)
        self.times.lease_wall.append(time.perf_counter() - started)
        return lease

    def renew(self, shard: int, owner: str, until: float) -> bool:
        return self.inner.renew(shard, owner, until)

    def release(self, shard: int, owner: str, now: float) -> None:
        self.inner.release(shard, owner, now)

    def widest(self, shards: int) -> int:
        return self.inner.widest(shards)

    def widest_slices(self, slices: int) -> int:
        return self.inner.widest_slices(slices)


class LatenessObserver:
    """Collects what the engine reports of each attempt."""

    def __init__(self) -> None:
        self.lateness: dict[str, float] = {}
        self.durations: list[float] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()

    def attempted(self, task: Task, result: CallResult, verdict: Verdict, lateness: float) -> None:
        with self._lock:
            self.lateness[str(task.key)] = lateness
            self.durations.append(result.duration_ms / 1000)
            if verdict is not Verdict.SUCCESS:
                self.failures.append(f"{task.key}: {result.status} {result.error}")

    def finished(self, task: Task) -> None:
        pass

    def record_failed(self, task: Task, reason: str) -> None:
        with self._lock:
            self.failures.append(f"{task.key}: not recorded: {reason}")


# -- the pieces ----------------------------------------------------------------------------------


def new_caller(signer: Signer) -> HttpCaller:
    return HttpCaller(EgressPolicy.from_text(LOOPBACK), lambda: signer, CALLME.caller)


def make_tasks(prefix: str, count: int, url: str, minute: int, payload: str) -> list[Task]:
    now = time.time()
    return [
        Task.new(
            TaskKey(f"{prefix}-{i:05d}", minute),
            TaskDefinition(callback=f"{url}/{i}", callback_method="POST", payload=payload),
            now,
        )
        for i in range(count)
    ]


def insert_all(repository: DynamoDBTaskRepository, tasks: list[Task], threads: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(repository.insert, tasks))
    return time.perf_counter() - started


@dataclass
class DispatchRun:
    """One dispatch run's figures; times are seconds from the trigger minute's second 0."""

    entries: int
    seconds: float
    report: dict[str, Any]
    call_lateness: list[float] = field(default_factory=list)
    record_lateness: list[float] = field(default_factory=list)
    engine_lateness: list[float] = field(default_factory=list)
    first_call: float = 0.0
    peek_seconds: float = 0.0
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    storage: StorageTimes = field(default_factory=StorageTimes)

    def summary(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "seconds": round(self.seconds, 4),
            "callbacks_per_second": round(self.entries / self.seconds, 2),
            "first_call_s": round(self.first_call, 4),
            "peek_seconds": round(self.peek_seconds, 4),
            "cpu_seconds": {k: round(v, 3) for k, v in self.cpu_seconds.items()},
            "call_lateness_p50_s": round(percentile(self.call_lateness, 50), 4),
            "call_lateness_p99_s": round(percentile(self.call_lateness, 99), 4),
            "call_lateness_max_s": round(max(self.call_lateness, default=0.0), 4),
            "record_lateness_p50_s": round(percentile(self.record_lateness, 50), 4),
            "record_lateness_p99_s": round(percentile(self.record_lateness, 99), 4),
            "record_lateness_max_s": round(max(self.record_lateness, default=0.0), 4),
            "report": self.report,
            "storage": self.storage.summary(),
            "failures": self.failures[:10],
        }


class CpuMeter:
    """CPU seconds used by this process (the dispatcher) and by each service, between two points."""

    def __init__(self, services: dict[str, Service]) -> None:
        self.services = services
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        return {"dispatcher": time.process_time(), **{k: s.cpu_seconds() for k, s in self.services.items()}}

    def used(self) -> dict[str, float]:
        now = self._read()
        return {k: now[k] - self.start[k] for k in now}


def dispatch_once(
    repository: DynamoDBTaskRepository,
    leases: DynamoDBLeaseStore,
    caller: Caller,
    scenario: Scenario,
    minute: int,
    expected: int,
    sink: SinkService | None,
    services: dict[str, Service],
) -> DispatchRun:
    """Run the dispatcher over every busy shard, as the handler does, with the clock on the minute."""
    cpu = CpuMeter(services)
    timed = TimedRepository(repository)
    observer = LatenessObserver()
    started = time.time()
    clock = OffsetClock(minute - started)
    config = replace(CALLME.dispatch, concurrency=scenario.concurrency)
    engine = DispatchEngine(timed, TimedLeases(leases, timed.times), caller, clock, config, observer)
    shards = engine.busy_shards(minute)
    peek_seconds = time.time() - started
    report = engine.run(shards)
    seconds = time.time() - started
    used = cpu.used()
    if report.succeeded != expected:
        raise RuntimeError(
            f"dispatch run: {report.succeeded} of {expected} succeeded: {report} {observer.failures[:5]}"
        )
    calls = [at - started for at in sink.receipts().values()] if sink is not None else list(observer.lateness.values())
    return DispatchRun(
        entries=expected,
        seconds=seconds,
        report=_report_dict(report),
        call_lateness=calls,
        record_lateness=[at - started for at in timed.recorded.values()],
        engine_lateness=list(observer.lateness.values()),
        first_call=min(calls, default=0.0),
        peek_seconds=peek_seconds,
        cpu_seconds=used,
        failures=observer.failures,
        storage=timed.times,
    )


def _report_dict(report: RunReport) -> dict[str, Any]:
    return {
        "due": report.due,
        "calls": report.calls,
        "succeeded": report.succeeded,
        "failed": report.failed,
        "retried": report.retried,
        "deferred": report.deferred,
        "unrecorded": report.unrecorded,
        "shards": len(report.busy_shards),
    }


def http_only(tasks: list[Task], caller: HttpCaller, concurrency: int, services: dict[str, Service]) -> dict[str, Any]:
    """The same calls through HttpCaller on a pool of the dispatcher's size, nothing stored."""
    cpu = CpuMeter(services)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="http-only") as pool:
        results = list(pool.map(caller.call, tasks))
    seconds = time.perf_counter() - started
    bad = [r for r in results if r.status != 200]
    if bad:
        raise RuntimeError(f"HTTP-only ceiling: {len(bad)} calls failed, e.g. {bad[0]}")
    return {
        "calls": len(tasks),
        "seconds": round(seconds, 4),
        "calls_per_second": round(len(tasks) / seconds, 2),
        "cpu_seconds": {k: round(v, 3) for k, v in cpu.used().items()},
    }


def sink_alone(url: str, requests_count: int, connections: int = 8) -> dict[str, Any]:
    """The sink's own pace, to a plain http.client on keep-alive connections (no callme code)."""
    parts = urlsplit(url)
    per_connection = max(1, requests_count // connections)
    body = payload_of(200).encode()

    def drive(_: int) -> None:
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        for _ in range(per_connection):
            connection.request("POST", "/fast/x", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
        connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=connections) as pool:
        list(pool.map(drive, range(connections)))
    seconds = time.perf_counter() - started
    total = per_connection * connections
    return {"requests": total, "seconds": round(seconds, 4), "requests_per_second": round(total / seconds, 2)}


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile, nearest-rank on sorted values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, int(-(-p * len(ordered) // 100)))
    return ordered[min(rank, len(ordered)) - 1]


def queue_excess(calls: list[float], concurrency: int, delay: float) -> float:
    """How much later than its place in the queue allows the latest call started: the k-th call
    cannot start before floor(k / concurrency) * delay with every slot busy all the time."""
    ordered = sorted(calls)
    return max((at - (k // concurrency) * delay for k, at in enumerate(ordered)), default=0.0)


# -- one repetition ------------------------------------------------------------------------------


FLOOR_CALLS = 500  # of each bare request, per repetition (bench.floor)


def repetition(number: int, scenario: Scenario, database: DynamoDBService, sink: SinkService) -> dict[str, Any]:
    signer = Signer.from_secret_document(new_secret())
    payload = payload_of(scenario.payload_bytes)
    client = connect(REGION, database.url, CALLME.dispatcher_storage, max_pool=max(10, scenario.concurrency))
    repository = DynamoDBTaskRepository(client, TASK_TABLE, scenario.shards)
    leases = DynamoDBLeaseStore(client, LEASE_TABLE)
    result: dict[str, Any] = {"repetition": number}
    services: dict[str, Service] = {"dynamodb": database, "sink": sink}

    result["sink_alone"] = sink_alone(sink.url, scenario.entries)
    sink.receipts()
    result["floor"] = floor.measure(database.url, sink.url, min(FLOOR_CALLS, scenario.entries))
    sink.receipts()

    memory_tasks = make_tasks(f"h{number}", scenario.entries, f"{sink.url}/fast", minute_of(time.time()), payload)
    result["http_only"] = http_only(memory_tasks, new_caller(signer), scenario.concurrency, services)
    sink.receipts()

    database.reset()
    minute = minute_of(time.time())
    tasks = make_tasks(f"s{number}", scenario.entries, f"{sink.url}/fast", minute, payload)
    result["insert_seconds"] = round(insert_all(repository, tasks, scenario.insert_threads), 4)
    result["storage_only"] = dispatch_once(
        repository, leases, InstantCaller(), scenario, minute, scenario.entries, None, services
    ).summary()

    database.reset()
    minute = minute_of(time.time())
    tasks = make_tasks(f"f{number}", scenario.entries, f"{sink.url}/fast", minute, payload)
    insert_all(repository, tasks, scenario.insert_threads)
    result["dispatch"] = dispatch_once(
        repository, leases, new_caller(signer), scenario, minute, scenario.entries, sink, services
    ).summary()

    database.reset()
    minute = minute_of(time.time())
    slow_url = f"{sink.url}/delay/{scenario.slow_delay:g}"
    tasks = make_tasks(f"w{number}", scenario.slow_entries, slow_url, minute, payload)
    insert_all(repository, tasks, scenario.insert_threads)
    slow = dispatch_once(
        repository, leases, new_caller(signer), scenario, minute, scenario.slow_entries, sink, services
    )
    result["slow"] = slow.summary()
    fast_rate = result["dispatch"]["callbacks_per_second"]
    fast_time = scenario.slow_entries / fast_rate
    waves = max(1.0, scenario.slow_entries / scenario.concurrency)  # fewer entries than slots: one wave
    result["slow"]["bound_seconds"] = round(1.3 * waves * scenario.slow_delay + fast_time, 4)
    result["slow"]["fast_time_seconds"] = round(fast_time, 4)
    result["slow"]["queue_excess_s"] = round(
        queue_excess(slow.call_lateness, scenario.concurrency, scenario.slow_delay), 4
    )
    ceiling = max(result["storage_only"]["seconds"], result["http_only"]["seconds"])
    result["ratio_to_slower_ceiling"] = round(result["dispatch"]["seconds"] / ceiling, 4)
    return result


def run(scenario: Scenario, repetitions: int, log: Any = print) -> list[dict[str, Any]]:
    use_local_credentials()
    runs = []
    with DynamoDBService() as database, SinkService() as sink:
        for number in range(1, repetitions + 1):
            started = time.perf_counter()
            runs.append(repetition(number, scenario, database, sink))
            r = runs[-1]
            log(
                f"  throughput run {number}/{repetitions}: dispatch {r['dispatch']['seconds']:.2f} s "
                f"(storage only {r['storage_only']['seconds']:.2f} s, HTTP only {r['http_only']['seconds']:.2f} s), "
                f"slow {r['slow']['seconds']:.2f} s, {time.perf_counter() - started:.0f} s in all"
            )
    return runs


def values_at(runs: list[dict[str, Any]], *path: str) -> list[float]:
    """The value at ``path`` (keys, one inside the other) in each run."""
    values = []
    for r in runs:
        value: Any = r
        for part in path:
            value = value[part]
        values.append(float(value))
    return values


def median_of(runs: list[dict[str, Any]], *path: str) -> float:
    return float(statistics.median(values_at(runs, *path)))
