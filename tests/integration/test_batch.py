"""POST /tasks in-process against moto: each item validated and written on its own (concurrently,
with PUT's conditional writes), results in order, one bad item or one failed write never failing
the others, and a clear 4xx for a batch that is not one."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from handlers import wiring
from tests.conftest import stored_items
from tests.integration.test_api import CALLBACK, Client
from tests.integration.test_faults import throttled

AT = 1858809600  # a minute far enough ahead


@pytest.fixture
def client(aws: Any, lambda_context: Any) -> Client:
    return Client(lambda_context)


def item(name: str, **fields: Any) -> dict[str, Any]:
    return {"task_name": name, "trigger_at": AT, "callback": CALLBACK, **fields}


def post(client: Client, tasks: Any) -> tuple[int, Any, dict[str, str]]:
    return client("POST", "/tasks", {"tasks": tasks})


def stored(aws: Any) -> dict[str, dict[str, Any]]:
    return {entry["task_name"]["S"]: entry for entry in stored_items(aws)}


def test_bad_items_refuse_only_themselves_and_results_keep_the_order(client: Client, aws: Any) -> None:
    tasks = [
        item("first", payload="one"),
        item("bad name!"),
        "not an object",
        item("no-callback", callback=None),
        item("unknown", colour="blue"),
        {"trigger_at": AT, "callback": CALLBACK},
        item("too-big", payload="x" * (64 * 1024 + 1)),
        item("private", callback="http://10.0.0.1/"),
        item("last", retry=3),
    ]
    status, answer, headers = post(client, tasks)
    assert status == 200
    assert "retry-after" not in headers
    results = answer["results"]
    assert [r["status"] for r in results] == [201, 400, 400, 400, 400, 400, 413, 400, 201]
    assert results[0]["task"]["task_name"] == "first" and results[0]["task"]["payload"] == "one"
    assert results[8]["task"]["retry"] == 3
    errors = [r.get("error", "") for r in results]
    assert "'bad name!' is invalid" in errors[1]
    assert errors[2] == "a task must be a JSON object, not a string"
    assert errors[3] == "callback is required"
    assert "'colour'" in errors[4]
    assert errors[5] == "task_name is required"
    assert errors[6].startswith("payload is 65537 bytes")
    assert errors[7].startswith("callback")
    assert all("task" not in r for r in results[1:8])
    assert sorted(stored(aws)) == ["first", "last"]


def test_each_item_is_answered_as_a_put_of_it_would_be(client: Client, aws: Any) -> None:
    assert client.put("replaced", trigger_at=AT, payload="old")[0] == 201
    assert client.put("ran", trigger_at=AT)[0] == 201
    aws.update_item(
        TableName="callme-tasks",
        Key={"task_name": {"S": "ran"}, "trigger_at": {"N": str(AT)}},
        UpdateExpression="SET task_state = :s, attempts = :a",
        ExpressionAttributeValues={":s": {"S": "successful"}, ":a": {"N": "1"}},
    )
    status, answer, _ = post(client, [item("new"), item("replaced", payload="new"), item("ran", payload="again")])
    assert status == 200
    results = answer["results"]
    assert [r["status"] for r in results] == [201, 200, 409]
    assert results[1]["task"]["payload"] == "new"
    assert f"ran@{AT}" in results[2]["error"] and "successful" in results[2]["error"]
    assert stored(aws)["replaced"]["payload"]["S"] == "new"
    assert "payload" not in stored(aws)["ran"] or stored(aws)["ran"]["payload"]["S"] != "again"


def test_duplicates_within_a_batch_are_written_once_each_as_concurrent_puts(client: Client, aws: Any) -> None:
    """The same entry twice in one batch: both writes are conditional, so one creates it and the
    other replaces it (in whichever order they land); another minute of the name is its own entry."""
    tasks = [item("twice", payload="a"), item("twice", payload="b"), item("twice", trigger_at=AT + 60)]
    status, answer, _ = post(client, tasks)
    assert status == 200
    results = answer["results"]
    assert sorted(r["status"] for r in results[:2]) == [200, 201]
    assert results[2]["status"] == 201
    entries = [e for e in stored_items(aws) if e["task_name"]["S"] == "twice"]
    assert sorted(int(e["trigger_at"]["N"]) for e in entries) == [AT, AT + 60]
    kept = next(e for e in entries if int(e["trigger_at"]["N"]) == AT)
    replacing = next(r for r in results[:2] if r["status"] == 200)
    assert kept["payload"]["S"] == replacing["task"]["payload"], "the entry stored is the one answered last"


def test_concurrent_batches_of_the_same_entries_create_each_once(client: Client, aws: Any) -> None:
    tasks = [item(f"race-{i:02d}") for i in range(30)]
    answers: list[Any] = []

    def send() -> None:
        answers.append(post(client, tasks))

    threads = [threading.Thread(target=send) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _, _ in answers] == [200, 200, 200]
    for i in range(30):
        statuses = sorted(answer["results"][i]["status"] for _, answer, _ in answers)
        assert statuses == [200, 200, 201], (i, statuses)
    assert sorted(stored(aws)) == [f"race-{i:02d}" for i in range(30)]


def test_a_storage_failure_on_one_item_is_that_item_s_503(
    client: Client, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage refuses every write of one entry (throttled past botocore's retries): that item is a
    503 to send again, the others are written."""
    storage = wiring.api_repository()._client

    def refuse_one(request: Any, **_: Any) -> Any:
        if b"PutItem" in request.headers.get("X-Amz-Target", b"") and b'"unlucky"' in request.body:
            request.headers["X-Amz-Target"] = b"DynamoDB_20120810.ListTables"
            request.body = b"{}"
            return throttled(request)
        return None

    storage.meta.events.register_first("before-send.dynamodb", refuse_one)
    status, answer, headers = post(client, [item("lucky-1"), item("unlucky"), item("lucky-2")])
    assert status == 200
    assert [r["status"] for r in answer["results"]] == [201, 503, 201]
    assert answer["results"][1]["error"] == (
        "storage is unavailable (ProvisionedThroughputExceededException); retry the request"
    )
    assert headers["retry-after"] == "1"
    assert sorted(stored(aws)) == ["lucky-1", "lucky-2"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ("[]", 400, "request body must be a JSON object, not an array"),
        ("{", 400, "request body is not valid JSON"),
        ("{}", 400, "tasks is required"),
        ('{"tasks": {"task_name": "a"}}', 400, "tasks must be an array of tasks, not an object"),
        ('{"tasks": []}', 400, "tasks holds 0 tasks; send 1 to 100 in one request"),
        (json.dumps({"tasks": [item(f"n{i}") for i in range(101)]}), 400, "tasks holds 101 tasks; send 1 to 100"),
        ('{"tasks": [], "more": 1}', 400, "unknown field 'more'; allowed: tasks"),
        (json.dumps({"tasks": [item("big", payload="x" * 60_000)] * 51}), 413, "request body is 30"),
    ],
)
def test_a_batch_that_is_not_one_is_refused_whole(client: Client, aws: Any, body: str, status: int, error: str) -> None:
    answered, answer, _ = client("POST", "/tasks", body)
    assert answered == status
    assert answer["error"].startswith(error), answer["error"]
    assert stored_items(aws) == []


def test_a_batch_body_may_be_far_larger_than_one_put_s(client: Client, aws: Any) -> None:
    tasks = [item(f"big-{i}", payload="x" * 60_000) for i in range(40)]  # 2.4 MB; one PUT takes 128 KiB
    status, answer, _ = post(client, tasks)
    assert status == 200
    assert [r["status"] for r in answer["results"]] == [201] * 40
    pages = aws.get_paginator("scan").paginate(TableName="callme-tasks", Select="COUNT")
    assert sum(page["Count"] for page in pages) == 40


def test_other_methods_on_tasks_are_405(client: Client) -> None:
    status, _, headers = client("GET", "/tasks")
    assert status == 405 and headers["allow"] == "POST"
