"""What a ``GET /status/`` page costs when the table is mostly hidden entries (moto's DynamoDB).

``future_only`` and the expiry filter run after DynamoDB's ``Limit``: the page used to ask for the
entries it still missed, call after call, so 1,000 finished entries before 3 future ones took 10
Scan calls for one page of 100. A page now makes at most LIST_REQUESTS calls, each evaluating more
than the last, and one that runs out of them answers what it found with an exact ``next``.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import pytest

from callme.clock import minute_of
from callme.dynamodb import to_row
from callme.ports import LIST_REQUESTS, LIST_SECONDS
from callme.task import Task, TaskDefinition, TaskKey
from handlers import api, wiring
from local.dynamodb import TABLE_NAMES
from tests.conftest import api_event

FINISHED = 1000


class Scans:
    """Counts the Scan calls of the api's DynamoDB client."""

    def __init__(self) -> None:
        self.count = 0
        wiring.api_repository()._client.meta.events.register("after-call.dynamodb.Scan", self._seen)

    def _seen(self, **_: Any) -> None:
        self.count += 1


@pytest.fixture
def table(aws: Any) -> list[TaskKey]:
    """FINISHED finished entries in past minutes (kept, not expired), then 3 future ones; their keys."""
    now = time.time()
    past = minute_of(now) - 3600
    definition = TaskDefinition(callback="http://example.com/x", payload="x" * 200)
    finished = [
        Task.new(TaskKey(f"done{i:04d}", past - 60 * (i % 100)), definition, now - 7200).cancelled(now, 86400)
        for i in range(FINISHED)
    ]
    future = [Task.new(TaskKey(f"later{i}", minute_of(now) + 86400), definition, now) for i in range(3)]
    rows = [to_row(task, 8) for task in finished + future]
    for start in range(0, len(rows), 25):
        batch = {TABLE_NAMES["TasksTable"]: [{"PutRequest": {"Item": row}} for row in rows[start : start + 25]]}
        while batch:
            batch = aws.batch_write_item(RequestItems=batch).get("UnprocessedItems") or {}
    return [task.key for task in future]


def get(context: Any, target: str) -> dict[str, Any]:
    response = api.lambda_handler(api_event("GET", target), context)
    assert response["statusCode"] == 200, response["body"]
    answer: dict[str, Any] = json.loads(response["body"])
    return answer


def test_future_only_over_many_finished_entries_takes_a_few_scan_calls(
    table: list[TaskKey], lambda_context: Any
) -> None:
    scans = Scans()
    answer = get(lambda_context, "/status/?future_only&limit=100")
    assert sorted(t["task_name"] for t in answer["tasks"]) == sorted(key.name for key in table)
    assert "next" not in answer
    assert scans.count <= LIST_REQUESTS


def test_a_plain_page_is_one_scan_call(table: list[TaskKey], lambda_context: Any) -> None:
    scans = Scans()
    answer = get(lambda_context, "/status/?limit=100")
    assert len(answer["tasks"]) == 100 and "next" in answer
    assert scans.count == 1


def test_pages_cut_by_their_reads_resume_exactly_and_list_every_future_entry_once(
    table: list[TaskKey], lambda_context: Any
) -> None:
    scans = Scans()
    seen: list[str] = []
    target = "/status/?future_only&limit=2"
    pages = 0
    while True:
        before = scans.count
        answer = get(lambda_context, target)
        pages += 1
        assert scans.count - before <= LIST_REQUESTS
        seen += [f"{t['task_name']}@{t['trigger_at']}" for t in answer["tasks"]]
        if "next" not in answer:
            break
        target = f"/status/?future_only&limit=2&start_from={quote(answer['next'])}"
    assert sorted(seen) == sorted(str(key) for key in table)
    assert pages > 2, "a page of 2 reads at most 255 entries of the 1,003"


def test_a_page_on_a_slow_table_stops_after_its_time_and_the_next_goes_on(
    table: list[TaskKey], lambda_context: Any
) -> None:
    scans = Scans()
    wiring.api_repository()._client.meta.events.register(
        "before-call.dynamodb.Scan", lambda **_: time.sleep(LIST_SECONDS / 2 + 0.1)
    )
    seen: list[str] = []
    target = "/status/?future_only&limit=100"
    while True:
        before = scans.count
        answer = get(lambda_context, target)
        assert scans.count - before <= 2, "no request after the page's LIST_SECONDS"
        seen += [f"{t['task_name']}@{t['trigger_at']}" for t in answer["tasks"]]
        if "next" not in answer:
            break
        target = f"/status/?future_only&limit=100&start_from={quote(answer['next'])}"
    assert sorted(seen) == sorted(str(key) for key in table)
