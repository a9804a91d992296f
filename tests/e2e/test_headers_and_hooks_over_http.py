"""Custom headers and failure hooks end to end: the local stack (`python -m local`) calls a loopback
receiver, which gets the task's own header on every attempt and one signed failure hook call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from tests.e2e.conftest import LocalStack, Sink, next_minute

pytestmark = pytest.mark.e2e
SECRET = "Bearer e2e-s3cr3t-7Hq2"


def every_file_under(folder: Path) -> bytes:
    return b"".join(path.read_bytes() for path in folder.rglob("*") if path.is_file())


def test_a_custom_authorization_header_arrives_on_every_attempt_and_is_masked_everywhere(
    stack: LocalStack, sink: Sink
) -> None:
    trigger = next_minute()
    answer = stack.put(
        "authed",
        trigger_at=trigger,
        callback=sink.on("/authed", 500, 200),
        callback_method="POST",
        payload="{}",
        retry=1,
        headers={"Authorization": SECRET, "X-Tenant": "acme-tenant"},
    )
    assert answer["headers"] == {"Authorization": "***", "X-Tenant": "***"}
    report = stack.tick(trigger + 1)
    assert report["succeeded"] == 1
    calls = sink.calls("/authed")
    assert [c.headers["authorization"] for c in calls] == [SECRET, SECRET], "on every attempt"
    assert [c.headers["x-tenant"] for c in calls] == ["acme-tenant"] * 2
    for call in calls:
        Webhook(stack.secret).verify(call.body, call.headers)
    entry = stack.entry(f"authed@{trigger}")
    assert entry["headers"] == {"Authorization": "***", "X-Tenant": "***"}
    listed = stack.request("GET", "/task/authed").text + stack.request("GET", "/task").text
    assert SECRET not in json.dumps(entry) + listed
    assert SECRET not in "".join(stack.output), "no log line holds a value"
    at_rest = every_file_under(stack.state_dir)
    assert SECRET.encode() not in at_rest and b"acme-tenant" not in at_rest, "stored sealed"


def test_an_entry_that_fails_calls_its_failure_hook_exactly_once_signed(stack: LocalStack, sink: Sink) -> None:
    trigger = next_minute()
    stack.put(
        "doomed",
        trigger_at=trigger,
        callback=sink.on("/doomed", 503),
        callback_method="POST",
        payload='{"card": "4111-secret-payload"}',
        retry=2,
        headers={"Authorization": SECRET},
        on_failure=sink.on("/failed", 204),
    )
    report = stack.tick(trigger + 1)
    assert (report["failed"], report["hook_calls"], report["hooks_delivered"]) == (1, 1, 1)
    assert len(sink.calls("/doomed")) == 3
    [hook] = sink.calls("/failed")
    assert hook.method == "POST" and hook.headers["content-type"] == "application/json"
    Webhook(stack.secret).verify(hook.body, hook.headers)
    entry = stack.entry(f"doomed@{trigger}")
    assert hook.headers["webhook-id"] == entry["on_failure_call"]["webhook_id"] != entry["webhook_id"]
    notice = json.loads(hook.body)
    assert notice["type"] == "task.failed"
    assert notice["data"]["task_name"] == "doomed" and notice["data"]["attempts"] == 3
    assert "payload" not in notice["data"] and b"4111-secret-payload" not in hook.body
    assert SECRET.encode() not in hook.body and "authorization" not in hook.headers
    assert (entry["on_failure_call"]["state"], entry["on_failure_call"]["status"]) == ("delivered", 204)
    for later in (trigger + 61, trigger + 3600):
        stack.tick(later)
    assert len(sink.calls("/failed")) == 1, "exactly once"


def test_an_entry_skipped_past_max_delay_calls_its_failure_hook(stack: LocalStack, sink: Sink) -> None:
    trigger = next_minute()
    stack.put("late", trigger_at=trigger, callback=sink.on("/late"), max_delay=1, on_failure=sink.on("/late-failed"))
    report = stack.tick(trigger + 120)
    assert (report["skipped"], report["hooks_delivered"]) == (1, 1)
    assert sink.calls("/late") == []
    [hook] = sink.calls("/late-failed")
    Webhook(stack.secret).verify(hook.body, hook.headers)
    assert json.loads(hook.body)["type"] == "task.skipped"
