"""DELETE /task/<name>: every pending entry cancelled, in time, with a bounded answer that never hides
a half-cancelled task."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from callme.dynamodb import to_row
from callme.task import Task, TaskDefinition, TaskKey, TaskState, new_revision
from handlers import api, wiring
from local.lambda_context import LocalContext
from tests.conftest import api_event, stored_items

FIRST = 1858809600


def call(context: Any, method: str, target: str, body: Any = None) -> tuple[int, Any, dict[str, Any]]:
    raw = None if body is None else json.dumps(body)
    response = api.lambda_handler(api_event(method, target, raw), context)
    headers = {k.lower(): v for k, v in (response.get("multiValueHeaders") or {}).items()}
    return response["statusCode"], json.loads(response["body"]), headers


def put_entries(context: Any, name: str, count: int) -> None:
    for i in range(count):
        body = {"trigger_at": str(FIRST + 60 * i), "callback": "http://example.com/x"}
        assert call(context, "PUT", f"/task/{name}", body)[0] == 201


def states(client: Any) -> dict[int, str]:
    return {int(item["trigger_at"]["N"]): item["task_state"]["S"] for item in stored_items(client)}


def test_delete_by_name_counts_every_cancelled_entry_and_shows_the_first(aws: Any, lambda_context: Any) -> None:
    put_entries(lambda_context, "job", 150)
    call(lambda_context, "DELETE", f"/task/job@{FIRST + 60 * 149}")  # one already cancelled
    status, answer, _ = call(lambda_context, "DELETE", "/task/job")
    assert status == 200
    assert answer["cancelled"] == 149
    assert [t["trigger_at"] for t in answer["tasks"]] == [FIRST + 60 * i for i in range(100)]
    assert {t["task_state"] for t in answer["tasks"]} == {"cancelled"}
    assert set(states(aws).values()) == {"cancelled"}
    assert call(lambda_context, "DELETE", "/task/job")[:2] == (200, {"cancelled": 0, "tasks": []})


def test_a_delete_that_runs_out_of_time_says_how_far_it_got_and_a_repeat_finishes(
    served_storage: Any, lambda_context: Any
) -> None:
    # Given 300 pending entries, and writes that take 80 ms each
    aws = served_storage
    put_entries(lambda_context, "job", 300)

    def slow_write(**_: Any) -> None:
        time.sleep(0.08)

    wiring.api_repository()._client.meta.events.register("before-send.dynamodb.PutItem", slow_write)
    total, partial = 0, 0
    for _ in range(100):
        # When DELETE /task/job runs in a function with 5 s left
        context = LocalContext.for_function("callme-api", timeout_seconds=5)
        started = time.monotonic()
        status, answer, headers = call(context, "DELETE", "/task/job")
        # Then each answer comes before the function's timeout (past it, API Gateway answers 502; the
        # answer margin the code keeps is for a loaded machine), and the count is exactly what storage holds
        assert time.monotonic() - started < 5
        total += answer["cancelled"]
        assert sum(state == "cancelled" for state in states(aws).values()) == total
        if status == 200:
            break
        assert status == 503, answer
        assert headers["retry-after"] == ["1"]
        assert "send DELETE /task/job again to cancel the rest" in answer["error"]
        partial += 0 < answer["cancelled"] < 300
    assert partial, "the time ran out at least once, after cancelling some"
    assert total == 300
    assert set(states(aws).values()) == {"cancelled"}


def test_an_entry_that_finishes_while_the_task_is_cancelled_keeps_its_outcome(aws: Any, lambda_context: Any) -> None:
    # Given two pending entries, the first of which the dispatcher records as successful just as
    # the cancel of it is being written
    put_entries(lambda_context, "job", 2)
    dispatcher = wiring.repository()
    first = TaskKey("job", FIRST)
    raced: list[str] = []

    def finish_first(params: dict[str, Any], **_: Any) -> None:
        if params["Item"]["trigger_at"]["N"] == str(FIRST) and not raced:
            raced.append("done")
            current = dispatcher.get(first)
            assert current is not None
            dispatcher.save(replace(current, state=TaskState.SUCCESSFUL, revision=new_revision()), current.revision)

    wiring.api_repository()._client.meta.events.register("before-parameter-build.dynamodb.PutItem", finish_first)
    status, answer, _ = call(lambda_context, "DELETE", "/task/job")
    assert status == 200
    assert answer["cancelled"] == 1
    assert [t["trigger_at"] for t in answer["tasks"]] == [FIRST + 60]
    assert states(aws) == {FIRST: "successful", FIRST + 60: "cancelled"}


def test_a_repeated_delete_skips_the_entries_it_already_cancelled_in_a_few_reads(aws: Any, lambda_context: Any) -> None:
    # Given 3,000 entries of which the first 2,750 were cancelled by an earlier, interrupted DELETE
    definition = TaskDefinition(callback="http://example.com/x")
    rows = []
    for i in range(3000):
        task = Task.new(TaskKey("job", FIRST + 60 * i), definition, time.time())
        rows.append(to_row(task.cancelled(time.time(), 86400) if i < 2750 else task, 8))
    for start in range(0, len(rows), 25):
        batch = [{"PutRequest": {"Item": row}} for row in rows[start : start + 25]]
        aws.batch_write_item(RequestItems={"callme-tasks": batch})
    queries: list[int] = []
    wiring.api_repository()._client.meta.events.register(
        "before-call.dynamodb.Query", lambda params, **_: queries.append(params.get("Limit", 0))
    )
    # When it is repeated
    status, answer, _ = call(lambda_context, "DELETE", "/task/job")
    # Then it reads past the cancelled ones in a few calls (each evaluating more), not one per page
    assert (status, answer["cancelled"]) == (200, 250)
    assert len(queries) <= 4, queries
