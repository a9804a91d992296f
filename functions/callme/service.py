"""The task API's use cases: register, read, cancel and reschedule entries.

Pure domain: it takes parsed input, applies the rules of task.py and talks to storage only
through the repository interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from . import deadline
from .clock import MINUTE, Clock, minute_of
from .egress import EgressPolicy
from .errors import Conflict, InvalidRequest, ServiceUnavailable, TaskNotFound
from .limits import Limits
from .repository import EntryExists, Page, StaleEntry, TaskRepository
from .task import Task, TaskKey, TaskState, check_name
from .validation import Listing, parse_reschedule_request, parse_task_request
from .views import AnswerFormat, AnswerRoom

# A conditional write that loses a race is read again and retried this many times.
_RACE_RETRIES = 5
# Cancelling a whole task: entries read per page, and conditional writes in flight at once.
_CANCEL_PAGE = 250
_CANCEL_WRITERS = 8
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
    def __init__(self, repository: TaskRepository, clock: Clock, limits: Limits, egress: EgressPolicy) -> None:
        self.repository = repository
        self.clock = clock
        self.limits = limits
        self.egress = egress

    def put_task(self, name: str, body: Mapping[str, Any]) -> tuple[Task, bool]:
        """Register ``name@trigger_at``; re-PUT replaces an entry not yet called.

        Returns the stored entry and whether it was created (as opposed to replaced).
        """
        now = self.clock.now()
        trigger_at, definition = parse_task_request(name, body, now, self.limits, self.egress)
        key = TaskKey(name, trigger_at)
        task = Task.new(key, definition, now)
        for _ in range(_RACE_RETRIES):
            try:
                self.repository.insert(task)
                return task, True
            except EntryExists as exists:
                if exists.existing is None:
                    continue
                replacement = exists.existing.replaced_by(definition, now)
                try:
                    self.repository.save(replacement, exists.existing.revision)
                    return replacement, False
                except StaleEntry:
                    continue
        raise ServiceUnavailable(f"entry {key} is changing too fast; retry the request")

    def get_entry(self, key: TaskKey) -> Task:
        task = self.repository.get(key)
        if task is None or self._expired(task):
            raise TaskNotFound(f"no entry {key}")
        return task

    def list_entries(self, name: str | None, listing: Listing, answer_format: AnswerFormat | None = None) -> Listed:
        """A page of entries: at most ``listing.limit``, and no more than one answer holds."""
        now = self.clock.now()
        lowest = minute_of(now) if listing.future_only else None
        fits = AnswerRoom(answer_format or AnswerFormat()).take
        page: Page
        if name is None:
            page = self.repository.all_entries(listing.start_from, lowest, now, listing.limit, fits)
        else:
            check_name(name)
            if listing.start_from is not None:
                after = listing.start_from.trigger_at + MINUTE
                lowest = after if lowest is None else max(lowest, after)
            page = self.repository.entries_of(name, lowest, now, listing.limit, fits)
            if not page.tasks and listing.start_from is None and not self._name_exists(name, now):
                raise TaskNotFound(f"no task named {name!r}")
        next_key = page.tasks[-1].key if page.more else None
        return Listed(page.tasks, next_key)

    def cancel_entry(self, key: TaskKey) -> Task:
        for _ in range(_RACE_RETRIES):
            task = self.get_entry(key)
            cancelled = task.cancelled(self.clock.now(), self.limits.retention_seconds)
            try:
                self.repository.save(cancelled, task.revision)
                return cancelled
            except StaleEntry:
                continue
        raise ServiceUnavailable(f"entry {key} is changing too fast; retry the request")

    def cancel_name(self, name: str, answer_format: AnswerFormat | None = None) -> Cancellation:
        """Cancel every active entry of ``name``; finished ones are left as they are.

        Active entries are read a page at a time and cancelled with concurrent conditional writes,
        until none is left or the request's time (callme.deadline) or storage runs out. Then the
        result says how many were cancelled and why it stopped: a repeated call cancels the rest.
        """
        check_name(name)
        now = self.clock.now()
        tally = _Tally(AnswerRoom(answer_format or AnswerFormat()), self.limits.default_page_size)
        lowest = None
        with ThreadPoolExecutor(_CANCEL_WRITERS, thread_name_prefix="cancel") as writers:
            while True:
                try:
                    page = self.repository.entries_of(name, lowest, now, _CANCEL_PAGE, active_only=True)
                    if not page.tasks and lowest is None and not self._name_exists(name, now):
                        raise TaskNotFound(f"no task named {name!r}")
                    self._cancel_all(writers, page.tasks, tally)
                except ServiceUnavailable as stop:
                    return Cancellation(tally.count, tally.first, stop.message)
                if not page.more:
                    return Cancellation(tally.count, tally.first, None)
                lowest = page.tasks[-1].key.trigger_at + MINUTE

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
        current: Task | None = task
        for _ in range(_RACE_RETRIES):
            if current is None or not current.state.active:
                return None
            cancelled = current.cancelled(self.clock.now(), self.limits.retention_seconds)
            try:
                self.repository.save(cancelled, current.revision)
                return cancelled
            except StaleEntry as stale:
                current = stale.current
        raise ServiceUnavailable(f"entry {task.key} is changing too fast; retry the request")

    def reschedule(self, target: TaskKey | str, body: Mapping[str, Any], everything: bool) -> list[Task]:
        """New pending entries for failed and skipped entries (all finished ones with ``everything``).

        ``target`` is one entry or a task name. By name, entries already rescheduled are left out,
        and entries with the same definition collapse into one new entry, since they would all land
        on the same minute.
        """
        now = self.clock.now()
        new_minute = parse_reschedule_request(body, now, self.limits)
        if new_minute is None:
            new_minute = minute_of(now) + MINUTE
        states = FINISHED if everything else RESCHEDULABLE
        if isinstance(target, TaskKey):
            source = self.get_entry(target)
            if source.state not in states:
                raise Conflict(self._not_reschedulable(source, everything))
            sources = [source]
        else:
            entries = self._every_entry(target)
            sources = [t for t in entries if t.state in states and t.rescheduled_to is None]
        definitions = {t.definition for t in sources}
        if len(definitions) > 1:
            listed = ", ".join(str(t.key) for t in sources)
            raise Conflict(
                f"{len(sources)} entries with different definitions ({listed}) would all land on minute "
                f"{new_minute}; reschedule them one at a time with POST /reschedule/<task_name>@<trigger_at>"
            )
        if not sources:
            return []
        new_key = TaskKey(sources[0].key.name, new_minute)
        if any(t.key == new_key for t in sources):
            raise InvalidRequest(f"trigger_at {new_minute} is the minute of the entry being rescheduled")
        created = Task.new(new_key, sources[0].definition, now, rescheduled_from=str(sources[0].key))
        try:
            self.repository.insert(created)
        except EntryExists as exists:
            state = exists.existing.state if exists.existing else "being written"
            raise Conflict(f"entry {new_key} already exists ({state}); choose another trigger_at") from None
        for source in sources:
            self._mark_rescheduled(source, new_key, now)
        return [created]

    def _mark_rescheduled(self, source: Task, to: TaskKey, now: float) -> None:
        try:
            self.repository.save(source.rescheduled(to, now), source.revision)
        except StaleEntry:
            pass  # it changed meanwhile; the new entry stands, the note on the old one is best effort

    @staticmethod
    def _not_reschedulable(task: Task, everything: bool) -> str:
        if everything:
            return f"entry {task.key} is {task.state}; only finished entries can be rescheduled"
        return (
            f"entry {task.key} is {task.state}; only failed or skipped entries are rescheduled "
            f"(add all=true for any finished entry)"
        )

    def _every_entry(self, name: str) -> list[Task]:
        check_name(name)
        now = self.clock.now()
        entries: list[Task] = []
        lowest = None
        while True:
            page = self.repository.entries_of(name, lowest, now, self.limits.max_page_size)
            entries.extend(page.tasks)
            if not page.more:
                break
            lowest = page.tasks[-1].key.trigger_at + MINUTE
        if not entries:
            raise TaskNotFound(f"no task named {name!r}")
        return entries

    def _name_exists(self, name: str, now: float) -> bool:
        return bool(self.repository.entries_of(name, None, now, 1).tasks)

    def _expired(self, task: Task) -> bool:
        return task.expires_at is not None and task.expires_at <= self.clock.now()
