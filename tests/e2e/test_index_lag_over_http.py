"""Cancels and re-PUTs acknowledged just before the minute, on a local stack whose ``due`` index
lags 2 s behind the table (CALLME_LOCAL_INDEX_LAG_SECONDS), as DynamoDB's may."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.conftest import LocalStack, Sink, next_minute

pytestmark = pytest.mark.e2e
ENTRIES = 200
LAG = 2.0


@pytest.fixture
def lagging(stack_factory: Any) -> LocalStack:
    stack: LocalStack = stack_factory(env={"CALLME_LOCAL_INDEX_LAG_SECONDS": str(LAG)})
    assert any(f"the due index lags {LAG:g} s" in line for line in stack.output)
    return stack


def in_parallel(requests: list[tuple[str, str, Any]], stack: LocalStack) -> list[int]:
    with ThreadPoolExecutor(8) as pool:
        answers = pool.map(lambda r: stack.request(*r).status_code, requests)
        return list(answers)


def register(stack: LocalStack, sink: Sink, trigger: int, prefix: str) -> None:
    body = [{"trigger_at": trigger, "callback": f"{sink.url}/{prefix}{i:03d}"} for i in range(ENTRIES)]
    answers = in_parallel([("PUT", f"/task/{prefix}{i:03d}", body[i]) for i in range(ENTRIES)], stack)
    assert answers == [201] * ENTRIES
    time.sleep(LAG + 0.5)  # the index has caught up: it shows every entry


def test_entries_cancelled_just_before_their_minute_are_never_called(lagging: LocalStack, sink: Sink) -> None:
    trigger = next_minute() + 60  # a whole minute to register and cancel in
    register(lagging, sink, trigger, "c")
    started = time.monotonic()
    answers = in_parallel([("DELETE", f"/task/c{i:03d}@{trigger}", None) for i in range(ENTRIES)], lagging)
    assert answers == [200] * ENTRIES
    cancelling = time.monotonic() - started
    report = lagging.tick(trigger + 1)
    assert report["due"] > 0, f"the lagging index still showed cancelled entries (cancels took {cancelling:.1f} s)"
    assert (report["calls"], sink.received) == (0, [])
    assert report["withdrawn"] == report["due"]
    assert lagging.tick(trigger + 61)["calls"] == 0
    assert sink.received == []
    states = {lagging.entry(f"c{i:03d}@{trigger}")["task_state"] for i in range(0, ENTRIES, 20)}
    assert states == {"cancelled"}


def test_entries_re_put_just_before_their_minute_are_called_once_at_the_new_url(
    lagging: LocalStack, sink: Sink
) -> None:
    trigger = next_minute() + 60
    register(lagging, sink, trigger, "r")
    requests = [
        ("PUT", f"/task/r{i:03d}", {"trigger_at": trigger, "callback": f"{sink.url}/new/r{i:03d}"})
        for i in range(ENTRIES)
    ]
    assert in_parallel(requests, lagging) == [200] * ENTRIES
    first = lagging.tick(trigger + 1)
    second = lagging.tick(trigger + 61)
    paths = sorted(r.path for r in sink.received)
    assert paths == [f"/new/r{i:03d}" for i in range(ENTRIES)], "each called once, never at its old URL"
    assert (first["succeeded"], second["calls"]) == (ENTRIES, 0)
