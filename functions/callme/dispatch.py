"""The dispatch engine: find due entries, call them, retry as told, record every attempt.

One run takes a set of shards of the ``due`` index. For each it first takes the shard's lease (a
conditional write on the leases table), so overlapping or duplicated runs never work on the same
entries; a run that dies leaves its lease to expire, and the next run redoes what was not recorded.
Calls run on a bounded pool; retries wait in a timer heap, never in a worker, so one slow or failing
endpoint does not hold up the others. The run stops starting calls at ``stop_at`` (before its
lease and its Lambda deadline end); what is left waits, still pending, for the next run.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Protocol

from .clock import Clock, minute_of
from .errors import ServiceUnavailable
from .repository import Lease, StaleEntry, TaskRepository
from .task import Attempt, Task, TaskState, Verdict, judge

log = logging.getLogger("callme.dispatch")


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
        """Dispatch everything due in ``shards``; stop starting calls before ``deadline``."""
        started = self.clock.now()
        stop_at = started + self.config.run_seconds
        if deadline is not None:
            stop_at = min(stop_at, deadline - self.config.call_budget - 2)
        report = RunReport(shards=list(shards))
        owner = f"run-{uuid.uuid4().hex[:12]}"
        leases = self._take_leases(report.shards, owner, stop_at)
        report.busy_shards = [lease.shard for lease in leases]
        if self.on_leased:
            self.on_leased(report.busy_shards)
        try:
            if leases:
                _Run(self, report, stop_at).go(self._candidates(leases))
        finally:
            for lease in leases:
                self._release(lease, owner)
        return report

    def _take_leases(self, shards: list[int], owner: str, stop_at: float) -> list[Lease]:
        taken: list[Lease] = []
        waiting = list(shards)
        give_up = min(self.clock.now() + self.config.lease_wait_seconds, stop_at)
        while waiting:
            now = self.clock.now()
            for shard in list(waiting):
                lease = self.repository.acquire_lease(shard, owner, now, now + self.config.lease_seconds)
                if lease is not None:
                    taken.append(lease)
                    waiting.remove(shard)
            if not waiting or self.clock.now() >= give_up:
                break
            self.sleep(0.5)
        if waiting:
            log.warning("shards %s are held by another run; their work waits for the next minute", waiting)
        return taken

    def _release(self, lease: Lease, owner: str) -> None:
        try:
            self.repository.release_lease(lease.shard, owner, self.clock.now())
        except ServiceUnavailable:
            log.warning("could not release shard %s; it frees itself when the lease runs out", lease.shard)

    def _candidates(self, leases: list[Lease]) -> list[Task]:
        now = self.clock.now()
        minute = minute_of(now)
        found: list[Task] = []
        for lease in leases:
            due = list(self.repository.due(lease.shard, minute))
            recent = lease.previous_released_at is not None and (
                now - lease.previous_released_at < self.config.fresh_release_seconds
            )
            if recent and due:
                # The index is eventually consistent: a run that just released this shard may have
                # recorded outcomes the index does not show yet. Read those entries consistently.
                due = [t for t in self.repository.get_many([t.key for t in due]) if t.state.active]
            found.extend(due)
        return found

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with jitter: about base * 2^(attempts-1), between half and all of it."""
        ceiling = min(self.config.backoff_cap, self.config.backoff_base * 2 ** max(0, attempts - 1))
        return float(ceiling / 2 + self._random.uniform(0, ceiling / 2))


class _Run:
    """One run's scheduling loop: a worker pool for calls and a timer heap for retries."""

    def __init__(self, engine: DispatchEngine, report: RunReport, stop_at: float) -> None:
        self.engine = engine
        self.report = report
        self.stop_at = stop_at
        self.timers: list[_Timer] = []
        self.order = 0
        self.changed = threading.Event()

    def go(self, candidates: list[Task]) -> None:
        engine = self.engine
        self.report.due = len(candidates)
        for task in candidates:
            self._schedule(task, task.next_attempt_at or 0.0)
        inflight: dict[Future[CallResult], Task] = {}
        with ThreadPoolExecutor(max_workers=engine.config.concurrency, thread_name_prefix="callback") as pool:
            while self.timers or inflight:
                now = engine.clock.now()
                while (
                    self.timers
                    and self.timers[0].ready_at <= now
                    and len(inflight) < engine.config.concurrency
                    and now < self.stop_at
                ):
                    task = heapq.heappop(self.timers).task
                    if now >= task.deadline():
                        self._give_up(task, now)
                        continue
                    inflight[pool.submit(self._call, task)] = task
                if now >= self.stop_at and self.timers:
                    self.report.deferred += len(self.timers)
                    self.timers.clear()
                if not inflight and not self.timers:
                    break
                timeout = None
                if self.timers and len(inflight) < engine.config.concurrency:
                    timeout = max(0.0, min(self.timers[0].ready_at, self.stop_at) - now)
                if inflight:
                    done, _ = wait(list(inflight), timeout=timeout, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._settle(inflight.pop(future), future)
                elif timeout:
                    engine.sleep(min(timeout, 1.0))

    def _call(self, task: Task) -> CallResult:
        """One call, timed on the engine's clock (the caller's own clock only stamps signatures)."""
        started = self.engine.clock.now()
        return replace(self.engine.caller.call(task), started_at=started)

    def _schedule(self, task: Task, ready_at: float) -> None:
        if ready_at >= self.stop_at:
            self.report.deferred += 1
            return
        self.order += 1
        heapq.heappush(self.timers, _Timer(ready_at, self.order, task))

    def _settle(self, task: Task, future: Future[CallResult]) -> None:
        engine = self.engine
        try:
            result = future.result()
        except Exception as exc:  # a bug in the caller must not lose the entry
            log.exception("callback of %s raised", task.key)
            now = engine.clock.now()
            result = CallResult(started_at=now, duration_ms=0, error=f"internal error: {exc}")
        self.report.calls += 1
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
        lateness = result.started_at - task.key.trigger_at
        engine.observer.attempted(task, result, verdict, lateness)
        if not self._record(updated, task):
            return
        if updated.state.active:
            self.report.retried += 1
            self._schedule(updated, next_at or 0.0)
        else:
            self._count_final(updated)

    def _give_up(self, task: Task, now: float) -> None:
        final = task.missed(now, self.engine.config.retention_seconds)
        if self._record(final, task):
            self._count_final(final)

    def _count_final(self, task: Task) -> None:
        self.engine.observer.finished(task)
        if task.state is TaskState.SUCCESSFUL:
            self.report.succeeded += 1
        elif task.state is TaskState.SKIPPED:
            self.report.skipped += 1
        else:
            self.report.failed += 1

    def _record(self, updated: Task, previous: Task) -> bool:
        """Write the outcome, conditional on the entry not having changed since it was read."""
        engine = self.engine
        for attempt in range(engine.config.record_attempts):
            try:
                engine.repository.save(updated, previous.revision)
                return True
            except StaleEntry as stale:
                state = stale.current.state if stale.current else "deleted"
                reason = f"entry changed while it was being called (now {state}); its new state stands"
                engine.observer.record_failed(updated, reason)
                self.report.unrecorded += 1
                return False
            except ServiceUnavailable as exc:
                if attempt + 1 == engine.config.record_attempts:
                    # The entry stays pending in storage, so a later run calls it again: at least once.
                    engine.observer.record_failed(updated, f"outcome not recorded: {exc.message}")
                    self.report.unrecorded += 1
                    return False
                engine.sleep(0.2 * 2**attempt)
        return False
