"""The OpenAPI document says what the schedule routes do (as tests/integration/test_openapi_document.py
does for tasks): every schedule body the API accepts validates against ScheduleInput; every body the
document allows is accepted or refused for a rule it lists beyond the schema (SCHEDULE_RULES, or a
task rule other than trigger_at's); every answer validates against the response schema."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import hypothesis.strategies as st
import jsonschema
import schemathesis
from hypothesis import HealthCheck, given, settings

from handlers import api
from handlers.openapi import SCHEDULE_RULES
from tests.conftest import api_event
from tests.integration.test_openapi_document import REFUSALS as TASK_REFUSALS
from tests.integration.test_openapi_document import VALUES as TASK_VALUES
from tests.integration.test_openapi_document import limits_in_force, served_document

__all__ = ["limits_in_force"]  # the fixture, shared

BOUND_FORMS = r"is not a relative time|is neither a Unix timestamp|must be a Unix timestamp"
QUOTED = r"""['"].*['"]"""  # a value as Python's repr quotes it: '...', or "..." when it holds a '
REFUSALS = {
    "timing": r"a schedule (takes exactly one of cron and every|needs cron)",
    "cron": rf"cron ({QUOTED}: |must be a string|must not be empty|is too long)",
    "every": (
        rf"every ({QUOTED} is (not an interval|too short|too long)|must be a string|must not be empty|is too long)"
    ),
    "timezone": rf"timezone ({QUOTED} is not an IANA time zone name|must be a string|must not be empty|is too long)",
    "bounds": (
        rf"(start_at|end_at) .*({BOUND_FORMS}|is in the past|is too far ahead|is not on a minute boundary)"
        r"|end_at \d+ is before start_at|the schedule never runs between"
    ),
    "ends": r"the schedule has no run after now",
}
TASK_RULES = {
    rule: TASK_REFUSALS[rule] for rule in ("callback", "task_name", "payload", "body", "on_failure", "headers")
}
SCHEDULE_VALUES = {
    **{field: values for field, values in TASK_VALUES.items() if field != "trigger_at"},
    "timezone": st.sampled_from(["UTC", "Europe/Lisbon", "America/New_York", "Australia/Lord_Howe"]),
    "start_at": st.one_of(st.builds(lambda n: f"+{n}m", st.integers(0, 600)), st.just(60 * 31_000_000)),
    "end_at": st.builds(lambda n: f"+{n}d", st.integers(2, 300)),
    "paused": st.booleans(),
}
TIMINGS = st.one_of(
    st.fixed_dictionaries({"cron": st.sampled_from(["*/7 * * * *", "0 9 * * MON-FRI", "@daily", "0 0 29 2 *"])}),
    st.fixed_dictionaries({"every": st.builds(lambda n, u: f"{n}{u}", st.integers(1, 300), st.sampled_from("mhd"))}),
)


def call(context: Any, method: str, target: str, body: Any = None) -> tuple[int, Any]:
    response = api.lambda_handler(api_event(method, target, None if body is None else json.dumps(body)), context)
    return response["statusCode"], json.loads(response["body"])


def validator(document: dict[str, Any], schema: str) -> jsonschema.Draft4Validator:
    """A validator of one component schema, resolving the document's $refs (OpenAPI 3.0's nullable
    read as JSON Schema's null type)."""
    text = json.dumps(document["components"]).replace('"nullable": true', '"x-nullable": true')
    components = json.loads(text)

    def nullable(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: nullable(v) for k, v in node.items()}
            if node.pop("x-nullable", False):
                if "type" not in node:
                    return {"anyOf": [{"type": "null"}, node]}
                node["type"] = [node["type"], "null"]
            return node
        return [nullable(v) for v in node] if isinstance(node, list) else node

    root = {"components": nullable(components), **nullable(components["schemas"][schema])}
    return jsonschema.Draft4Validator(root)


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.sets(st.sampled_from(sorted(SCHEDULE_VALUES))))
    body = {name: draw(SCHEDULE_VALUES[name]) for name in sorted(chosen)}
    body.update(draw(TIMINGS))
    body["callback"] = draw(TASK_VALUES["callback"])
    return body


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies())
def test_every_schedule_the_api_accepts_validates_against_the_document(
    limits_in_force: None, lambda_context: Any, body: dict[str, Any]
) -> None:
    status, answer = call(lambda_context, "PUT", "/schedule/accepted", body)
    document = served_document(lambda_context)
    if status in (200, 201):
        validator(document, "ScheduleInput").validate(body)
        validator(document, "Schedule").validate(answer)
    else:
        assert status in (400, 413), answer


@functools.cache
def put_cases(document: str) -> st.SearchStrategy[Any]:
    """schemathesis' requests for PUT /schedule/{name} drawn from ``document`` (its JSON text)."""
    return schemathesis.openapi.from_dict(json.loads(document))["/schedule/{name}"]["PUT"].as_strategy()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), reachable=st.booleans())
def test_every_schedule_the_document_allows_is_accepted_or_refused_for_a_listed_rule(
    limits_in_force: None, lambda_context: Any, data: st.DataObject, reachable: bool
) -> None:
    case = data.draw(put_cases(json.dumps(served_document(lambda_context))))
    body = dict(case.body)
    if reachable:  # a body the policy lets through, with a timing, so that acceptance is exercised too
        body["callback"] = "http://example.com/x"
        if "cron" not in body and "every" not in body:
            body["every"] = "1h"
    status, answer = call(lambda_context, "PUT", f"/schedule/{case.path_parameters['name']}", body)
    if status in (200, 201):
        return
    assert status in (400, 413), answer
    rules = {**REFUSALS, **TASK_RULES}
    broken = [rule for rule, refusal in rules.items() if re.match(refusal, answer["error"], re.DOTALL)]
    assert broken, f"refused for a rule the document does not list: {answer['error']!r}"


def test_every_rule_beyond_the_schema_is_written_in_the_document(limits_in_force: None, lambda_context: Any) -> None:
    assert set(REFUSALS) == set(SCHEDULE_RULES)
    description = served_document(lambda_context)["components"]["schemas"]["ScheduleInput"]["description"]
    assert all(rule in description for rule in SCHEDULE_RULES.values())


def test_the_answers_of_every_schedule_route_validate_against_the_document(
    limits_in_force: None, lambda_context: Any
) -> None:
    document = served_document(lambda_context)
    assert {"/schedule/{name}", "/schedule/"} <= set(document["paths"])
    schedule, listing = validator(document, "Schedule"), validator(document, "ScheduleList")
    daily = {"callback": "http://example.com/x", "cron": "@daily"}
    status, created = call(lambda_context, "PUT", "/schedule/doc", daily)
    assert status == 201
    schedule.validate(created)
    schedule.validate(call(lambda_context, "GET", "/schedule/doc")[1])
    listing.validate(call(lambda_context, "GET", "/schedule/?limit=1")[1])
    deleted = call(lambda_context, "DELETE", "/schedule/doc")[1]
    schedule.validate(deleted)
    assert deleted["cancelled"].startswith("doc@")
    runs = call(lambda_context, "GET", "/status/doc")[1]
    validator(document, "TaskList").validate(runs)
    assert runs["tasks"][0]["schedule"] == "doc"
