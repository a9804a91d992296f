"""The dispatcher: EventBridge Scheduler invokes it every minute.

A scheduled invocation peeks at every shard of the ``due`` index. In AWS (CALLME_FANOUT=lambda) it
invokes itself asynchronously once per run the minute needs (callme.dispatch.DispatchEngine.plan:
one per busy shard, or several over the slices of a shard with more work than one run), so they
run in parallel in their own invocations; locally (inline) it dispatches every busy slot itself. An
invocation carrying a ``shard`` (and its ``slices``) dispatches those.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

# Every run needs the HTTP caller (requests) and the signer, which wiring only imports when first
# built (so that the api function never loads them): load them here, in Lambda's init phase.
import callme.callback
import callme.signing  # noqa: F401
from callme.clock import Clock, SystemClock, minute_of
from callme.dispatch import DispatchEngine, RunReport
from callme.errors import ServiceUnavailable
from callme.outcomes import PublishReport
from callme.ports import CallResult, RunShare
from callme.task import Task, TaskState, Verdict

from . import wiring
from .observability import logger, metrics

_PUBLISH_MARGIN = 2.0  # seconds left, after the last send of outcome events, for the run's report

_FINAL_METRICS = {
    TaskState.SUCCESSFUL: "succeeded",
    TaskState.FAILED: "failed",
    TaskState.SKIPPED: "skipped",
}


class MetricsObserver:
    """Logs every attempt and outcome keyed by ``name@ts``, and counts them as metrics."""

    def attempted(self, task: Task, result: CallResult, verdict: Verdict, lateness: float) -> None:
        _metric("calls", 1, MetricUnit.Count)
        _metric("lateness", round(lateness, 3), MetricUnit.Seconds)
        if verdict is Verdict.RETRY and task.retries_left() > 1:
            _metric("retried", 1, MetricUnit.Count)
        logger.info(
            "callback called",
            extra={
                "entry": str(task.key),
                "attempt": task.attempts + 1,
                "status": result.status,
                "error": result.error,
                "verdict": verdict.value,
                "duration_ms": result.duration_ms,
                "lateness_s": round(lateness, 3),
            },
        )

    def finished(self, task: Task) -> None:
        name = _FINAL_METRICS.get(task.state)
        if name:
            _metric(name, 1, MetricUnit.Count)
        logger.info("entry finished", extra={"entry": str(task.key), "state": task.state.value})

    def record_failed(self, task: Task, reason: str) -> None:
        logger.warning("outcome not recorded", extra={"entry": str(task.key), "reason": reason})


def _metric(name: str, value: float, unit: MetricUnit) -> None:
    # EMF takes at most 100 values of a metric per document: Powertools prints the document itself
    # when a metric reaches 100 values (aws_lambda_powertools 3.37, AmazonCloudWatchEMFProvider.add_metric).
    metrics.add_metric(name=name, unit=unit, value=value)


def dispatch(
    event: dict[str, Any],
    context: LambdaContext,
    clock: Clock | None = None,
    on_leased: Callable[[list[int]], None] | None = None,
) -> dict[str, Any]:
    """One dispatcher invocation; ``clock`` and ``on_leased`` let the local stack's tests steer it."""
    clock = clock or SystemClock()
    publisher = wiring.outcome_publisher()
    engine = wiring.dispatch_engine(clock, MetricsObserver(), on_leased, [publisher])
    remaining = context.get_remaining_time_in_millis() / 1000
    deadline = clock.now() + remaining
    # The publisher keeps time on its own clock: it stops sending a little before the function must end.
    publish_until = time.monotonic() + remaining - _PUBLISH_MARGIN
    if "shard" in event:
        shards = _given(engine, event).slots
    else:
        _sweep_schedules(clock)
        fanout = wiring.fanout(event, context.function_name)
        if fanout is None:
            shards = engine.busy_shards(minute_of(clock.now()))
        else:
            shares = engine.plan(minute_of(clock.now()))
            if not shares:
                return {"due": 0}
            fanout.hand_over(shares)
            handed = [{"shard": share.shard, "slices": list(share.slices)} for share in shares]
            logger.info("fanned out", extra={"runs": handed, "scheduled_time": event.get("scheduled_time")})
            return {"fanned_out": handed}
    if not shards:
        return {"due": 0}
    try:
        report = engine.run(shards, deadline)
    finally:
        events = _published(publisher.close(publish_until))
    _hooks(report)
    logger.info("dispatch run", extra={**asdict(report), "outcome_events": events})
    return {**asdict(report), "outcome_events": events}


def _given(engine: DispatchEngine, event: dict[str, Any]) -> RunShare:
    """The share of a shard a fanned-out invocation dispatches: its ``slices``, or all of them (an
    invocation made before slices existed)."""
    shard = int(event["shard"])
    if "slices" not in event:
        return engine.whole(shard)
    return RunShare(shard, tuple(int(part) for part in event["slices"]))


def _published(report: PublishReport) -> dict[str, int]:
    """Count what the run's publisher did; name each event it gave up on (the outcome itself is stored)."""
    if report.published:
        _metric("events_published", report.published, MetricUnit.Count)
    if report.failed:
        _metric("events_failed", len(report.failed), MetricUnit.Count)
        for entry, why in report.failed:
            logger.warning("outcome event not published", extra={"entry": entry, "reason": why})
    return {"published": report.published, "failed": len(report.failed), "puts": report.puts}


def _hooks(report: RunReport) -> None:
    """Count the failure hooks the run delivered and gave up on (FailureHooksAlarm watches these)."""
    if report.hooks_delivered:
        _metric("hooks_delivered", report.hooks_delivered, MetricUnit.Count)
    if report.hooks_failed:
        _metric("hooks_failed", report.hooks_failed, MetricUnit.Count)


def _sweep_schedules(clock: Clock) -> None:
    """Once every CALLME_SCHEDULE_SWEEP_MINUTES, from the scheduled invocation: make any schedule's
    missing next run (callme.schedule_service.sweep). Its failure is logged; the runs go on."""
    now = clock.now()
    if minute_of(now) // 60 % wiring.settings().schedule_sweep_minutes:
        return
    try:
        made = wiring.schedule_runs(clock).sweep(now)
    except ServiceUnavailable as exc:
        logger.warning("schedule sweep stopped", extra={"error": exc.message})
        return
    if made:
        logger.warning("schedule sweep made missing next runs", extra={"runs": [str(key) for key in made]})


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dispatch(event or {}, context)
