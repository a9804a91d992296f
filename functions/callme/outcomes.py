"""Outcome events: every entry the dispatcher finishes becomes one event, published off the path of calls.

An entry that ends ``successful``, ``failed`` or ``skipped`` is told to an ``OutcomePublisher`` right
after its outcome is stored (the publisher is one of the dispatch engine's finished-entry listeners).
The publisher turns it into an event (source ``callme``, detail-type ``Task Succeeded`` / ``Task
Failed`` / ``Task Skipped``, detail: the entry as the API shows it, without its payload) and hands it
to a thread of its own, which sends full batches to the event bus as they fill and the rest when the
run closes it. So a slow or failing bus never delays a call: the dispatcher only puts the event on a
queue. Events the bus refuses are sent again with backoff; what still fails is named in the report.
The outcome itself is already in storage: an event that is never published loses nothing but the
notice.

Cancelled entries are not published: a cancel is a client's own request, answered by the API, not
an outcome of a call (and the api function then needs no access to the bus). An outcome that could
not be stored is not published either: a later run makes the call again and publishes that.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .ports import EVENTS_PER_PUT, PUT_BYTES, BusEvent, EventBus
from .settings import PublishConfig
from .task import Task, TaskState
from .views import task_view

log = logging.getLogger("callme.outcomes")

SOURCE = "callme"
DETAIL_TYPES = {
    TaskState.SUCCESSFUL: "Task Succeeded",
    TaskState.FAILED: "Task Failed",
    TaskState.SKIPPED: "Task Skipped",
}
# What a described event keeps of an entry too large to publish whole (see ``outcome_event``).
_DESCRIBED_FIELDS = (
    "task_name",
    "trigger_at",
    "task_state",
    "attempts",
    "response_status",
    "executed_at",
    "webhook_id",
)


def outcome_event(task: Task) -> BusEvent | None:
    """The event for a finished entry; None for a state that is no outcome (active or cancelled).

    Its detail is the entry as the API shows it without ``payload``. An event that would reach
    EventBridge's entry limit (256 KB) is published described rather than whole: the entry's key and
    outcome, and where to read the rest. (The limits in force keep every entry far below it: a
    payload-less entry holds at most a 256-byte answer, 20 attempts and an 8 KiB URL.)
    """
    detail_type = DETAIL_TYPES.get(task.state)
    if detail_type is None:
        return None
    detail = {name: value for name, value in task_view(task).items() if name != "payload"}
    event = BusEvent(str(task.key), SOURCE, detail_type, _text(detail), task.updated_at)
    if event.size < PUT_BYTES:
        return event
    described = {name: detail[name] for name in _DESCRIBED_FIELDS}
    described["trimmed"] = (
        f"the whole entry is {event.size} bytes as an event, over EventBridge's limit of {PUT_BYTES}: "
        f"read it with GET /task/{task.key}"
    )
    return BusEvent(event.entry, SOURCE, detail_type, _text(described), event.time)


def _text(detail: dict[str, Any]) -> str:
    return json.dumps(detail, ensure_ascii=False, separators=(",", ":"))


def billed_events(event: BusEvent) -> int:
    """EventBridge bills each started 64 KB of an entry as one event."""
    return max(1, math.ceil(event.size / (64 * 1024)))


def batches(events: Iterable[BusEvent]) -> Iterator[list[BusEvent]]:
    """``events`` in order, in batches one PutEvents takes: at most EVENTS_PER_PUT entries whose
    sizes add up to less than PUT_BYTES."""
    batch: list[BusEvent] = []
    size = 0
    for event in events:
        if batch and (len(batch) == EVENTS_PER_PUT or size + event.size >= PUT_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(event)
        size += event.size
    if batch:
        yield batch


@dataclass
class PublishReport:
    """What a publisher did: events published, PutEvents calls made, and each event it gave up on
    (its entry and why)."""

    published: int = 0
    puts: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


class OutcomePublisher:
    """Publishes finished entries in batches, in a thread of its own (see the module's docstring).

    ``entry_finished`` is called once an outcome is stored (by the dispatch engine's writers) and only
    queues; ``close`` publishes what is left, stops by the instant given (``clock``'s), and reports.
    Every event queued ends published or reported failed, with its entry and why.
    """

    def __init__(
        self,
        bus: EventBus,
        config: PublishConfig,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.config = config
        self.sleep = sleep
        self.clock = clock
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._unsettled: dict[int, BusEvent] = {}  # queued, neither published nor given up on; by number
        self._numbers = itertools.count()
        self._report = PublishReport()
        self._give_up_at = math.inf
        self._thread: threading.Thread | None = None
        self._closed = False
        self._random = random.Random()

    def entry_finished(self, task: Task) -> None:
        """An entry's outcome was recorded: queue its event (nothing for a state that is no outcome)."""
        event = outcome_event(task)
        if event is None:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError("the publisher is closed")
            number = next(self._numbers)
            self._unsettled[number] = event
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="outcome-events", daemon=True)
                self._thread.start()
        self._queue.put(number)

    def close(self, give_up_at: float = math.inf) -> PublishReport:
        """Publish every queued event, with no send (or resend) started after ``give_up_at``; what
        is not published by then is reported failed. The publisher takes nothing more afterwards."""
        with self._lock:
            self._give_up_at = give_up_at
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            # A send in flight at ``give_up_at`` is given a second more; its events count as failed after that.
            thread.join(None if math.isinf(give_up_at) else max(0.0, give_up_at - self.clock()) + 1.0)
        with self._lock:
            self._closed = True
            report = PublishReport(self._report.published, self._report.puts, list(self._report.failed))
            unsent = self._unsettled.values()
            report.failed.extend((event.entry, "not published before the run ended") for event in unsent)
            self._unsettled.clear()
        return report

    # -- in the publisher's thread --------------------------------------------------------------

    def _serve(self) -> None:
        pending: list[int] = []
        while (number := self._queue.get()) is not None:
            pending.append(number)
            while (batch := self._first_batch(pending)) and (len(batch) < len(pending) or len(batch) == EVENTS_PER_PUT):
                self._publish(batch)  # full: the next event did not fit in it; the last batch stays open for more
                pending = pending[len(batch) :]
        while batch := self._first_batch(pending):
            self._publish(batch)
            pending = pending[len(batch) :]

    def _first_batch(self, pending: list[int]) -> list[int]:
        """The numbers of the first batch of ``pending`` (dropping any that close() has taken)."""
        with self._lock:
            pending[:] = [n for n in pending if n in self._unsettled]
            events = [self._unsettled[n] for n in pending]
        return pending[: len(next(batches(events), []))]

    def _publish(self, numbers: list[int]) -> None:
        """Send one batch, then what the bus refused again, with growing, jittered waits, until
        every event is taken, the tries are spent or the time is up."""
        last_error: dict[int, str] = {}
        for attempt in range(self.config.tries):
            wait = 0.0
            if attempt:
                wait = self.config.backoff * 2 ** (attempt - 1)
                wait = wait / 2 + self._random.uniform(0, wait / 2)
            if self.clock() + wait >= self._give_up_at:
                return  # close() reports what is left
            if wait:
                self.sleep(wait)
            with self._lock:
                if self._closed:
                    return
                batch = [(n, self._unsettled[n]) for n in numbers if n in self._unsettled]
            errors = self._put([event for _, event in batch])
            with self._lock:
                self._report.puts += 1
                for (number, _), error in zip(batch, errors, strict=True):
                    if error is None:
                        self._report.published += 1
                        self._unsettled.pop(number, None)
                    else:
                        last_error[number] = error
            numbers = [n for (n, _), error in zip(batch, errors, strict=True) if error is not None]
            if not numbers:
                return
        with self._lock:
            for number in numbers:
                event = self._unsettled.pop(number, None)
                if event is not None:
                    why = f"refused {self.config.tries} times, last: {last_error[number]}"
                    self._report.failed.append((event.entry, why))

    def _put(self, batch: list[BusEvent]) -> list[str | None]:
        try:
            return self.bus.put(batch)
        except Exception as exc:  # an adapter's bug must not stop the thread: the events count as refused
            log.exception("publishing %d outcome events raised", len(batch))
            return [f"internal error: {type(exc).__name__}"] * len(batch)
