"""Property-based tests of the API: whatever a client sends, never a 5xx, and never a write on a 4xx."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from handlers import api
from tests.conftest import api_event, stored_items

FIELDS = ["trigger_at", "callback", "callback_method", "payload", "expected_http_status", "retry", "max_delay"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)
plausible_values = st.sampled_from(
    [
        "+1h",
        "+0m",
        "+6hx",
        "1858809600",
        "1858809601",
        1858809600,
        -60,
        "http://example.com/x",
        "GET",
        "post",
        "",
        204,
        "204",
        0,
        10,
        "http://10.0.0.1/",
        "http://[::1]/",
        "ftp://x",
        None,
        True,
        1e300,
        "+99999999d",
    ]
)
bodies = (
    st.one_of(
        st.dictionaries(st.sampled_from([*FIELDS, "task_name", "extra"]), plausible_values | json_values, max_size=8),
        json_values,
    ).map(json.dumps)
    | st.text(max_size=200)
    | st.binary(max_size=50).map(lambda b: b.decode("latin-1"))
)
names = st.text(max_size=140) | st.sampled_from(["job", "job@1858809600", "job@61", "a/b", "", "x" * 129])
query = st.dictionaries(
    st.sampled_from(["pretty", "limit", "start_from", "future_only", "all", "x"]) | st.text(max_size=5),
    st.text(max_size=12) | st.sampled_from(["", "true", "0", "5", "job@1858809600"]),
    max_size=4,
)
methods = st.sampled_from(["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"])
prefixes = st.sampled_from(["/task/", "/status/", "/reschedule/", "/", "/tasks/"])


def _target(prefix: str, name: str, params: dict[str, str]) -> str:
    path = prefix + quote(name, safe="@/")
    return path + ("?" + urlencode(params) if params else "")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=methods, prefix=prefixes, name=names, params=query, body=st.none() | bodies)
def test_no_request_gets_a_5xx_or_writes_when_rejected(
    aws: Any, lambda_context: Any, method: str, prefix: str, name: str, params: dict[str, str], body: str | None
) -> None:
    before = stored_items(aws)
    response = api.lambda_handler(api_event(method, _target(prefix, name, params), body), lambda_context)
    status = response["statusCode"]
    assert status < 500, response["body"]
    answer = json.loads(response["body"])
    if status >= 400:
        assert isinstance(answer["error"], str) and answer["error"]
        assert stored_items(aws) == before, "a rejected request wrote nothing"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.dictionaries(st.sampled_from(FIELDS), plausible_values, max_size=7))
def test_a_put_either_stores_exactly_what_it_answers_or_writes_nothing(
    aws: Any, lambda_context: Any, fields: dict[str, Any]
) -> None:
    before = stored_items(aws)
    response = api.lambda_handler(api_event("PUT", "/task/prop", json.dumps(fields)), lambda_context)
    status = response["statusCode"]
    assert status in (200, 201, 400, 409, 413), response["body"]
    answer = json.loads(response["body"])
    if status >= 400:
        assert stored_items(aws) == before
        return
    read = api.lambda_handler(api_event("GET", f"/status/prop@{answer['trigger_at']}"), lambda_context)
    assert json.loads(read["body"]) == answer
