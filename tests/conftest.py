"""Fixtures shared by every tier: sample events, Lambda contexts, the moto-backed tables."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
from moto import mock_aws

from local.dynamodb import TABLE_NAMES, ensure_tables
from local.lambda_context import LocalContext

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/ (the same files `sam local invoke -e` takes)."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


_BASE = load_event("api-get-task")


def api_event(method: str, target: str, body: str | bytes | None = None) -> dict[str, Any]:
    """An API Gateway REST proxy event for ``method target``, built on the sample event."""
    event = copy.deepcopy(_BASE)
    parts = urlsplit(target)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    event["httpMethod"] = method
    event["path"] = parts.path
    event["pathParameters"] = {"proxy": parts.path.lstrip("/")}
    event["requestContext"]["httpMethod"] = method
    event["requestContext"]["path"] = f"/v1{parts.path}"
    event["queryStringParameters"] = dict(pairs) or None
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        multi.setdefault(key, []).append(value)
    event["multiValueQueryStringParameters"] = multi or None
    if isinstance(body, bytes):
        import base64

        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        event["body"], event["isBase64Encoded"] = body, False
    if body is not None:
        event["headers"]["Content-Type"] = "application/json"
    return event


@pytest.fixture
def lambda_context() -> LocalContext:
    return LocalContext.for_function("callme-test", timeout_seconds=60)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's DynamoDB with the tables of template.yaml; the handlers' wiring pointed at it."""
    from handlers import wiring

    for name, value in {
        "CALLME_TABLE_NAME": TABLE_NAMES["TasksTable"],
        "CALLME_LEASE_TABLE_NAME": TABLE_NAMES["LeasesTable"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "CALLME_ALLOW_NETWORKS": "127.0.0.0/8,::1/128",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("CALLME_DYNAMODB_ENDPOINT", "CALLME_SIGNING_SECRET", "CALLME_SIGNING_SECRET_ID"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        ensure_tables(client=client)
        wiring.reset()
        yield client
    wiring.reset()


def stored_items(client: Any, table: str = TABLE_NAMES["TasksTable"]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.scan(TableName=table)["Items"]
    return items
