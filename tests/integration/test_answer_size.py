"""Every answer stays under Lambda's response limit, whatever the entries hold.

Lambda refuses a response over 6,291,556 bytes (API Gateway then answers 502). The response is the
proxy envelope the handler returns, serialised by the runtime with ``json.dumps`` (ASCII only), so
its size is measured here exactly that way, for every route that can answer with entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callme.clock import FixedClock
from callme.task import Attempt, Task, TaskDefinition, TaskKey, TaskState
from handlers import api, wiring
from tests.conftest import api_event

LAMBDA_RESPONSE_LIMIT = 6_291_556
FIRST = 1858809600
KIB = 1024
# Payloads of 64 KiB of UTF-8 whose escaping grows them most: in the answer's JSON and once more in
# the envelope, where every non-ASCII or control character becomes \uXXXX.
PAYLOADS = {
    "ascii": "x" * (64 * KIB),
    "quotes": '"' * (64 * KIB),
    "backslashes": "\\" * (64 * KIB),
    "control": "\x01" * (64 * KIB),
    "non-ascii": "€" * (64 * KIB // 3),
    "astral": "😀" * (64 * KIB // 4),
}


def envelope_size(response: dict[str, Any]) -> int:
    """What Lambda counts against its limit: the proxy response as its runtime serialises it."""
    return len(json.dumps(response))


def call(context: Any, method: str, target: str, body: Any = None) -> tuple[int, Any, dict[str, Any]]:
    raw = None if body is None else json.dumps(body)
    response = api.lambda_handler(api_event(method, target, raw), context)
    assert envelope_size(response) < LAMBDA_RESPONSE_LIMIT, f"{method} {target}: {envelope_size(response)} bytes"
    return response["statusCode"], json.loads(response["body"]), response


@pytest.fixture
def big_requests(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bodies large enough to carry a 64 KiB payload of any text, escaped as JSON (6 bytes a character)."""
    monkeypatch.setenv("CALLME_MAX_BODY_BYTES", str(4 * 1024 * 1024))
    wiring.reset()


def put_entries(context: Any, name: str, payload: str, count: int) -> set[tuple[str, int]]:
    for i in range(count):
        body = {"trigger_at": str(FIRST + 60 * i), "callback": "http://example.com/x", "payload": payload}
        status, answer, _ = call(context, "PUT", f"/task/{name}", body)
        assert status == 201, answer
    return {(name, FIRST + 60 * i) for i in range(count)}


def walk(context: Any, base: str) -> tuple[list[tuple[str, int]], int]:
    """Every page of a listing, following `next`; the entries seen in order, and the page count."""
    seen: list[tuple[str, int]] = []
    start = ""
    for pages in range(1, 1000):
        sep = "&" if "?" in base else "?"
        status, page, _ = call(context, "GET", f"{base}{sep}limit=1000{start}")
        assert status == 200, page
        seen.extend((t["task_name"], t["trigger_at"]) for t in page["tasks"])
        if "next" not in page:
            return seen, pages
        assert page["tasks"], "a next token must not lead to an empty page"
        start = f"&start_from={page['next']}"
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize(
    ("kind", "pretty"),
    [
        ("ascii", ""),
        ("quotes", "?pretty"),
        ("backslashes", ""),
        ("control", "?pretty"),
        ("non-ascii", ""),
        ("astral", "?pretty"),
    ],
)
def test_pages_of_entries_with_64_kib_payloads_stay_under_the_limit_and_list_each_once(
    big_requests: None, lambda_context: Any, kind: str, pretty: str
) -> None:
    expected = put_entries(lambda_context, "big", PAYLOADS[kind], 100)
    by_name, pages = walk(lambda_context, f"/status/big{pretty}")
    assert sorted(by_name) == sorted(expected) and len(by_name) == len(expected)
    assert pages > 1, "100 entries of 64 KiB do not fit in one answer"
    everything, _ = walk(lambda_context, f"/status/{pretty}")
    assert sorted(everything) == sorted(expected) and len(everything) == len(expected)


@pytest.mark.parametrize("kind", ["ascii", "control"])
def test_the_default_page_and_delete_by_name_stay_under_the_limit(
    big_requests: None, lambda_context: Any, kind: str
) -> None:
    put_entries(lambda_context, "big", PAYLOADS[kind], 100)
    status, page, _ = call(lambda_context, "GET", "/task/big?pretty")
    assert status == 200 and "next" in page
    status, answer, _ = call(lambda_context, "DELETE", "/task/big?pretty")
    assert status == 200
    assert answer["cancelled"] == 100
    assert 0 < len(answer["tasks"]) < 100, "the answer shows the first entries that fit"
    assert [t["trigger_at"] for t in answer["tasks"]] == [FIRST + 60 * i for i in range(len(answer["tasks"]))]


@pytest.fixture
def largest_allowed(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The top of every configurable range that makes an entry larger."""
    monkeypatch.setenv("CALLME_MAX_PAYLOAD_BYTES", str(300 * KIB))
    monkeypatch.setenv("CALLME_MAX_URL_LENGTH", "8192")
    monkeypatch.setenv("CALLME_MAX_BODY_BYTES", str(5 * 1024 * 1024))
    wiring.reset()


def test_a_single_entry_of_the_largest_kind_fits_in_every_answer(largest_allowed: None, lambda_context: Any) -> None:
    # Given the largest entry the settings allow, with the costliest characters everywhere
    url = "http://example.com/" + "a" * (8192 - len("http://example.com/"))
    body = {"trigger_at": str(FIRST), "callback": url, "payload": "\x01" * (300 * KIB), "retry": 10}
    status, created, response = call(lambda_context, "PUT", "/task/largest", body)
    assert status == 201, created
    repository = wiring.api_repository()
    stored = repository.get(TaskKey("largest", FIRST))
    assert stored is not None
    history = tuple(Attempt(at=FIRST + i, duration_ms=15000, status=None, error="😀" * 200) for i in range(20))
    ran = Task(
        **{
            **stored.__dict__,
            "state": TaskState.FAILED,
            "attempts": 21,
            "history": history,
            "response_status": 599,
            "response_body": "😀" * 256,
            "revision": "worst",
            "expires_at": FIRST + 86400,
        }
    )
    repository.save(ran, stored.revision)
    # When it is read, listed, rescheduled, every way, indented
    for target in ("/status/largest@1858809600?pretty", "/status/largest?pretty", "/status/?pretty"):
        status, _, response = call(lambda_context, "GET", target)
        assert status == 200
        assert envelope_size(response) > 2 * 1024 * 1024, "the case is as large as intended"
    status, answer, _ = call(lambda_context, "POST", "/reschedule/largest@1858809600?pretty", {"trigger_at": "+1h"})
    assert status == 201 and len(answer["tasks"]) == 1


def test_an_error_quoting_a_huge_value_stays_under_the_limit(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A trigger_at of a million backslashes is quoted in the error: 8 bytes each once enveloped
    monkeypatch.setenv("CALLME_MAX_BODY_BYTES", str(4 * 1024 * 1024))
    wiring.reset()
    context = wiring_context()
    status, answer, _ = call(context, "PUT", "/task/job", {"trigger_at": "+" + "\\" * 1_000_000, "callback": "x"})
    assert status == 400
    assert answer["error"].startswith("trigger_at '+\\\\")
    assert answer["error"].endswith("more characters)")


def wiring_context() -> Any:
    from local.lambda_context import LocalContext

    return LocalContext.for_function("callme-test", timeout_seconds=60)


# -- a property over payload shapes ---------------------------------------------------------------

CHARACTERS = st.sampled_from(["x", '"', "\\", "\x01", "\n", "é", "€", "😀", "\x7f", "\u2028"])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shapes=st.lists(st.tuples(CHARACTERS, st.integers(1, 64 * KIB)), min_size=1, max_size=3),
    count=st.integers(20, 70),
    pretty=st.booleans(),
)
def test_any_payload_shape_pages_under_the_limit_and_lists_each_entry_once(
    big_requests: None, shapes: list[tuple[str, int]], count: int, pretty: bool
) -> None:
    # Given `count` entries whose payloads repeat a costly character up to 64 KiB of UTF-8
    repository = wiring.api_repository()
    name = f"shape-{abs(hash((tuple(shapes), count, pretty))) % 10**9}"
    expected = set()
    for i, entry in enumerate(_entries(name, shapes, count)):
        repository.insert(entry)
        expected.add((name, FIRST + 60 * i))
    # Then every page is under the limit and the pages list each entry exactly once
    seen, _ = walk(wiring_context(), f"/status/{name}" + ("?pretty" if pretty else ""))
    assert len(seen) == len(expected) and set(seen) == expected


def _entries(name: str, shapes: list[tuple[str, int]], count: int) -> Iterator[Task]:
    clock = FixedClock(FIRST - 3600)
    for i in range(count):
        character, size = shapes[i % len(shapes)]
        payload = character * (size // len(character.encode()))
        definition = TaskDefinition(callback="http://example.com/x", payload=payload)
        yield Task.new(TaskKey(name, FIRST + 60 * i), definition, clock.now())
