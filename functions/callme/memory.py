"""The ports (callme.ports) in memory: for fast tests of the service and the dispatch engine.

They keep the contract the DynamoDB adapters keep (tests/integration/test_storage_contract.py holds
both to it): conditional writes that say what they found, all-or-nothing reschedules, listings in
trigger order that end where ``fits`` says, a ``due`` listing of the entries with work left only, and leases
taken only when free or run out. One lock makes each call atomic, as DynamoDB applies each request.
The ``due`` listing here never lags; tests that need a lagging index wrap it. The event bus keeps
what it takes and refuses as told.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

from .ports import (
    EVENTS_PER_PUT,
    MAX_TRANSACTION_WRITES,
    PUT_BYTES,
    BusEvent,
    EntryExists,
    Fits,
    Lease,
    Page,
    SchedulePage,
    StaleChain,
    StaleEntry,
    StaleSchedule,
    TransactionRefused,
    check_sealed,
    check_storable,
    list_windows,
    listed_slot,
)
from .schedule import Chain, Change, Scheduled
from .stats import MinuteStats
from .task import Task, TaskKey


class InMemoryTaskRepository:
    """The entries in a dictionary (callme.ports.TaskRepository). ``shards`` and ``slices`` may be
    changed between calls, as a redeployed stack changes them."""

    def __init__(self, shards: int, slices: int = 1) -> None:
        self.shards = shards
        self.slices = slices
        self._entries: dict[TaskKey, Task] = {}
        self._lock = threading.Lock()

    def insert(self, task: Task) -> None:
        check_storable(task)
        with self._lock:
            current = self._entries.get(task.key)
            if current is not None:
                raise EntryExists(current)
            self._entries[task.key] = self._listed(task)

    def save(self, task: Task, expected_revision: str) -> None:
        check_storable(task)
        with self._lock:
            current = self._entries.get(task.key)
            if current is None or current.revision != expected_revision:
                raise StaleEntry(current)
            self._entries[task.key] = self._listed(task)

    def reschedule(self, successor: Task | None, marked: list[tuple[Task, str]]) -> None:
        if len(marked) + (successor is not None) > MAX_TRANSACTION_WRITES:
            raise ValueError(f"a reschedule writes at most {MAX_TRANSACTION_WRITES} entries")
        with self._lock:
            refused: dict[TaskKey, Task | None] = {}
            if successor is not None and successor.key in self._entries:
                refused[successor.key] = self._entries[successor.key]
            for task, expected in marked:
                current = self._entries.get(task.key)
                if current is None or current.revision != expected or current.rescheduled_to is not None:
                    refused[task.key] = current
            if refused:
                raise TransactionRefused(refused)
            for task in ([successor] if successor else []) + [task for task, _ in marked]:
                check_storable(task)
                self._entries[task.key] = self._listed(task)

    def _listed(self, task: Task) -> Task:
        """``task`` as stored: with the slot it is listed under, as the DynamoDB adapter reads it back."""
        return replace(task, due_slot=listed_slot(task, self.shards, self.slices))

    def get(self, key: TaskKey) -> Task | None:
        with self._lock:
            return self._entries.get(key)

    def get_many(self, keys: list[TaskKey]) -> list[Task]:
        with self._lock:
            return [self._entries[key] for key in dict.fromkeys(keys) if key in self._entries]

    def entries_of(
        self, name: str, lowest: int | None, now: float, limit: int, fits: Fits | None = None, active_only: bool = False
    ) -> Page:
        with self._lock:
            found = sorted(
                (
                    task
                    for key, task in self._entries.items()
                    if key.name == name and (lowest is None or key.trigger_at >= lowest)
                ),
                key=_by_key,
            )
        return _page(found, lambda task: _live(task, now) and (task.state.active or not active_only), limit, fits)

    def all_entries(
        self, after: TaskKey | None, lowest: int | None, now: float, limit: int, fits: Fits | None = None
    ) -> Page:
        with self._lock:
            found = sorted((task for key, task in self._entries.items() if after is None or key > after), key=_by_key)
        return _page(
            found, lambda task: _live(task, now) and (lowest is None or task.key.trigger_at >= lowest), limit, fits
        )

    def has_due(self, slot: int, up_to: int) -> bool:
        return any(True for _ in self.due(slot, up_to))

    def count_due(self, slot: int, up_to: int, most: int) -> int:
        return min(most, sum(1 for _ in self.due(slot, up_to)))

    def due(self, slot: int, up_to: int) -> Iterator[Task]:
        with self._lock:
            found = [
                task
                for key, task in self._entries.items()
                if task.in_due_index and key.trigger_at <= up_to and task.due_slot == slot
            ]
        return iter(sorted(found, key=lambda task: (task.key.trigger_at, task.key.name)))


def _by_key(task: Task) -> TaskKey:
    return task.key


def _live(task: Task, now: float) -> bool:
    """Whether the entry is not expired at ``now``, in whole seconds as the DynamoDB adapter compares
    (DynamoDB's TTL deletes an expired entry some time later; until then it is hidden)."""
    return task.expires_at is None or task.expires_at > int(now)


def _page(candidates: list[Task], shown: Callable[[Task], bool], limit: int, fits: Fits | None) -> Page:
    """A page read as the DynamoDB adapter reads it: ``list_windows`` entries at a time, hidden
    ones included, answering where it stopped when the reads run out."""
    found: list[Task] = []
    read = 0
    for window in list_windows(limit):
        for task in candidates[read : read + window]:
            if not shown(task):
                continue
            if len(found) == limit or (fits is not None and not fits(task)):
                return Page(found, True)
            found.append(task)
        read += window
        if read >= len(candidates):
            return Page(found, False)
    return Page(found, True, after=candidates[read - 1].key)


class InMemoryScheduleRepository:
    """The schedules in a dictionary (callme.ports.ScheduleRepository); their runs in ``tasks``, whose
    lock makes a change and the entries it writes one atomic step."""

    def __init__(self, tasks: InMemoryTaskRepository) -> None:
        self._tasks = tasks
        self._schedules: dict[str, Scheduled] = {}

    def get(self, name: str) -> Scheduled | None:
        with self._tasks._lock:
            return self._schedules.get(name)

    def page(self, after: str | None, limit: int, fits: Callable[[Scheduled], bool] | None = None) -> SchedulePage:
        with self._tasks._lock:
            found = [self._schedules[name] for name in sorted(self._schedules) if after is None or name > after]
        page: list[Scheduled] = []
        for scheduled in found:
            if len(page) == limit or (fits is not None and not fits(scheduled)):
                return SchedulePage(page, True)
            page.append(scheduled)
        return SchedulePage(page, False)

    def apply(self, change: Change) -> None:
        if change.schedule is not None:
            check_sealed(change.schedule.definition, f"schedule {change.name!r}")
        entries = self._tasks._entries
        with self._tasks._lock:
            stored = self._schedules.get(change.name)
            # (revision found, revision expected, revision this change writes) of each conditional write
            checks = [
                (stored.chain.revision if stored else None, change.chain_revision, _revision(change.chain)),
                *((_revision(entries.get(task.key)), expected, task.revision) for task, expected in change.runs),
            ]
            refused = [(found, written) for found, expected, written in checks if found != expected]
            if refused:
                if all(found == written for found, written in refused):
                    return  # this very change, stored already: as the DynamoDB adapter reads its own retry
                raise StaleSchedule()
            if change.schedule is None or change.chain is None:
                del self._schedules[change.name]
            else:
                self._schedules[change.name] = Scheduled(change.schedule, change.chain)
            for task, _ in change.runs:
                entries[task.key] = self._tasks._listed(task)

    def move(self, chain: Chain, expected_revision: str) -> None:
        with self._tasks._lock:
            stored = self._schedules.get(chain.name)
            if stored is not None and stored.chain.revision == chain.revision:
                return  # this very move, stored already: as the DynamoDB adapter reads its own retried write
            if stored is None or stored.chain.revision != expected_revision:
                raise StaleChain(stored.chain if stored else None)
            self._schedules[chain.name] = Scheduled(stored.schedule, chain)


def _revision(item: Task | Chain | None) -> str | None:
    return None if item is None else item.revision


class InMemoryLeaseStore:
    """The due slots' leases in a dictionary (callme.ports.LeaseStore)."""

    def __init__(self) -> None:
        self._leases: dict[int, Lease] = {}
        self._widest = 0
        self._widest_slices = 0
        self._lock = threading.Lock()

    def acquire(self, shard: int, owner: str, now: float, until: float) -> Lease | None:
        with self._lock:
            held = self._leases.get(shard)
            if held is None or held.until < now:
                self._leases[shard] = Lease(shard, owner, until)
                return self._leases[shard]
            # Held: by this very owner only when the DynamoDB adapter reads its own write, retried.
            return Lease(shard, owner, until) if held.owner == owner else None

    def renew(self, shard: int, owner: str, until: float) -> bool:
        with self._lock:
            held = self._leases.get(shard)
            if held is None or held.owner != owner:
                return False
            self._leases[shard] = Lease(shard, owner, until)
            return True

    def release(self, shard: int, owner: str, now: float) -> None:
        with self._lock:
            held = self._leases.get(shard)
            if held is not None and held.owner == owner:
                del self._leases[shard]

    def widest(self, shards: int) -> int:
        with self._lock:
            self._widest = max(self._widest, shards)
            return self._widest

    def widest_slices(self, slices: int) -> int:
        with self._lock:
            self._widest_slices = max(self._widest_slices, slices)
            return self._widest_slices


class InMemoryStatsStore:
    """The per-minute stats in a dictionary (callme.ports.StatsStore), keyed by minute and run."""

    def __init__(self) -> None:
        self._items: dict[tuple[int, str], tuple[MinuteStats, int]] = {}
        self._lock = threading.Lock()

    def add(self, run: str, stats: MinuteStats, expires_at: int) -> None:
        with self._lock:
            self._items[(stats.minute, run)] = (copy.deepcopy(stats), expires_at)

    def between(self, first: int, last: int) -> list[MinuteStats]:
        with self._lock:
            found = [(key, stats) for key, (stats, _) in self._items.items() if first <= key[0] <= last]
        return [copy.deepcopy(stats) for _, stats in sorted(found, key=lambda item: item[0])]

    def expiry(self, minute: int, run: str) -> int | None:
        """When the item of ``run``'s ``minute`` expires (for tests), None if there is none."""
        with self._lock:
            item = self._items.get((minute, run))
        return item[1] if item else None


class InMemoryEventBus:
    """An event bus that keeps what it takes (callme.ports.EventBus). It refuses batches PutEvents
    would refuse, and refuses events as told: ``refusals`` holds, per call, the error of each event
    to refuse by its place in the batch. ``before_put`` runs before each call (to hold it up)."""

    def __init__(
        self, refusals: list[dict[int, str]] | None = None, before_put: Callable[[], object] | None = None
    ) -> None:
        self.refusals = list(refusals or [])
        self.before_put = before_put
        self.puts: list[list[BusEvent]] = []
        self.events: list[BusEvent] = []
        self._lock = threading.Lock()

    def put(self, events: list[BusEvent]) -> list[str | None]:
        if not 1 <= len(events) <= EVENTS_PER_PUT or sum(e.size for e in events) >= PUT_BYTES:
            raise ValueError(f"PutEvents refuses {len(events)} events of {sum(e.size for e in events)} bytes")
        if self.before_put is not None:
            self.before_put()
        with self._lock:
            refused = self.refusals.pop(0) if self.refusals else {}
            self.puts.append(list(events))
            self.events.extend(e for i, e in enumerate(events) if i not in refused)
        return [refused.get(i) for i in range(len(events))]
