"""The local stack's embedded DynamoDB can serve the ``due`` index late, as DynamoDB may."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callme.dynamodb import DynamoDBTaskRepository, connect
from callme.task import Task, TaskDefinition, TaskKey, TaskState
from local.dynamodb import LAG_VARIABLE, REGION, EmbeddedDynamoDB, index_lag_from
from tests.conftest import settings

T0 = 1858809600
LAG = 0.6


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")


def connected(database: EmbeddedDynamoDB) -> DynamoDBTaskRepository:
    client = connect(REGION, database.endpoint, settings().dispatcher_storage)
    return DynamoDBTaskRepository(client, "callme-tasks", 1)


def started(state_dir: Path | None, lag: float) -> EmbeddedDynamoDB:
    database = EmbeddedDynamoDB(state_dir, index_lag=lag)
    database.start()
    return database


@pytest.fixture
def lagging(credentials: None) -> Iterator[DynamoDBTaskRepository]:
    database = started(None, LAG)
    yield connected(database)
    database.stop()


def due(repository: DynamoDBTaskRepository) -> list[Task]:
    return list(repository.due(0, T0))


def test_the_due_index_shows_the_tables_as_they_were_lag_seconds_ago(lagging: DynamoDBTaskRepository) -> None:
    task = Task.new(TaskKey("job", T0), TaskDefinition("http://example.com/"), T0 - 60)
    lagging.insert(task)
    assert due(lagging) == [], "a new entry is not in the index at once"
    assert lagging.has_due(0, T0) is False
    time.sleep(LAG + 0.3)
    assert [t.key for t in due(lagging)] == [task.key], "it is there once the lag has passed"

    cancelled = task.cancelled(T0 - 30, 3600)
    lagging.save(cancelled, task.revision)
    [stale] = due(lagging)
    assert stale.state is TaskState.PENDING, "the index still shows the entry as it was"
    [fresh] = lagging.get_many([task.key])
    assert fresh.state is TaskState.CANCELLED, "while a consistent read of the table shows it as it is"
    time.sleep(LAG + 0.3)
    assert due(lagging) == []


def test_the_lagging_index_starts_from_the_state_restored_at_start(credentials: None, tmp_path: Path) -> None:
    first = started(tmp_path, 0)
    repository = connected(first)
    task = Task.new(TaskKey("kept", T0), TaskDefinition("http://example.com/"), T0 - 60)
    repository.insert(task)
    first.stop()

    second = started(tmp_path, LAG)
    try:
        repository = connected(second)
        assert [t.key for t in due(repository)] == [task.key]
    finally:
        second.stop()


@pytest.mark.parametrize(("text", "lag"), [(None, 0.0), ("", 0.0), ("0", 0.0), ("2", 2.0), ("0.5", 0.5)])
def test_the_lag_is_read_from_the_environment(text: str | None, lag: float) -> None:
    assert index_lag_from({} if text is None else {LAG_VARIABLE: text}) == lag


@pytest.mark.parametrize("text", ["abc", "-1", "nan", "inf", "301"])
def test_a_wrong_lag_is_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(ValueError, match=LAG_VARIABLE):
        index_lag_from({LAG_VARIABLE: text})
