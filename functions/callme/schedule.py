"""Recurring schedules: what a schedule is, where its runs stand, and the rules that move them on.

A schedule is stored as two items. The *schedule* (``Schedule``) is what the client defined: how to
call (a ``TaskDefinition``), when (a ``Recurrence``), and whether it is paused; only the API writes
it. The *chain* (``Chain``) says where the runs stand: ``next_run``, the minute of the one pending run
(an ordinary entry ``name@minute`` carrying ``schedule``), and ``last_run``, the run taken before it.
The chain is small (under 1 KB), so that moving it on costs one write unit: a run costs the two
writes of any entry (made, then its outcome), plus that one.

The rule that keeps exactly one pending run (DESIGN.md, "Recurring schedules"):

- The API changes a schedule in one transaction: schedule, chain and the entries concerned (the
  pending run replaced, or cancelled and another made; ``plan_change``), on condition that the chain
  is as read. Of concurrent changes one applies, and the others are planned again on top of it.
- The dispatcher, when it takes a run whose minute has come (``plan_turn``), first moves the chain on
  (a conditional write: of duplicated or overlapping runs, one moves it), then makes the next run (an
  insert at a key fixed by the chain, so making it twice is making it once), and only then calls.
- Whoever moves the chain off a pending run's minute writes that run in the same step: the API cancels
  it (or, when the dispatcher had named it without making it yet, writes it cancelled: that dispatcher's
  insert then finds the key taken), the dispatcher is calling it.
- A run stays in the ``due`` index until it is recorded or, cancelled by a client, until the dispatcher
  has moved its schedule on past it (``Task.unsettled``). So a crash anywhere between moving the chain and
  making the next run, a lost write, or a skipped run leaves an entry in ``due``, and the next minute's
  dispatcher, reading ``due`` as it does anyway, finds it and completes the step (``plan_turn`` on a
  run the chain has already moved past makes sure the run it names exists). The ``due`` index is the
  sweep: no scan, and no write, of schedules whose runs are in order.

After an outage, only the most recent missed run is called (if within ``max_delay``), made and called
at once by the dispatcher that finds the outage; the others are recorded ``skipped``, the most
recent ``MISSED_RUNS_LISTED`` of them (callme.recurrence).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .clock import MINUTE, minute_of
from .errors import Conflict, InvalidRequest
from .recurrence import Recurrence
from .task import Task, TaskDefinition, TaskKey, TaskState, new_revision

NEXT_RUNS_SHOWN = 5
# Runs looked at for a free minute when the next ones are taken by other entries of the task.
PLACEMENT_TRIES = 10


@dataclass(frozen=True)
class Schedule:
    """What a client defined in ``PUT /schedule/<name>``: how to call, when, and whether paused."""

    name: str
    definition: TaskDefinition
    recurrence: Recurrence
    paused: bool
    created_at: float
    updated_at: float
    revision: str = field(default_factory=new_revision)


@dataclass(frozen=True)
class Chain:
    """Where a schedule's runs stand.

    ``next_run``: the minute of its pending run, None while paused or once ended. ``last_run``: the
    run taken before it (its minute came and the chain moved on; it is being called, or was). Every
    write gives a new ``revision`` (writes are conditional on it); ``schedule_revision`` is the
    revision of the schedule it was written with, so that a read finding them apart (two items read
    while a change was being applied) is known to be torn.
    """

    name: str
    next_run: int | None
    schedule_revision: str
    last_run: int | None = None
    revision: str = field(default_factory=new_revision)

    def moved(self, next_run: int | None, last_run: int | None) -> Chain:
        return replace(self, next_run=next_run, last_run=last_run, revision=new_revision())


@dataclass(frozen=True)
class Scheduled:
    """A schedule with its chain, as stored."""

    schedule: Schedule
    chain: Chain

    @property
    def name(self) -> str:
        return self.schedule.name

    def next_runs(self, count: int = NEXT_RUNS_SHOWN) -> list[int]:
        """Its next ``count`` trigger minutes: the pending run and those after it (none while paused)."""
        first = self.chain.next_run
        if first is None or count <= 0:
            return []
        return [first, *self.schedule.recurrence.next_runs(first, count - 1)]


@dataclass(frozen=True)
class ScheduleRequest:
    """``PUT /schedule/<name>``: the definition, the timing (``start_at`` None: the stored one, else the
    current minute) and whether paused, as judged when received."""

    name: str
    definition: TaskDefinition
    cron: str | None
    every: str | None
    timezone: str | None
    start_at: int | None
    end_at: int | None
    paused: bool
    received_at: float

    def recurrence(self, anchor: int) -> Recurrence:
        """The timing, with ``start_at`` defaulting to ``anchor``."""
        return Recurrence.parse(
            cron=self.cron,
            every=self.every,
            timezone=self.timezone,
            start_at=self.start_at,
            end_at=self.end_at,
            created_at=anchor,
        )


# An entry to write with the schedule: as it is to be stored, and the revision it must have now
# (None: the key must be free).
RunWrite = tuple[Task, str | None]
# The entry stored at a run's minute, None if there is none.
Stored = Callable[[int], Task | None]


@dataclass(frozen=True)
class Change:
    """What one API request writes, all or nothing: the schedule and its chain (both None: deleted),
    and the entries concerned, on condition that the stored chain has ``chain_revision`` (None: that
    there is none)."""

    name: str
    schedule: Schedule | None
    chain: Chain | None
    runs: tuple[RunWrite, ...]
    chain_revision: str | None


def free(entry: Task | None) -> bool:
    """Whether a run may be made at an entry's key: no entry there, or a cancelled one (replaced)."""
    return entry is None or entry.state is TaskState.CANCELLED


def new_run(name: str, minute: int, definition: TaskDefinition, now: float) -> Task:
    return Task.new(TaskKey(name, minute), definition, now, schedule=name)


def plan_change(
    current: Scheduled | None, request: ScheduleRequest, stored: Stored, retention_seconds: int
) -> Change | None:
    """The writes of ``PUT /schedule/<name>`` on ``current`` (None: a new schedule); None when the
    request changes nothing. ``stored`` reads the entry at a run's minute.

    A new definition applies from the next run that has not started: the pending run is replaced if
    its minute has not begun (cancelled, and another made, when the timing moves it); a run whose
    minute has begun is left to the dispatcher, and the runs after it follow the new definition.
    Pausing cancels the pending run; un-pausing resumes at the first run after now. A pending run a
    client cancelled (a skipped run) stays skipped. InvalidRequest if the schedule has no run after
    now; Conflict if other entries of the task hold the minutes of its next runs.
    """
    now = request.received_at
    upcoming = minute_of(now) + MINUTE  # the first minute a run made now can be dispatched in
    anchor = current.schedule.recurrence.start_at if current else minute_of(now)
    schedule = Schedule(
        name=request.name,
        definition=request.definition,
        recurrence=request.recurrence(anchor),
        paused=request.paused,
        created_at=current.schedule.created_at if current else now,
        updated_at=now,
    )
    if schedule.recurrence.run_at_or_after(upcoming) is None:
        raise InvalidRequest(f"the schedule has no run after now (end_at {schedule.recurrence.end_at})")
    if current is not None and _same(current.schedule, schedule):
        return None
    writes: list[RunWrite] = []
    last_run = current.chain.last_run if current else None
    skipped = None
    if current is not None and current.chain.next_run is not None:
        pending = current.chain.next_run
        entry = stored(pending)
        if pending < upcoming and not schedule.paused:
            # Its minute has begun: the dispatcher takes it as it is. Make sure it exists (a dispatcher
            # that named it may have stopped before making it); the runs after it follow the change.
            last_run = pending
            if entry is None:
                writes.append((new_run(request.name, pending, current.schedule.definition, now), None))
        else:
            writes += _withdrawn(current, pending, entry, now, retention_seconds)
            if entry is not None and entry.state is TaskState.CANCELLED:
                skipped = pending  # a client skipped it: it stays skipped
    next_run = None
    if not schedule.paused:
        next_run = _first_free_run(schedule, upcoming, stored, skipped, writes)
        if next_run is not None:
            writes = _made(writes, new_run(request.name, next_run, schedule.definition, now), stored(next_run))
    chain = Chain(request.name, next_run, schedule.revision, last_run)
    return Change(request.name, schedule, chain, tuple(writes), current.chain.revision if current else None)


def plan_removal(current: Scheduled, stored: Stored, now: float, retention_seconds: int) -> Change:
    """The writes of ``DELETE /schedule/<name>``: the schedule and its chain go and its pending run is
    cancelled; a run whose minute has begun and was taken goes on, and past runs stay as they are."""
    writes: list[RunWrite] = []
    pending = current.chain.next_run
    if pending is not None:
        writes += _withdrawn(current, pending, stored(pending), now, retention_seconds)
    return Change(current.name, None, None, tuple(writes), current.chain.revision)


def _withdrawn(current: Scheduled, minute: int, entry: Task | None, now: float, retention: int) -> list[RunWrite]:
    """The pending run at ``minute``, which the chain stops naming, cancelled for good (settled). If it
    was never made (a dispatcher named it and has not made it yet), it is written cancelled, so that
    the dispatcher's insert finds the key taken."""
    if entry is None:
        tombstone = new_run(current.name, minute, current.schedule.definition, now).cancelled(now, retention)
        return [(tombstone.settle(now), None)]
    if entry.state.active:
        return [(entry.cancelled(now, retention).settle(now), entry.revision)]
    if entry.unsettled:  # cancelled by a client: settled now, since the chain no longer names it
        return [(entry.settle(now), entry.revision)]
    return []


def _first_free_run(
    schedule: Schedule, upcoming: int, stored: Stored, skipped: int | None, writes: list[RunWrite]
) -> int | None:
    """The first run at or after ``upcoming`` whose minute is free (no entry, or a cancelled one, or
    one written by this change), other than a skipped run; None once the schedule has ended."""
    recurrence = schedule.recurrence
    written = {task.key.trigger_at for task, _ in writes}
    minute = recurrence.run_at_or_after(upcoming)
    for _ in range(PLACEMENT_TRIES):
        if minute is None:
            return None
        if minute != skipped and (minute in written or free(stored(minute))):
            return minute
        minute = recurrence.run_at_or_after(minute + MINUTE)
    raise Conflict(
        f"the next {PLACEMENT_TRIES} runs of schedule {schedule.name!r} fall on minutes that other entries of "
        f"task {schedule.name!r} hold; cancel those entries or give the schedule another name"
    )


def _made(writes: list[RunWrite], run: Task, existing: Task | None) -> list[RunWrite]:
    """``writes`` with ``run`` made at its minute: in place of a write planned there (the pending run,
    replaced), or of a cancelled entry stored there."""
    for index, (planned, expected) in enumerate(writes):
        if planned.key == run.key:
            return [*writes[:index], (run, expected), *writes[index + 1 :]]
    return [*writes, (run, existing.revision if existing is not None else None)]


def _same(stored: Schedule, wanted: Schedule) -> bool:
    return (stored.definition, stored.recurrence, stored.paused) == (
        wanted.definition,
        wanted.recurrence,
        wanted.paused,
    )


@dataclass(frozen=True)
class Turn:
    """What the dispatcher does when it takes a run of a schedule (its first take: a pending run never
    called yet, or a cancelled run not yet settled).

    ``chain``: the chain to write before anything else, on condition that it is as read (None: as it
    is). ``make``: the runs that must then exist as pending entries (made if missing). ``skip``: missed
    runs to record ``skipped``. ``call``: the run to call now: the one taken, or after an outage the
    most recent missed run; None: nothing. The taken run, when it is not the one called, is recorded
    ``skipped`` (if it was pending).
    """

    chain: Chain | None = None
    make: tuple[int, ...] = ()
    skip: tuple[int, ...] = ()
    call: int | None = None


def plan_turn(current: Scheduled | None, run: int, now: float) -> Turn:
    """The dispatcher's step for the run at minute ``run`` of ``current``, taken at ``now``.

    The chain's pending run is taken: the chain moves on to the run after it; after an outage (later
    runs' minutes have come too) the most recent missed run is called if ``max_delay`` allows, the
    others are skipped, and the chain moves on to the first run after now. Any other run is called
    unless a later run of the schedule has been taken or its minute has come (then it is a missed
    run); and the run the chain names is made if it is missing (a dispatcher that moved the chain on
    may have stopped before making it).
    """
    if current is None:
        return Turn(call=run)  # its schedule was deleted after the run began: an ordinary entry now
    chain = current.chain
    recurrence = current.schedule.recurrence
    if run == chain.next_run:
        missed = recurrence.missed_runs(run, int(now), current.schedule.definition.max_delay)
        if missed.call is None and not missed.skip:
            following = recurrence.run_at_or_after(run + MINUTE)
            return Turn(chain.moved(following, run), _runs(following), call=run)
        following = recurrence.run_at_or_after(minute_of(now) + MINUTE)
        latest = missed.call if missed.call is not None else max(missed.skip)
        return Turn(chain.moved(following, latest), _runs(following, missed.call), missed.skip, missed.call)
    later_taken = chain.last_run is not None and run < chain.last_run
    later_come = chain.next_run is not None and run < chain.next_run <= now
    return Turn(make=_runs(chain.next_run), call=None if later_taken or later_come else run)


@dataclass(frozen=True)
class Taken:
    """The dispatcher's step on a run, done: ``call`` is the entry to call now (the run taken, or a
    later missed run just made; None: nothing), and ``aside`` the run taken, as it is to be written
    (over the run as read) when it is not the one called: skipped if pending, settled if cancelled.
    ``skipped``: the other runs an outage missed, recorded skipped by the step."""

    call: Task | None
    aside: Task | None = None
    skipped: tuple[Task, ...] = ()  # the runs an outage missed, recorded skipped


def _runs(*minutes: int | None) -> tuple[int, ...]:
    return tuple(minute for minute in minutes if minute is not None)
