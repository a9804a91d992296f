"""The task entry and its state machine.

An *entry* is one scheduled call: a task name plus a trigger minute (``name@ts``). Its state moves
pending -> (running ->)* successful | failed | skipped, or pending/running -> cancelled. ``running``
means at least one attempt was made and a retry is still to come. Every transition lives here.

A *run* of a recurring schedule is an ordinary entry that names its schedule (``schedule``). A run
cancelled by anything but its schedule stays listed in the ``due`` index until the dispatcher, at its
minute, has moved the schedule on past it (``settled``): so skipping a run never stops the schedule.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import NewType

from .errors import Conflict, InvalidRequest
from .headers import Headers
from .hooks import HookCall

# 1 to 128 of A-Z a-z 0-9 . _ -, but not "." or "..": clients resolve those path segments away
# (curl sends GET /task/. as GET /task/), so such an entry could never be read or cancelled.
# The OpenAPI document publishes this pattern; ECMA-262 (JSON Schema) reads it the same way.
NAME_PATTERN_TEXT = r"^(?!\.{1,2}$)[A-Za-z0-9._-]{1,128}$"
NAME_PATTERN = re.compile(NAME_PATTERN_TEXT)
RESPONSE_BODY_LIMIT = 256
HISTORY_LIMIT = 20
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
NAME_RULE = "use 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-', other than '.' and '..'"


class TaskState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        """Still to be called (and therefore in the ``due`` index)."""
        return self in (TaskState.PENDING, TaskState.RUNNING)


# A task name that passed check_name: the service takes names of this type, checked once at the edge.
TaskName = NewType("TaskName", str)


def check_name(name: str) -> TaskName:
    """``name`` as a TaskName; InvalidRequest unless it follows NAME_RULE."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidRequest(f"task name {name!r} is invalid: {NAME_RULE}")
    return TaskName(name)


@dataclass(frozen=True, order=True)
class TaskKey:
    """Identifies one entry: ``name@trigger_at``."""

    name: str
    trigger_at: int

    def __str__(self) -> str:
        return f"{self.name}@{self.trigger_at}"

    @classmethod
    def parse(cls, text: str, field: str = "entry") -> TaskKey:
        name, at, ts = text.partition("@")
        if not at:
            raise InvalidRequest(f"{field} {text!r} must have the form <task_name>@<trigger_at>")
        check_name(name)
        if not ts.isdigit() or not ts.isascii() or len(ts) > 15:
            raise InvalidRequest(f"{field} {text!r}: trigger_at {ts!r} is not a Unix timestamp")
        trigger_at = int(ts)
        if trigger_at % 60:
            raise InvalidRequest(f"{field} {text!r}: trigger_at {trigger_at} is not on a minute boundary")
        return cls(name, trigger_at)


@dataclass(frozen=True)
class TaskDefinition:
    """How to make the call: what a client sends in ``PUT /task/<name>``."""

    callback: str
    callback_method: str = "GET"
    payload: str = ""
    expected_http_status: int = 200
    retry: int = 1
    max_delay: int = 10
    headers: Headers | None = None  # extra request headers (callme.headers), sent on every attempt
    on_failure: str | None = None  # called once if the entry ends failed or skipped (callme.hooks)


@dataclass(frozen=True)
class Attempt:
    """One call of the callback: when, what came back (status or error), how long it took."""

    at: float
    duration_ms: int
    status: int | None = None
    error: str | None = None


def new_revision() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class Task:
    key: TaskKey
    definition: TaskDefinition
    state: TaskState
    created_at: float
    updated_at: float
    webhook_id: str
    revision: str = field(default_factory=new_revision)
    attempts: int = 0
    history: tuple[Attempt, ...] = ()
    response_status: int | None = None
    response_body: str | None = None
    executed_at: float | None = None
    next_attempt_at: float | None = None
    rescheduled_from: str | None = None
    rescheduled_to: str | None = None
    expires_at: int | None = None
    schedule: str | None = None  # the recurring schedule this entry is a run of
    settled: bool = False  # a cancelled run: its schedule has moved on past it
    on_failure_call: HookCall | None = None  # the failure hook's call, once owed
    # The ``due`` slot (a shard's slice, callme.ports.due_slot) storage listed the entry under (None
    # until stored, and once finished): kept through every rewrite, so that an entry never moves to
    # another slot, whose run might call it too, when the number of shards or slices changes. Not
    # part of what the entry is.
    due_slot: int | None = field(default=None, compare=False)

    @classmethod
    def new(
        cls,
        key: TaskKey,
        definition: TaskDefinition,
        now: float,
        rescheduled_from: str | None = None,
        schedule: str | None = None,
    ) -> Task:
        return cls(
            key=key,
            definition=definition,
            state=TaskState.PENDING,
            created_at=now,
            updated_at=now,
            webhook_id=f"msg_{uuid.uuid4().hex}",
            rescheduled_from=rescheduled_from,
            schedule=schedule,
        )

    @property
    def unsettled(self) -> bool:
        """A run of a schedule cancelled by a client whose schedule the dispatcher has yet to move on
        past (at its minute): it stays in the ``due`` index until then."""
        return self.state is TaskState.CANCELLED and self.schedule is not None and not self.settled

    # -- API-side transitions -------------------------------------------------------------

    def replaced_by(self, definition: TaskDefinition, now: float) -> Task:
        """A re-PUT: only an entry that has not been called yet (pending or cancelled) takes it, and
        only before its trigger minute, since from then on the dispatcher may be calling it (a
        replacement during that call would be called a second time)."""
        if self.state not in (TaskState.PENDING, TaskState.CANCELLED) or self.attempts:
            raise Conflict(
                f"entry {self.key} is {self.state} and has already been called; it cannot be replaced "
                f"(use POST /reschedule/{self.key} or another trigger_at)"
            )
        if now >= self.key.trigger_at:
            raise Conflict(
                f"entry {self.key} is due (its minute began at {self.key.trigger_at}) and the dispatcher may be "
                f"calling it, so it can no longer be replaced; register the new definition at another trigger_at"
            )
        return Task.new(self.key, definition, now, self.rescheduled_from, self.schedule)

    def cancelled(self, now: float, retention_seconds: int) -> Task:
        if not self.state.active:
            raise Conflict(f"entry {self.key} is already {self.state} and cannot be cancelled")
        cancelled = self._finish(TaskState.CANCELLED, now, retention_seconds)
        if self.schedule is not None:
            # kept until its minute at least, when the dispatcher moves its schedule on past it
            cancelled = replace(cancelled, expires_at=max(int(now), self.key.trigger_at) + retention_seconds)
        return cancelled

    def settle(self, now: float) -> Task:
        """A cancelled run whose schedule has moved on past it: out of the ``due`` index."""
        return replace(self, settled=True, updated_at=now, revision=new_revision())

    def rescheduled(self, to: TaskKey, now: float) -> Task:
        """Point at the successor ``to``. An entry has at most one successor, so that rescheduling it
        again (or twice at once) never multiplies its call."""
        if self.rescheduled_to is not None:
            raise Conflict(
                f"entry {self.key} was already rescheduled to {self.rescheduled_to} (its rescheduled_to); "
                f"an entry has one successor: reschedule {self.rescheduled_to} if it fails"
            )
        return replace(self, rescheduled_to=str(to), updated_at=now, revision=new_revision())

    # -- dispatch-side transitions -------------------------------------------------------

    def missed(self, now: float, retention_seconds: int) -> Task:
        """``max_delay`` passed before the next call could be made: skipped if it was never
        called, failed if earlier attempts failed."""
        return self._finish(TaskState.FAILED if self.attempts else TaskState.SKIPPED, now, retention_seconds)

    def after_attempt(
        self,
        attempt: Attempt,
        response_body: str | None,
        verdict: Verdict,
        next_attempt_at: float | None,
        retention_seconds: int,
    ) -> Task:
        """Record one attempt. A retryable failure with a slot left stays active (``running``)."""
        recorded = replace(
            self,
            attempts=self.attempts + 1,
            history=(*self.history, attempt)[-HISTORY_LIMIT:],
            response_status=attempt.status,
            response_body=None if response_body is None else response_body[:RESPONSE_BODY_LIMIT],
            executed_at=attempt.at,
        )
        now = attempt.at + attempt.duration_ms / 1000
        if verdict is Verdict.SUCCESS:
            return recorded._finish(TaskState.SUCCESSFUL, now, retention_seconds)
        if verdict is Verdict.RETRY and next_attempt_at is not None:
            return replace(
                recorded,
                state=TaskState.RUNNING,
                next_attempt_at=next_attempt_at,
                updated_at=now,
                revision=new_revision(),
            )
        return recorded._finish(TaskState.FAILED, now, retention_seconds)

    def _finish(self, state: TaskState, now: float, retention_seconds: int) -> Task:
        hook = self.on_failure_call
        if state in (TaskState.FAILED, TaskState.SKIPPED) and self.definition.on_failure and hook is None:
            hook = HookCall.owed(now)
        return replace(
            self,
            state=state,
            updated_at=now,
            next_attempt_at=None,
            expires_at=int(now) + retention_seconds,
            revision=new_revision(),
            on_failure_call=hook,
        )

    def after_hook_call(self, call: HookCall, now: float) -> Task:
        """Record a call of the failure hook (the entry's own state stays as it ended)."""
        return replace(self, on_failure_call=call, updated_at=now, revision=new_revision())

    @property
    def hook_owed(self) -> bool:
        """A failure hook is still to be called."""
        return self.on_failure_call is not None and self.on_failure_call.pending

    @property
    def in_due_index(self) -> bool:
        """Still work for the dispatcher: a call to make, a failure hook owed, or a skipped run's
        schedule to move on (``unsettled``)."""
        return self.state.active or self.hook_owed or self.unsettled

    def ready_at(self) -> float:
        """When the dispatcher may make this entry's next call (0: at once)."""
        if self.hook_owed and self.on_failure_call is not None:
            return self.on_failure_call.next_at or 0.0
        return self.next_attempt_at or 0.0

    def retries_left(self) -> int:
        return self.definition.retry + 1 - self.attempts

    def deadline(self) -> int:
        """The instant from which the call must not be made any more (``max_delay``)."""
        return self.key.trigger_at + self.definition.max_delay * 60


class Verdict(StrEnum):
    """What one attempt means for the entry."""

    SUCCESS = "success"
    RETRY = "retry"
    FAIL = "fail"


RETRYABLE_STATUSES = frozenset({408, 429})


def judge(status: int | None, expected: int) -> Verdict:
    """Success is exactly the expected status; no status (network error), 5xx, 408 and 429 retry."""
    if status is not None and status == expected:
        return Verdict.SUCCESS
    if status is None or status >= 500 or status in RETRYABLE_STATUSES:
        return Verdict.RETRY
    return Verdict.FAIL


def backoff(attempts: int, base: float, cap: float, jitter: float) -> float:
    """The wait before the retry that follows attempt number ``attempts``: exponential, about
    ``base * 2^(attempts - 1)`` capped at ``cap``, from half of that (``jitter`` 0) to all of it (1)."""
    step = min(cap, base * 2.0 ** max(0, attempts - 1))
    return step / 2 + jitter * step / 2


def next_attempt_at(task: Task, verdict: Verdict, ended_at: float, wait: float) -> float | None:
    """When ``task`` is called again after an attempt that ended at ``ended_at`` and was judged
    ``verdict``: ``wait`` later, if that attempt is to be retried, a retry is left, and that instant is
    before ``max_delay`` runs out. None: no further attempt (``task`` as it was before the attempt)."""
    if verdict is not Verdict.RETRY or task.retries_left() <= 1:
        return None
    candidate = ended_at + wait
    return candidate if candidate < task.deadline() else None
