"""Shared fixtures and helpers of the unit tier: a fixed instant, default limits, task builders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from callme.egress import EgressPolicy
from callme.errors import CallmeError
from callme.settings import Limits
from callme.task import Task, TaskDefinition, TaskKey, TaskState
from tests.conftest import default_limits

UNIT = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The unit tier runs off the network: a test that opens a socket fails (pytest-socket's
    disable_socket marker on every test of this folder; other tiers are left as they are)."""
    for item in items:
        if item.path.is_relative_to(UNIT):
            item.add_marker(pytest.mark.disable_socket)


# A fixed "now": 42.5 seconds into a minute, so that "counted from the start of the current minute"
# is distinguishable from "counted from now".
CURRENT_MINUTE = 1_800_000_000
NOW = CURRENT_MINUTE + 42.5
PUBLIC_URL = "https://example.com/that-thing/run-it"


@pytest.fixture
def limits() -> Limits:
    return default_limits()


@pytest.fixture
def policy() -> EgressPolicy:
    """The production policy: only public addresses."""
    return EgressPolicy()


@pytest.fixture
def loopback_policy() -> EgressPolicy:
    """The local stack's policy: loopback let through explicitly."""
    return EgressPolicy.from_text("127.0.0.0/8,::1/128")


def rejected(call: Callable[[], object]) -> CallmeError:
    """Run ``call``, which must raise a domain error, and return that error for inspection."""
    with pytest.raises(CallmeError) as info:
        call()
    return info.value


def task_body(**fields: Any) -> dict[str, Any]:
    """A valid ``PUT /task/<name>`` body, with ``fields`` added or replaced (None removes one)."""
    body: dict[str, Any] = {"trigger_at": "+6h", "callback": PUBLIC_URL}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def make_task(
    state: TaskState = TaskState.PENDING,
    attempts: int = 0,
    trigger_at: int = CURRENT_MINUTE,
    name: str = "job",
    **definition: Any,
) -> Task:
    """An entry in ``state`` having made ``attempts`` calls, defined by ``definition``."""
    task = Task.new(TaskKey(name, trigger_at), TaskDefinition(callback=PUBLIC_URL, **definition), NOW)
    return replace(task, state=state, attempts=attempts)
