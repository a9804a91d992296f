"""The ports: what the domain needs from outside it, and how each one refuses.

The service and the dispatch engine reach storage, other dispatcher runs and the callbacks only
through these interfaces. Their adapters: ``callme.dynamodb`` (DynamoDB; the only code in callme that
imports boto3), ``callme.memory`` (in memory, held to the same contract by tests/contract), the HTTP
caller in ``callme.callback``, the Lambda fan-out in ``handlers.fanout``, and the event bus in
``handlers.eventbridge``. Nothing here imports an AWS library.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from .headers import HeaderSet
from .schedule import Chain, Change, Scheduled
from .stats import MinuteStats
from .task import Task, TaskDefinition, TaskKey

MAX_TRANSACTION_WRITES = 100  # writes one ``reschedule`` holds at most (DynamoDB's TransactWriteItems)
READ_BATCH = 100  # keys ``get_many`` reads in one round trip (DynamoDB's BatchGetItem): batch that many
LIST_REQUESTS = 4  # storage requests one page of a listing makes at most (DynamoDB: 1 MB each at most)
LIST_WINDOW_MAX = 10_000  # entries one of them evaluates at most
LIST_SECONDS = 2.0  # no further request once a page has taken this long (a slow store: answer what was found)


class EntryExists(Exception):
    """An insert found its key taken; ``current`` is the entry stored there."""

    def __init__(self, current: Task | None) -> None:
        super().__init__("entry exists")
        self.current = current


class StaleEntry(Exception):
    """The entry changed (or vanished) since it was read: the conditional write did not apply.
    ``current`` is the entry as stored now, None if it is gone."""

    def __init__(self, current: Task | None) -> None:
        super().__init__("entry changed")
        self.current = current


class TransactionRefused(Exception):
    """A transaction did not apply. ``current`` holds, for each write whose condition failed, the
    entry as stored (None if there is none); it is empty when the transaction lost to a concurrent one."""

    def __init__(self, current: dict[TaskKey, Task | None]) -> None:
        super().__init__("transaction refused")
        self.current = current


@dataclass(frozen=True)
class Page:
    """Entries of a listing, and whether more remain after them.

    A page whose reads ran out (``list_windows``) before it was full ends early, possibly empty:
    ``after`` is then the last entry it read, listed or not, and the listing resumes after it.
    """

    tasks: list[Task]
    more: bool
    after: TaskKey | None = None

    def resume(self) -> TaskKey | None:
        """Where the next page starts (after this key), None when nothing remains."""
        if not self.more:
            return None
        return self.after or self.tasks[-1].key


def list_windows(limit: int) -> Iterator[int]:
    """How many entries each storage request of one listing page evaluates at most, hidden ones
    (expired, or outside the filter) included: the page's size and one more first (one request
    when nothing is hidden), then four times as many each time, LIST_REQUESTS requests in all. So a
    page costs a bounded number of requests and read units however many hidden entries the table
    holds; one that runs out of them (or of LIST_SECONDS) answers what it found and where it stopped
    (Page.after)."""
    window = limit + 1
    for _ in range(LIST_REQUESTS):
        yield window
        window = min(window * 4, LIST_WINDOW_MAX)


# Whether the next entry still fits in the page (an answer's room in bytes); False ends the page there.
Fits = Callable[[Task], bool]


def check_storable(task: Task) -> None:
    """ValueError unless ``task`` may be stored: its header values sealed (callme.sealing), since no
    storage keeps them in clear."""
    check_sealed(task.definition, task.key)


def check_sealed(definition: TaskDefinition, owner: object) -> None:
    """ValueError unless the header values of ``definition`` (an entry's or a schedule's, named by
    ``owner``) are sealed or absent."""
    if isinstance(definition.headers, HeaderSet):
        raise ValueError(f"the headers of {owner} are not sealed; callme never stores their values in clear")


MOST_SHARDS = 1000  # DueShards' most: a due slot's number holds its shard and its slice (due_slot)


def due_slot(shard: int, part: int) -> int:
    """The number of slice ``part`` of ``shard``: the ``due`` index partition its entries are listed
    in, and the lease a run holds to call them. Slice 0 is the shard's own number, so entries and
    leases written before a shard had slices are its slice 0's."""
    return part * MOST_SHARDS + shard


def shard_of_slot(slot: int) -> int:
    return slot % MOST_SHARDS


def slice_of_slot(slot: int) -> int:
    return slot // MOST_SHARDS


def shard_of(key: TaskKey, shards: int) -> int:
    """The ``due`` shard a new entry is listed in: its key's CRC-32 modulo the shard count."""
    return zlib.crc32(str(key).encode()) % shards


def slot_of(key: TaskKey, shards: int, slices: int = 1) -> int:
    """The ``due`` slot a new entry is listed in: its shard (``shard_of``), and a slice drawn from
    the rest of the same hash, so that the slices of every shard are equally used (the hash modulo
    the slice count would tie a slice to a shard when the two counts share a factor)."""
    crc = zlib.crc32(str(key).encode())
    return due_slot(crc % shards, crc // shards % slices)


def listed_slot(task: Task, shards: int, slices: int = 1) -> int | None:
    """The ``due`` slot ``task`` is to be stored under: None once done (out of the index); the one
    it was stored under before, whatever the shard and slice counts are now; else ``slot_of``. An
    entry with work left (Task.in_due_index: active, owing its failure hook a call, or a skipped run
    of a schedule not yet settled) is listed."""
    if not task.in_due_index:
        return None
    return task.due_slot if task.due_slot is not None else slot_of(task.key, shards, slices)


@dataclass(frozen=True)
class RunShare:
    """What one dispatcher run is given: a shard and some of its slices (the leases it takes)."""

    shard: int
    slices: tuple[int, ...]

    @property
    def slots(self) -> list[int]:
        return [due_slot(self.shard, part) for part in self.slices]


class TaskRepository(Protocol):
    """The entries, as the service and the dispatch engine need them.

    Every write is conditional and says so when it did not apply; storage that cannot answer raises
    ServiceUnavailable (callme.errors). An entry whose ``expires_at`` has passed is not listed.
    """

    # New entries are spread over this many shards, and each shard's over this many slices (due
    # slots: ``slot_of``); an entry stays in the slot it was first put in.
    shards: int
    slices: int

    def insert(self, task: Task) -> None:
        """Store a new entry; EntryExists if its key is taken."""
        ...

    def save(self, task: Task, expected_revision: str) -> None:
        """Overwrite the entry as read at ``expected_revision``; StaleEntry if it changed or vanished."""
        ...

    def reschedule(self, successor: Task | None, marked: list[tuple[Task, str]]) -> None:
        """All or nothing: insert ``successor`` (when given) and overwrite each marked source, given
        with the revision it was read at, on condition that it is unchanged and has no
        ``rescheduled_to`` yet. At most MAX_TRANSACTION_WRITES writes; TransactionRefused otherwise."""
        ...

    def get(self, key: TaskKey) -> Task | None:
        """The entry as stored (a strongly consistent read), None if there is none."""
        ...

    def get_many(self, keys: list[TaskKey]) -> list[Task]:
        """Strongly consistent reads of many entries; missing ones are left out."""
        ...

    def entries_of(
        self, name: str, lowest: int | None, now: float, limit: int, fits: Fits | None = None, active_only: bool = False
    ) -> Page:
        """One task's entries in trigger order from ``lowest`` on (only active ones with
        ``active_only``): at most ``limit``, no more than ``fits`` takes, and no more than the
        reads of ``list_windows`` find."""
        ...

    def all_entries(
        self, after: TaskKey | None, lowest: int | None, now: float, limit: int, fits: Fits | None = None
    ) -> Page:
        """Every entry of every task, in a stable order, resuming after ``after``; only those from
        trigger minute ``lowest`` on when given. Bounded as ``entries_of``."""
        ...

    def has_due(self, slot: int, up_to: int) -> bool:
        """Whether due slot ``slot`` lists an entry with work left due by minute ``up_to`` (may lag
        behind writes)."""
        ...

    def count_due(self, slot: int, up_to: int, most: int) -> int:
        """How many entries ``slot`` lists due by minute ``up_to``, counting no further than
        ``most`` (a read bounded by it; may lag behind writes)."""
        ...

    def due(self, slot: int, up_to: int) -> Iterator[Task]:
        """Every entry of due slot ``slot`` with work left (a call to make, or a failure hook owed:
        Task.in_due_index) due by minute ``up_to`` (an index that may lag behind writes: read each
        again before acting on it)."""
        ...


class StaleSchedule(Exception):
    """A schedule's change did not apply: its chain, or an entry it writes, is not as it was read."""


class StaleChain(Exception):
    """The chain changed (or vanished) since it was read; ``current`` is the chain as stored now."""

    def __init__(self, current: Chain | None) -> None:
        super().__init__("chain changed")
        self.current = current


@dataclass(frozen=True)
class SchedulePage:
    """Schedules of a listing, and whether more remain after them."""

    schedules: list[Scheduled]
    more: bool


class ScheduleRepository(Protocol):
    """The recurring schedules (callme.schedule), as the API and the dispatcher need them: each a
    schedule and its chain, read together; their runs are entries of the TaskRepository it writes with."""

    def get(self, name: str) -> Scheduled | None:
        """The schedule and its chain as stored (strongly consistent, never one without the other
        nor from two different changes), None if there is none."""
        ...

    def page(self, after: str | None, limit: int, fits: Callable[[Scheduled], bool] | None = None) -> SchedulePage:
        """Schedules in a stable order, resuming after the schedule ``after``: at most ``limit``, and
        no more than ``fits`` takes."""
        ...

    def apply(self, change: Change) -> None:
        """All or nothing: the schedule and its chain written (or deleted, both None) and each entry
        of ``change.runs`` written on its condition, provided the stored chain has
        ``change.chain_revision`` (None: that there is none). StaleSchedule otherwise."""
        ...

    def move(self, chain: Chain, expected_revision: str) -> None:
        """Overwrite the chain as read at ``expected_revision`` (one small write); StaleChain holding
        the chain as stored if it changed or vanished."""
        ...


@dataclass(frozen=True)
class Lease:
    """A dispatcher run's hold on a due slot (a shard's slice: ``due_slot``), until ``until``."""

    shard: int  # the slot
    owner: str
    until: float


class LeaseStore(Protocol):
    """The due slots' leases: one run at a time works on a slot (a shard's slice; with one slice
    a slot is its shard)."""

    def acquire(self, shard: int, owner: str, now: float, until: float) -> Lease | None:
        """Take the shard if it is free or its holder's lease ran out by ``now``; None if held."""
        ...

    def renew(self, shard: int, owner: str, until: float) -> bool:
        """Extend ``owner``'s lease to ``until``; False if it is not theirs any more."""
        ...

    def release(self, shard: int, owner: str, now: float) -> None:
        """Free the shard, if ``owner`` still holds it."""
        ...

    def widest(self, shards: int) -> int:
        """Note that entries are being spread over ``shards`` shards; the most shards they were ever
        spread over (at least ``shards``): every shard below it may hold entries."""
        ...

    def widest_slices(self, slices: int) -> int:
        """As ``widest``, for the slices each shard's entries are spread over: every slice below
        the most ever used may hold entries."""
        ...


class StatsStore(Protocol):
    """The dispatcher's per-minute stats (callme.stats): one item per run and minute, kept until
    ``expires_at`` (then deleted by storage, in its own time)."""

    def add(self, run: str, stats: MinuteStats, expires_at: int) -> None:
        """Store ``run``'s tally of one minute; storing the same run's minute again replaces it."""
        ...

    def between(self, first: int, last: int) -> list[MinuteStats]:
        """Every tally stored for the minutes ``first`` to ``last`` (both included), unmerged (one
        per run that worked in a minute), oldest minute first."""
        ...


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
    """Makes an entry's call, and its failure hook's."""

    def call(self, task: Task) -> CallResult: ...

    def call_on_failure(self, task: Task) -> CallResult:
        """One call of the failure hook the entry owes (callme.hooks)."""
        ...


class Fanout(Protocol):
    """Hands the busy shards' shares to dispatcher runs of their own (in AWS: one asynchronous
    invocation each)."""

    def hand_over(self, shares: list[RunShare]) -> None: ...


# What one PutEvents takes (EventBridge): at most 10 entries, whose sizes add up to less than 256 KB.
EVENTS_PER_PUT = 10
PUT_BYTES = 256 * 1024
_TIME_BYTES = 14  # an entry's Time, as EventBridge counts it


@dataclass(frozen=True)
class BusEvent:
    """One event for the event bus: its source, detail-type and detail (JSON text), and when it
    happened (Unix seconds); ``entry`` names the entry it tells of, for logs."""

    entry: str
    source: str
    detail_type: str
    detail: str
    time: float

    @property
    def size(self) -> int:
        """Bytes the entry counts for in PutEvents' limits: its Time, and its Source, DetailType and
        Detail in UTF-8 (EventBridge, "Calculating PutEvents event entry size")."""
        return _TIME_BYTES + sum(len(text.encode("utf-8")) for text in (self.source, self.detail_type, self.detail))


class EventBus(Protocol):
    """Where outcome events go: EventBridge's default bus in AWS, the log otherwise."""

    def put(self, events: list[BusEvent]) -> list[str | None]:
        """Publish one batch (at most EVENTS_PER_PUT events, less than PUT_BYTES in all). For each
        event, in order: None when the bus took it, else why not (it may be sent again). Never
        raises for the bus's own failures: they are each event's error."""
        ...
