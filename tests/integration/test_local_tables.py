"""The local stack pointed at another DynamoDB (CALLME_DYNAMODB_ENDPOINT): the tables the handlers
use, under the configured names and region; created only on a DynamoDB on this machine, never on AWS's."""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from handlers import wiring
from local.dynamodb import MissingTables, ensure_tables, linearize_moto, may_create_tables
from local.stack import LocalStack, Options

AWS_ENDPOINT = "https://dynamodb.eu-west-1.amazonaws.com"
DEPLOYED = "prod-TasksTable-1A2B3C"


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [
        (None, True),  # the embedded one
        ("http://127.0.0.1:8000", True),  # DynamoDB Local, moto's server
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
        ("http://127.8.9.10:8000", True),
        (AWS_ENDPOINT, False),
        ("https://dynamodb.us-east-1.amazonaws.com", False),
        ("http://10.0.0.5:8000", False),
        ("http://dynamodb.example.com:8000", False),
        ("http://localhost.example.com:8000", False),
    ],
)
def test_tables_are_created_only_on_a_dynamodb_on_this_machine(endpoint: str | None, allowed: bool) -> None:
    assert may_create_tables(endpoint) is allowed


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[Any]:
    """AWS's DynamoDB in eu-west-1 (moto, in-process), and the environment a user gives the local
    stack to read a deployed stack's table, as the console's IAM page says."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith(("CALLME_", "AWS_", "POWERTOOLS_"))]:
        del os.environ[name]
    os.environ.update(
        {
            "CALLME_DYNAMODB_ENDPOINT": AWS_ENDPOINT,
            "CALLME_TABLE_NAME": DEPLOYED,
            "AWS_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "testing",  # the user's own credentials
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
    )
    linearize_moto()
    wiring.reset()
    try:
        with mock_aws():
            yield boto3.client("dynamodb", region_name="eu-west-1")
    finally:
        wiring.reset()
        os.environ.clear()
        os.environ.update(saved)


def stack_of(tmp_path: Path) -> LocalStack:
    return LocalStack(Options(port=0, state_dir=tmp_path / "state", ticks=False))


def test_a_missing_table_on_aws_is_named_and_nothing_is_created(deployed: Any, tmp_path: Path) -> None:
    stack = stack_of(tmp_path)
    try:
        with pytest.raises(
            MissingTables, match=rf"^no table {DEPLOYED} in eu-west-1 at {AWS_ENDPOINT};.*CALLME_TABLE_NAME"
        ):
            stack.start()
    finally:
        stack.stop()
    assert deployed.list_tables()["TableNames"] == []


def test_the_stack_serves_a_deployed_table_under_its_name_and_region(deployed: Any, tmp_path: Path) -> None:
    ensure_tables(client=deployed, names={"TasksTable": DEPLOYED})  # as the deployment made it
    stack = stack_of(tmp_path)
    stack.start()
    try:
        assert stack.gateway is not None
        threading.Thread(target=stack.serve_forever, daemon=True).start()
        body = json.dumps({"trigger_at": "+1h", "callback": "https://example.com/x"}).encode()
        request = urllib.request.Request(f"{stack.gateway.url}/task/job", body, method="PUT")
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 201
    finally:
        stack.stop()
    [item] = deployed.scan(TableName=DEPLOYED)["Items"]
    assert item["task_name"] == {"S": "job"}
    assert deployed.list_tables()["TableNames"] == [DEPLOYED], "no other table was made (no dispatcher here)"


def test_on_a_dynamodb_on_this_machine_missing_tables_are_created_under_their_configured_names() -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        names = {"TasksTable": "mine-tasks", "LeasesTable": "mine-leases"}
        ensure_tables(client=client, names=names)
        ensure_tables(client=client, names=names)  # and once they exist, nothing more
        assert sorted(client.list_tables()["TableNames"]) == ["mine-leases", "mine-tasks"]
        described = client.describe_time_to_live(TableName="mine-tasks")["TimeToLiveDescription"]
        assert described["AttributeName"] == "expires_at"
