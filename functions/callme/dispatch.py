"""The dispatch engine: find due entries, call them, retry as told, record every attempt.

One run takes a set of shards of the ``due`` index. For each it first takes the shard's lease (a
conditional write on the leases table), so overlapping or duplicated runs never work on the same
entries. A lease is short and renewed every heartbeat while the run lives, and a call only starts
while the leases have room for all of it (its budget, then its recording), so a run that dies or
loses its leases has finished every call it started before another run can take the shards.

The index is eventually consistent, so it only says which entries to look at: each entry is read
again, strongly consistently, just before its call (the reads of entries starting together are
batched), and the call is made from what that read returns, within ``read_window`` of it. Calls run
on a bounded pool and their outcomes are written by another; retries wait in a timer heap, never in
a worker, so one slow or failing endpoint does not hold up the others. The index is read while the
calls are made, a bounded number of entries ahead of them, so a shard too large (or an index too
slow) to read within the run's window is still called from its first page on. The run stops
starting calls, and reading, at ``stop_at`` (before its Lambda deadline); what is left waits, still
pending, for the next run.

An entry that ends ``failed`` or ``skipped`` with an ``on_failure`` URL owes one call of that
failure hook (callme.hooks). The write of its final outcome records the hook as owed, with its own
``webhook-id``, and keeps the entry in the ``due`` index; the hook is then called like a callback (a
turn of its own: read again just before, under the same leases and budget) and its outcome written
on the entry, conditional on the entry as read. So it is called once per entry: only a call whose
recording a crash prevented is made again, by a later run, with the same ``webhook-id``.

When it ends, the run stores what it did by minute (callme.stats): one small item per minute it
worked in, whatever the number of calls.
"""

from __future__ import annotations

import heapq
import logging
import math
import queue
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

from .clock import Clock, minute_of
from .errors import ServiceUnavailable
from .hooks import HookCall, HookState
from .ports import (
    READ_BATCH,
    Caller,
    CallResult,
    Lease,
    LeaseStore,
    RunShare,
    StaleEntry,
    StatsStore,
    TaskRepository,
    due_slot,
)
from .schedule import Taken
from .settings import DispatchConfig
from .stats import StatsTally
from .task import Attempt, Task, TaskKey, TaskState, Verdict, backoff, judge, next_attempt_at

log = logging.getLogger("callme.dispatch")
READERS = 4  # due slots read at once by one run (in AWS a run has one shard or slice; locally, all)
PEEKERS = 8  # shards the coordinator looks at at once (within storage_connections)
WRITERS = 16  # outcome writes at once: a write takes a few ms, a call up to its whole budget
READ_TRIES = 3  # consistent reads of an entry before its call, when one comes back too late
# Entries read from the index ahead of the calls at most: a 1 MB page of the index holds up to about
# 2,000 entries, so the reader fetches the next page while the last one is being called.
READ_AHEAD = 2000


def writers_for(concurrency: int) -> int:
    return min(concurrency, WRITERS)


def storage_connections(concurrency: int) -> int:
    """Connections to DynamoDB one dispatcher needs: writers, index readers, the reads before the
    calls, the lease renewals and the run's own thread."""
    return writers_for(concurrency) + READERS + 3


class FinishedListener(Protocol):
    """Told of each entry whose final outcome (successful, failed or skipped) was just stored: the
    place for what follows an entry's end, such as a schedule's next run, an ``on_failure`` hook,
    outcome events or per-minute stats. Called in a writer thread, possibly for several entries at
    once, after the write and never for an outcome that was not stored; what it raises is logged and
    leaves the outcome as stored."""

    def entry_finished(self, task: Task) -> None: ...


class OutcomeRecorder:
    """Stores each call's outcome (callme.task's new state of the entry), conditional on the entry
    being as it was read before the call, then tells the FinishedListeners when it finished it.

    Storage trouble is tried again ``record_attempts`` times, on top of the storage client's own
    retries; an outcome still not stored leaves the entry active, so a later run calls it again (at
    least once). Used from the run's writer threads.
    """

    def __init__(
        self,
        repository: TaskRepository,
        config: DispatchConfig,
        sleep: Callable[[float], None],
        listeners: Sequence[FinishedListener] = (),
    ) -> None:
        self.repository = repository
        self.config = config
        self.sleep = sleep
        self.listeners = tuple(listeners)

    def record(self, updated: Task, previous: Task) -> str | None:
        """Store ``updated`` over ``previous``; returns why it was not stored, or None. The listeners
        hear of an entry once: when the write that ends it applies."""
        for attempt in range(self.config.record_attempts):
            try:
                self.repository.save(updated, previous.revision)
            except StaleEntry as stale:
                state = stale.current.state if stale.current else "deleted"
                return f"entry changed while it was being called (now {state}); its new state stands"
            except ServiceUnavailable as exc:
                if attempt + 1 == self.config.record_attempts:
                    return f"outcome not recorded: {exc.message}"
                self.sleep(0.2 * 2**attempt)
                continue
            if previous.state.active and not updated.state.active:
                self.finished(updated)
            return None
        return "outcome not recorded"

    def record_hook(self, call: HookCall, previous: Task, now: float) -> tuple[Task, str | None]:
        """Store the failure hook's ``call`` on the entry read as ``previous``: the entry as stored
        (or as it was to be), and why it was not stored, or None. An entry changed meanwhile by
        something else (a reschedule marks it) takes the record as long as its hook record is still
        the one this call was made from; only then would a lost record make the hook be called again."""
        seen, troubles, races = previous, 0, 0
        while True:
            updated = seen.after_hook_call(call, now)
            try:
                self.repository.save(updated, seen.revision)
                return updated, None
            except StaleEntry as stale:
                current = stale.current
                if current is None or current.on_failure_call != previous.on_failure_call:
                    return updated, "the failure hook's record changed while it was being called; it stands"
                races += 1
                if races > _HOOK_RECORD_RACES:
                    return updated, "failure hook outcome not recorded: the entry kept changing"
                seen = current
            except ServiceUnavailable as exc:
                troubles += 1
                if troubles == self.config.record_attempts:
                    return updated, f"failure hook outcome not recorded: {exc.message}"
                self.sleep(0.2 * 2 ** (troubles - 1))

    def finished(self, task: Task) -> None:
        """Tell the listeners of an entry finished and stored (here, or by the schedules' step)."""
        for listener in self.listeners:
            try:
                listener.entry_finished(task)
            except Exception:
                log.exception("a listener failed on the finished entry %s; its outcome stands", task.key)


_HOOK_RECORD_RACES = 3  # writes of a hook's record lost to other changes of its entry, tried again


class ScheduleRuns(Protocol):
    """The schedules' part in dispatch (callme.schedule_service): before a run's first call, its
    schedule moves on and its next run is made."""

    def take(self, run: Task, now: float) -> Taken: ...


def first_take(task: Task) -> bool:
    """A run of a schedule the dispatcher has not dealt with yet: pending and never called, or
    cancelled by a client with its schedule still to be moved on past it."""
    if task.schedule is None:
        return False
    return (task.state is TaskState.PENDING and task.attempts == 0) or task.unsettled


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
    withdrawn: int = 0  # shown by the index, but cancelled, finished or deleted when read before the call
    hook_calls: int = 0  # calls of failure hooks (callme.hooks)
    hooks_delivered: int = 0
    hooks_failed: int = 0  # given up on (calls used up, an answer not retried, an address refused)


@dataclass(order=True)
class _Timer:
    ready_at: float
    order: int
    task: Task = field(compare=False)


class DispatchEngine:
    def __init__(
        self,
        repository: TaskRepository,
        leases: LeaseStore,
        caller: Caller,
        clock: Clock,
        config: DispatchConfig,
        observer: DispatchObserver | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_leased: Callable[[list[int]], None] | None = None,
        listeners: Sequence[FinishedListener] = (),
        stats: StatsStore | None = None,
        schedules: ScheduleRuns | None = None,
    ) -> None:
        self.repository = repository
        self.leases = leases
        self.schedules = schedules
        self.caller = caller
        self.clock = clock
        self.config = config
        self.observer = observer or SilentObserver()
        self.sleep = sleep
        self.on_leased = on_leased
        self.recorder = OutcomeRecorder(repository, config, sleep, listeners)
        self.stats = stats
        self._random = random.Random()

    def plan(self, minute: int) -> list[RunShare]:
        """The runs this minute needs (a cheap, eventually consistent look at every shard that can
        hold entries, those of larger shard or slice counts used before included): for each shard
        with an entry due by ``minute``, one run holding all its busy slices, or, when more than
        ``split_at`` entries are due in it, about one run per ``split_at`` of them (``_shares``).
        The shards are looked at PEEKERS at a time."""
        shards = self.leases.widest(self.repository.shards)
        slices = self.leases.widest_slices(self.repository.slices)
        with ThreadPoolExecutor(max_workers=min(PEEKERS, shards), thread_name_prefix="peek") as peekers:
            found = peekers.map(lambda shard: self._shares(shard, slices, minute), range(shards))
            return [share for shares in found for share in shares]

    def _shares(self, shard: int, slices: int, minute: int) -> list[RunShare]:
        """One shard's runs. With one slice, a one-item peek, as before slices existed; with more,
        its slices' entries counted, in all no further than one past ``split_at`` (a bounded read:
        callme.ports.TaskRepository.count_due), then a peek at each slice left. A shard found
        heavier is split into about one run per ``split_at`` entries due (estimated from the slices
        counted: the hash spreads a shard's entries evenly over its slices), at most one per busy
        slice, each holding every n-th of its busy slices."""
        if slices == 1:
            return [RunShare(shard, (0,))] if self.repository.has_due(due_slot(shard, 0), minute) else []
        split_at = self.config.split_at
        left, counted, sized = split_at + 1, 0, 0
        busy = []
        for part in range(slices):
            found = self.repository.count_due(due_slot(shard, part), minute, max(1, left))
            if left > 1:
                counted, sized = counted + found, sized + 1
            left -= found
            if found:
                busy.append(part)
        if left > 0:
            return [RunShare(shard, tuple(busy))] if busy else []
        runs = min(len(busy), math.ceil(counted * slices / sized / split_at))
        return [RunShare(shard, tuple(busy[first::runs])) for first in range(runs)]

    def whole(self, shard: int) -> RunShare:
        """A run's share of ``shard`` when it is given no slices: all of them."""
        return RunShare(shard, tuple(range(self.leases.widest_slices(self.repository.slices))))

    def busy_shards(self, minute: int) -> list[int]:
        """The due slots the runs of ``plan`` would take, for one run to take them all (the local
        stack, the benchmarks). With one slice, a slot is its shard's number."""
        return [slot for share in self.plan(minute) for slot in share.slots]

    def run(self, shards: Iterable[int], deadline: float | None = None) -> RunReport:
        """Dispatch everything due in ``shards``; stop starting calls before ``deadline``.

        Shards whose lease is free are dispatched at once; shards another run holds are tried again
        until ``lease_wait`` has passed. A run never sits on a lease while it waits for another,
        so two runs that split the shards between them do not wait for each other.
        """
        started = self.clock.now()
        stop_at = started + self.config.run_seconds
        if deadline is not None:
            stop_at = min(stop_at, deadline - self.config.call_room)
        report = RunReport(shards=list(shards))
        owner = f"run-{uuid.uuid4().hex[:12]}"
        tally = StatsTally()
        waiting = list(report.shards)
        give_up = min(started + self.config.lease_wait, stop_at)
        try:
            while waiting:
                leases = self._free_leases(waiting, owner)
                if leases:
                    taken = [lease.shard for lease in leases]
                    waiting = [shard for shard in waiting if shard not in taken]
                    report.busy_shards.extend(taken)
                    if self.on_leased:
                        self.on_leased(taken)
                    try:
                        _Run(self, report, tally, stop_at, _Leases(self, leases)).go(self.clock.now())
                    finally:
                        for lease in leases:
                            self._release(lease)
                elif self.clock.now() >= give_up:
                    break
                else:
                    self.sleep(0.5)
        finally:
            self._store_stats(owner, tally)
        if waiting:
            log.warning("shards %s are held by another run; their work waits for the next minute", waiting)
        return report

    def _free_leases(self, shards: list[int], owner: str) -> list[Lease]:
        """The leases of ``shards`` that can be taken now (free, or their holder's ran out)."""
        now = self.clock.now()
        taken = []
        for shard in shards:
            lease = self.leases.acquire(shard, owner, now, now + self.config.lease_seconds)
            if lease is not None:
                taken.append(lease)
        return taken

    def _store_stats(self, run: str, tally: StatsTally) -> None:
        """Store the run's tally, one item per minute. Stats only describe calls already made and
        recorded: failing to store them is logged, and never fails the run or repeats a call."""
        if self.stats is None:
            return
        for stats in tally.minutes.values():
            try:
                self.stats.add(run, stats, stats.minute + self.config.retention_seconds)
            except Exception:
                log.exception("the stats of minute %s were not stored; the calls stand", stats.minute)

    def _release(self, lease: Lease) -> None:
        try:
            self.leases.release(lease.shard, lease.owner, self.clock.now())
        except ServiceUnavailable:
            log.warning("could not release shard %s; it frees itself when the lease runs out", lease.shard)

    def jitter(self) -> float:
        """A fraction in [0, 1) that spreads the retries of entries failing together (task.backoff)."""
        return self._random.random()


class _Leases:
    """The leases one run holds: renewed every heartbeat by the run's loop while it lives.

    ``until`` is when the first of them runs out, as last written. A call may start only while it
    leaves room for the whole call and its recording (``has_room``); callers read it from their
    threads, only the loop's thread changes it.
    """

    def __init__(self, engine: DispatchEngine, leases: list[Lease]) -> None:
        self.engine = engine
        self.leases = leases
        self.until = min(lease.until for lease in leases)
        self.renew_at = engine.clock.now() + engine.config.heartbeat_seconds
        self.lost = False
        self.renewing: Future[float | None] | None = None

    def has_room(self, now: float) -> bool:
        return not self.lost and now + self.engine.config.call_room <= self.until

    def gone(self, now: float) -> bool:
        """Lost to another run, or run out: no call may start any more."""
        return self.lost or now >= self.until

    def renew(self) -> float | None:
        """In a worker: extend every lease by a whole lease from now; None if one was lost."""
        until = self.engine.clock.now() + self.engine.config.lease_seconds
        for lease in self.leases:
            if not self.engine.leases.renew(lease.shard, lease.owner, until):
                return None
        return until

    def renewed(self, done: Future[float | None]) -> None:
        """In the loop's thread: take in a renewal's result."""
        self.renewing = None
        now = self.engine.clock.now()
        try:
            until = done.result()
        except ServiceUnavailable as exc:
            log.warning("could not renew the leases of shards %s (%s); trying again", self._shards(), exc.message)
            self.renew_at = now + 1.0
            return
        if until is None:
            log.warning("shards %s were taken by another run: this run starts no more calls", self._shards())
            self.lost = True
            return
        self.until = until
        self.renew_at = now + self.engine.config.heartbeat_seconds

    def _shards(self) -> list[int]:
        return [lease.shard for lease in self.leases]


class _FreshReads:
    """Strongly consistent reads of the entries about to be called, batched.

    A caller asks for its entry and waits; one thread reads every entry asked for meanwhile with
    one BatchGetItem, so entries that start together share a request and an idle run adds no delay.
    """

    def __init__(self, repository: TaskRepository, clock: Clock) -> None:
        self._repository = repository
        self._clock = clock
        self._asks: queue.SimpleQueue[_Ask | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="fresh-reads", daemon=True)
        self._thread.start()

    def read(self, key: TaskKey) -> tuple[Task | None, float]:
        """The entry as stored (None if it is gone), and when the read that returned it was sent.
        Raises ServiceUnavailable if storage did not answer."""
        ask = _Ask(key)
        self._asks.put(ask)
        ask.done.wait()
        if ask.error is not None:
            raise ask.error
        return ask.found, ask.sent_at

    def close(self) -> None:
        self._asks.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (first := self._asks.get()) is not None:
            batch = [first]
            closing = False
            while len(batch) < READ_BATCH:
                try:
                    ask = self._asks.get_nowait()
                except queue.Empty:
                    break
                if ask is None:
                    closing = True
                    break
                batch.append(ask)
            self._answer(batch)
            if closing:
                return

    def _answer(self, batch: list[_Ask]) -> None:
        sent_at = self._clock.now()
        error: ServiceUnavailable | None = None
        found: dict[TaskKey, Task] = {}
        try:
            found = {t.key: t for t in self._repository.get_many(list(dict.fromkeys(a.key for a in batch)))}
        except ServiceUnavailable as exc:
            error = exc
        except Exception as exc:  # a bug must not leave the callers waiting
            log.exception("consistent read of %d entries failed", len(batch))
            error = ServiceUnavailable(f"the entry could not be read ({type(exc).__name__})")
        for ask in batch:
            ask.found, ask.sent_at, ask.error = found.get(ask.key), sent_at, error
            ask.done.set()


@dataclass(eq=False)
class _Ask:
    key: TaskKey
    done: threading.Event = field(default_factory=threading.Event)
    found: Task | None = None
    sent_at: float = 0.0
    error: ServiceUnavailable | None = None


class _Backlog:
    """Entries read from the index and not yet taken by the run's loop: at most ``bound`` of them.

    The shards' readers put entries in as they read them and wait while it is full, so the calls
    start with the first page read and the read keeps only a bounded distance ahead of them. The
    loop is woken (``wake``) when the backlog stops being empty. Once closed (the run stops), the
    readers stop reading: what they did not read stays pending in the index.
    """

    def __init__(self, bound: int, wake: Callable[[], None]) -> None:
        self._bound = bound
        self._wake = wake
        self._entries: deque[Task] = deque()
        self._changed = threading.Condition()
        self._closed = False

    def put(self, task: Task) -> bool:
        """In a reader: add ``task``, waiting for room; False once the run stopped (read no more)."""
        with self._changed:
            while len(self._entries) >= self._bound and not self._closed:
                self._changed.wait()
            if self._closed:
                return False
            self._entries.append(task)
            woken = len(self._entries) == 1
        if woken:
            self._wake()
        return True

    def take(self, most: int) -> list[Task]:
        """In the loop: up to ``most`` entries, oldest first, making room for the readers."""
        with self._changed:
            taken = [self._entries.popleft() for _ in range(min(most, len(self._entries)))]
            if taken:
                self._changed.notify_all()
        return taken

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> int:
        """Stop the readers; returns how many entries read were left untaken."""
        with self._changed:
            self._closed = True
            left = len(self._entries)
            self._entries.clear()
            self._changed.notify_all()
        return left


def host_of(task: Task) -> str:
    """The host this entry's turn calls, as fairness between receivers counts it: its callback's, or
    its failure hook's once the entry has ended owing it."""
    definition = task.definition
    url = definition.on_failure if not task.state.active and definition.on_failure else definition.callback
    return (urlsplit(url).hostname or "").lower()


class _HostShares:
    """Calls in flight per callback host in one run, and the entries waiting because their host has
    its share (``most`` calls; 0: no limit), so that one slow receiver cannot take every caller."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.calls: Counter[str] = Counter()
        self.parked: dict[str, deque[Task]] = {}
        self.waiting = 0

    def admit(self, task: Task) -> str | None:
        """The host of ``task``, counted, if its call may start now; else None: it waits its turn."""
        host = host_of(task)
        if self.most and self.calls[host] >= self.most:
            self.parked.setdefault(host, deque()).append(task)
            self.waiting += 1
            return None
        self.calls[host] += 1
        return host

    def ended(self, host: str) -> Task | None:
        """A call to ``host`` ended: the entry that has waited longest for its host, if any."""
        self.calls[host] -= 1
        parked = self.parked.get(host)
        if not parked:
            return None
        self.waiting -= 1
        task = parked.popleft()
        if not parked:
            del self.parked[host]
        return task

    def clear(self) -> int:
        """Forget the waiting entries (the run stops); how many there were."""
        waiting, self.waiting = self.waiting, 0
        self.parked.clear()
        return waiting


@dataclass(frozen=True)
class _Outcome:
    """One entry's turn: the entry as read just before it, what to write (if anything), the call
    (if one was made), and why nothing was done or the write did not apply."""

    task: Task  # as it was read before the call (the index's copy when no read came back)
    updated: Task | None  # as it is to be written; None: nothing to write
    result: CallResult | None = None  # None: not called
    verdict: Verdict | None = None
    next_at: float | None = None
    hook: HookCall | None = None  # the failure hook's record after its call, when this turn made one
    unrecorded: str | None = None  # why the write did not apply
    left: str | None = None  # why the entry was left, untouched, for a later run
    aside: tuple[Task, Task] | None = None  # a run not called in favour of ``task``: as to be written, as read
    missed: tuple[Task, ...] = ()  # runs an outage missed, recorded skipped when the schedule moved on


class _Run:
    """One run's scheduling loop: shards read in parallel into a bounded backlog, a pool of callers,
    a pool of writers for the outcomes, a timer heap for retries, and the leases' heartbeat.

    Only this loop's thread touches the timer heap, the report, the observer and the leases. A
    caller reads its entry, calls it and hands the outcome to a writer as soon as the call ends, so
    a slow write never keeps a call from starting, and the calls of the first page read start
    while the rest of the shards is still being read.
    """

    def __init__(
        self, engine: DispatchEngine, report: RunReport, tally: StatsTally, stop_at: float, leases: _Leases
    ) -> None:
        self.engine = engine
        self.report = report
        self.tally = tally
        self.stop_at = stop_at
        self.leases = leases
        self.timers: list[_Timer] = []
        self.order = 0
        self.failure: Exception | None = None
        self.calls: dict[Future[_Outcome], str] = {}  # each call in flight, and its host
        self.hosts = _HostShares(engine.config.host_calls)
        self.writes: set[Future[_Outcome]] = set()
        self.done: queue.SimpleQueue[Future[Any] | None] = queue.SimpleQueue()  # None: the backlog filled
        self.fresh = _FreshReads(engine.repository, engine.clock)
        self.backlog = _Backlog(READ_AHEAD, lambda: self.done.put(None))
        self.ready: deque[Task] = deque()  # entries read, to call as soon as there is room, in order
        self.stopped = False

    def go(self, now: float) -> None:
        engine = self.engine
        shards = [lease.shard for lease in self.leases.leases]
        try:
            with (
                ThreadPoolExecutor(max_workers=min(len(shards), READERS), thread_name_prefix="due") as readers,
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="heartbeat") as heartbeat,
                ThreadPoolExecutor(max_workers=engine.config.concurrency, thread_name_prefix="callback") as callers,
                ThreadPoolExecutor(
                    max_workers=writers_for(engine.config.concurrency), thread_name_prefix="record"
                ) as writers,
            ):
                minute = minute_of(now)
                reading = {self._submit(readers, self._read, shard, minute) for shard in shards}
                try:
                    self._loop(reading, heartbeat, callers, writers)
                finally:
                    self.backlog.close()  # a reader waiting for room must not hold the pools open
        finally:
            self.fresh.close()
        if self.failure is not None:
            raise self.failure

    def _loop(
        self,
        reading: set[Future[None]],
        heartbeat: ThreadPoolExecutor,
        callers: ThreadPoolExecutor,
        writers: ThreadPoolExecutor,
    ) -> None:
        engine = self.engine
        leases = self.leases
        while reading or self.timers or self.ready or self.backlog or self.calls or self.writes:
            now = engine.clock.now()
            if leases.renewing is None and not leases.lost and now >= leases.renew_at:
                leases.renewing = self._submit(heartbeat, leases.renew)
            self._start_ready(now, callers)
            busy = bool(reading or self.calls or self.writes or leases.renewing)
            if not (busy or self.timers or self.ready or self.backlog):
                break
            timeout = self._wait(now)
            if not busy:
                engine.sleep(min(timeout if timeout is not None else 0.0, 1.0))
                continue
            try:
                future = self.done.get(timeout=timeout)
            except queue.Empty:
                continue
            while True:  # everything that has finished meanwhile, then look at the timers again
                self._finished(future, reading, writers)
                try:
                    future = self.done.get_nowait()
                except queue.Empty:
                    break

    def _finished(self, future: Future[Any] | None, reading: set[Future[None]], writers: ThreadPoolExecutor) -> None:
        """Take in one finished job: a call's outcome goes to a writer (if there is anything to
        write), a write's is settled, a renewal updates the leases, a shard's read has ended.
        None: entries were read (the loop takes them when it next looks for calls to start)."""
        if future is None:
            return
        if future in self.calls:
            waited = self.hosts.ended(self.calls.pop(future))
            if waited is not None:
                self.ready.appendleft(waited)
            outcome = future.result()
            if outcome.updated is None:
                self._settle(outcome)
            else:
                self.writes.add(self._submit(writers, self._write, outcome))
        elif future in self.writes:
            self.writes.remove(future)
            self._settle(future.result())
        elif future is self.leases.renewing:
            self.leases.renewed(future)
        elif future in reading:
            reading.discard(future)
            self._read_ended(future)

    def _wait(self, now: float) -> float | None:
        """How long the loop may wait before it has something to do without being woken: the next
        timer (when a call could start), the next renewal. None: until a job finishes (a renewal
        under way is one: its end wakes the loop, which must not poll for it meanwhile)."""
        wake = []
        if not self.leases.lost and self.leases.renewing is None:
            wake.append(self.leases.renew_at)
        if (self.timers or self.ready or self.backlog) and self._room() and self.leases.has_room(now):
            wake.append(min(self.timers[0].ready_at if self.timers else now, self.stop_at))
        return max(0.0, min(wake) - now) if wake else None

    def _submit(self, pool: ThreadPoolExecutor, job: Callable[..., Any], *args: Any) -> Future[Any]:
        """Start a job; its future is put on ``done`` when it finishes (waiting on a queue, not on
        every future at once, keeps the loop's cost per finished job constant)."""
        future = pool.submit(job, *args)
        future.add_done_callback(self.done.put)
        return future

    def _start_ready(self, now: float, callers: ThreadPoolExecutor) -> None:
        """Hand every entry whose time has come to a caller, as far as the concurrency and the
        leases allow: retries whose time came first, then entries as they were read. Past
        ``stop_at``, or once the leases are gone, reading stops and the rest is left for later."""
        if now >= self.stop_at or self.leases.gone(now):
            self._stop()
            return
        while self._room() and self.leases.has_room(now):
            self._take_read(now)
            if self.timers and self.timers[0].ready_at <= now:
                task = heapq.heappop(self.timers).task
            elif self.ready:
                task = self.ready.popleft()
            else:
                break
            host = self.hosts.admit(task)  # None: its host has its share of the callers; it waits
            if host is not None:
                self.calls[self._submit(callers, self._attempt, task)] = host

    def _take_read(self, now: float) -> None:
        """Take entries read from the backlog while fewer than the concurrency wait for a caller
        (and fewer than READ_AHEAD wait for their host's share)."""
        room = min(self.engine.config.concurrency - len(self.ready), READ_AHEAD - self.hosts.waiting)
        if room <= 0 or not self.backlog:
            return
        found = self.backlog.take(room)
        self.report.due += len(found)
        for task in found:
            ready_at = task.ready_at()
            if ready_at <= now:
                self.ready.append(task)
            else:
                self._schedule(task, ready_at)

    def _stop(self) -> None:
        """No call starts any more: stop reading; what was read and not started stays pending."""
        if not self.stopped:
            self.stopped = True
            self.report.due += len(self.backlog)
            self.report.deferred += self.backlog.close()
        self.report.deferred += len(self.timers) + len(self.ready) + self.hosts.clear()
        self.timers.clear()
        self.ready.clear()

    def _room(self) -> bool:
        """Whether another call may start: fewer calls in flight than the concurrency, and fewer
        outcomes waiting to be written than that too. Calls never run ahead of the writes by more
        than one pool's worth, so a slow or throttled table slows the calls down with it, and few
        calls are ever made whose outcome is not yet recorded (those a crash would repeat)."""
        limit = self.engine.config.concurrency
        return len(self.calls) < limit and len(self.writes) < limit

    def _read_ended(self, read: Future[None]) -> None:
        """One shard is read; after a failed read, start nothing more (what was not started stays
        pending)."""
        try:
            read.result()
        except Exception as exc:
            self.failure = self.failure or exc
            self.backlog.close()
            self.timers.clear()
            self.ready.clear()

    # -- in the pools --------------------------------------------------------------------------

    def _read(self, shard: int, minute: int) -> None:
        """Put the entries the index shows due in one leased shard (possibly not as they are now)
        into the backlog as they come, until they end or the run stops."""
        for task in self.engine.repository.due(shard, minute):
            if not self.backlog.put(task):
                return

    def _attempt(self, listed: Task) -> _Outcome:
        """One entry's turn: read it, then call it as read, if it is still to be called now. A run
        of a schedule first moves its schedule on (``first_take``), which may call another run and
        record the runs an outage missed ``skipped``."""
        missed: list[Task] = []
        outcome = self._read_and_call(listed, missed)
        return replace(outcome, missed=tuple(missed)) if missed else outcome

    def _read_and_call(self, listed: Task, missed: list[Task]) -> _Outcome:
        engine = self.engine
        aside: tuple[Task, Task] | None = None
        for _ in range(READ_TRIES):
            try:
                task, sent_at = self.fresh.read(listed.key)
            except ServiceUnavailable as exc:
                return _Outcome(listed, None, left=f"not read before its call: {exc.message}")
            if task is not None and aside is None and first_take(task):
                stopped, aside, task = self._turn(task, missed)
                if stopped is not None:
                    return stopped
                sent_at = engine.clock.now() if aside is not None else sent_at  # a later run, just made
            if task is None or not task.in_due_index:
                return _Outcome(task or listed, None)  # cancelled, finished or deleted meanwhile
            now = engine.clock.now()
            if task.ready_at() > now:
                return _Outcome(task, None)  # another run made an attempt: its retry is not due yet
            if task.state.active and now >= task.deadline():
                return _Outcome(task, task.missed(now, engine.config.retention_seconds), aside=aside)
            if not self.leases.has_room(now):
                return _Outcome(task, None, left="the run's leases have no room left for the call", aside=aside)
            if now - sent_at <= engine.config.read_window:
                return replace(self._call(task) if task.state.active else self._call_hook(task), aside=aside)
        return _Outcome(listed, None, left=f"not read within {engine.config.read_window:g} s of its call", aside=aside)

    def _turn(self, run: Task, missed: list[Task]) -> tuple[_Outcome | None, tuple[Task, Task] | None, Task]:
        """The schedules' step before a run's first call (callme.schedule_service): (an outcome when
        nothing is to be called, the run set aside as to be written and as read, the entry to call)."""
        engine = self.engine
        if engine.schedules is None:  # no schedules here: a run skipped by a client is just settled
            return (_Outcome(run, run.settle(engine.clock.now())) if run.unsettled else None), None, run
        try:
            taken = engine.schedules.take(run, engine.clock.now())
        except ServiceUnavailable as exc:
            return _Outcome(run, None, left=f"its schedule could not be moved on: {exc.message}"), None, run
        missed += taken.skipped
        for skipped in taken.skipped:
            engine.recorder.finished(skipped)
        if taken.call is run:
            return None, None, run
        if taken.call is None or taken.aside is None:
            return _Outcome(run, taken.aside), None, run
        return None, (taken.aside, run), taken.call  # a later missed run, just made, called instead

    def _call(self, task: Task) -> _Outcome:
        """One call, timed on the engine's clock (the caller's own clock only stamps signatures),
        and what it makes of the entry."""
        engine = self.engine
        started = engine.clock.now()
        try:
            result = replace(engine.caller.call(task), started_at=started)
        except Exception as exc:  # a bug in the caller must not lose the entry
            log.exception("callback of %s raised", task.key)
            result = CallResult(started_at=started, duration_ms=0, error=f"internal error: {exc}")
        verdict = Verdict.FAIL if result.refused else judge(result.status, task.definition.expected_http_status)
        config = engine.config
        wait = max(
            backoff(task.attempts + 1, config.backoff_base, config.backoff_cap, engine.jitter()),
            result.retry_after or 0.0,
        )
        next_at = next_attempt_at(task, verdict, result.started_at + result.duration_ms / 1000, wait)
        attempt = Attempt(
            at=result.started_at, duration_ms=result.duration_ms, status=result.status, error=result.error
        )
        updated = task.after_attempt(attempt, result.body, verdict, next_at, engine.config.retention_seconds)
        return _Outcome(task, updated, result, verdict, next_at)

    def _call_hook(self, task: Task) -> _Outcome:
        """One call of the failure hook ``task`` owes, and the hook's record after it (written by
        a writer, as a callback's outcome is)."""
        engine = self.engine
        started = engine.clock.now()
        try:
            result = replace(engine.caller.call_on_failure(task), started_at=started)
        except Exception as exc:  # a bug in the caller must not leave the hook owed forever
            log.exception("failure hook of %s raised", task.key)
            result = CallResult(started_at=started, duration_ms=0, error=f"internal error: {exc}")
        assert task.on_failure_call is not None
        call = task.on_failure_call.after_call(
            result.started_at,
            result.duration_ms,
            result.status,
            result.error,
            result.refused,
            result.retry_after,
            engine.jitter(),
        )
        ended = result.started_at + result.duration_ms / 1000
        return _Outcome(task, task.after_hook_call(call, ended), result, hook=call)

    def _write(self, outcome: _Outcome) -> _Outcome:
        assert outcome.updated is not None
        recorder = self.engine.recorder
        if outcome.hook is not None:
            updated, unrecorded = recorder.record_hook(outcome.hook, outcome.task, outcome.updated.updated_at)
            return replace(outcome, updated=updated, unrecorded=unrecorded)
        unrecorded = recorder.record(outcome.updated, outcome.task)
        if outcome.aside is not None and recorder.record(*outcome.aside) is not None:
            outcome = replace(outcome, aside=None)  # not recorded: taken again later, and set aside then
        return replace(outcome, unrecorded=unrecorded)

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
        if outcome.aside is not None and outcome.left is None:
            self._count_final(outcome.aside[0], engine.clock.now())
        for skipped in outcome.missed:
            self._count_final(skipped, engine.clock.now())
        if outcome.left is not None:
            log.info("%s left for a later run: %s", task.key, outcome.left)
            self.report.deferred += 1
            return
        if outcome.updated is None:
            if task.in_due_index:  # another run's retry, due later
                self._schedule(task, task.ready_at())
            else:
                self.report.withdrawn += 1
            return
        if outcome.hook is not None:
            self._settle_hook(outcome, outcome.hook)
            return
        result = outcome.result
        at = engine.clock.now()  # when the attempt was: its call's start, else now (a skip)
        if result is not None and outcome.verdict is not None:
            at = result.started_at
            lateness = result.started_at - task.key.trigger_at
            self.report.calls += 1
            self.tally.called(at, lateness)
            engine.observer.attempted(task, result, outcome.verdict, lateness)
        if outcome.unrecorded is not None:
            engine.observer.record_failed(outcome.updated, outcome.unrecorded)
            self.report.unrecorded += 1
            return
        updated = outcome.updated
        if updated.state.active:
            self.report.retried += 1
            self.tally.ended(at, "retried")
            self._schedule(updated, outcome.next_at or 0.0)
        else:
            self._count_final(updated, at)
            if updated.hook_owed:  # its failure hook: a turn of its own, read again first
                self._schedule(updated, updated.ready_at())

    def _settle_hook(self, outcome: _Outcome, call: HookCall) -> None:
        """A failure hook's call: counted and logged (never its body or the task's headers); called
        again later if it is to be retried."""
        key = outcome.task.key
        self.report.hook_calls += 1
        made = f"status {call.status}" if call.status is not None else call.error
        if outcome.unrecorded is not None:
            log.warning("failure hook of %s called (%s), not recorded: %s", key, made, outcome.unrecorded)
            self.report.unrecorded += 1
            return
        log.info("failure hook of %s called (%s): %s after %d call(s)", key, made, call.state, call.attempts)
        if call.state is HookState.PENDING and outcome.updated is not None:
            self._schedule(outcome.updated, outcome.updated.ready_at())
        elif call.state is HookState.DELIVERED:
            self.report.hooks_delivered += 1
        else:
            self.report.hooks_failed += 1

    def _count_final(self, task: Task, at: float) -> None:
        if task.state is TaskState.CANCELLED:  # a cancelled run, settled: its schedule moved on
            self.report.withdrawn += 1
            return
        self.engine.observer.finished(task)
        if task.state is TaskState.SUCCESSFUL:
            self.report.succeeded += 1
            self.tally.ended(at, "succeeded")
        elif task.state is TaskState.SKIPPED:
            self.report.skipped += 1
            self.tally.ended(at, "skipped")
        else:
            self.report.failed += 1
            self.tally.ended(at, "failed")
