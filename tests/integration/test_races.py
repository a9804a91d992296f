"""Concurrent requests on one entry, with real threads through the handler against moto.

moto's in-process DynamoDB does not lock: two conditional writes from two threads could both pass
their condition, which DynamoDB never allows. Storage calls are therefore applied one at a time here,
as DynamoDB applies each write (and each transaction) atomically, and each answer comes back after a
short delay, as over a network, so that the requests' reads and writes interleave.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from moto.dynamodb.models import DynamoDBBackend

from handlers import wiring
from local.dynamodb import puts_checked_first
from tests.conftest import stored_items
from tests.integration.test_api import Client

PARALLEL = 20
T = 1858809600
MOTO_TRANSACTIONS = getattr(DynamoDBBackend.transact_write_items, "__wrapped__", DynamoDBBackend.transact_write_items)


class OneAtATime:
    """A DynamoDB client whose calls apply one at a time, each answered after ``latency`` seconds."""

    def __init__(self, client: Any, latency: float = 0.002) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._latency = latency

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                with self._lock:
                    return attribute(*args, **kwargs)
            finally:
                time.sleep(self._latency)

        return call


@pytest.fixture
def client(aws: Any, lambda_context: Any) -> Client:
    """The handler, on storage whose calls apply one at a time after a network-like delay."""
    repository = wiring.repository()
    repository._client = OneAtATime(repository._client)
    return Client(lambda_context)


@pytest.fixture
def sequential(aws: Any, lambda_context: Any) -> Client:
    """The handler as is, for tests without concurrency."""
    return Client(lambda_context)


def at_once(count: int, request: Callable[[int], tuple[int, Any, dict[str, str]]]) -> list[tuple[int, Any]]:
    """``count`` requests released together from as many threads; their statuses and answers."""
    start = threading.Barrier(count)

    def one(i: int) -> tuple[int, Any]:
        start.wait()
        status, answer, _ = request(i)
        return status, answer

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def failed_entry(client: Client, aws: Any, name: str = "job", at: int = T, payload: str = "p") -> None:
    client.put(name, trigger_at=str(at), payload=payload)
    aws.update_item(
        TableName="callme-tasks",
        Key={"task_name": {"S": name}, "trigger_at": {"N": str(at)}},
        UpdateExpression="SET task_state = :s, attempts = :a REMOVE due_shard, due_minute",
        ExpressionAttributeValues={":s": {"S": "failed"}, ":a": {"N": "2"}},
    )


def entries(client: Client, name: str = "job") -> list[dict[str, Any]]:
    status, listed, _ = client("GET", f"/status/{name}?limit=1000")
    assert status == 200, listed
    tasks: list[dict[str, Any]] = listed["tasks"]
    return tasks


# -- rescheduling: one successor per entry --------------------------------------------------------


@pytest.mark.parametrize("minutes", ["one minute", "each its own minute"])
def test_parallel_reschedules_of_one_entry_make_exactly_one_successor(client: Client, aws: Any, minutes: str) -> None:
    failed_entry(client, aws)

    def reschedule(i: int) -> tuple[int, Any, dict[str, str]]:
        body = {"trigger_at": str(T + 3600 + (60 * i if minutes != "one minute" else 0))}
        return client("POST", f"/reschedule/job@{T}", body)

    answers = at_once(PARALLEL, reschedule)

    created = [answer for status, answer in answers if status == 201]
    assert len(created) == 1, Counter(status for status, _ in answers)
    [successor] = created[0]["tasks"]
    successor_key = f"job@{successor['trigger_at']}"
    refused = [answer for status, answer in answers if status == 409]
    assert len(refused) == PARALLEL - 1, answers
    for answer in refused:
        assert answer["error"].startswith(f"entry job@{T} was already rescheduled to {successor_key}")
    pending = [t for t in entries(client) if t["task_state"] == "pending"]
    assert [f"job@{t['trigger_at']}" for t in pending] == [successor_key]
    assert client("GET", f"/status/job@{T}")[1]["rescheduled_to"] == successor_key


@pytest.mark.parametrize("body", [None, {"trigger_at": str(T + 7200)}])
def test_parallel_reschedules_by_name_make_exactly_one_successor(client: Client, aws: Any, body: Any) -> None:
    for at in (T, T + 60, T + 120):
        failed_entry(client, aws, at=at)

    answers = at_once(PARALLEL, lambda _: client("POST", "/reschedule/job", body))

    created = [answer for status, answer in answers if status == 201]
    assert len(created) == 1, Counter(status for status, _ in answers)
    [successor] = created[0]["tasks"]
    successor_key = f"job@{successor['trigger_at']}"
    # The others lost the race: as after it, they find nothing left to reschedule.
    assert sorted(status for status, _ in answers) == [200] * (PARALLEL - 1) + [201]
    assert all(answer == {"tasks": []} for status, answer in answers if status == 200)
    stored = entries(client)
    assert [f"job@{t['trigger_at']}" for t in stored if t["task_state"] == "pending"] == [successor_key]
    assert [t["rescheduled_to"] for t in stored if t["task_state"] == "failed"] == [successor_key] * 3


@pytest.mark.parametrize("second", [None, {"trigger_at": str(T + 3600)}, {"trigger_at": str(T + 7200)}])
def test_a_second_reschedule_of_an_entry_is_a_conflict_naming_its_successor(
    sequential: Client, aws: Any, second: Any
) -> None:
    failed_entry(sequential, aws)
    status, answer, _ = sequential("POST", f"/reschedule/job@{T}", {"trigger_at": str(T + 3600)})
    assert status == 201, answer
    before = stored_items(aws)

    status, answer, _ = sequential("POST", f"/reschedule/job@{T}", second)

    assert status == 409
    assert answer["error"].startswith(f"entry job@{T} was already rescheduled to job@{T + 3600} (its rescheduled_to)")
    assert stored_items(aws) == before


def test_a_reschedule_onto_a_taken_minute_is_a_conflict_and_marks_nothing(sequential: Client, aws: Any) -> None:
    failed_entry(sequential, aws)
    sequential.put("job", trigger_at=str(T + 3600))
    before = stored_items(aws)
    status, answer, _ = sequential("POST", f"/reschedule/job@{T}", {"trigger_at": str(T + 3600)})
    assert status == 409
    assert answer["error"] == f"entry job@{T + 3600} already exists (pending); choose another trigger_at"
    assert stored_items(aws) == before


def test_more_entries_than_one_transaction_holds_collapse_into_one_successor(
    sequential: Client, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DynamoDB takes at most 100 writes in a transaction: the successor and 99 marks go first, the
    # remaining marks follow, each entry still marked once. (With the local stack's transactions:
    # moto's own copy the table for each write, 5 s for 100 writes on these 230 entries.)
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", puts_checked_first(MOTO_TRANSACTIONS))
    count = 230
    for i in range(count):
        failed_entry(sequential, aws, at=T + 60 * i)

    status, answer, _ = sequential("POST", "/reschedule/job", {"trigger_at": str(T - 3600)})

    assert status == 201, answer
    [successor] = answer["tasks"]
    stored = entries(sequential)
    assert len(stored) == count + 1
    assert Counter(t["rescheduled_to"] for t in stored) == {f"job@{T - 3600}": count, None: 1}
    assert successor["rescheduled_from"] == f"job@{T}"


# -- writers of one entry all get an answer that is not a 503 ---------------------------------------


def test_parallel_identical_puts_all_succeed(client: Client) -> None:
    body = {"trigger_at": str(T), "callback": "http://example.com/x", "payload": "same"}

    answers = at_once(PARALLEL, lambda _: client("PUT", "/task/job", body))

    assert sorted(status for status, _ in answers) == [200] * (PARALLEL - 1) + [201], answers
    [stored] = entries(client)
    assert stored["payload"] == "same"


def test_parallel_puts_of_different_definitions_all_succeed_and_one_stands(client: Client) -> None:
    def put(i: int) -> tuple[int, Any, dict[str, str]]:
        return client("PUT", "/task/job", {"trigger_at": str(T), "callback": "http://example.com/x", "payload": str(i)})

    answers = at_once(PARALLEL, put)

    assert sorted(status for status, _ in answers) == [200] * (PARALLEL - 1) + [201], answers
    [stored] = entries(client)
    assert stored["payload"] in {str(i) for i in range(PARALLEL)}


def test_parallel_cancels_of_one_entry_answer_one_200_and_409s(client: Client) -> None:
    client.put("job", trigger_at=str(T))

    answers = at_once(PARALLEL, lambda _: client("DELETE", f"/task/job@{T}"))

    statuses = Counter(status for status, _ in answers)
    assert statuses == {200: 1, 409: PARALLEL - 1}, answers
    assert all("already cancelled" in answer["error"] for status, answer in answers if status == 409)


def test_parallel_puts_and_cancels_of_one_entry_never_answer_503(client: Client) -> None:
    client.put("job", trigger_at=str(T))

    def put_or_cancel(i: int) -> tuple[int, Any, dict[str, str]]:
        if i % 2:
            return client("DELETE", f"/task/job@{T}")
        return client("PUT", "/task/job", {"trigger_at": str(T), "callback": "http://example.com/x"})

    answers = at_once(PARALLEL, put_or_cancel)

    assert {status for status, _ in answers} <= {200, 201, 409}, answers
