"""The composition root: settings from the environment, and the objects built from them, once.

What only the dispatcher needs (the HTTP caller and requests, signing, the engine) is imported when
first built, so that the api function's cold start does not pay for it (``make bench`` measures it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

from callme.clock import Clock, SystemClock
from callme.repository import API_STORAGE, DynamoDBScheduleRepository, DynamoDBTaskRepository, connect
from callme.schedule_service import ScheduleService
from callme.service import TaskService
from callme.settings import Settings

if TYPE_CHECKING:
    from callme.callback import HttpCaller
    from callme.dispatch import DispatchEngine, DispatchObserver
    from callme.signing import Signer


@cache
def settings() -> Settings:
    return Settings.from_environ(os.environ)


@cache
def repository() -> DynamoDBTaskRepository:
    """The dispatcher's."""
    s = settings()
    return connect(
        s.table_name,
        s.lease_table_name,
        s.due_shards,
        s.region,
        s.dynamodb_endpoint,
        max_pool=max(10, _storage_connections(s.dispatch_concurrency)),
    )


@cache
def api_repository() -> DynamoDBTaskRepository:
    """The api function's: short storage timeouts, so that a request answers within its deadline."""
    s = settings()
    return connect(s.table_name, s.lease_table_name, s.due_shards, s.region, s.dynamodb_endpoint, timeouts=API_STORAGE)


@cache
def task_service() -> TaskService:
    s = settings()
    return TaskService(api_repository(), SystemClock(), s.limits, s.egress)


@cache
def schedule_service() -> ScheduleService:
    s = settings()
    schedules = DynamoDBScheduleRepository(api_repository(), s.schedule_table_name)
    return ScheduleService(schedules, api_repository(), SystemClock(), s.limits)


def reset() -> None:
    """Forget everything built (tests change the environment between cases)."""
    for built in (settings, repository, api_repository, task_service, schedule_service, caller, _static_signer):
        built.cache_clear()


def signer() -> Signer | None:
    """The signing keys: CALLME_SIGNING_SECRET (local), else the Secrets Manager secret, cached
    for five minutes by Powertools so that a rotation reaches running functions quickly."""
    s = settings()
    if s.signing_secret:
        return _static_signer(s.signing_secret)
    if s.signing_secret_id:
        from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 (only AWS needs it)

        document = parameters.get_secret(s.signing_secret_id, max_age=300)
        return _static_signer(str(document))
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
    from callme.callback import CallerConfig, HttpCaller  # noqa: PLC0415 (the dispatcher's own)

    s = settings()
    return HttpCaller(
        s.egress,
        signer,
        CallerConfig(connect_timeout=s.connect_timeout, read_timeout=s.read_timeout, call_budget=s.call_budget),
    )


def dispatch_engine(
    clock: Clock | None = None,
    observer: DispatchObserver | None = None,
    on_leased: Callable[[list[int]], None] | None = None,
) -> DispatchEngine:
    from callme.dispatch import DispatchConfig, DispatchEngine  # noqa: PLC0415 (the dispatcher's own)

    s = settings()
    config = DispatchConfig(
        concurrency=s.dispatch_concurrency,
        call_budget=s.call_budget,
        retention_seconds=s.limits.retention_seconds,
    )
    clock = clock or SystemClock()
    schedules = ScheduleService(
        DynamoDBScheduleRepository(repository(), s.schedule_table_name), repository(), clock, s.limits
    )
    return DispatchEngine(repository(), caller(), clock, config, observer, on_leased=on_leased, schedules=schedules)
