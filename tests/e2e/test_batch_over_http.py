"""POST /tasks on the local stack, over HTTP, as a user meets it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.e2e


def test_a_batch_of_100_with_3_bad_items_creates_the_97_others(stack: LocalStack) -> None:
    tasks: list[dict[str, Any]] = [
        {"task_name": f"bulk-{i:03d}", "trigger_at": "+1h", "callback": f"https://example.com/bulk/{i}"}
        for i in range(100)
    ]
    tasks[7]["trigger_at"] = "+6hx"
    tasks[42] = {**tasks[42], "colour": "blue"}
    tasks[99]["payload"] = "x" * (64 * 1024 + 1)
    response = stack.request("POST", "/tasks", {"tasks": tasks}, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 100
    bad = {7: 400, 42: 400, 99: 413}
    for i, result in enumerate(results):
        if i in bad:
            assert result["status"] == bad[i] and "task" not in result, (i, result)
        else:
            assert result["status"] == 201, (i, result)
            assert result["task"]["task_name"] == f"bulk-{i:03d}" and result["task"]["task_state"] == "pending"
    assert "+6hx" in results[7]["error"] and "colour" in results[42]["error"] and "payload" in results[99]["error"]
    listed = stack.request("GET", "/status/?limit=1000").json()["tasks"]
    assert sorted(t["task_name"] for t in listed) == [f"bulk-{i:03d}" for i in range(100) if i not in bad]


def test_a_body_over_the_batch_limit_is_refused_by_callme_with_a_clear_413(stack: LocalStack) -> None:
    padding = "x" * 3_000_000
    response = stack.request("POST", "/tasks", {"tasks": [], "padding": padding})
    assert response.status_code == 413
    assert response.json()["error"].startswith("request body is 3000")
    assert "the limit is 3000000" in response.json()["error"]


def test_the_largest_batch_answers_within_lambdas_limits(stack: LocalStack) -> None:
    """A batch at the body limit, of the characters that grow most in the answer (é: 2 bytes sent,
    6 carried as \\u00e9), is answered (the local gateway refuses an answer Lambda would refuse)."""
    payload = "é" * 14_800  # 29,600 bytes; 100 of them and the rest of each task fill about 2.98 MB
    tasks = [
        {"task_name": f"big-{i:03d}", "trigger_at": "+1h", "callback": "https://example.com/", "payload": payload}
        for i in range(100)
    ]
    body = json.dumps({"tasks": tasks}, ensure_ascii=False).encode()
    assert 2_900_000 < len(body) <= 3_000_000
    response = stack.request(
        "POST", "/tasks", body, headers={"Content-Type": "application/json; charset=utf-8"}, timeout=60
    )
    assert response.status_code == 200, response.text[:500]
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201] * 100
    trimmed = [r for r in results if "trimmed" in r]
    assert trimmed, "this batch's whole answer would not fit: some payloads are left out"
    assert all("payload" not in r["task"] for r in trimmed)
    whole = stack.entry(trimmed[0]["task"]["task_name"] + "@" + str(trimmed[0]["task"]["trigger_at"]))
    assert whole["payload"] == payload
