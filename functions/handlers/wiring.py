"""The composition root: settings from the environment, and the objects built from them, once.

What only the dispatcher needs (the HTTP caller and requests, signing, the engine) is imported when
first built, so that the api function's cold start does not pay for it (``make bench`` measures it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from callme.clock import Clock, SystemClock
from callme.dynamodb import (
    DynamoDBLeaseStore,
    DynamoDBScheduleRepository,
    DynamoDBStatsStore,
    DynamoDBTaskRepository,
    connect,
)
from callme.schedule_service import ScheduleService
from callme.sealing import HeaderVault
from callme.service import TaskService
from callme.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from callme.callback import HttpCaller
    from callme.dispatch import DispatchEngine, DispatchObserver, FinishedListener
    from callme.outcomes import OutcomePublisher
    from callme.ports import Fanout
    from callme.signing import Signer


@cache
def settings() -> Settings:
    return Settings.from_environ(os.environ)


@cache
def _dispatcher_client() -> DynamoDBClient:
    s = settings()
    pool = max(10, _storage_connections(s.dispatch_concurrency))
    return connect(s.region, s.dynamodb_endpoint, s.dispatcher_storage, max_pool=pool)


@cache
def repository() -> DynamoDBTaskRepository:
    """The dispatcher's."""
    s = settings()
    return DynamoDBTaskRepository(_dispatcher_client(), s.table_name, s.due_shards, s.dispatch_slices)


@cache
def leases() -> DynamoDBLeaseStore:
    """The dispatcher's, on the same client as its repository."""
    return DynamoDBLeaseStore(_dispatcher_client(), settings().lease_table_name)


@cache
def stats() -> DynamoDBStatsStore:
    """The dispatcher's, on the same client as its repository."""
    return DynamoDBStatsStore(_dispatcher_client(), settings().stats_table_name)


@cache
def _api_client() -> DynamoDBClient:
    """The api function's: short storage timeouts, so that a request answers within its deadline."""
    s = settings()
    return connect(s.region, s.dynamodb_endpoint, s.api_storage)


@cache
def api_repository() -> DynamoDBTaskRepository:
    """The api function's."""
    s = settings()
    return DynamoDBTaskRepository(_api_client(), s.table_name, s.due_shards, s.dispatch_slices)


@cache
def api_stats() -> DynamoDBStatsStore:
    """The api function's, on the same client as its repository."""
    return DynamoDBStatsStore(_api_client(), settings().stats_table_name)


@cache
def clock() -> Clock:
    return SystemClock()


@cache
def task_service() -> TaskService:
    return TaskService(api_repository(), clock(), settings().limits, vault())


@cache
def vault() -> HeaderVault:
    """Seals and opens tasks' header values with the headers key, read when first needed."""
    return HeaderVault(headers_key)


def headers_key() -> str | None:
    """The headers key document: CALLME_HEADERS_KEY (local), else the Secrets Manager secret,
    cached for five minutes by Powertools so that a rotation reaches running functions quickly."""
    s = settings()
    if s.headers_key:
        return s.headers_key
    return _secret(s.headers_key_id) if s.headers_key_id else None


def _secret(secret_id: str) -> str:
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 (only AWS needs it)

    return str(parameters.get_secret(secret_id, max_age=300))


@cache
def schedule_service() -> ScheduleService:
    schedules = DynamoDBScheduleRepository(_api_client(), settings().schedule_table_name, api_repository())
    return ScheduleService(schedules, api_repository(), clock(), settings().limits, vault())


def reset() -> None:
    """Forget everything built (tests change the environment between cases)."""
    for built in (
        settings,
        _dispatcher_client,
        repository,
        leases,
        stats,
        _api_client,
        api_repository,
        api_stats,
        task_service,
        schedule_service,
        vault,
        caller,
        _static_signer,
    ):
        built.cache_clear()


def signer() -> Signer | None:
    """The signing keys: CALLME_SIGNING_SECRET (local), else the Secrets Manager secret, cached
    for five minutes by Powertools so that a rotation reaches running functions quickly."""
    s = settings()
    if s.signing_secret:
        return _static_signer(s.signing_secret)
    if s.signing_secret_id:
        return _static_signer(_secret(s.signing_secret_id))
    return None


def _storage_connections(concurrency: int) -> int:
    from callme.dispatch import storage_connections  # noqa: PLC0415 (the dispatcher's own)

    return storage_connections(concurrency)


@cache
def _static_signer(document: str) -> Signer:
    from callme.signing import Signer  # noqa: PLC0415 (the dispatcher's own)

    return Signer.from_secret_document(document)


@cache
def caller() -> HttpCaller:
    from callme.callback import HttpCaller  # noqa: PLC0415 (the dispatcher's own)

    return HttpCaller(settings().egress, signer, settings().caller, vault=vault())


def fanout(event: dict[str, Any], function_name: str) -> Fanout | None:
    """How a scheduled invocation hands busy shards on: one Lambda invocation each (CALLME_FANOUT=lambda,
    to CALLME_DISPATCHER_FUNCTION or this very function), or None: it dispatches them itself."""
    s = settings()
    if s.fanout != "lambda":
        return None
    from .fanout import LambdaFanout, lambda_client  # noqa: PLC0415 (the dispatcher's own)

    return LambdaFanout(lambda_client(), s.dispatcher_function or function_name, event)


def dispatch_engine(
    clock: Clock | None = None,
    observer: DispatchObserver | None = None,
    on_leased: Callable[[list[int]], None] | None = None,
    listeners: Sequence[FinishedListener] = (),
) -> DispatchEngine:
    from callme.dispatch import DispatchEngine  # noqa: PLC0415 (the dispatcher's own)

    config = settings().dispatch
    clock = clock or SystemClock()
    return DispatchEngine(
        repository(),
        leases(),
        caller(),
        clock,
        config,
        observer,
        on_leased=on_leased,
        listeners=listeners,
        stats=stats(),
        schedules=schedule_runs(clock),
    )


def schedule_runs(clock: Clock) -> ScheduleService:
    """The schedules as the dispatcher moves them on, on its storage client."""
    schedules = DynamoDBScheduleRepository(_dispatcher_client(), settings().schedule_table_name, repository())
    return ScheduleService(schedules, repository(), clock, settings().limits)


def outcome_publisher() -> OutcomePublisher:
    """A publisher of outcome events for one run: to EventBridge's default bus
    (CALLME_OUTCOME_EVENTS=eventbridge) or to the log."""
    from callme.outcomes import OutcomePublisher  # noqa: PLC0415 (the dispatcher's own)

    from .eventbridge import EventBridgeBus, LogBus, events_client  # noqa: PLC0415 (the dispatcher's own)

    s = settings()
    bus = EventBridgeBus(events_client(s.region)) if s.outcome_events == "eventbridge" else LogBus()
    return OutcomePublisher(bus, s.publish)
