"""The local stack's state folder: one owner at a time, and a journal that survives a power loss."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.dynamodb import TABLE_NAMES, EmbeddedDynamoDB, Journal, journaled
from local.state import LOCK_NAME, StateFolder, StateFolderInUse

TABLE = TABLE_NAMES["TasksTable"]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in sorted(folder.iterdir())}


# -- one owner ----------------------------------------------------------------------------------------


def test_a_second_owner_is_refused_naming_the_folder_and_the_holder_and_changes_nothing(tmp_path: Path) -> None:
    first = StateFolder(tmp_path / "state")
    first.lock()
    (first.path / "dynamodb-journal.jsonl").write_text('{"op": "PutItem", "body": "{}"}\n')
    before = snapshot(first.path)
    with pytest.raises(StateFolderInUse) as refused:
        StateFolder(first.path).lock()
    assert str(first.path) in str(refused.value)
    assert f"process {os.getpid()}" in str(refused.value)
    assert snapshot(first.path) == before
    first.release()
    second = StateFolder(first.path)
    second.lock()  # free again once released (or once its process ends, however it ends)
    second.release()


def test_the_signing_secret_is_private_from_its_creation_and_kept(tmp_path: Path) -> None:
    folder = StateFolder(tmp_path)
    assert folder.signing_secret("whsec_first") == "whsec_first"
    assert (tmp_path / "signing-secret").stat().st_mode & 0o777 == 0o600
    assert folder.signing_secret("whsec_second") == "whsec_first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing-secret"]
    assert LOCK_NAME not in os.listdir(tmp_path)


def test_the_headers_key_is_private_from_its_creation_and_kept(tmp_path: Path) -> None:
    folder = StateFolder(tmp_path)
    assert folder.headers_key("k" * 64) == "k" * 64
    assert (tmp_path / "headers-key").stat().st_mode & 0o777 == 0o600
    assert folder.headers_key("x" * 64) == "k" * 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["headers-key"]


# -- durability ---------------------------------------------------------------------------------------


class DiskLog:
    """Records fsyncs (by the path synced) and renames, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            with self.lock:
                self.calls.append(("fsync", path))
            if delay:
                time.sleep(delay)
            real_fsync(fd)

        def replace(source: Any, target: Any) -> None:
            with self.lock:
                self.calls.append(("replace", f"{source} -> {target}"))
            real_replace(source, target)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def fsyncs(self, path: Path) -> int:
        with self.lock:
            return sum(1 for kind, where in self.calls if kind == "fsync" and where == str(path))


def start(state_dir: Path) -> EmbeddedDynamoDB:
    """The embedded DynamoDB on ``state_dir``, in a moto emptied first as a new process's would be."""
    from moto.moto_api._internal import moto_api_backend

    moto_api_backend.reset()
    database = EmbeddedDynamoDB(state_dir)
    database.start()
    return database


@pytest.fixture
def database(tmp_path: Path) -> Iterator[EmbeddedDynamoDB]:
    started = start(tmp_path)
    yield started
    started.stop()


def client_of(database: EmbeddedDynamoDB) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=database.endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def put(client: Any, name: str) -> None:
    client.put_item(TableName=TABLE, Item={"task_name": {"S": name}, "trigger_at": {"N": "60"}})


def test_a_write_is_on_disk_before_it_is_answered(
    database: EmbeddedDynamoDB, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    journal = tmp_path / "dynamodb-journal.jsonl"
    synced_lines: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}") == str(journal):
            synced_lines.append(len(journal.read_text().splitlines()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    client = client_of(database)
    lines_before = len(journal.read_text().splitlines())
    put(client, "durable")
    assert synced_lines and synced_lines[-1] == lines_before + 1
    assert json.loads(journal.read_text().splitlines()[-1])["op"] == "PutItem"


def test_writers_at_the_same_time_share_fsyncs_and_every_write_is_covered(
    database: EmbeddedDynamoDB, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    disk = DiskLog(monkeypatch, delay=0.02)  # a slow disk: 20 ms per fsync
    journal = tmp_path / "dynamodb-journal.jsonl"
    clients = [client_of(database) for _ in range(8)]
    threads = [
        threading.Thread(target=lambda c=c, i=i: [put(c, f"w{i}-{j}") for j in range(8)]) for i, c in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 0 < disk.fsyncs(journal) < 64 / 2  # group commit: far fewer fsyncs than writes
    database.stop()
    restarted = start(tmp_path)
    try:
        items = client_of(restarted).scan(TableName=TABLE)["Items"]
        assert len(items) == 64
    finally:
        restarted.stop()


def test_compaction_is_durable_fsynced_then_moved_then_the_folder_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = start(tmp_path)
    put(client_of(first), "kept")
    first.stop()
    disk = DiskLog(monkeypatch)
    second = start(tmp_path)  # replays, then rewrites the journal compacted
    try:
        journal, temporary = tmp_path / "dynamodb-journal.jsonl", tmp_path / "dynamodb-journal.tmp"
        assert disk.calls[:3] == [
            ("fsync", str(temporary)),
            ("replace", f"{temporary} -> {journal}"),
            ("fsync", str(tmp_path)),
        ]
        assert [i["task_name"]["S"] for i in client_of(second).scan(TableName=TABLE)["Items"]] == ["kept"]
    finally:
        second.stop()


def test_a_journal_that_cannot_be_written_stops_the_database_rather_than_answer(tmp_path: Path) -> None:
    class FullDisk(Journal):
        def append(self, op: str, body: str) -> int:
            raise OSError(28, "No space left on device")

    failures: list[OSError] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"{}"]

    middleware = journaled(app, FullDisk(tmp_path / "journal.jsonl"), on_failure=failures.append)
    environ = {"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem", "CONTENT_LENGTH": "2", "wsgi.input": _Body(b"{}")}
    with pytest.raises(OSError):
        middleware(environ, lambda *args: None)
    assert [error.errno for error in failures] == [28]


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, size: int) -> bytes:
        return self.data[:size]
