"""The task API's use cases: register, read, cancel and reschedule entries.

Pure domain: it takes parsed input, applies the rules of task.py and talks to storage only
through the repository interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .clock import MINUTE, Clock, minute_of
from .egress import EgressPolicy
from .errors import Conflict, InvalidRequest, ServiceUnavailable, TaskNotFound
from .limits import Limits
from .repository import EntryExists, Page, StaleEntry, TaskRepository
from .task import Task, TaskKey, TaskState, check_name
from .validation import Listing, parse_reschedule_request, parse_task_request

# A conditional write that loses a race is read again and retried this many times.
_RACE_RETRIES = 5
RESCHEDULABLE = (TaskState.FAILED, TaskState.SKIPPED)
FINISHED = tuple(state for state in TaskState if not state.active)


@dataclass(frozen=True)
class Listed:
    tasks: list[Task]
    next: TaskKey | None


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

    def list_entries(self, name: str | None, listing: Listing) -> Listed:
        now = self.clock.now()
        lowest = minute_of(now) if listing.future_only else None
        page: Page
        if name is None:
            page = self.repository.all_entries(listing.start_from, lowest, now, listing.limit)
        else:
            check_name(name)
            if listing.start_from is not None:
                after = listing.start_from.trigger_at + MINUTE
                lowest = after if lowest is None else max(lowest, after)
            page = self.repository.entries_of(name, lowest, now, listing.limit)
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

    def cancel_name(self, name: str) -> list[Task]:
        """Cancel every active entry of ``name``; finished ones are left as they are."""
        cancelled = []
        for task in self._every_entry(name):
            if task.state.active:
                try:
                    cancelled.append(self.cancel_entry(task.key))
                except (Conflict, TaskNotFound):
                    continue  # it finished or vanished meanwhile
        return cancelled

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
