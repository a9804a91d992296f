"""Outcome events published to EventBridge (moto's): batches, sizes, refusals sent again, and a bus
that is down. A rule on the default bus sends callme's events to an SQS queue, which shows what
EventBridge delivered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from callme.outcomes import OutcomePublisher, outcome_event
from callme.ports import PUT_BYTES
from callme.task import Task, TaskState
from handlers.eventbridge import EventBridgeBus
from tests.conftest import publish_config
from tests.unit.conftest import CURRENT_MINUTE, make_task

REGION = "us-east-1"


@dataclass
class Delivered:
    """What a rule on the default bus delivered to its SQS target."""

    sqs: Any
    queue_url: str

    def events(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while messages := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                found.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return found


@dataclass
class Counting:
    """The events client, with each PutEvents' entries kept, and entries refused as scripted: per
    call, the places in the batch to refuse (those are not passed on), or an error for the whole call."""

    client: Any
    refusals: list[set[int] | str] = field(default_factory=list)
    calls: list[list[dict[str, Any]]] = field(default_factory=list)

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        refused = self.refusals.pop(0) if self.refusals else set()
        if isinstance(refused, str):
            raise ClientError({"Error": {"Code": refused, "Message": "slow down"}}, "PutEvents")
        passed = [entry for i, entry in enumerate(Entries) if i not in refused]
        answers = iter(self.client.put_events(Entries=passed)["Entries"] if passed else [])
        failed = {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
        entries = [failed if i in refused else next(answers) for i in range(len(Entries))]
        return {"FailedEntryCount": len(refused), "Entries": entries}


@pytest.fixture
def delivered(monkeypatch: pytest.MonkeyPatch) -> Iterator[Delivered]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="outcomes")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = boto3.client("events", region_name=REGION)
        events.put_rule(Name="callme-outcomes", EventPattern=json.dumps({"source": ["callme"]}))
        events.put_targets(Rule="callme-outcomes", Targets=[{"Id": "queue", "Arn": queue_arn}])
        yield Delivered(sqs, queue_url)


def publish(client: Any, tasks: list[Task], tries: int = 4) -> Any:
    publisher = OutcomePublisher(EventBridgeBus(client), publish_config(tries=tries), sleep=lambda _: None)
    for task in tasks:
        publisher.entry_finished(task)
    return publisher.close()


def entry_size(entry: dict[str, Any]) -> int:
    """An entry's size as EventBridge counts it (its Time, and its texts in UTF-8)."""
    texts = (entry["Source"], entry["DetailType"], entry["Detail"])
    return (14 if "Time" in entry else 0) + sum(len(text.encode()) for text in texts)


def finished(count: int) -> list[Task]:
    states = (TaskState.SUCCESSFUL, TaskState.FAILED, TaskState.SKIPPED)
    return [make_task(states[i % 3], 1, name=f"job-{i}", payload="secret-payload") for i in range(count)]


def test_25_finished_entries_are_three_calls_and_arrive_as_events(delivered: Delivered) -> None:
    client = Counting(boto3.client("events", region_name=REGION))
    report = publish(client, finished(25))
    assert [len(call) for call in client.calls] == [10, 10, 5]
    assert (report.published, report.failed) == (25, [])
    events = delivered.events()
    assert sorted(e["detail"]["task_name"] for e in events) == sorted(f"job-{i}" for i in range(25))
    kinds = {e["detail"]["task_name"]: (e["source"], e["detail-type"], e["detail"]["task_state"]) for e in events}
    assert kinds["job-0"] == ("callme", "Task Succeeded", "successful")
    assert kinds["job-1"] == ("callme", "Task Failed", "failed")
    assert kinds["job-2"] == ("callme", "Task Skipped", "skipped")
    assert all("payload" not in e["detail"] for e in events)
    assert "secret-payload" not in json.dumps(events)


def test_every_call_stays_under_256_kb_and_an_oversized_entry_is_described(delivered: Delivered) -> None:
    client = Counting(boto3.client("events", region_name=REGION))
    large = [replace(task, response_body="r" * 60_000) for task in finished(9)]
    oversized = replace(make_task(TaskState.FAILED, 1, name="huge"), response_body="h" * PUT_BYTES)
    report = publish(client, [*large, oversized])
    assert report.published == 10
    assert [len(call) for call in client.calls] == [4, 4, 2]
    assert all(sum(entry_size(entry) for entry in call) < PUT_BYTES for call in client.calls)
    events = {e["detail"]["task_name"]: e for e in delivered.events()}
    assert len(events) == 10
    assert events["job-0"]["detail"]["response_body"] == "r" * 60_000
    assert events["huge"]["detail"]["task_state"] == "failed"
    assert f"GET /task/huge@{CURRENT_MINUTE}" in events["huge"]["detail"]["trimmed"]


def test_entries_eventbridge_refuses_are_sent_again_and_arrive_once(delivered: Delivered) -> None:
    client = Counting(boto3.client("events", region_name=REGION), refusals=[{1, 4, 8}, {2}])
    report = publish(client, finished(10))
    sent = [[json.loads(entry["Detail"])["task_name"] for entry in call] for call in client.calls]
    assert sent[1:] == [["job-1", "job-4", "job-8"], ["job-8"]]
    assert (report.published, report.puts, report.failed) == (10, 3, [])
    names = [e["detail"]["task_name"] for e in delivered.events()]
    assert sorted(names) == sorted(f"job-{i}" for i in range(10))


def test_a_refused_call_is_made_again(delivered: Delivered) -> None:
    client = Counting(boto3.client("events", region_name=REGION), refusals=["ThrottlingException"])
    report = publish(client, finished(3))
    assert (report.published, report.puts, report.failed) == (3, 2, [])
    assert len(delivered.events()) == 3


def test_a_bus_that_is_down_loses_no_outcome_and_names_every_event(delivered: Delivered) -> None:
    client = Counting(boto3.client("events", region_name=REGION), refusals=["InternalException"] * 10)
    report = publish(client, finished(12), tries=3)
    assert report.published == 0 and len(client.calls) == 6  # two batches, three tries each
    assert sorted(entry for entry, _ in report.failed) == sorted(f"job-{i}@{CURRENT_MINUTE}" for i in range(12))
    assert {why for _, why in report.failed} == {"refused 3 times, last: InternalException: slow down"}
    assert delivered.events() == []


def test_an_unreachable_endpoint_is_each_events_error() -> None:
    client = boto3.client(
        "events",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    event = outcome_event(make_task(TaskState.SUCCESSFUL, 1))
    assert event is not None
    errors = EventBridgeBus(client).put([event, event])
    assert len(errors) == 2 and all(error and "EndpointConnectionError" in error for error in errors)
