"""The task API's use cases: register, read, cancel and reschedule entries.

Pure domain: it takes typed requests (parsed at the edge by callme.validation), applies the rules of
task.py and talks to storage only through the ports (callme.ports). Every conditional write that may
lose a race goes through ``settle``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar

from . import deadline
from .clock import MINUTE, Clock, minute_of
from .errors import CallmeError, Conflict, InvalidRequest, ServiceUnavailable, TaskNotFound
from .ports import (
    MAX_TRANSACTION_WRITES,
    EntryExists,
    Page,
    StaleEntry,
    TaskRepository,
    TransactionRefused,
)
from .sealing import HeaderVault, SealingError
from .settings import Limits
from .task import Task, TaskDefinition, TaskKey, TaskName, TaskState
from .trigger import check_can_run
from .validation import Listing, RescheduleRequest, TaskRequest
from .views import AnswerFormat, AnswerRoom

# A conditional write that loses a race is tried again, with what the winner stored. Each lost
# round means another writer's write applied, so concurrent writers of one entry all get through;
# the bound is the time a request may spend on it, not a count, and rounds are spread with jitter.
RACE_SECONDS = 5.0
_JITTER_SECONDS = (0.005, 0.1)  # the first wait's bound, and the cap as it doubles
# Cancelling a whole task: entries read per page, and conditional writes in flight at once.
_CANCEL_PAGE = 250
_CANCEL_WRITERS = 8
_BATCH_WRITERS = 8  # a batch's writes in flight at once, within the api client's 10 connections
RESCHEDULABLE = (TaskState.FAILED, TaskState.SKIPPED)
FINISHED = tuple(state for state in TaskState if not state.active)


@dataclass(frozen=True)
class Listed:
    tasks: list[Task]
    next: TaskKey | None


class _Tally:
    """Entries cancelled so far: their count, and the first ones, as many as one answer shows."""

    def __init__(self, room: AnswerRoom, most: int) -> None:
        self.room = room
        self.most = most
        self.count = 0
        self.first: list[Task] = []

    def add(self, task: Task) -> None:
        shown_so_far = len(self.first) == self.count  # `first` stays a prefix, in trigger order
        self.count += 1
        if shown_so_far and len(self.first) < self.most and self.room.take(task):
            self.first.append(task)


@dataclass(frozen=True)
class Cancellation:
    """What ``DELETE /task/<name>`` did: how many entries it cancelled, the first of them (as many
    as one answer holds), and why it stopped before cancelling them all (None when it did not)."""

    count: int
    first: list[Task]
    unfinished: str | None


class TaskService:
    """The use cases behind the API. It takes typed requests (callme.validation, parsed at the edge)
    and names already checked (TaskName, TaskKey)."""

    def __init__(
        self, repository: TaskRepository, clock: Clock, limits: Limits, vault: HeaderVault | None = None
    ) -> None:
        self.repository = repository
        self.clock = clock
        self.limits = limits
        self.vault = vault or HeaderVault(lambda: None)

    def put_task(self, request: TaskRequest) -> tuple[Task, bool]:
        """Register the entry (its header values sealed: callme.sealing); a re-PUT replaces an entry
        not yet called.

        Returns the stored entry and whether it was created (as opposed to replaced).
        """
        now = request.received_at
        definition = sealed(self.vault, request.key.name, request.definition)
        task = Task.new(request.key, definition, now)

        def write(current: Task | None) -> tuple[Task, bool]:
            if current is None:
                self.repository.insert(task)
                return task, True
            replacement = current.replaced_by(definition, now)
            self.repository.save(replacement, current.revision)
            return replacement, False

        return settle(request.key, write)

    def put_tasks(self, requests: Sequence[TaskRequest | CallmeError]) -> list[tuple[Task, bool] | CallmeError]:
        """Register a batch: each request as ``put_task`` would, concurrently, each on its own (a
        request refused at parsing stays refused, and one write's failure is only its own). In
        order: the stored entry and whether it was created, or why not."""
        put = deadline.carried(self._put_or_refusal)
        with ThreadPoolExecutor(_BATCH_WRITERS, thread_name_prefix="batch") as writers:
            return [future.result() for future in [writers.submit(put, request) for request in requests]]

    def _put_or_refusal(self, request: TaskRequest | CallmeError) -> tuple[Task, bool] | CallmeError:
        if isinstance(request, CallmeError):
            return request
        try:
            return self.put_task(request)
        except CallmeError as refusal:
            return refusal

    def get_entry(self, key: TaskKey) -> Task:
        task = self.repository.get(key)
        if task is None or self._expired(task):
            raise TaskNotFound(f"no entry {key}")
        return task

    def list_entries(
        self, name: TaskName | None, listing: Listing, answer_format: AnswerFormat | None = None
    ) -> Listed:
        """A page of entries: at most ``listing.limit``, and no more than one answer holds."""
        now = self.clock.now()
        lowest = minute_of(now) if listing.future_only else None
        fits = AnswerRoom(answer_format or AnswerFormat()).take
        page: Page
        if name is None:
            page = self.repository.all_entries(listing.start_from, lowest, now, listing.limit, fits)
        else:
            if listing.start_from is not None:
                after = listing.start_from.trigger_at + MINUTE
                lowest = after if lowest is None else max(lowest, after)
            page = self.repository.entries_of(name, lowest, now, listing.limit, fits)
            if not page.tasks and not page.more and listing.start_from is None and not self._name_exists(name, now):
                raise TaskNotFound(f"no task named {name!r}")
        return Listed(page.tasks, page.resume())

    def cancel_entry(self, key: TaskKey) -> Task:
        def write(current: Task | None) -> Task:
            if current is None or self._expired(current):
                raise TaskNotFound(f"no entry {key}")
            cancelled = current.cancelled(self.clock.now(), self.limits.retention_seconds)
            self.repository.save(cancelled, current.revision)
            return cancelled

        return settle(key, write, self.get_entry(key))

    def cancel_name(self, name: TaskName, answer_format: AnswerFormat | None = None) -> Cancellation:
        """Cancel every active entry of ``name``; finished ones are left as they are.

        Active entries are read a page at a time and cancelled with concurrent conditional writes,
        until none is left or the request's time (callme.deadline) or storage runs out. Then the
        result says how many were cancelled and why it stopped: a repeated call cancels the rest.
        """
        now = self.clock.now()
        tally = _Tally(AnswerRoom(answer_format or AnswerFormat()), self.limits.default_page_size)
        lowest = None
        with ThreadPoolExecutor(_CANCEL_WRITERS, thread_name_prefix="cancel") as writers:
            while True:
                try:
                    page = self.repository.entries_of(name, lowest, now, _CANCEL_PAGE, active_only=True)
                    if not (page.tasks or page.more) and lowest is None and not self._name_exists(name, now):
                        raise TaskNotFound(f"no task named {name!r}")
                    self._cancel_all(writers, page.tasks, tally)
                except ServiceUnavailable as stop:
                    return Cancellation(tally.count, tally.first, stop.message)
                resume = page.resume()
                if resume is None:
                    return Cancellation(tally.count, tally.first, None)
                lowest = resume.trigger_at + MINUTE

    def _cancel_all(self, writers: ThreadPoolExecutor, tasks: list[Task], tally: _Tally) -> None:
        """Cancel ``tasks`` concurrently, counting each in ``tally``. When some could not be, raise
        ServiceUnavailable once every write has ended, so that the count is exact."""
        cancel = deadline.carried(self._cancel_as_read)
        failure = None
        for future in [writers.submit(cancel, task) for task in tasks]:
            try:
                cancelled = future.result()
            except ServiceUnavailable as exc:
                failure = exc
                continue
            if cancelled is not None:
                tally.add(cancelled)
        if failure is not None:
            raise failure

    def _cancel_as_read(self, task: Task) -> Task | None:
        """Cancel ``task`` as read or, when it changed meanwhile, as it is now (the failed write
        returns it). None if it finished or vanished meanwhile: nothing to cancel."""

        def write(current: Task | None) -> Task | None:
            if current is None or not current.state.active:
                return None
            cancelled = current.cancelled(self.clock.now(), self.limits.retention_seconds)
            self.repository.save(cancelled, current.revision)
            return cancelled

        return settle(task.key, write, task)

    def reschedule_entry(self, key: TaskKey, request: RescheduleRequest) -> list[Task]:
        """A new pending entry copying ``key``, if it failed or was skipped (any finished entry with
        ``request.everything``). Rescheduling an entry rescheduled before is a conflict naming its
        successor: an entry has at most one."""
        states = _reschedulable(request.everything)

        def sources() -> list[Task]:
            source = self.get_entry(key)
            if source.state not in states:
                raise Conflict(self._not_reschedulable(source, request.everything))
            return [source]

        return self._reschedule(key, sources, request)

    def reschedule_task(self, name: TaskName, request: RescheduleRequest) -> list[Task]:
        """One new pending entry for the failed and skipped entries of ``name`` (all finished ones
        with ``request.everything``) not rescheduled before. Entries with the same definition
        collapse into one successor, since they would all land on the same minute; a request that
        lost the race to a concurrent one finds nothing left to do."""
        states = _reschedulable(request.everything)

        def sources() -> list[Task]:
            return [t for t in self._every_entry(name) if t.state in states and t.rescheduled_to is None]

        return self._reschedule(name, sources, request)

    def _reschedule(self, target: object, sources: Callable[[], list[Task]], request: RescheduleRequest) -> list[Task]:
        """The successor of what ``sources`` reads. Its mark on each source (``rescheduled_to``) and
        the successor are written in one transaction, on condition that each source is unchanged and
        unmarked and the successor's key is free, so that an entry has at most one successor whatever
        the interleaving of requests."""
        now = request.received_at
        new_minute = minute_of(now) + MINUTE if request.trigger_at is None else request.trigger_at
        rescheduling = _Rescheduling(self, sources, new_minute, now)
        return settle(target, rescheduling.round)

    def successor(self, sources: list[Task], new_minute: int, now: float) -> Task:
        """The new entry for ``sources`` at ``new_minute``: they must share one definition."""
        definitions = {t.definition for t in sources}
        if len(definitions) > 1:
            listed = ", ".join(str(t.key) for t in sources)
            raise Conflict(
                f"{len(sources)} entries with different definitions ({listed}) would all land on minute "
                f"{new_minute}; reschedule them one at a time with POST /reschedule/<task_name>@<trigger_at>"
            )
        new_key = TaskKey(sources[0].key.name, new_minute)
        if any(t.key == new_key for t in sources):
            raise InvalidRequest(f"trigger_at {new_minute} is the minute of the entry being rescheduled")
        check_can_run(new_minute, sources[0].definition.max_delay, now)
        return Task.new(new_key, sources[0].definition, now, rescheduled_from=str(sources[0].key))

    @staticmethod
    def _not_reschedulable(task: Task, everything: bool) -> str:
        if everything:
            return f"entry {task.key} is {task.state}; only finished entries can be rescheduled"
        return (
            f"entry {task.key} is {task.state}; only failed or skipped entries are rescheduled "
            f"(add all=true for any finished entry)"
        )

    def _every_entry(self, name: TaskName) -> list[Task]:
        now = self.clock.now()
        entries: list[Task] = []
        lowest = None
        while True:
            page = self.repository.entries_of(name, lowest, now, self.limits.max_page_size)
            entries.extend(page.tasks)
            resume = page.resume()
            if resume is None:
                break
            lowest = resume.trigger_at + MINUTE
        if not entries:
            raise TaskNotFound(f"no task named {name!r}")
        return entries

    def _name_exists(self, name: str, now: float) -> bool:
        page = self.repository.entries_of(name, None, now, 1)
        return bool(page.tasks or page.more)  # more: its first entries read were hidden, others remain

    def _expired(self, task: Task) -> bool:
        return task.expires_at is not None and task.expires_at <= self.clock.now()


class _Rescheduling:
    """The rounds of one reschedule. Each reads the sources afresh, keeps only those first read
    (later rounds narrow them, never widen), and writes the successor with the marks, or once the
    successor exists, the marks still missing, at most MAX_TRANSACTION_WRITES a transaction."""

    def __init__(self, service: TaskService, sources: Callable[[], list[Task]], new_minute: int, now: float) -> None:
        self.service = service
        self.sources = sources
        self.new_minute = new_minute
        self.now = now
        self.successor: Task | None = None  # once written
        self.wanted: set[TaskKey] | None = None  # the sources as first read

    def round(self, _: Task | None) -> list[Task]:
        """One round; TransactionRefused when it lost to a concurrent write (the next round reads
        again), Conflict when the successor's key is held by an unrelated entry."""
        sources = self.sources()
        if self.wanted is not None:
            sources = [t for t in sources if t.key in self.wanted]
        if not sources:
            return self._result()
        self.wanted = {t.key for t in sources}
        fresh: Task | None = None  # the successor, while still to be written
        if self.successor is None:
            fresh = self.service.successor(sources, self.new_minute, self.now)
            to = fresh.key
        else:
            to = self.successor.key
        try:
            for batch in _transactions(sources, with_successor=fresh is not None):
                marked = [(t.rescheduled(to, self.now), t.revision) for t in batch]
                self.service.repository.reschedule(fresh, marked)
                self.successor, fresh = self.successor or fresh, None
        except TransactionRefused as refused:
            if fresh is not None:
                self._check_free(fresh, refused)
            raise
        return self._result()

    def _result(self) -> list[Task]:
        return [self.successor] if self.successor else []

    def _check_free(self, successor: Task, refused: TransactionRefused) -> None:
        """A refused successor key held by an entry that is not the successor of these very
        sources (won by a concurrent request, which the next round finds) is a conflict."""
        taken = refused.current.get(successor.key)
        wanted = {str(key) for key in self.wanted or ()}
        if taken is not None and taken.rescheduled_from not in wanted:
            raise Conflict(f"entry {successor.key} already exists ({taken.state}); choose another trigger_at")


R = TypeVar("R")


def sealed(vault: HeaderVault, name: str, definition: TaskDefinition) -> TaskDefinition:
    """``definition`` as stored for the task (or schedule) ``name``: its header values sealed. A
    deployment without a headers key refuses headers rather than store them in clear."""
    if definition.headers is None:
        return definition
    try:
        return replace(definition, headers=vault.seal(name, definition.headers))
    except SealingError as exc:
        raise InvalidRequest(f"headers cannot be accepted: {exc.message}") from None


def settle(target: object, write: Callable[[Task | None], R], seen: Task | None = None) -> R:
    """Run ``write`` with the entry as last seen (``seen``; None: not read, or gone) until it stops
    losing races. A write refused because the entry changed meanwhile (EntryExists, StaleEntry) runs
    again with the entry as the winner stored it; a refused transaction (TransactionRefused) runs
    again and reads afresh. Rounds are spread by contended(); after RACE_SECONDS the request is told
    to retry (ServiceUnavailable naming ``target``)."""
    for _ in contended():
        try:
            return write(seen)
        except (EntryExists, StaleEntry) as lost:
            seen = lost.current
        except TransactionRefused:
            continue
    raise _too_fast(target)


def contended() -> Iterator[int]:
    """Rounds of a write that may lose races, numbered from 0, until RACE_SECONDS have passed;
    a jittered, growing wait before each round after the first."""
    give_up = time.monotonic() + RACE_SECONDS
    low, cap = _JITTER_SECONDS
    lost = 0
    while True:
        yield lost
        lost += 1
        if time.monotonic() >= give_up:
            return
        time.sleep(random.uniform(0, min(cap, low * 2**lost)))


def _reschedulable(everything: bool) -> tuple[TaskState, ...]:
    return FINISHED if everything else RESCHEDULABLE


def _transactions(sources: list[Task], with_successor: bool) -> Iterator[list[Task]]:
    """The sources in batches that fit one transaction each, the first one leaving room for the
    successor. Beyond the first, each entry is still marked at most once, and only once its successor
    exists."""
    first = MAX_TRANSACTION_WRITES - 1 if with_successor else MAX_TRANSACTION_WRITES
    yield sources[:first]
    for start in range(first, len(sources), MAX_TRANSACTION_WRITES):
        yield sources[start : start + MAX_TRANSACTION_WRITES]


def _too_fast(target: object) -> ServiceUnavailable:
    return ServiceUnavailable(f"{target} is changing too fast; retry the request")
