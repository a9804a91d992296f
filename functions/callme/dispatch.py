"""The dispatch engine: find due entries, call them, retry as told, record every attempt.

One run takes a set of shards of the ``due`` index. For each it first takes the shard's lease (a
conditional write on the leases table), so overlapping or duplicated runs never work on the same
entries; a run that dies leaves its lease to expire, and the next run redoes what was not recorded.
Calls run on a bounded pool and their outcomes are written by another; retries wait in a timer
heap, never in a worker, so one slow or failing endpoint does not hold up the others. The run stops
starting calls at ``stop_at`` (before its lease and its Lambda deadline end); what is left waits,
still pending, for the next run.
"""

from __future__ import annotations

import heapq
import logging
import queue
import random
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .clock import Clock, minute_of
from .errors import ServiceUnavailable
from .repository import Lease, StaleEntry, TaskRepository
from .task import Attempt, Task, TaskState, Verdict, judge

log = logging.getLogger("callme.dispatch")
READERS = 4  # shards read at once by one run (in AWS a run has one shard; locally, all of them)
WRITERS = 16  # outcome writes at once: a write takes a few ms, a call up to its whole budget


def writers_for(concurrency: int) -> int:
    return min(concurrency, WRITERS)


def storage_connections(concurrency: int) -> int:
    """Connections to DynamoDB one dispatcher needs: writers, readers and the run's own thread."""
    return writers_for(concurrency) + READERS + 1


@dataclass(frozen=True)
class CallResult:
    """What one HTTP call gave: a status (and the start of the body), or an error."""

    started_at: float
    duration_ms: int
    status: int | None = None
    body: str | None = None
    error: str | None = None
    retry_after: float | None = None
    refused: bool = False  # refused before connecting (address policy): never retried


class Caller(Protocol):
    def call(self, task: Task) -> CallResult: ...


class DispatchObserver(Protocol):
    """Told of everything a run does, for logs and metrics."""

    def attempted(self, task: Task, result: CallResult, verdict: Verdict, lateness: float) -> None: ...
    def finished(self, task: Task) -> None: ...
    def record_failed(self, task: Task, reason: str) -> None: ...


class SilentObserver:
    def attempted(self, task: Task, result: CallResult, verdict: Verdict, lateness: float) -> None:
        pass

    def finished(self, task: Task) -> None:
        pass

    def record_failed(self, task: Task, reason: str) -> None:
        pass


@dataclass(frozen=True)
class DispatchConfig:
    concurrency: int = 64
    run_seconds: float = 40.0  # no call starts later than this after the run began
    call_budget: float = 15.0  # no call lasts longer than this (connect + read, all bytes)
    lease_seconds: float = 80.0  # longer than any run: run_seconds + call_budget + recording
    lease_wait_seconds: float = 20.0  # how long to wait for a shard a previous run still holds
    fresh_release_seconds: float = 10.0  # index may lag a release this recent: read entries again
    retention_seconds: int = 30 * 86400
    backoff_base: float = 1.0
    backoff_cap: float = 120.0
    record_attempts: int = 4  # tries of each outcome write on top of botocore's own retries


@dataclass
class RunReport:
    shards: list[int] = field(default_factory=list)
    busy_shards: list[int] = field(default_factory=list)
    due: int = 0
    calls: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    deferred: int = 0
    unrecorded: int = 0


@dataclass(order=True)
class _Timer:
    ready_at: float
    order: int
    task: Task = field(compare=False)


class DispatchEngine:
    def __init__(
        self,
        repository: TaskRepository,
        caller: Caller,
        clock: Clock,
        config: DispatchConfig,
        observer: DispatchObserver | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_leased: Callable[[list[int]], None] | None = None,
    ) -> None:
        self.repository = repository
        self.caller = caller
        self.clock = clock
        self.config = config
        self.observer = observer or SilentObserver()
        self.sleep = sleep
        self.on_leased = on_leased
        self._random = random.Random()

    def busy_shards(self, minute: int) -> list[int]:
        """Shards with at least one entry due by ``minute`` (a cheap, eventually consistent peek)."""
        return [s for s in range(self.repository.shards) if self.repository.has_due(s, minute)]

    def run(self, shards: Iterable[int], deadline: float | None = None) -> RunReport:
        """Dispatch everything due in ``shards``; stop starting calls before ``deadline``.

        Shards whose lease is free are dispatched at once; shards another run holds are tried again
        until ``lease_wait_seconds`` have passed. A run never sits on a lease while it waits for
        another, so two runs that split the shards between them do not wait for each other.
        """
        started = self.clock.now()
        stop_at = started + self.config.run_seconds
        if deadline is not None:
            stop_at = min(stop_at, deadline - self.config.call_budget - 2)
        report = RunReport(shards=list(shards))
        owner = f"run-{uuid.uuid4().hex[:12]}"
        waiting = list(report.shards)
        give_up = min(started + self.config.lease_wait_seconds, stop_at)
        while waiting:
            leases = self._free_leases(waiting, owner)
            if leases:
                taken = [lease.shard for lease in leases]
                waiting = [shard for shard in waiting if shard not in taken]
                report.busy_shards.extend(taken)
                if self.on_leased:
                    self.on_leased(taken)
                try:
                    _Run(self, report, stop_at).go(leases, self.clock.now())
                finally:
                    for lease in leases:
                        self._release(lease, owner)
            elif self.clock.now() >= give_up:
                break
            else:
                self.sleep(0.5)
        if waiting:
            log.warning("shards %s are held by another run; their work waits for the next minute", waiting)
        return report

    def _free_leases(self, shards: list[int], owner: str) -> list[Lease]:
        """The leases of ``shards`` that can be taken now (free, or their holder's ran out)."""
        now = self.clock.now()
        taken = []
        for shard in shards:
            lease = self.repository.acquire_lease(shard, owner, now, now + self.config.lease_seconds)
            if lease is not None:
                taken.append(lease)
        return taken

    def _release(self, lease: Lease, owner: str) -> None:
        try:
            self.repository.release_lease(lease.shard, owner, self.clock.now())
        except ServiceUnavailable:
            log.warning("could not release shard %s; it frees itself when the lease runs out", lease.shard)

    def _due_entries(self, lease: Lease, now: float) -> list[Task]:
        """The active entries of one leased shard whose trigger minute has come."""
        due = list(self.repository.due(lease.shard, minute_of(now)))
        recent = lease.previous_released_at is not None and (
            now - lease.previous_released_at < self.config.fresh_release_seconds
        )
        if recent and due:
            # The index is eventually consistent: a run that just released this shard may have
            # recorded outcomes the index does not show yet. Read those entries consistently.
            due = [t for t in self.repository.get_many([t.key for t in due]) if t.state.active]
        return due

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with jitter: about base * 2^(attempts-1), between half and all of it."""
        ceiling = min(self.config.backoff_cap, self.config.backoff_base * 2 ** max(0, attempts - 1))
        return float(ceiling / 2 + self._random.uniform(0, ceiling / 2))


@dataclass(frozen=True)
class _Outcome:
    """One entry's turn: the call (if one was made), the entry as it is to be written, and why the
    write did not apply, if it did not."""

    task: Task  # as it was read
    updated: Task  # as it is to be written
    result: CallResult | None = None  # None: not called (max_delay had passed)
    verdict: Verdict | None = None
    next_at: float | None = None
    unrecorded: str | None = None


class _Run:
    """One run's scheduling loop: shards read in parallel, a pool of callers, a pool of writers for
    the outcomes, and a timer heap for retries.

    Only this loop's thread touches the timer heap, the report and the observer. A caller hands its
    outcome to a writer as soon as its call ends, so a slow write never keeps a call from starting,
    and the calls of the first shard read start while the others are still being read.
    """

    def __init__(self, engine: DispatchEngine, report: RunReport, stop_at: float) -> None:
        self.engine = engine
        self.report = report
        self.stop_at = stop_at
        self.timers: list[_Timer] = []
        self.order = 0
        self.failure: Exception | None = None
        self.calls: set[Future[_Outcome]] = set()
        self.writes: set[Future[_Outcome]] = set()
        self.done: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()

    def go(self, leases: list[Lease], now: float) -> None:
        engine = self.engine
        with (
            ThreadPoolExecutor(max_workers=min(len(leases), READERS), thread_name_prefix="due") as readers,
            ThreadPoolExecutor(max_workers=engine.config.concurrency, thread_name_prefix="callback") as callers,
            ThreadPoolExecutor(
                max_workers=writers_for(engine.config.concurrency), thread_name_prefix="record"
            ) as writers,
        ):
            reading = {self._submit(readers, engine._due_entries, lease, now) for lease in leases}
            while reading or self.timers or self.calls or self.writes:
                now = engine.clock.now()
                self._start_ready(now, callers, writers)
                busy = bool(reading or self.calls or self.writes)
                if not (busy or self.timers):
                    break
                timeout = None
                if self.timers and self._room():
                    timeout = max(0.0, min(self.timers[0].ready_at, self.stop_at) - now)
                if not busy:
                    engine.sleep(min(timeout or 0.0, 1.0))
                    continue
                try:
                    future = self.done.get(timeout=timeout)
                except queue.Empty:
                    continue
                while True:  # everything that has finished meanwhile, then look at the timers again
                    if future in self.calls:
                        self.calls.remove(future)
                        self.writes.add(self._submit(writers, self._write, future.result()))
                    elif future in self.writes:
                        self.writes.remove(future)
                        self._settle(future.result())
                    else:
                        reading.discard(future)
                        self._take(future)
                    try:
                        future = self.done.get_nowait()
                    except queue.Empty:
                        break
        if self.failure is not None:
            raise self.failure

    def _submit(self, pool: ThreadPoolExecutor, job: Callable[..., Any], *args: Any) -> Future[Any]:
        """Start a job; its future is put on ``done`` when it finishes (waiting on a queue, not on
        every future at once, keeps the loop's cost per finished job constant)."""
        future = pool.submit(job, *args)
        future.add_done_callback(self.done.put)
        return future

    def _start_ready(self, now: float, callers: ThreadPoolExecutor, writers: ThreadPoolExecutor) -> None:
        """Hand every entry whose time has come to a caller, as far as the concurrency allows; an
        entry past its ``max_delay`` goes straight to a writer, to be recorded as missed."""
        while self.timers and self.timers[0].ready_at <= now and self._room() and now < self.stop_at:
            task = heapq.heappop(self.timers).task
            if now >= task.deadline():
                self.writes.add(self._submit(writers, self._give_up, task))
            else:
                self.calls.add(self._submit(callers, self._attempt, task))
        if now >= self.stop_at and self.timers:
            self.report.deferred += len(self.timers)
            self.timers.clear()

    def _room(self) -> bool:
        """Whether another call may start: fewer calls in flight than the concurrency, and fewer
        outcomes waiting to be written than that too. Calls never run ahead of the writes by more
        than one pool's worth, so a slow or throttled table slows the calls down with it, and few
        calls are ever made whose outcome is not yet recorded (those a crash would repeat)."""
        limit = self.engine.config.concurrency
        return len(self.calls) < limit and len(self.writes) < limit

    def _take(self, read: Future[list[Task]]) -> None:
        """Schedule the entries one shard's read found; after a failed read, start nothing more."""
        try:
            found = read.result()
        except Exception as exc:  # storage unavailable: what was not started stays pending
            self.failure = self.failure or exc
            self.timers.clear()
            return
        if self.failure is None:
            self.report.due += len(found)
            for task in found:
                self._schedule(task, task.next_attempt_at or 0.0)

    # -- in the pools --------------------------------------------------------------------------

    def _attempt(self, task: Task) -> _Outcome:
        """One call, and what it makes of the entry."""
        engine = self.engine
        try:
            result = self._call(task)
        except Exception as exc:  # a bug in the caller must not lose the entry
            log.exception("callback of %s raised", task.key)
            result = CallResult(started_at=engine.clock.now(), duration_ms=0, error=f"internal error: {exc}")
        verdict = Verdict.FAIL if result.refused else judge(result.status, task.definition.expected_http_status)
        next_at = None
        if verdict is Verdict.RETRY and task.retries_left() > 1:
            delay = max(engine.backoff(task.attempts + 1), result.retry_after or 0.0)
            candidate = result.started_at + result.duration_ms / 1000 + delay
            if candidate < task.deadline():
                next_at = candidate
        attempt = Attempt(
            at=result.started_at, duration_ms=result.duration_ms, status=result.status, error=result.error
        )
        updated = task.after_attempt(attempt, result.body, verdict, next_at, engine.config.retention_seconds)
        return _Outcome(task, updated, result, verdict, next_at)

    def _write(self, outcome: _Outcome) -> _Outcome:
        return replace(outcome, unrecorded=self._record(outcome.updated, outcome.task))

    def _call(self, task: Task) -> CallResult:
        """One call, timed on the engine's clock (the caller's own clock only stamps signatures)."""
        started = self.engine.clock.now()
        return replace(self.engine.caller.call(task), started_at=started)

    def _give_up(self, task: Task) -> _Outcome:
        final = task.missed(self.engine.clock.now(), self.engine.config.retention_seconds)
        return _Outcome(task, final, unrecorded=self._record(final, task))

    def _record(self, updated: Task, previous: Task) -> str | None:
        """Write the outcome, conditional on the entry not having changed since it was read.
        Returns why it was not written, or None."""
        engine = self.engine
        for attempt in range(engine.config.record_attempts):
            try:
                engine.repository.save(updated, previous.revision)
                return None
            except StaleEntry as stale:
                state = stale.current.state if stale.current else "deleted"
                return f"entry changed while it was being called (now {state}); its new state stands"
            except ServiceUnavailable as exc:
                if attempt + 1 == engine.config.record_attempts:
                    # The entry stays pending in storage, so a later run calls it again: at least once.
                    return f"outcome not recorded: {exc.message}"
                engine.sleep(0.2 * 2**attempt)
        return "outcome not recorded"

    # -- in the loop's thread ------------------------------------------------------------------

    def _schedule(self, task: Task, ready_at: float) -> None:
        if ready_at >= self.stop_at:
            self.report.deferred += 1
            return
        self.order += 1
        heapq.heappush(self.timers, _Timer(ready_at, self.order, task))

    def _settle(self, outcome: _Outcome) -> None:
        engine = self.engine
        task = outcome.task
        result = outcome.result
        if result is not None and outcome.verdict is not None:
            self.report.calls += 1
            engine.observer.attempted(task, result, outcome.verdict, result.started_at - task.key.trigger_at)
        if outcome.unrecorded is not None:
            engine.observer.record_failed(outcome.updated, outcome.unrecorded)
            self.report.unrecorded += 1
            return
        updated = outcome.updated
        if updated.state.active:
            self.report.retried += 1
            self._schedule(updated, outcome.next_at or 0.0)
        else:
            self._count_final(updated)

    def _count_final(self, task: Task) -> None:
        self.engine.observer.finished(task)
        if task.state is TaskState.SUCCESSFUL:
            self.report.succeeded += 1
        elif task.state is TaskState.SKIPPED:
            self.report.skipped += 1
        else:
            self.report.failed += 1
