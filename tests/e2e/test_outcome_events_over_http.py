"""Outcome events on the local stack, over HTTP, as a user meets them."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import LocalStack, Sink, next_minute

pytestmark = pytest.mark.e2e


def test_outcome_events_go_to_the_log_locally(stack: LocalStack, sink: Sink) -> None:
    at = next_minute()
    tasks = [
        {"task_name": "ok", "trigger_at": at, "callback": sink.on("/ok", 200), "payload": "secret-1"},
        {"task_name": "fails", "trigger_at": at, "callback": sink.on("/fails", 404), "payload": "secret-2"},
    ]
    response = stack.request("POST", "/tasks", {"tasks": tasks})
    assert [r["status"] for r in response.json()["results"]] == [201, 201]
    report = stack.tick(at + 1)
    assert report["succeeded"] == 1 and report["failed"] == 1
    lines = [json.loads(line) for line in stack.output if '"outcome event"' in line]
    events = {line["event"]["detail"]["task_name"]: line["event"] for line in lines}
    assert set(events) == {"ok", "fails"}
    assert events["ok"]["source"] == "callme" and events["ok"]["detail-type"] == "Task Succeeded"
    assert events["fails"]["detail-type"] == "Task Failed" and events["fails"]["detail"]["response_status"] == 404
    assert not any("secret-" in line for line in stack.output)
