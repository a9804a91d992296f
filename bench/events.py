"""What publishing outcome events costs the dispatcher: the real publisher (callme.outcomes) and
EventBridge bus (handlers.eventbridge) sending the events of finished entries to the local moto
server's EventBridge, which runs in a process of its own.

Each entry is shaped as the benchmark's others (the same callback, payload and answer) and finished
by the state machine's own transition. The CPU time of this process is kept (it includes building
each event, batching, signing and sending the PutEvents), with the wall time, and the events' size
as EventBridge counts it. In the dispatcher the publisher's thread runs beside the calls, so it is
its CPU, not its wall time, that lengthens a run.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from callme.outcomes import OutcomePublisher, outcome_event
from callme.task import Attempt, Task, TaskDefinition, TaskKey, Verdict

from .capacity import CALLBACK, CALLME, payload_of

RETENTION_SECONDS = 30 * 86400


def finished_entry(i: int, payload_bytes: int, now: float) -> Task:
    """An entry of the benchmark's shape, after one successful call."""
    trigger = int(now) // 60 * 60
    task = Task.new(
        TaskKey(f"invoice-reminder-{i:06d}", trigger),
        TaskDefinition(CALLBACK, "POST", payload_of(payload_bytes)),
        now - 600,
    )
    attempt = Attempt(at=trigger + 1.5, duration_ms=42, status=200)
    return task.after_attempt(attempt, "ok", Verdict.SUCCESS, None, RETENTION_SECONDS)


def measure(endpoint: str, events: int, payload_bytes: int) -> dict[str, Any]:
    """Publish ``events`` outcome events to the EventBridge at ``endpoint``; every one must be taken."""
    from handlers.eventbridge import EventBridgeBus, events_client
    from local.dynamodb import REGION

    now = time.time()
    tasks = [finished_entry(i, payload_bytes, now) for i in range(events)]
    sizes = [event.size for task in tasks if (event := outcome_event(task)) is not None]
    publisher = OutcomePublisher(EventBridgeBus(events_client(REGION, endpoint)), CALLME.publish)
    started, started_cpu = time.perf_counter(), time.process_time()
    for task in tasks:
        publisher.entry_finished(task)
    report = publisher.close()
    seconds, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    if report.published != events or report.failed:
        raise RuntimeError(f"outcome events: {report.published} of {events} published: {report.failed[:3]}")
    return {
        "events": events,
        "puts": report.puts,
        "seconds": round(seconds, 4),
        "cpu_seconds": round(cpu, 4),
        "cpu_ms_per_event": round(cpu * 1000 / events, 4),
        "event_bytes": int(statistics.median(sizes)),
    }
