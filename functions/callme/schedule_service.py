"""The schedules' use cases: the API's (put, read, list, delete) and the dispatcher's (take a run).

Pure domain: the rules are callme.schedule's; this module reads what they need, and writes what they
decide through the storage ports, again from a fresh read when a concurrent writer got there first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .clock import Clock
from .errors import ScheduleNotFound, ServiceUnavailable
from .ports import EntryExists, ScheduleRepository, StaleChain, StaleEntry, StaleSchedule, TaskRepository
from .schedule import (
    PLACEMENT_TRIES,
    Change,
    Scheduled,
    ScheduleRequest,
    Taken,
    new_run,
    plan_change,
    plan_removal,
    plan_turn,
)
from .sealing import HeaderVault
from .service import contended, sealed
from .settings import Limits
from .task import Task, TaskKey, TaskName, TaskState
from .validation import ScheduleListing
from .views import AnswerFormat, AnswerRoom, schedule_view

# Schedules the sweep reads at a time.
SWEEP_PAGE = 100
# How often the dispatcher reads a schedule again when its chain changed under it (a change through
# the API, or another dispatcher run taking a run of the same schedule at the same moment).
TURN_ROUNDS = 5


@dataclass(frozen=True)
class ListedSchedules:
    schedules: list[Scheduled]
    next: str | None


@dataclass(frozen=True)
class Removal:
    """What ``DELETE /schedule/<name>`` did: the schedule as it was, and the run it cancelled."""

    schedule: Scheduled
    cancelled: TaskKey | None


class _Entries:
    """The entries of one task at given minutes, each read once (strongly consistently)."""

    def __init__(self, tasks: TaskRepository, name: str) -> None:
        self._tasks = tasks
        self._name = name
        self._read: dict[int, Task | None] = {}

    def at(self, minute: int) -> Task | None:
        if minute not in self._read:
            self._read[minute] = self._tasks.get(TaskKey(self._name, minute))
        return self._read[minute]


class ScheduleService:
    def __init__(
        self,
        schedules: ScheduleRepository,
        tasks: TaskRepository,
        clock: Clock,
        limits: Limits,
        vault: HeaderVault | None = None,
    ) -> None:
        self.schedules = schedules
        self.tasks = tasks
        self.clock = clock
        self.limits = limits
        self.vault = vault or HeaderVault(lambda: None)

    # -- the API ------------------------------------------------------------------------------------

    def put_schedule(self, request: ScheduleRequest) -> tuple[Scheduled, bool]:
        """Create or change a schedule; returns it as stored and whether it was created. Of concurrent
        changes one applies at a time, each planned on what the one before left. Header values are
        sealed under the schedule's name, which is its runs' task name, so every run sends them."""
        request = replace(request, definition=sealed(self.vault, request.name, request.definition))
        for _ in contended():
            current = self.schedules.get(request.name)
            change = plan_change(current, request, _Entries(self.tasks, request.name).at, self.limits.retention_seconds)
            if change is None:
                assert current is not None
                return current, False
            try:
                self.schedules.apply(change)
            except StaleSchedule:
                continue
            return _after(change), current is None
        raise ServiceUnavailable(f"schedule {request.name!r} is changing too fast; retry the request")

    def get_schedule(self, name: TaskName) -> Scheduled:
        found = self.schedules.get(name)
        if found is None:
            raise ScheduleNotFound(f"no schedule named {name!r}")
        return found

    def list_schedules(self, listing: ScheduleListing, answer_format: AnswerFormat | None = None) -> ListedSchedules:
        """A page of schedules: at most ``listing.limit``, and no more than one answer holds."""
        room = AnswerRoom(answer_format or AnswerFormat())
        page = self.schedules.page(listing.start_from, listing.limit, lambda s: room.take_view(schedule_view(s)))
        return ListedSchedules(page.schedules, page.schedules[-1].name if page.more else None)

    def delete_schedule(self, name: TaskName) -> Removal:
        """Stop a schedule: it is deleted and its pending run cancelled; its past runs stay."""
        for _ in contended():
            current = self.get_schedule(name)
            now = self.clock.now()
            change = plan_removal(current, _Entries(self.tasks, name).at, now, self.limits.retention_seconds)
            try:
                self.schedules.apply(change)
            except StaleSchedule:
                continue
            pending = current.chain.next_run
            return Removal(current, None if pending is None else TaskKey(name, pending))
        raise ServiceUnavailable(f"schedule {name!r} is changing too fast; retry the request")

    # -- the dispatcher -----------------------------------------------------------------------------

    def take(self, run: Task, now: float) -> Taken:
        """The dispatcher's step before the first call of ``run`` (a run of a schedule, pending and
        never called, or cancelled by a client and not yet settled): move its schedule on, make the
        run it then names, and say which entry to call now: ``run`` itself, a later missed run made
        now (after an outage), or none; ``run``, when not called, is to be recorded skipped (pending)
        or settled (cancelled). ServiceUnavailable if storage failed: ``run`` stays as it is, for a
        later dispatcher run to take again."""
        assert run.schedule is not None
        name, minute = run.schedule, run.key.trigger_at
        for _ in range(TURN_ROUNDS):
            current = self.schedules.get(name)
            turn = plan_turn(current, minute, now)
            if turn.chain is not None:
                assert current is not None
                try:
                    self.schedules.move(turn.chain, current.chain.revision)
                except StaleChain:
                    continue
                current = Scheduled(current.schedule, turn.chain)
            called = None
            recorded: list[Task | None] = []
            if current is not None:
                for made in turn.make:
                    task = self._make(current, made, now)
                    if made == turn.call and made != minute:
                        called = task
                recorded = [self._record_skipped(current, skipped, now) for skipped in turn.skip]
            missed = tuple(task for task in recorded if task is not None)
            if turn.call == minute and run.state is TaskState.PENDING:
                return Taken(run, skipped=missed)
            return Taken(called, self._aside(run, now), missed)
        raise ServiceUnavailable(f"schedule {name!r} kept changing while its run {run.key} was taken")

    def sweep(self, now: float) -> list[TaskKey]:
        """Make every schedule's next run that is missing; returns the runs made. The runs' own step
        keeps one pending next run (a crash between moving a chain and making its run leaves the taken
        run in ``due``, found again): this is the net under it, for a run lost any other way. Reads:
        each schedule, and its next runs in batches; a write only for a run that was missing."""
        made: list[TaskKey] = []
        after: str | None = None
        while True:
            page = self.schedules.page(after, SWEEP_PAGE)
            named = {TaskKey(s.name, s.chain.next_run): s for s in page.schedules if s.chain.next_run is not None}
            present = {task.key for task in self.tasks.get_many(list(named))}
            for key, scheduled in named.items():
                if key not in present and self._make(scheduled, key.trigger_at, now) is not None:
                    made.append(key)
            if not page.more:
                return made
            after = page.schedules[-1].name

    def _make(self, current: Scheduled, minute: int, now: float) -> Task | None:
        """Make sure the run at ``minute`` exists, pending; returns it (None if another entry of the
        task holds the minute). When that minute is the chain's next run and another entry holds it,
        the chain moves on to the run after it."""
        name = current.name
        for _ in range(PLACEMENT_TRIES):
            run = new_run(name, minute, current.schedule.definition, now)
            try:
                self.tasks.insert(run)
                return run
            except EntryExists as exists:
                existing = exists.current
            if existing is not None and existing.schedule == name and existing.state.active:
                return existing  # made already (by another dispatcher run, or the API)
            if existing is not None and existing.state is not TaskState.CANCELLED:
                if minute != current.chain.next_run:
                    return None  # the missed run's minute is another entry's: nothing to call
                following = current.schedule.recurrence.run_at_or_after(minute + 60)
                moved = current.chain.moved(following, current.chain.last_run)
                try:
                    self.schedules.move(moved, current.chain.revision)
                except StaleChain:
                    return None  # changed meanwhile: whoever changed it made its next run
                current = Scheduled(current.schedule, moved)
                if following is None:
                    return None
                minute = following
                continue
            fresh = self.schedules.get(name)
            if fresh is None or minute not in (fresh.chain.next_run, fresh.chain.last_run):
                return None  # the chain moved on: the cancelled run there is its doing
            try:
                if existing is None:
                    self.tasks.insert(run)
                else:
                    self.tasks.save(run, existing.revision)
                return run
            except (EntryExists, StaleEntry):
                continue
        return None

    def _record_skipped(self, current: Scheduled, minute: int, now: float) -> Task | None:
        """Record the missed run at ``minute`` skipped; None if it was already (or the minute is
        another entry's)."""
        skipped = new_run(current.name, minute, current.schedule.definition, now).missed(
            now, self.limits.retention_seconds
        )
        try:
            self.tasks.insert(skipped)
        except EntryExists:
            return None  # recorded already, or another entry's minute
        return skipped

    def _aside(self, run: Task, now: float) -> Task | None:
        """A run that is not called, as it is to be recorded: skipped if pending, settled if cancelled."""
        if run.state is TaskState.PENDING:
            return run.missed(now, self.limits.retention_seconds)
        if run.unsettled:
            return run.settle(now)
        return None


def _after(change: Change) -> Scheduled:
    assert change.schedule is not None and change.chain is not None
    return Scheduled(change.schedule, change.chain)
