"""Fault injection on every DynamoDB call path: throttling, internal errors, timeouts, lost answers.

Faults are injected into the boto3 client the handlers really use, below botocore's retry logic,
so what is exercised is the whole stack: botocore's standard retries, the repository's own-write
recognition, the service's race handling, the API's 503.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

from callme.clock import FixedClock
from callme.dispatch import DispatchEngine
from callme.dynamodb import DynamoDBTaskRepository
from callme.errors import ServiceUnavailable
from callme.ports import CallResult
from callme.task import Task, TaskDefinition, TaskKey, TaskState
from handlers import api, wiring
from tests.conftest import api_event, dispatch_config, stored_items


class _Headers(dict[str, str]):
    pass


def _error(status: int, code: str) -> AWSResponse:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": code}).encode()
    return AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", status, {"x-amzn-RequestId": "fault"}, _Raw(body))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body

    def read(self, *_: Any) -> bytes:
        return self.body


class Faults:
    """Makes chosen operations fail ``times`` times with a given fault, then pass."""

    def __init__(self, *clients: Any) -> None:
        self.plan: dict[str, list[Callable[[Any], Any]]] = {}
        self.seen: list[str] = []
        for client in clients:
            client.meta.events.register_first("before-send.dynamodb", self._before_send)

    def fail(self, operation: str, fault: Callable[[Any], Any], times: int) -> None:
        self.plan.setdefault(operation, []).extend([fault] * times)

    def _before_send(self, request: Any, **_: Any) -> Any:
        operation = request.headers.get("X-Amz-Target", b"").decode().rpartition(".")[2]
        self.seen.append(operation)
        faults = self.plan.get(operation)
        if not faults:
            return None
        fault = faults.pop(0)
        if fault is not applied_then_lost:
            # botocore offers the request to every before-send handler (moto's too) and keeps the
            # first answer: make the request harmless for the backend, as a refused one would be.
            request.headers["X-Amz-Target"] = b"DynamoDB_20120810.ListTables"
            request.body = b"{}"
        return fault(request)


def throttled(_: Any) -> AWSResponse:
    return _error(400, "ProvisionedThroughputExceededException")


def internal_error(_: Any) -> AWSResponse:
    return _error(500, "InternalServerError")


def timed_out(request: Any) -> None:
    raise ReadTimeoutError(endpoint_url=request.url)


def applied_then_lost(request: Any) -> None:
    """The write reaches DynamoDB and is applied, but its answer never comes back."""
    operation = request.headers["X-Amz-Target"].decode().rpartition(".")[2]
    boto3.client("dynamodb", region_name="us-east-1")._make_api_call(operation, json.loads(request.body))
    raise ReadTimeoutError(endpoint_url=request.url)


@pytest.fixture
def faults(aws: Any) -> Faults:
    """Faults on the clients of both functions (the api's has shorter timeouts than the dispatcher's)."""
    return Faults(wiring.repository()._client, wiring.api_repository()._client)


def call(context: Any, method: str, target: str, body: Any = None) -> tuple[int, Any]:
    raw = None if body is None else json.dumps(body)
    response = api.lambda_handler(api_event(method, target, raw), context)
    return response["statusCode"], json.loads(response["body"])


TASK = {"trigger_at": "1858809600", "callback": "http://example.com/x"}
ROUTES = [
    ("PUT", "/task/job", TASK, "PutItem"),
    ("GET", "/status/job@1858809600", None, "GetItem"),
    ("GET", "/status/job", None, "Query"),
    ("GET", "/status/", None, "Scan"),
    ("DELETE", "/task/job@1858809600", None, "GetItem"),
]


@pytest.mark.parametrize("fault", [throttled, internal_error, timed_out], ids=["throttled", "internal", "timeout"])
@pytest.mark.parametrize(("method", "target", "body", "operation"), ROUTES)
def test_a_transient_fault_is_retried_and_the_request_succeeds(
    aws: Any, faults: Faults, lambda_context: Any, fault: Any, method: str, target: str, body: Any, operation: str
) -> None:
    if method != "PUT":
        call(lambda_context, "PUT", "/task/job", TASK)
    faults.fail(operation, fault, 2)
    status, answer = call(lambda_context, method, target, body)
    assert status in (200, 201), answer
    assert faults.plan[operation] == [], "both faults were met and retried"


LASTING = [(*route, internal_error) for route in ROUTES] + [(*ROUTES[0], throttled), (*ROUTES[0], timed_out)]


@pytest.mark.parametrize(("method", "target", "body", "operation", "fault"), LASTING)
def test_a_lasting_fault_gets_a_clear_503_and_changes_nothing(
    aws: Any, faults: Faults, lambda_context: Any, method: str, target: str, body: Any, operation: str, fault: Any
) -> None:
    if method != "PUT":
        call(lambda_context, "PUT", "/task/job", TASK)
    before = stored_items(aws)
    faults.fail(operation, fault, 50)
    status, answer = call(lambda_context, method, target, body)
    assert status == 503
    assert "storage is unavailable" in answer["error"] and "retry" in answer["error"]
    assert stored_items(aws) == before


def test_a_create_whose_answer_was_lost_is_not_reported_as_a_conflict(
    aws: Any, faults: Faults, lambda_context: Any
) -> None:
    faults.fail("PutItem", applied_then_lost, 1)
    status, created = call(lambda_context, "PUT", "/task/job", TASK)
    assert status == 201, created
    assert len(stored_items(aws)) == 1, "one entry, not two"
    assert call(lambda_context, "GET", "/status/job@1858809600")[1]["webhook_id"] == created["webhook_id"]


def test_a_cancel_whose_answer_was_lost_still_answers_the_cancelled_entry(
    aws: Any, faults: Faults, lambda_context: Any
) -> None:
    call(lambda_context, "PUT", "/task/job", TASK)
    faults.fail("PutItem", applied_then_lost, 1)
    status, cancelled = call(lambda_context, "DELETE", "/task/job@1858809600")
    assert status == 200, cancelled
    assert cancelled["task_state"] == "cancelled"


def _failed_entry(aws: Any, lambda_context: Any) -> None:
    call(lambda_context, "PUT", "/task/job", TASK)
    aws.update_item(
        TableName="callme-tasks",
        Key={"task_name": {"S": "job"}, "trigger_at": {"N": "1858809600"}},
        UpdateExpression="SET task_state = :s REMOVE due_shard, due_minute",
        ExpressionAttributeValues={":s": {"S": "failed"}},
    )


def test_a_reschedule_survives_throttling_on_each_of_its_writes(aws: Any, faults: Faults, lambda_context: Any) -> None:
    _failed_entry(aws, lambda_context)
    faults.fail("Query", throttled, 1)
    faults.fail("TransactWriteItems", throttled, 2)
    status, answer = call(lambda_context, "POST", "/reschedule/job", {"trigger_at": "1858816800"})
    assert status == 201, answer
    assert [t["trigger_at"] for t in answer["tasks"]] == [1858816800]
    assert faults.plan["TransactWriteItems"] == [], "both faults were met and retried"


@pytest.mark.parametrize("target", ["/reschedule/job@1858809600", "/reschedule/job"])
def test_a_reschedule_that_cannot_write_gets_503_and_changes_nothing(
    aws: Any, faults: Faults, lambda_context: Any, target: str
) -> None:
    # The successor and the mark on its source are one transaction: neither is written alone.
    _failed_entry(aws, lambda_context)
    before = stored_items(aws)
    faults.fail("TransactWriteItems", internal_error, 50)
    status, answer = call(lambda_context, "POST", target, {"trigger_at": "1858816800"})
    assert status == 503
    assert "storage is unavailable" in answer["error"]
    assert stored_items(aws) == before


def test_a_reschedule_whose_answer_was_lost_answers_its_one_successor(
    aws: Any, faults: Faults, lambda_context: Any
) -> None:
    # botocore retries the transaction; moto (unlike DynamoDB, which recognises its client token)
    # then refuses every write of it, each finding what this very transaction wrote.
    _failed_entry(aws, lambda_context)
    faults.fail("TransactWriteItems", applied_then_lost, 1)
    status, answer = call(lambda_context, "POST", "/reschedule/job@1858809600", {"trigger_at": "1858816800"})
    assert status == 201, answer
    [successor] = answer["tasks"]
    assert len(stored_items(aws)) == 2, "the source and one successor"
    assert call(lambda_context, "GET", "/status/job@1858816800")[1]["webhook_id"] == successor["webhook_id"]
    assert call(lambda_context, "GET", "/status/job@1858809600")[1]["rescheduled_to"] == "job@1858816800"


# -- the dispatcher's paths --------------------------------------------------------------------


class OkCaller:
    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.calls: list[str] = []

    def call(self, task: Task) -> CallResult:
        self.calls.append(str(task.key))
        return CallResult(started_at=self.clock.now(), duration_ms=1, status=200, body="")


def _engine(clock: FixedClock, caller: OkCaller) -> DispatchEngine:
    return DispatchEngine(
        wiring.repository(), wiring.leases(), caller, clock, dispatch_config(concurrency=2), sleep=clock.advance
    )


@pytest.mark.parametrize("operation", ["Query", "PutItem", "BatchGetItem"])
@pytest.mark.parametrize("fault", [throttled, internal_error, timed_out], ids=["throttled", "internal", "timeout"])
def test_dispatch_rides_out_transient_faults_on_every_call(
    aws: Any, faults: Faults, lambda_context: Any, operation: str, fault: Any
) -> None:
    call(lambda_context, "PUT", "/task/job", TASK)
    clock = FixedClock(1858809600 + 5)
    caller = OkCaller(clock)
    faults.fail(operation, fault, 2)
    _engine(clock, caller).run(range(wiring.repository().shards))
    assert caller.calls == ["job@1858809600"]
    assert wiring.repository().get(_key()).state is TaskState.SUCCESSFUL  # type: ignore[union-attr]


def test_a_dispatch_run_that_cannot_reach_storage_loses_nothing(aws: Any, faults: Faults, lambda_context: Any) -> None:
    call(lambda_context, "PUT", "/task/job", TASK)
    clock = FixedClock(1858809600 + 5)
    caller = OkCaller(clock)
    faults.fail("Query", internal_error, 50)
    with pytest.raises(ServiceUnavailable):
        _engine(clock, caller).run(range(wiring.repository().shards))
    assert caller.calls == []
    faults.plan.clear()
    clock.advance(81)  # the failed run's leases have run out
    _engine(clock, caller).run(range(wiring.repository().shards))
    assert caller.calls == ["job@1858809600"]


def test_an_outcome_write_whose_answer_was_lost_is_recorded_once(aws: Any, faults: Faults, lambda_context: Any) -> None:
    call(lambda_context, "PUT", "/task/job", TASK)
    clock = FixedClock(1858809600 + 5)
    caller = OkCaller(clock)
    engine = _engine(clock, caller)
    original = engine.repository.save

    def save(task: Task, expected: str) -> None:
        if task.state is TaskState.SUCCESSFUL:
            faults.fail("PutItem", applied_then_lost, 1)
        original(task, expected)

    engine.repository.save = save  # type: ignore[method-assign]
    report = engine.run(range(wiring.repository().shards))
    assert (report.succeeded, report.unrecorded) == (1, 0)
    assert caller.calls == ["job@1858809600"]


def _key() -> Any:
    from callme.task import TaskKey

    return TaskKey("job", 1858809600)


@pytest.mark.parametrize("who", ["dispatcher", "api"])
def test_a_request_the_table_refuses_is_storage_unavailable_without_botocore_checking_it_first(
    aws: Any, who: str
) -> None:
    # botocore does not check requests against the API's shapes (its CPU per write, for requests all
    # built by the adapters): one DynamoDB refuses still ends as ServiceUnavailable, as the check's
    # ParamValidationError did, never as a crash or a lost error
    repository = wiring.repository() if who == "dispatcher" else wiring.api_repository()
    refused = DynamoDBTaskRepository(repository._client, "x", repository.shards)  # shorter than a table name may be
    with pytest.raises(ServiceUnavailable, match="storage is unavailable"):
        refused.get(TaskKey("entry", 1858809600))
    with pytest.raises(ServiceUnavailable, match="storage is unavailable"):
        refused.insert(Task.new(TaskKey("entry", 1858809600), TaskDefinition(callback="http://example.com/x"), 0))
