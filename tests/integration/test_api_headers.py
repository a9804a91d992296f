"""Custom headers and on_failure through the API handler against moto: each rule a 400 naming the
header, values masked in every answer and log line, sealed in the table, nothing written on a 4xx."""

from __future__ import annotations

import json
from typing import Any

import pytest

from callme.headers import MAX_HEADER_BYTES, MAX_HEADERS
from callme.task import TaskKey
from handlers import wiring
from tests.conftest import HEADERS_KEY, stored_items
from tests.integration.test_api import Client

SECRET = "Bearer s3cr3t-Xq9-t0k3n"
HOOK = "http://127.0.0.1:9/failed"


@pytest.fixture
def client(aws: Any, lambda_context: Any) -> Client:
    return Client(lambda_context)


def test_headers_are_taken_and_every_answer_shows_their_names_with_values_masked(
    client: Client, aws: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    status, task = client.put("job", headers={"Authorization": SECRET, "X-Tenant": "acme"}, on_failure=HOOK)
    assert status == 201
    assert task["headers"] == {"Authorization": "***", "X-Tenant": "***"}
    assert task["on_failure"] == HOOK and task["on_failure_call"] is None
    entry = f"job@{task['trigger_at']}"
    answers = [
        client("GET", f"/task/{entry}"),
        client("GET", "/task/job"),
        client("GET", "/task"),
        client("GET", f"/status/{entry}"),
        client("DELETE", f"/task/{entry}"),
    ]
    for answer_status, answer, _ in answers:
        assert answer_status == 200
        assert SECRET not in json.dumps(answer) and "acme" not in json.dumps(answer)
    assert answers[0][1]["headers"] == {"Authorization": "***", "X-Tenant": "***"}
    logged = capfd.readouterr()
    assert SECRET not in logged.out + logged.err and "acme" not in logged.out + logged.err


def test_header_values_are_stored_sealed_never_in_clear(client: Client, aws: Any) -> None:
    status, task = client.put("job", headers={"Authorization": SECRET})
    assert status == 201
    [item] = stored_items(aws)
    assert SECRET not in json.dumps(item) and "s3cr3t" not in json.dumps(item)
    assert item["header_names"] == {"L": [{"S": "Authorization"}]}
    assert item["headers_sealed"]["S"].startswith("v1.")
    stored = wiring.api_repository().get(TaskKey("job", task["trigger_at"]))
    assert stored is not None and stored.definition.headers is not None
    assert wiring.vault().reveal("job", stored.definition.headers).pairs == (("Authorization", SECRET),)


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"Host": "evil.example"}, "'Host' cannot be set"),
        ({"content-length": "0"}, "'content-length' cannot be set"),
        ({"Transfer-Encoding": "chunked"}, "'Transfer-Encoding' cannot be set"),
        ({"Connection": "close"}, "'Connection' cannot be set"),
        ({"webhook-signature": "v1,forged"}, "'webhook-signature' cannot be set"),
        ({"Webhook-Id": "msg_x"}, "'Webhook-Id' cannot be set"),
        ({"callme-entry": "x@0"}, "'callme-entry' cannot be set"),
        ({"X-Evil": "a\r\nHost: b"}, "the value of 'X-Evil' holds a carriage return (CR)"),
        ({"X-Evil": "a\nb"}, "the value of 'X-Evil' holds a line feed (LF)"),
        ({"X-Evil": "a\x00b"}, "the value of 'X-Evil' holds a NUL character"),
        ({"Bad Name": "1"}, "'Bad Name' is not a valid header name"),
        ({"X-Number": 5}, "the value of 'X-Number' must be a string"),
        ({f"X-{i}": "1" for i in range(MAX_HEADERS + 1)}, f"holds {MAX_HEADERS + 1} headers; at most {MAX_HEADERS}"),
        ({"X-Big": "v" * MAX_HEADER_BYTES}, f"at most {MAX_HEADER_BYTES}"),
    ],
    ids=lambda value: "" if isinstance(value, dict) else value[:30],
)
def test_each_header_rule_is_a_400_naming_the_header_and_nothing_is_written(
    client: Client, aws: Any, headers: dict[str, Any], named: str
) -> None:
    status, answer = client.put("job", headers=headers)
    assert status == 400
    assert answer["error"].startswith("headers") and named in answer["error"]
    shown = [value for value in headers.values() if isinstance(value, str) and len(value) > 2]
    assert not any(value in answer["error"] for value in shown), "values are never echoed"
    assert stored_items(aws) == []


@pytest.mark.parametrize(
    ("on_failure", "problem"),
    [
        ("ftp://example.com/x", "must be an absolute http:// or https:// URL"),
        ("http://user:pw@example.com/x", "must not carry credentials"),
        ("http://169.254.169.254/latest", "on_failure"),
        (42, "must be a string"),
    ],
)
def test_on_failure_follows_the_callback_s_address_rules(
    client: Client, aws: Any, on_failure: Any, problem: str
) -> None:
    status, answer = client.put("job", on_failure=on_failure)
    assert status == 400
    assert answer["error"].startswith("on_failure") and problem in answer["error"]
    assert stored_items(aws) == []


def test_without_a_headers_key_headers_are_refused_not_stored_in_clear(
    client: Client, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALLME_HEADERS_KEY")
    wiring.reset()
    status, answer = client.put("job", headers={"Authorization": SECRET})
    assert status == 400 and "headers key" in answer["error"] and SECRET not in answer["error"]
    assert stored_items(aws) == []
    assert client.put("plain")[0] == 201, "tasks without headers need no key"


def test_the_same_headers_seal_alike_so_a_re_put_and_a_reschedule_compare_definitions(client: Client, aws: Any) -> None:
    first = client.put("job", headers={"Authorization": SECRET})
    again = client.put("job", headers={"Authorization": SECRET}, trigger_at=first[1]["trigger_at"])
    assert (first[0], again[0]) == (201, 200)
    sealed = {item["headers_sealed"]["S"] for item in stored_items(aws)}
    assert len(sealed) == 1
    assert HEADERS_KEY not in json.dumps(stored_items(aws))


def test_a_task_without_headers_or_on_failure_is_stored_as_before(client: Client, aws: Any) -> None:
    status, task = client.put("plain")
    assert status == 201 and task["headers"] == {} and task["on_failure"] is None
    [item] = stored_items(aws)
    assert not {"header_names", "headers_sealed", "on_failure", "on_failure_call", "headers"} & set(item)
