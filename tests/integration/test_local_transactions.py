"""The local stack's TransactWriteItems for Puts answers exactly as moto's own, without copying tables."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models import DynamoDBBackend

from local.dynamodb import puts_checked_first
from tests.conftest import stored_items

TABLE = "callme-tasks"
# moto's own, even if the local stack's was installed in this process
MOTO = getattr(DynamoDBBackend.transact_write_items, "__wrapped__", DynamoDBBackend.transact_write_items)


def item(name: str, at: int = 60, **extra: str) -> dict[str, Any]:
    return {"task_name": {"S": name}, "trigger_at": {"N": str(at)}, **{k: {"S": v} for k, v in extra.items()}}


def put(row: dict[str, Any], condition: str | None = None, **values: str) -> dict[str, Any]:
    action: dict[str, Any] = {"TableName": TABLE, "Item": row, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
    if condition:
        action["ConditionExpression"] = condition
    if values:
        action["ExpressionAttributeValues"] = {k: {"S": v} for k, v in values.items()}
    return {"Put": action}


def outcome(aws: Any, actions: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """What a client sees: the error (code and cancellation reasons) or None, and the table after."""
    aws.put_item(TableName=TABLE, Item=item("a", revision="1"))
    aws.put_item(TableName=TABLE, Item=item("b", revision="1"))
    try:
        aws.transact_write_items(TransactItems=actions)
        error = None
    except ClientError as exc:
        error = (exc.response["Error"]["Code"], exc.response.get("CancellationReasons"))
    table = sorted(stored_items(aws), key=lambda i: i["task_name"]["S"])
    for row in table:
        aws.delete_item(TableName=TABLE, Key={"task_name": row["task_name"], "trigger_at": row["trigger_at"]})
    return error, table


SCENARIOS: dict[str, list[dict[str, Any]]] = {
    "all conditions hold": [
        put(item("a", revision="2"), "revision = :r", **{":r": "1"}),
        put(item("c", revision="1"), "attribute_not_exists(task_name)"),
        put(item("d")),
    ],
    "one condition fails": [
        put(item("a", revision="2"), "revision = :r", **{":r": "1"}),
        put(item("b", revision="2"), "revision = :r AND attribute_not_exists(rescheduled_to)", **{":r": "0"}),
        put(item("c"), "attribute_not_exists(task_name)"),
    ],
    "a new item's condition fails": [put(item("a"), "attribute_not_exists(task_name)"), put(item("c"))],
    "two actions on one item": [put(item("c")), put(item("c", revision="2"))],
    "not only Puts": [
        put(item("c")),
        {
            "ConditionCheck": {
                "TableName": TABLE,
                "Key": {"task_name": {"S": "a"}, "trigger_at": {"N": "60"}},
                "ConditionExpression": "attribute_not_exists(task_name)",
            }
        },
    ],
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_puts_checked_first_answer_as_moto_does(aws: Any, monkeypatch: pytest.MonkeyPatch, scenario: str) -> None:
    expected = outcome(aws, SCENARIOS[scenario])
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", puts_checked_first(MOTO))
    assert outcome(aws, SCENARIOS[scenario]) == expected
    if scenario == "one condition fails":
        code, reasons = expected[0]
        assert code == "TransactionCanceledException"
        assert [r["Code"] for r in reasons] == ["None", "ConditionalCheckFailed", "None"]
        assert reasons[1]["Item"]["revision"] == {"S": "1"}


def test_a_refused_put_undoes_the_puts_before_it(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", puts_checked_first(MOTO))
    aws.put_item(TableName=TABLE, Item=item("a", revision="1"))
    before = stored_items(aws)
    too_large = item("c", payload="x" * 500_000)
    with pytest.raises(ClientError) as refused:
        aws.transact_write_items(TransactItems=[put(item("a", revision="2")), put(item("b")), put(too_large)])
    assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert stored_items(aws) == before


def test_a_transaction_costs_the_same_whatever_the_table_holds(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # moto's own copies the table once per action: 100 actions on 3,000 items took about a minute.
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", puts_checked_first(MOTO))
    rows = [{"PutRequest": {"Item": item(f"t{i}")}} for i in range(3000)]
    for start in range(0, len(rows), 25):
        aws.batch_write_item(RequestItems={TABLE: rows[start : start + 25]})
    started = time.perf_counter()
    aws.transact_write_items(TransactItems=[put(item(f"t{i}", revision="2")) for i in range(100)])
    assert time.perf_counter() - started < 2
