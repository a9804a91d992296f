"""What a client sends: JSON bodies, the task definition, the reschedule body, query strings."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callme.egress import EgressPolicy
from callme.errors import InvalidRequest, PayloadTooLarge
from callme.settings import Limits
from callme.task import METHODS, TaskKey, check_name
from callme.validation import (
    RescheduleRequest,
    check_query,
    flag,
    integer,
    integer_pattern,
    parse_batch,
    parse_batch_item,
    parse_json_object,
    parse_listing,
    parse_reschedule_request,
    parse_task_request,
    single_values,
)
from tests.conftest import default_limits
from tests.unit.conftest import CURRENT_MINUTE, NOW, PUBLIC_URL, rejected, task_body

# -- parse_json_object ---------------------------------------------------------------------------


class TestJsonBody:
    def test_object_is_returned_as_a_dict(self, limits: Limits) -> None:
        assert parse_json_object('{"trigger_at": "+6h", "retry": 2}', limits) == {"trigger_at": "+6h", "retry": 2}

    def test_malformed_json_is_rejected(self, limits: Limits) -> None:
        error = rejected(lambda: parse_json_object('{"trigger_at": "+6h",', limits))
        assert isinstance(error, InvalidRequest)
        assert "request body is not valid JSON" in error.message

    @pytest.mark.parametrize(
        ("body", "kind"),
        [("[1, 2]", "an array"), ('"+6h"', "a string"), ("42", "a number"), ("null", "null"), ("true", "a boolean")],
    )
    def test_json_that_is_not_an_object_is_rejected_naming_what_it_is(
        self, limits: Limits, body: str, kind: str
    ) -> None:
        error = rejected(lambda: parse_json_object(body, limits))
        assert isinstance(error, InvalidRequest)
        assert error.message == f"request body must be a JSON object, not {kind}"

    def test_duplicate_key_is_rejected_naming_the_key(self, limits: Limits) -> None:
        # Given a body where "retry" appears twice (json.loads would silently keep the last)
        error = rejected(lambda: parse_json_object('{"retry": 1, "trigger_at": "+1m", "retry": 5}', limits))
        # Then the client is told which field is doubled
        assert isinstance(error, InvalidRequest)
        assert "'retry' appears twice" in error.message

    def test_duplicate_key_in_a_nested_object_is_rejected(self, limits: Limits) -> None:
        error = rejected(lambda: parse_json_object('{"a": {"b": 1, "b": 2}}', limits))
        assert "'b' appears twice" in error.message

    @pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
    def test_nan_and_infinity_are_rejected(self, limits: Limits, constant: str) -> None:
        error = rejected(lambda: parse_json_object(f'{{"retry": {constant}}}', limits))
        assert isinstance(error, InvalidRequest)
        assert "not valid JSON" in error.message
        assert constant.lstrip("-") in error.message

    def test_body_over_the_limit_is_payload_too_large(self) -> None:
        # Given a 100-byte limit and a 101-byte body
        limits = default_limits(max_body_bytes=100)
        body = json.dumps({"payload": "x" * 86})
        assert len(body) == 101
        # When it is parsed / Then it is a 413 naming both sizes
        error = rejected(lambda: parse_json_object(body, limits))
        assert isinstance(error, PayloadTooLarge)
        assert isinstance(error, PayloadTooLarge)
        assert "101 bytes" in error.message
        assert "limit is 100" in error.message

    def test_body_size_counts_utf8_bytes_not_characters(self) -> None:
        # Given 60 characters that take 120 bytes in UTF-8
        body = '{"payload": "' + "é" * 46 + '"}'
        assert len(body) < 100 < len(body.encode())
        error = rejected(lambda: parse_json_object(body, default_limits(max_body_bytes=100)))
        assert isinstance(error, PayloadTooLarge)

    def test_body_exactly_at_the_limit_is_accepted(self) -> None:
        body = json.dumps({"payload": "x" * 85})
        assert parse_json_object(body, default_limits(max_body_bytes=len(body))) == {"payload": "x" * 85}

    def test_deeply_nested_body_is_a_client_error(self, limits: Limits) -> None:
        error = rejected(lambda: parse_json_object("[" * 100_000, limits))
        assert isinstance(error, InvalidRequest)
        assert "nested too deeply" in error.message

    @pytest.mark.parametrize("body", [None, "", "  \n\t"])
    def test_missing_required_body_is_rejected(self, limits: Limits, body: str | None) -> None:
        error = rejected(lambda: parse_json_object(body, limits))
        assert isinstance(error, InvalidRequest)
        assert "request body is missing" in error.message

    @pytest.mark.parametrize("body", [None, "", "  \n"])
    def test_missing_optional_body_is_an_empty_object(self, limits: Limits, body: str | None) -> None:
        assert parse_json_object(body, limits, required=False) == {}

    def test_optional_body_that_is_present_must_still_be_an_object(self, limits: Limits) -> None:
        error = rejected(lambda: parse_json_object("[]", limits, required=False))
        assert "must be a JSON object" in error.message


# -- parse_task_request ----------------------------------------------------------------------------


def parse_task(body: dict[str, Any], name: str = "simpletask", limits: Limits | None = None) -> Any:
    """The trigger minute and the definition of ``PUT /task/<name>`` with ``body``, the name checked
    first as the API checks it."""
    request = parse_task_request(check_name(name), body, NOW, limits or default_limits(), EgressPolicy())
    assert (request.key.name, request.received_at) == (name, NOW)
    return request.key.trigger_at, request.definition


class TestTaskRequest:
    def test_current_minute_with_max_delay_1_is_refused_as_never_callable(self) -> None:
        # The dispatcher's next run is at second 0 of the next minute, when max_delay has run out.
        error = rejected(lambda: parse_task(task_body(trigger_at="+0m", max_delay=1)))
        assert isinstance(error, InvalidRequest)
        assert f"trigger_at {CURRENT_MINUTE} with max_delay 1 can never be called" in error.message

    @pytest.mark.parametrize(("trigger_at", "max_delay"), [("+0m", 2), ("+0m", None), ("+1m", 1)])
    def test_current_minute_is_accepted_when_the_next_run_can_call_it(self, trigger_at: str, max_delay: Any) -> None:
        assert parse_task(task_body(trigger_at=trigger_at, max_delay=max_delay))[0] >= CURRENT_MINUTE

    def test_minimal_body_gets_the_documented_defaults(self) -> None:
        # Given the seed's simplest example
        trigger_at, definition = parse_task({"trigger_at": "+6h", "callback": "http://example.com/that-thing/run-it"})
        # Then trigger_at is resolved and every optional field has its default
        assert trigger_at == CURRENT_MINUTE + 6 * 3600
        assert definition.callback == "http://example.com/that-thing/run-it"
        assert definition.callback_method == "GET"
        assert definition.payload == ""
        assert definition.expected_http_status == 200
        assert definition.retry == 1
        assert definition.max_delay == 10

    def test_every_field_is_taken_as_given(self) -> None:
        body = task_body(
            task_name="simpletask",
            trigger_at=str(CURRENT_MINUTE + 120),
            callback_method="POST",
            payload='{"x": 1}',
            expected_http_status=204,
            retry=3,
            max_delay=60,
        )
        trigger_at, definition = parse_task(body)
        assert trigger_at == CURRENT_MINUTE + 120
        assert (definition.callback_method, definition.payload) == ("POST", '{"x": 1}')
        assert (definition.expected_http_status, definition.retry, definition.max_delay) == (204, 3, 60)

    def test_unknown_field_is_rejected_naming_it_and_the_allowed_ones(self) -> None:
        error = rejected(lambda: parse_task(task_body(retries=3)))
        assert isinstance(error, InvalidRequest)
        assert "unknown field 'retries'" in error.message
        assert "retry" in error.message.split("allowed:")[1]

    def test_several_unknown_fields_are_all_named(self) -> None:
        error = rejected(lambda: parse_task(task_body(timeout=5, method="POST")))
        assert "unknown fields 'method', 'timeout'" in error.message

    @pytest.mark.parametrize("field", ["trigger_at", "callback"])
    def test_missing_required_field_is_named(self, field: str) -> None:
        body = task_body()
        del body[field]
        error = rejected(lambda: parse_task(body))
        assert isinstance(error, InvalidRequest)
        assert error.message == f"{field} is required"

    @pytest.mark.parametrize("field", ["trigger_at", "callback"])
    def test_null_required_field_is_missing(self, field: str) -> None:
        error = rejected(lambda: parse_task({**task_body(), field: None}))
        assert error.message == f"{field} is required"

    def test_task_name_in_the_body_must_match_the_path(self) -> None:
        error = rejected(lambda: parse_task(task_body(task_name="other"), name="simpletask"))
        assert isinstance(error, InvalidRequest)
        assert "task_name 'other'" in error.message
        assert "'simpletask'" in error.message

    def test_task_name_in_the_body_equal_to_the_path_is_accepted(self) -> None:
        _, definition = parse_task(task_body(task_name="simpletask"), name="simpletask")
        assert definition.callback == PUBLIC_URL

    def test_invalid_name_in_the_path_is_rejected(self) -> None:
        error = rejected(lambda: parse_task(task_body(), name="bad name"))
        assert "task name 'bad name' is invalid" in error.message

    def test_invalid_trigger_at_is_named(self) -> None:
        error = rejected(lambda: parse_task(task_body(trigger_at="+6hx")))
        assert error.message.startswith("trigger_at")

    def test_invalid_callback_is_named(self) -> None:
        error = rejected(lambda: parse_task(task_body(callback="ftp://example.com/x")))
        assert error.message.startswith("callback")

    @pytest.mark.parametrize(("sent", "stored"), [("post", "POST"), ("Delete", "DELETE"), ("pAtCh", "PATCH")])
    def test_callback_method_is_case_insensitive(self, sent: str, stored: str) -> None:
        _, definition = parse_task(task_body(callback_method=sent))
        assert definition.callback_method == stored

    @pytest.mark.parametrize("method", METHODS)
    def test_each_documented_method_is_accepted(self, method: str) -> None:
        _, definition = parse_task(task_body(callback_method=method))
        assert definition.callback_method == method

    def test_the_documented_methods_are_exactly_get_post_put_patch_delete(self) -> None:
        assert set(METHODS) == {"GET", "POST", "PUT", "PATCH", "DELETE"}

    @pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "CONNECT", "TRACE", "", "GET ", 1, True, ["GET"]])
    def test_other_callback_method_is_rejected_listing_the_allowed_ones(self, method: object) -> None:
        error = rejected(lambda: parse_task(task_body(callback_method=method)))
        assert isinstance(error, InvalidRequest)
        assert error.message.startswith("callback_method must be one of GET, POST, PUT, PATCH, DELETE")

    @pytest.mark.parametrize(("payload", "kind"), [({"a": 1}, "an object"), (5, "a number"), ([], "an array")])
    def test_payload_must_be_a_string(self, payload: object, kind: str) -> None:
        error = rejected(lambda: parse_task(task_body(payload=payload)))
        assert isinstance(error, InvalidRequest)
        assert error.message.startswith(f"payload must be a string, not {kind}")

    def test_payload_over_the_limit_in_bytes_is_too_large(self) -> None:
        # Given a 10-byte limit and 6 characters that take 12 bytes
        error = rejected(lambda: parse_task(task_body(payload="é" * 6), limits=default_limits(max_payload_bytes=10)))
        # Then it is a 413 naming the payload
        assert isinstance(error, PayloadTooLarge)
        assert "payload is 12 bytes" in error.message
        assert "limit is 10" in error.message

    def test_payload_at_the_limit_is_accepted(self) -> None:
        _, definition = parse_task(task_body(payload="é" * 5), limits=default_limits(max_payload_bytes=10))
        assert definition.payload == "é" * 5

    def test_payload_with_an_unpaired_surrogate_is_a_client_error(self, limits: Limits) -> None:
        # Given a body whose payload holds a lone surrogate escape (valid JSON syntax, not Unicode text)
        body = parse_json_object(
            '{"trigger_at": "+1h", "callback": "https://example.com/", "payload": "\\ud800"}', limits
        )
        # Then it is a 400 naming payload, not a crash
        error = rejected(lambda: parse_task(body))
        assert isinstance(error, InvalidRequest)
        assert error.message.startswith("payload")

    @pytest.mark.parametrize(
        ("field", "low", "high"),
        [
            ("expected_http_status", 100, 599),
            ("retry", 0, default_limits().max_retry),
            ("max_delay", 1, default_limits().max_max_delay),
        ],
    )
    def test_integer_fields_accept_their_bounds(self, field: str, low: int, high: int) -> None:
        for value in (low, high):
            _, definition = parse_task(task_body(**{field: value}))
            assert getattr(definition, field) == value

    @pytest.mark.parametrize(
        ("field", "value", "low", "high"),
        [
            ("expected_http_status", 99, 100, 599),
            ("expected_http_status", 600, 100, 599),
            ("retry", -1, 0, default_limits().max_retry),
            ("retry", "-1", 0, default_limits().max_retry),
            ("retry", default_limits().max_retry + 1, 0, default_limits().max_retry),
            ("max_delay", 0, 1, default_limits().max_max_delay),
            ("max_delay", default_limits().max_max_delay + 1, 1, default_limits().max_max_delay),
        ],
    )
    def test_integer_out_of_range_is_rejected_stating_the_range(
        self, field: str, value: object, low: int, high: int
    ) -> None:
        error = rejected(lambda: parse_task(task_body(**{field: value})))
        assert isinstance(error, InvalidRequest)
        assert error.message == f"{field} must be between {low} and {high}, got {int(str(value))}"

    def test_retry_limit_follows_the_configured_maximum(self) -> None:
        error = rejected(lambda: parse_task(task_body(retry=3), limits=default_limits(max_retry=2)))
        assert "retry must be between 0 and 2" in error.message

    @pytest.mark.parametrize(
        ("field", "text", "value"),
        [("expected_http_status", "204", 204), ("retry", "0", 0), ("retry", "3", 3), ("max_delay", "60", 60)],
    )
    def test_integers_may_arrive_as_digit_strings(self, field: str, text: str, value: int) -> None:
        _, definition = parse_task(task_body(**{field: text}))
        assert getattr(definition, field) == value

    @pytest.mark.parametrize("text", ["", " 3", "3 ", "+3", "3.0", "1e1", "three", "\u0663", "0x3", "1" * 19])
    def test_string_that_is_not_an_integer_is_rejected(self, text: str) -> None:
        error = rejected(lambda: parse_task(task_body(retry=text)))
        assert isinstance(error, InvalidRequest)
        assert error.message == f"retry must be an integer, got {text!r}"

    @pytest.mark.parametrize(
        ("value", "kind"),
        [(True, "a boolean"), (False, "a boolean"), (2.5, "a number"), (None, "null"), ([1], "an array")],
    )
    @pytest.mark.parametrize("field", ["expected_http_status", "retry", "max_delay"])
    def test_integer_field_of_another_json_type_is_rejected(self, field: str, value: object, kind: str) -> None:
        error = rejected(lambda: parse_task({**task_body(), field: value}))
        assert isinstance(error, InvalidRequest)
        assert error.message == f"{field} must be an integer, not {kind}"


@settings(max_examples=100, deadline=None)
@given(retry=st.integers(min_value=-(10**6), max_value=10**6), as_text=st.booleans())
def test_retry_is_accepted_exactly_within_zero_and_the_maximum(retry: int, as_text: bool) -> None:
    body = task_body(retry=str(retry) if as_text else retry)
    if 0 <= retry <= default_limits().max_retry:
        assert parse_task(body)[1].retry == retry
    else:
        with pytest.raises(InvalidRequest, match=r"^retry must be between"):
            parse_task(body)


# -- parse_reschedule_request -------------------------------------------------------------------------


class TestRescheduleRequest:
    def test_empty_body_means_the_next_minute(self, limits: Limits) -> None:
        assert parse_reschedule_request({}, False, NOW, limits) == RescheduleRequest(None, False, NOW)

    def test_null_trigger_at_means_the_next_minute(self, limits: Limits) -> None:
        assert parse_reschedule_request({"trigger_at": None}, True, NOW, limits) == RescheduleRequest(None, True, NOW)

    @pytest.mark.parametrize(
        ("value", "expected"), [("+1h", CURRENT_MINUTE + 3600), (CURRENT_MINUTE + 60, CURRENT_MINUTE + 60)]
    )
    def test_trigger_at_is_parsed_like_a_task_definition(self, limits: Limits, value: object, expected: int) -> None:
        assert parse_reschedule_request({"trigger_at": value}, False, NOW, limits).trigger_at == expected

    def test_invalid_trigger_at_is_rejected(self, limits: Limits) -> None:
        error = rejected(lambda: parse_reschedule_request({"trigger_at": "+6hx"}, False, NOW, limits))
        assert isinstance(error, InvalidRequest)
        assert error.message.startswith("trigger_at")

    def test_other_field_is_rejected_naming_it(self, limits: Limits) -> None:
        error = rejected(lambda: parse_reschedule_request({"trigger_at": "+1h", "retry": 3}, False, NOW, limits))
        assert isinstance(error, InvalidRequest)
        assert "unknown field 'retry'" in error.message
        assert "allowed: trigger_at" in error.message


# -- query strings ------------------------------------------------------------------------------------


class TestQuery:
    def test_pretty_is_allowed_everywhere(self) -> None:
        check_query({"pretty": ""}, ())

    def test_allowed_parameter_passes(self) -> None:
        check_query({"all": "true", "pretty": "true"}, ("all",))

    def test_unknown_parameter_is_named_with_the_allowed_ones(self) -> None:
        error = rejected(lambda: check_query({"al": "true"}, ("all",)))
        assert isinstance(error, InvalidRequest)
        assert "unknown query parameter 'al'" in error.message
        assert "allowed here: pretty, all" in error.message

    def test_several_unknown_parameters_are_all_named(self) -> None:
        error = rejected(lambda: check_query({"b": "", "a": "", "all": ""}, ("all",)))
        assert "unknown query parameters 'a', 'b'" in error.message


class TestSingleValues:
    def test_each_parameter_given_once_keeps_its_value(self) -> None:
        assert single_values({"limit": ["10"], "pretty": [""]}) == {"limit": "10", "pretty": ""}

    def test_a_repeated_parameter_is_refused_naming_it(self) -> None:
        # Duplicate body fields are refused; so is a query parameter given twice, rather than
        # silently taking one of its values.
        error = rejected(lambda: single_values({"limit": ["10", "abc"], "pretty": [""]}))
        assert isinstance(error, InvalidRequest)
        assert error.message == "query parameter 'limit' (2 times) repeated; give each once"

    def test_every_repeated_parameter_is_named(self) -> None:
        error = rejected(lambda: single_values({"b": ["1", "1"], "a": ["", "", ""]}))
        assert error.message == "query parameters 'a' (3 times), 'b' (2 times) repeated; give each once"


class TestFlag:
    def test_absent_flag_is_false(self) -> None:
        assert flag({"pretty": ""}, "all") is False

    @pytest.mark.parametrize("value", ["", "true", "TRUE", "True", "1", "yes"])
    def test_present_or_true_flag_is_true(self, value: str) -> None:
        assert flag({"all": value}, "all") is True

    @pytest.mark.parametrize("value", ["false", "FALSE", "0", "no"])
    def test_false_flag_is_false(self, value: str) -> None:
        assert flag({"all": value}, "all") is False

    def test_other_value_is_rejected_naming_the_parameter(self) -> None:
        error = rejected(lambda: flag({"all": "maybe"}, "all"))
        assert isinstance(error, InvalidRequest)
        assert error.message == "query parameter all must be true or false, got 'maybe'"


class TestListing:
    def test_defaults_are_first_page_everything_default_size(self, limits: Limits) -> None:
        listing = parse_listing({}, limits)
        assert listing.start_from is None
        assert listing.future_only is False
        assert listing.limit == limits.default_page_size

    def test_future_only_is_a_flag(self, limits: Limits) -> None:
        assert parse_listing({"future_only": ""}, limits).future_only is True

    @pytest.mark.parametrize("limit", ["1", "500", str(default_limits().max_page_size)])
    def test_limit_within_bounds_is_taken(self, limits: Limits, limit: str) -> None:
        assert parse_listing({"limit": limit}, limits).limit == int(limit)

    @pytest.mark.parametrize("limit", ["0", "-1", str(default_limits().max_page_size + 1)])
    def test_limit_out_of_bounds_is_rejected(self, limits: Limits, limit: str) -> None:
        error = rejected(lambda: parse_listing({"limit": limit}, limits))
        assert isinstance(error, InvalidRequest)
        assert error.message == f"limit must be between 1 and {limits.max_page_size}, got {limit}"

    @pytest.mark.parametrize("limit", ["", "ten", "1.5"])
    def test_limit_that_is_not_an_integer_is_rejected(self, limits: Limits, limit: str) -> None:
        error = rejected(lambda: parse_listing({"limit": limit}, limits))
        assert error.message.startswith("limit must be an integer")

    def test_start_from_is_a_task_key(self, limits: Limits) -> None:
        listing = parse_listing({"start_from": "faraway@1858809600"}, limits, name="faraway")
        assert listing.start_from == TaskKey("faraway", 1858809600)

    def test_start_from_of_any_task_is_allowed_in_the_full_listing(self, limits: Limits) -> None:
        assert parse_listing({"start_from": "a@60"}, limits).start_from == TaskKey("a", 60)

    def test_start_from_of_another_task_is_rejected(self, limits: Limits) -> None:
        error = rejected(lambda: parse_listing({"start_from": "other@1858809600"}, limits, name="faraway"))
        assert isinstance(error, InvalidRequest)
        assert "start_from 'other@1858809600'" in error.message
        assert "'faraway'" in error.message

    @pytest.mark.parametrize("text", ["faraway", "faraway@", "faraway@soon", "faraway@1858809601"])
    def test_malformed_start_from_is_rejected_naming_it(self, limits: Limits, text: str) -> None:
        error = rejected(lambda: parse_listing({"start_from": text}, limits))
        assert isinstance(error, InvalidRequest)
        assert error.message.startswith(f"start_from {text!r}")

    def test_unknown_listing_parameter_is_named(self, limits: Limits) -> None:
        error = rejected(lambda: parse_listing({"offset": "10"}, limits))
        assert "unknown query parameter 'offset'" in error.message
        assert "start_from, future_only, limit" in error.message


# -- integers as the OpenAPI document writes them ------------------------------------------------

INTEGER_TEXTS = st.one_of(
    st.integers(0, 10**19).map(str),
    st.builds(lambda zeros, n: "0" * zeros + str(n), st.integers(0, 20), st.integers(0, 10**6)),
    st.builds(lambda zeros, n: "-" + "0" * zeros + str(n), st.integers(0, 3), st.integers(0, 100)),
    st.text("0123456789-+ x", max_size=20),
)


@settings(max_examples=1000)
@given(
    low=st.integers(0, 10**6),
    span=st.integers(0, 10**7) | st.just(10**19),
    text=INTEGER_TEXTS,
)
def test_the_integer_pattern_matches_exactly_the_strings_integer_accepts(low: int, span: int, text: str) -> None:
    high = low + span
    try:
        integer(text, "field", low, high)
        accepted = True
    except InvalidRequest:
        accepted = False
    assert (re.fullmatch(integer_pattern(low, high), text) is not None) == accepted


def test_the_integer_pattern_of_a_small_range_is_exact_for_every_number() -> None:
    pattern = re.compile(integer_pattern(100, 599))
    for n in range(0, 2000):
        assert (pattern.fullmatch(str(n)) is not None) == (100 <= n <= 599)
        assert (pattern.fullmatch(f"000{n}") is not None) == (100 <= n <= 599)


# -- POST /tasks ------------------------------------------------------------------------------------


class TestBatch:
    def test_the_items_are_returned_unjudged_in_order(self, limits: Limits) -> None:
        assert parse_batch('{"tasks": [{"task_name": "a"}, 7]}', limits) == [{"task_name": "a"}, 7]

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ('{"tasks": "a"}', "tasks must be an array of tasks, not a string"),
            ('{"tasks": null}', "tasks must be an array of tasks, not null"),
            ('{"task": []}', "unknown field 'task'; allowed: tasks"),
            ("{}", "tasks is required"),
            ('{"tasks": []}', "tasks holds 0 tasks; send 1 to 100 in one request"),
        ],
    )
    def test_a_batch_that_is_not_one_names_its_fault(self, limits: Limits, body: str, message: str) -> None:
        error = rejected(lambda: parse_batch(body, limits))
        assert isinstance(error, InvalidRequest) and error.message.startswith(message), error.message

    def test_at_most_max_batch_tasks(self) -> None:
        limits = default_limits(max_batch_tasks=3)
        assert len(parse_batch(json.dumps({"tasks": [{}] * 3}), limits)) == 3
        error = rejected(lambda: parse_batch(json.dumps({"tasks": [{}] * 4}), limits))
        assert error.message == "tasks holds 4 tasks; send 1 to 3 in one request"

    def test_the_batch_body_has_its_own_limit_above_a_put_s(self) -> None:
        limits = default_limits(max_body_bytes=1000, max_payload_bytes=500, max_batch_body_bytes=5000)
        body = json.dumps({"tasks": [{"payload": "x" * 400}] * 10})
        assert len(parse_batch(body, limits)) == 10
        error = rejected(lambda: parse_batch(json.dumps({"tasks": [{"payload": "x" * 400}] * 13}), limits))
        assert isinstance(error, PayloadTooLarge)
        assert re.fullmatch(r"request body is \d+ bytes; the limit is 5000", error.message)

    def test_an_item_is_a_put_body_with_its_task_name(self, limits: Limits, policy: EgressPolicy) -> None:
        request = parse_batch_item({**task_body(), "task_name": "job"}, NOW, limits, policy)
        assert request.key.name == "job" and request.received_at == NOW
        assert request == parse_task_request(check_name("job"), task_body(), NOW, limits, policy)

    @pytest.mark.parametrize(
        ("item", "message"),
        [
            ([], "a task must be a JSON object, not an array"),
            ({"trigger_at": "+1h"}, "task_name is required"),
            ({"task_name": 5}, "task_name must be a string, not a number"),
            ({"task_name": "a b"}, "task name 'a b' is invalid"),
            ({"task_name": "job", "trigger_at": "+1h"}, "callback is required"),
        ],
    )
    def test_a_bad_item_names_its_fault(self, limits: Limits, policy: EgressPolicy, item: Any, message: str) -> None:
        error = rejected(lambda: parse_batch_item(item, NOW, limits, policy))
        assert error.message.startswith(message), error.message
