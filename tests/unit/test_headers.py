"""A callback's own headers: which a client may set, the limits, and that values never show."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callme.errors import CallmeError, InvalidRequest
from callme.headers import (
    MASK,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    VALUE_PATTERN_TEXT,
    HeaderSet,
    SealedHeaders,
    check_headers,
    masked,
)
from callme.outcomes import outcome_event
from callme.task import TaskName, TaskState
from callme.validation import parse_headers, parse_task_request
from callme.views import failure_notice, task_view
from tests.conftest import HEADERS_KEY
from tests.unit.conftest import NOW, make_task, rejected, task_body

# Written out here rather than read from callme.headers, so that a name dropped there fails a test.
FORBIDDEN = [
    *("host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade"),
    *("expect", "http2-settings", "accept-encoding"),
    *("proxy-authorization", "proxy-authenticate", "proxy-connection", "proxy-anything"),
    *("webhook-id", "webhook-signature", "webhook-timestamp", "webhook-other"),
    *("callme-entry", "callme-attempt", "callme-anything"),
]
SECRET = "Bearer s3cr3t-t0k3n-Xq9"


def variants(name: str) -> list[str]:
    """The name in lower, upper, title and alternating case."""
    alternating = "".join(c.upper() if i % 2 else c for i, c in enumerate(name))
    return list(dict.fromkeys([name, name.upper(), name.title(), alternating]))


def refused_message(headers: Any) -> str:
    error = rejected(lambda: parse_headers(headers))
    assert isinstance(error, InvalidRequest)
    return error.message


# -- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [v for name in FORBIDDEN for v in variants(name)])
def test_every_forbidden_name_is_refused_in_any_case_naming_it(name: str) -> None:
    message = refused_message({"X-Fine": "1", name: "value"})
    assert message.startswith(f"headers: {name!r} cannot be set: ")


@pytest.mark.parametrize(
    "name",
    ["Authorization", "authorization", "Content-Type", "User-Agent", "X-Tenant", "Cookie", "x!#$%&'*+-.^_`|~1"],
)
def test_ordinary_names_are_accepted_as_given(name: str) -> None:
    assert parse_headers({name: "v"}) == HeaderSet(((name, "v"),))


@pytest.mark.parametrize("name", ["", "X Y", "X:Y", "X-Ä", "X\r\nInjected", "(x)", "X/Y", 'X"', "X\x00"])
def test_a_name_that_is_not_an_http_token_is_refused(name: str) -> None:
    assert "is not a valid header name: use letters, digits and" in refused_message({name: "v"})


def test_a_header_given_twice_in_two_cases_is_refused() -> None:
    message = refused_message({"X-Token": "a", "x-token": "b"})
    assert message == (
        "headers: 'X-Token' and 'x-token' are the same header (names are case-insensitive); give it once"
    )


# -- values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "described"),
    [
        ("a\rb", "a carriage return (CR)"),
        ("a\nb", "a line feed (LF)"),
        ("a\r\nInjected: 1", "a carriage return (CR)"),
        ("a\x00b", "a NUL character"),
        ("a\x01b", "a control character (U+0001)"),
        ("a\x1bb", "a control character (U+001B)"),
        ("a\x7fb", "a control character (U+007F)"),
        ("caf\u00e9", "a non-ASCII character (U+00E9)"),
        ("a\u2028b", "a non-ASCII character (U+2028)"),
    ],
)
def test_a_value_with_a_control_or_non_ascii_character_is_refused_without_echoing_it(
    value: str, described: str
) -> None:
    message = refused_message({"X-Token": value})
    assert message.startswith(f"headers: the value of 'X-Token' holds {described}; ")
    assert value not in message and "Injected" not in message


@pytest.mark.parametrize("value", [" lead", "trail ", "\ttab", "tab\t"])
def test_a_value_starting_or_ending_with_white_space_is_refused(value: str) -> None:
    assert "starts or ends with white space" in refused_message({"X-Token": value})


@pytest.mark.parametrize("value", ["", "a b", "a\tb", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "x" * 100])
def test_printable_ascii_values_with_inner_spaces_and_tabs_are_accepted(value: str) -> None:
    assert parse_headers({"X-V": value}) == HeaderSet((("X-V", value),))


@pytest.mark.parametrize(("value", "kind"), [(1, "a number"), (None, "null"), (True, "a boolean"), ([], "an array")])
def test_a_value_that_is_not_a_string_is_refused(value: object, kind: str) -> None:
    assert refused_message({"X-N": value}) == f"headers: the value of 'X-N' must be a string, not {kind}"


@pytest.mark.parametrize(("value", "kind"), [("a: b", "a string"), ([["a", "b"]], "an array"), (3, "a number")])
def test_headers_that_are_not_an_object_are_refused(value: object, kind: str) -> None:
    assert refused_message(value) == f"headers must be an object of header names to string values, not {kind}"


def test_no_headers_and_an_empty_object_mean_none() -> None:
    assert parse_headers(None) is None
    assert parse_headers({}) is None


# -- limits ----------------------------------------------------------------------------------------


def test_at_most_twenty_headers() -> None:
    twenty = {f"X-H{i}": "v" for i in range(MAX_HEADERS)}
    assert parse_headers(twenty) is not None
    message = refused_message({**twenty, "X-One-More": "v"})
    assert message == "headers holds 21 headers; at most 20"


def test_at_most_eight_kib_of_names_and_values() -> None:
    name = "Authorization"
    exactly = {name: "x" * (MAX_HEADER_BYTES - len(name))}
    assert parse_headers(exactly) is not None
    over = {name: "x" * (MAX_HEADER_BYTES - len(name) + 1)}
    assert refused_message(over) == "headers take 8193 bytes (names and values added up); at most 8192"


def test_the_size_adds_up_every_name_and_value() -> None:
    quarters = {f"X-{i}": "v" * (MAX_HEADER_BYTES // 4 - 2 - len(str(i))) for i in range(4)}
    assert sum(len(k) + len(v) for k, v in quarters.items()) == MAX_HEADER_BYTES
    assert parse_headers(quarters) is not None
    assert "8193 bytes" in refused_message({**quarters, "X-0": quarters["X-0"] + "v"})


# -- in the task definition --------------------------------------------------------------------------


def test_a_task_request_carries_its_headers_and_names_them_in_errors(limits: Any, policy: Any) -> None:
    request = parse_task_request(TaskName("job"), task_body(headers={"Authorization": SECRET}), NOW, limits, policy)
    assert request.definition.headers == HeaderSet((("Authorization", SECRET),))
    error = rejected(lambda: parse_task_request(TaskName("job"), task_body(headers={"Host": "x"}), NOW, limits, policy))
    assert isinstance(error, InvalidRequest) and "'Host' cannot be set" in error.message


# -- masking -----------------------------------------------------------------------------------------


def test_answers_show_the_names_with_a_fixed_mask() -> None:
    task = make_task(headers=HeaderSet((("Authorization", SECRET), ("X-Short", "1"))))
    view = task_view(task)
    assert view["headers"] == {"Authorization": MASK, "X-Short": MASK}
    assert SECRET not in json.dumps(view)
    assert MASK == "***", "the same mask for every value: no length, no prefix"


def test_sealed_headers_show_the_same_way() -> None:
    task = make_task(headers=SealedHeaders(("Authorization",), "v1.abcd1234.c2VhbGVk"))
    assert task_view(task)["headers"] == {"Authorization": MASK}
    assert "c2VhbGVk" not in json.dumps(task_view(task))


def test_a_task_without_headers_shows_an_empty_object() -> None:
    assert task_view(make_task())["headers"] == {}
    assert masked(None) == {}


def test_repr_shows_names_and_never_values() -> None:
    task = make_task(headers=HeaderSet((("Authorization", SECRET),)))
    assert "Authorization" in repr(task) and SECRET not in repr(task)
    assert "v1.abcd" not in repr(SealedHeaders(("A",), "v1.abcd.secret"))


# Header values, marked so that none can turn up in an answer's own text by coincidence.
VALUES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=10, max_size=200).map("~~".__add__)


@settings(max_examples=100)
@given(values=st.lists(VALUES, min_size=1, max_size=MAX_HEADERS))
def test_no_answer_or_failure_notice_holds_a_header_value(values: list[str]) -> None:
    headers = parse_headers({f"X-H{i}": v for i, v in enumerate(values)})
    task = make_task(headers=headers, on_failure="https://example.com/failed")
    failed = task.missed(NOW + 3600, 86400)
    assert failed.state is TaskState.SKIPPED
    for shown in (task_view(task), task_view(failed), failure_notice(failed)):
        text = json.dumps(shown)
        assert not [v for v in values if v in text]


@settings(max_examples=300)
@given(value=st.text(alphabet=st.characters(max_codepoint=0x80), max_size=6))
def test_the_documents_value_pattern_is_the_rule_the_checks_apply(value: str) -> None:
    try:
        check_headers({"X-Value": value})
        accepted = True
    except CallmeError:
        accepted = False
    assert bool(re.fullmatch(VALUE_PATTERN_TEXT, value)) == accepted


def test_the_settings_never_show_the_headers_key() -> None:
    from tests.conftest import settings as make_settings

    assert HEADERS_KEY not in repr(make_settings(headers_key=HEADERS_KEY))


def test_an_outcome_event_shows_the_names_and_never_a_value() -> None:
    task = make_task(headers=HeaderSet((("Authorization", SECRET),)), on_failure="https://example.com/f")
    event = outcome_event(task.missed(NOW + 3600, 86400))
    assert event is not None
    assert json.loads(event.detail)["headers"] == {"Authorization": MASK}
    assert SECRET not in event.detail
