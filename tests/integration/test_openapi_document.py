"""The OpenAPI document says what the API does: built from the rules themselves and the limits in force.

Two properties, over the limits by default and over changed ones (CALLME_MAX_*):
- every body the API accepts validates against the document;
- every body the document allows is accepted, or refused for one of the rules the document lists as
  beyond its schema (RULES_BEYOND_THE_SCHEMA), recognised by the error the API answers.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from handlers import api, wiring
from handlers.openapi import RULES_BEYOND_THE_SCHEMA
from tests.conftest import api_event

# How each rule beyond the schema shows in the API's error.
REFUSALS = {
    "past": r"trigger_at .* is in the past",
    "horizon": r"trigger_at .* is too far ahead",
    "minute": r"trigger_at \d+ is not on a minute boundary",
    "callable": r"trigger_at \d+ with max_delay \d+ can never be called",
    "callback": (
        r"callback .*(is not a valid URL|has no host|has an invalid host|must not carry credentials"
        r"|has port 0|is refused)"
    ),
    "task_name": r"task_name .* differs from .* in the path",
    "headers": (
        # a name is quoted as Python's repr quotes it: in double quotes when it holds a single quote
        r"headers( holds \d+ headers| take \d+ bytes|: (['\"]).*\2 (is not a valid header name|cannot be set)"
        r"""|: ['"].*['"] and ['"].*['"] are the same header| cannot be accepted)"""
    ),
    "on_failure": (
        r"on_failure .*(is not a valid URL|has no host|has an invalid host|must not carry credentials"
        r"|has port 0|is refused)"
    ),
    "payload": r"payload (is \d+ bytes; the limit is|must be Unicode text)",
    "body": r"request body is \d+ bytes; the limit is",
}
CHANGED_LIMITS = {
    "CALLME_MAX_RETRY": "3",
    "CALLME_MAX_MAX_DELAY": "90",
    "CALLME_MAX_URL_LENGTH": "64",
    "CALLME_MAX_PAYLOAD_BYTES": "100",
    "CALLME_MAX_AHEAD_DAYS": "30",
    "CALLME_MAX_PAGE_SIZE": "50",
    "CALLME_DEFAULT_PAGE_SIZE": "20",
}


@pytest.fixture(params=["default limits", "changed limits"])
def limits_in_force(request: pytest.FixtureRequest, aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.param == "changed limits":
        for name, value in CHANGED_LIMITS.items():
            monkeypatch.setenv(name, value)
    wiring.reset()
    yield


def served_document(context: Any) -> dict[str, Any]:
    response = api.lambda_handler(api_event("GET", "/openapi.json"), context)
    assert response["statusCode"] == 200
    document: dict[str, Any] = json.loads(response["body"])
    return document


def put(context: Any, name: str, body: dict[str, Any]) -> tuple[int, Any]:
    response = api.lambda_handler(api_event("PUT", f"/task/{name}", json.dumps(body)), context)
    return response["statusCode"], json.loads(response["body"])


def due_already(status: int, answer: Any) -> bool:
    """A PUT again of an entry an earlier example registered in the current minute: refused for
    the entry's state (the dispatcher may be calling it), whatever the body."""
    return status == 409 and "the dispatcher may be calling it" in answer["error"]


def test_every_rule_beyond_the_schema_is_written_in_the_document_and_recognised(
    limits_in_force: None, lambda_context: Any
) -> None:
    assert set(REFUSALS) == set(RULES_BEYOND_THE_SCHEMA)
    description = served_document(lambda_context)["components"]["schemas"]["TaskInput"]["description"]
    limits = wiring.settings().limits
    assert f"at most {limits.max_ahead_seconds // 86400} days ahead" in description
    assert f"at most {limits.max_payload_bytes} bytes of UTF-8" in description


def test_the_document_carries_the_limits_in_force(limits_in_force: None, lambda_context: Any) -> None:
    document = served_document(lambda_context)
    limits = wiring.settings().limits
    fields = document["components"]["schemas"]["TaskInput"]["properties"]
    assert fields["callback"]["maxLength"] == limits.max_url_length
    assert fields["payload"]["maxLength"] == limits.max_payload_bytes
    assert fields["retry"]["oneOf"][0]["maximum"] == limits.max_retry
    assert fields["max_delay"]["oneOf"][0]["maximum"] == limits.max_max_delay
    listing = {p["name"]: p for p in document["paths"]["/status/"]["get"]["parameters"]}
    assert listing["limit"]["schema"]["maximum"] == limits.max_page_size
    assert fields["retry"]["default"] == 1 and fields["callback_method"]["default"] == "GET"
    states = document["components"]["schemas"]["Task"]["properties"]["task_state"]["enum"]
    assert states == ["pending", "running", "successful", "failed", "skipped", "cancelled"]


# -- accepted => valid ------------------------------------------------------------------------------

DIGITS = st.integers(0, 10**13)
VALUES = {
    "trigger_at": st.one_of(
        st.builds(lambda n, u: f"+{n}{u}", st.integers(0, 10**12), st.sampled_from("mhd")),
        st.builds(lambda n, u: f"+{n:0{len(str(n)) + 2}d}{u}", st.integers(0, 99), st.sampled_from("mhd")),
        st.builds(lambda n: n * 60, st.integers(31_000_000, 31_100_000)),
        st.builds(lambda n: str(n * 60), st.integers(31_000_000, 31_100_000)),
    ),
    "callback": st.sampled_from(["http://example.com/x", "HTTPS://example.com/a?b=c", "http://127.0.0.1:8080/"]),
    "callback_method": st.sampled_from(["GET", "post", "Put", "pAtCh", "delete", "HEAD"]),
    "payload": st.text(max_size=120),
    "expected_http_status": st.one_of(st.integers(0, 1000), DIGITS.map(str), DIGITS.map(lambda n: f"00{n}")),
    "retry": st.one_of(st.integers(-2, 120), st.integers(0, 120).map(str), st.just("-0"), st.just("-00")),
    "max_delay": st.one_of(st.integers(-2, 2000), st.integers(0, 2000).map(lambda n: f"0{n}")),
    "headers": st.dictionaries(
        st.sampled_from(["Authorization", "X-Tenant", "x-a", "Host", "webhook-id", "bad name"]),
        st.sampled_from(["Bearer x", "1", "", " lead", "a\tb", "tab\t", "é"]),
        max_size=3,
    ),
    "on_failure": st.sampled_from(["http://example.com/f", "http://127.0.0.1:9/f", "ftp://x/", "http://10.0.0.1/"]),
}


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.sets(st.sampled_from(sorted(VALUES))))
    body = {name: draw(VALUES[name]) for name in sorted(chosen | {"trigger_at", "callback"})}
    if draw(st.booleans()):
        body["task_name"] = "accepted"
    return body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies())
def test_every_body_the_api_accepts_validates_against_the_document(
    limits_in_force: None, lambda_context: Any, body: dict[str, Any]
) -> None:
    status, answer = put(lambda_context, "accepted", body)
    if status in (200, 201):
        schemas = served_document(lambda_context)["components"]["schemas"]
        jsonschema.Draft4Validator(schemas["TaskInput"]).validate(body)
    elif not due_already(status, answer):
        assert status in (400, 413), answer


# -- valid => accepted, or refused for a documented rule ----------------------------------------


@functools.cache
def put_cases(document: str) -> st.SearchStrategy[Any]:
    """schemathesis' requests for PUT /task/{ident} drawn from ``document`` (its JSON text)."""
    return schemathesis.openapi.from_dict(json.loads(document))["/task/{ident}"]["PUT"].as_strategy()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), reachable=st.booleans())
def test_every_body_the_document_allows_is_accepted_or_refused_for_a_listed_rule(
    limits_in_force: None, lambda_context: Any, data: st.DataObject, reachable: bool
) -> None:
    case = data.draw(put_cases(json.dumps(served_document(lambda_context))))
    body = dict(case.body)
    if reachable:  # a body the policy lets through, so that acceptance is exercised too
        body["callback"] = "http://example.com/x"
    status, answer = put(lambda_context, case.path_parameters["ident"], body)
    if status in (200, 201) or due_already(status, answer):
        return
    assert status in (400, 413), answer
    broken = [rule for rule, refusal in REFUSALS.items() if re.match(refusal, answer["error"], re.DOTALL)]
    assert broken, f"refused for a rule the document does not list: {answer['error']!r}"


# -- POST /tasks ------------------------------------------------------------------------------------


def test_the_document_describes_post_tasks_with_the_limits_in_force(limits_in_force: None, lambda_context: Any) -> None:
    document = served_document(lambda_context)
    limits = wiring.settings().limits
    batch = document["components"]["schemas"]["TaskBatch"]
    assert batch["properties"]["tasks"]["maxItems"] == limits.max_batch_tasks
    assert f"At most {limits.max_batch_body_bytes} bytes" in batch["description"]
    assert set(document["paths"]["/tasks"]["post"]["responses"]) == {"200", "400", "413"}


@functools.cache
def batch_cases(document: str) -> st.SearchStrategy[Any]:
    """schemathesis' requests for POST /tasks drawn from ``document`` (its JSON text)."""
    return schemathesis.openapi.from_dict(json.loads(document))["/tasks"]["POST"].as_strategy()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_batch_the_document_allows_is_answered_item_by_item_for_listed_rules(
    limits_in_force: None, lambda_context: Any, data: st.DataObject
) -> None:
    case = data.draw(batch_cases(json.dumps(served_document(lambda_context))))
    response = api.lambda_handler(api_event("POST", "/tasks", json.dumps(case.body)), lambda_context)
    assert response["statusCode"] == 200, response["body"]
    results = json.loads(response["body"])["results"]
    assert len(results) == len(case.body["tasks"])
    for sent, result in zip(case.body["tasks"], results, strict=True):
        if result["status"] in (200, 201):
            assert result["task"]["task_name"] == sent["task_name"]
        elif not due_already(result["status"], result):
            assert result["status"] in (400, 413), result
            broken = [rule for rule, refusal in REFUSALS.items() if re.match(refusal, result["error"], re.DOTALL)]
            assert broken, f"refused for a rule the document does not list: {result['error']!r}"
