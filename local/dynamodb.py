"""An embedded DynamoDB: moto's server in a thread, with a write journal so that state survives
a restart, a kill -9 or a power loss: each write is on disk (fsync) before its answer is sent.

Every successful write request is appended to ``dynamodb-journal.jsonl`` in the state folder; at
start the journal is replayed into the fresh moto, then compacted to one PutItem per live item
(written to a temporary file, fsynced, and moved into place durably).
With an index lag (``CALLME_LOCAL_INDEX_LAG_SECONDS``) the ``due`` index is served as it was that
many seconds ago, as DynamoDB's eventually consistent indexes may be.
"""

from __future__ import annotations

import base64
import functools
import io
import ipaddress
import json
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from moto.server import DomainDispatcherApplication, create_backend_app  # type: ignore[attr-defined]
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.test import Client

from .state import replace_durably
from .template import load_template, table_definitions

log = logging.getLogger(__name__)
REGION = "us-east-1"
_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
_AUTH = (
    f"AWS4-HMAC-SHA256 Credential=local/20260101/{REGION}/dynamodb/aws4_request, "
    "SignedHeaders=host;x-amz-target, Signature=local"
)
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Journal:
    """An append-only log of the write requests DynamoDB accepted, durable before they are answered.

    Appends keep the order in which the writes were applied. ``sync(position)`` returns once every
    append up to ``position`` is on disk: writers waiting at the same time share one fsync (group
    commit), so a busy stack pays far less than one fsync per write.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._handle: io.TextIOWrapper | None = None
        self._appended = 0
        self._synced = 0

    def entries(self) -> list[tuple[str, str]]:
        if not self.path.exists():
            return []
        entries = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: its write was never answered
            entries.append((record["op"], record["body"]))
        return entries

    def rewrite(self, entries: Iterable[tuple[str, str]]) -> None:
        """Replace the journal with ``entries``, atomically and durably."""
        self.close()
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w") as handle:
            for op, body in entries:
                handle.write(json.dumps({"op": op, "body": body}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        replace_durably(temporary, self.path)

    def append(self, op: str, body: str) -> int:
        """Append a write (not yet durable: see ``sync``); returns its position."""
        line = json.dumps({"op": op, "body": body}) + "\n"
        with self._lock:
            if self._handle is None:
                self._handle = self.path.open("a")
            self._handle.write(line)
            self._handle.flush()
            self._appended += 1
            return self._appended

    def sync(self, position: int) -> None:
        """Return once every append up to ``position`` is on disk."""
        with self._sync_lock:
            if self._synced >= position:
                return  # another writer's fsync covered it
            with self._lock:
                target, handle = self._appended, self._handle
            if handle is not None:
                os.fsync(handle.fileno())
            self._synced = target

    def close(self) -> None:
        with self._lock:
            if self._handle:
                self._handle.close()
                self._handle = None


def _stop_process(error: OSError) -> None:
    # A write applied in memory that the journal could not keep must not be answered: it would be
    # lost at the next start. Stop, as a database does when its log cannot be written.
    log.critical("the DynamoDB journal could not be written (%s): stopping", error)
    os._exit(75)


def journaled(app: WSGIApp, journal: Journal, on_failure: Callable[[OSError], None] = _stop_process) -> WSGIApp:
    """WSGI middleware: writes are applied one at a time and are on disk before they are answered."""
    lock = threading.Lock()

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        op = target.rpartition(".")[2]
        if op not in _WRITES:
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        status: list[str] = []

        def capture(status_line: str, headers: list[Any], exc_info: Any = None) -> Any:
            status.append(status_line)
            return start_response(status_line, headers, exc_info)

        with lock:
            chunks = list(app(environ, capture))
            if not (status and status[0].startswith("200")):
                return chunks
            try:
                position = journal.append(op, body.decode())
            except OSError as error:
                on_failure(error)
                raise
        try:
            journal.sync(position)  # outside the lock: the next write is applied meanwhile
        except OSError as error:
            on_failure(error)
            raise
        return chunks

    return middleware


# Reads whose answers are items, already in DynamoDB JSON as moto's backend builds them.
_ITEM_READS = frozenset({"Query", "Scan", "GetItem", "BatchGetItem"})


_MOTO_LOCK = threading.RLock()


def linearize_moto() -> None:
    """Make moto's DynamoDB answer one request at a time, as a linearizable store would.

    moto's backend is not thread-safe: a Scan or a transaction's table copy iterating the items
    while another thread writes fails ("dictionary changed size during iteration"), and a
    transaction's rollback can undo a concurrent write. DynamoDB itself applies each request
    atomically, so concurrent clients (the dispatcher's pools, parallel API requests, the race tests)
    must see moto do the same.
    """
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action
    if getattr(original, "callme_linearized", False):
        return

    def call_action(self: Any) -> Any:
        with _MOTO_LOCK:
            return original(self)

    call_action.callme_linearized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def speed_up_moto() -> None:
    """Take the largest per-request costs out of moto's server, without changing any answer.

    Measured by ``make bench`` (a profile of the embedded DynamoDB process): moto 5 walks every
    answer through the botocore model of its operation, about 3 ms of CPU per item returned (a Query
    of 250 entries took 0.75 s, and reading a busy minute dominated a local dispatch run); and for
    every request it lists its own package folder twice and introspects its handler class (about
    0.7 ms of a 2.5 ms PutItem). Here the answers of item reads, already in DynamoDB's wire format
    as moto's backend builds them, are encoded with ``json`` (binary values base64, as DynamoDB sends
    them; anything else falls back to moto's serializer), and the two look-ups are made once.
    """
    import moto.backends
    import moto.core.responses
    from moto.dynamodb.responses import DynamoResult

    linearize_moto()
    original = DynamoResult.execute_result
    if getattr(original, "callme_fast_path", False):
        return

    def execute_result(self: DynamoResult, context: Any) -> Any:
        if context.operation_model.name in _ITEM_READS:
            try:
                body = json.dumps(self.result, default=_base64)
            except (TypeError, ValueError):
                pass
            else:
                content_type = f"application/x-amz-json-{context.service_model.metadata.get('jsonVersion', '1.0')}"
                return 200, {"Content-Type": content_type}, body
        return original(self, context)

    execute_result.callme_fast_path = True  # type: ignore[attr-defined]
    DynamoResult.execute_result = execute_result  # type: ignore[method-assign,assignment]
    modules = tuple(moto.backends.list_of_moto_modules())
    moto.backends.list_of_moto_modules = lambda: modules
    responses: Any = moto.core.responses
    responses.method_names_from_class = functools.cache(responses.method_names_from_class)
    from moto.dynamodb.models import DynamoDBBackend

    DynamoDBBackend.transact_write_items = puts_checked_first(DynamoDBBackend.transact_write_items)  # type: ignore[method-assign]


def puts_checked_first(original: Callable[..., None]) -> Callable[..., None]:
    """moto's TransactWriteItems without its table copies, for transactions of Puts (callme's).

    To roll a transaction back, moto deep-copies the whole table for each of its actions: 0.2 ms per
    stored item and action, so a two-write transaction on 5,000 entries took 1.9 s (and every other
    write waited for it), one of 100 writes 89 s. Puts on distinct items need no rollback when
    every condition is checked before anything is written: that is done here, with moto's own
    condition evaluation and answers. Any other transaction goes to moto's own code.
    """
    if getattr(original, "callme_fast_path", False):
        return original
    from moto.dynamodb.exceptions import TransactionCanceledException

    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        puts = [item["Put"] for item in transact_items if list(item) == ["Put"]]
        keys = _distinct_keys(self, puts) if len(puts) == len(transact_items) <= 100 else None
        if keys is None:
            return original(self, transact_items)
        stored = [self.get_item(put["TableName"], key) for put, key in zip(puts, keys, strict=True)]
        reasons = [_condition_failure(put, current) for put, current in zip(puts, stored, strict=True)]
        if any(code for code, _, _ in reasons):
            raise TransactionCanceledException(reasons)
        for done, put in enumerate(puts):
            try:
                self.put_item(put["TableName"], put["Item"])
            except Exception as error:  # a Put moto refuses (item too large ...): undo the ones before
                for undo, key, before in reversed(list(zip(puts[:done], keys, stored, strict=False))):
                    if before is None:
                        self.delete_item(undo["TableName"], key)
                    else:
                        self.put_item(undo["TableName"], before.to_json()["Attributes"])
                reasons[done] = (type(error).__name__, str(error), None)
                raise TransactionCanceledException(reasons) from error
        return None

    transact_write_items.callme_fast_path = True  # type: ignore[attr-defined]
    return transact_write_items


def _distinct_keys(backend: Any, puts: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The key of each Put's item, or None unless every item has its key and no two are the same
    (moto's own code answers those)."""
    keys = []
    for put in puts:
        table = backend.get_table(put["TableName"])
        names = [n for n in (table.hash_key_attr, table.range_key_attr) if n]
        if not all(n in put["Item"] for n in names):
            return None
        keys.append({n: put["Item"][n] for n in names})
    distinct = {json.dumps([put["TableName"], key], sort_keys=True) for put, key in zip(puts, keys, strict=True)}
    return keys if len(distinct) == len(puts) else None


def _condition_failure(put: dict[str, Any], current: Any) -> tuple[str | None, str | None, Any]:
    """A cancellation reason as moto's TransactWriteItems gives it: (None, None, None) for a Put
    whose condition holds, else the failure with the stored item when ALL_OLD was asked for."""
    from moto.dynamodb.comparisons import get_filter_expression

    condition = put.get("ConditionExpression")
    if not condition or get_filter_expression(
        condition, put.get("ExpressionAttributeNames"), put.get("ExpressionAttributeValues")
    ).expr(current):
        return None, None, None
    wanted = current is not None and put.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
    return (
        "ConditionalCheckFailed",
        "The conditional request failed",
        current.to_json()["Attributes"] if wanted else None,
    )


def _base64(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON")


LAG_VARIABLE = "CALLME_LOCAL_INDEX_LAG_SECONDS"
_LAGGED_INDEX = "due"
_SHADOW_ACCOUNT = "000000000042"  # moto keeps each account's tables apart


def index_lag_from(env: Mapping[str, str]) -> float:
    """The ``due`` index's lag in seconds, from ``CALLME_LOCAL_INDEX_LAG_SECONDS`` (default 0)."""
    text = env.get(LAG_VARIABLE) or "0"
    try:
        lag = float(text)
    except ValueError:
        raise ValueError(f"{LAG_VARIABLE} must be a number of seconds, got {text!r}") from None
    if not (math.isfinite(lag) and 0 <= lag <= 300):
        raise ValueError(f"{LAG_VARIABLE} must be between 0 and 300 seconds, got {text!r}")
    return lag


class LaggedIndex:
    """The ``due`` index served ``lag`` seconds late, as DynamoDB's eventually consistent global
    secondary indexes may serve it (moto's are always up to date).

    A shadow copy of the tables, kept in another moto account, receives every write the real
    tables accepted ``lag`` seconds later, in the same order; Query requests on the ``due`` index
    are answered from it, so they see the tables as they were ``lag`` seconds ago. Every other
    request goes to the real tables, as before.
    """

    def __init__(self, backend: WSGIApp, lag: float) -> None:
        self._backend = backend  # moto itself: shadow writes are never journaled
        self._client = Client(backend)
        self._lag = lag
        self._order = threading.Lock()  # writes reach the shadow in the order they were applied
        self._later: queue.SimpleQueue[tuple[float, str, str]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._apply_later, name="index-lag", daemon=True)

    def wrap(self, app: WSGIApp) -> WSGIApp:
        """Start the shadow as a copy of the tables as they are now, and serve ``app`` through it."""
        create_tables_with(self._to_shadow)
        for op, body in list(_snapshot(self._client)):
            self._to_shadow(op, body)
        self._thread.start()

        def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            op = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
            if op == "Query":
                body = _read_body(environ)
                if json.loads(body or b"{}").get("IndexName") == _LAGGED_INDEX:
                    environ["HTTP_X_MOTO_ACCOUNT_ID"] = _SHADOW_ACCOUNT
                    return self._backend(environ, start_response)
            if op not in _WRITES:
                return app(environ, start_response)
            body = _read_body(environ)
            status: list[str] = []

            def capture(status_line: str, headers: list[Any], exc_info: Any = None) -> Any:
                status.append(status_line)
                return start_response(status_line, headers, exc_info)

            with self._order:
                chunks = list(app(environ, capture))
                if status and status[0].startswith("200"):
                    self._later.put((time.monotonic() + self._lag, op, body.decode()))
            return chunks

        return middleware

    def stop(self) -> None:
        self._stop.set()

    def _apply_later(self) -> None:
        while not self._stop.is_set():
            try:
                due_at, op, body = self._later.get(timeout=0.5)
            except queue.Empty:
                continue
            if self._stop.wait(max(0.0, due_at - time.monotonic())):
                return
            self._to_shadow(op, body)

    def _to_shadow(self, op: str, body: str) -> None:
        _post(self._client, op, body, account=_SHADOW_ACCOUNT)


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request's body, put back so that the application reads it too."""
    body: bytes = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"] = io.BytesIO(body)
    return body


class EmbeddedDynamoDB:
    """moto's DynamoDB on 127.0.0.1, tables from template.yaml, state kept in ``state_dir``;
    the ``due`` index served ``index_lag`` seconds late when asked."""

    def __init__(self, state_dir: Path | None, port: int = 0, index_lag: float = 0.0) -> None:
        self.journal = Journal(state_dir / "dynamodb-journal.jsonl") if state_dir else None
        self.lagged_index: LaggedIndex | None = None
        self.index_lag = index_lag
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    def start(self) -> None:
        speed_up_moto()
        app: WSGIApp = DomainDispatcherApplication(create_backend_app)
        backend = app
        replayed = 0
        if self.journal:
            replayed = self._replay(app)
            app = journaled(app, self.journal)
        if self.index_lag:
            self.lagged_index = LaggedIndex(backend, self.index_lag)
            app = self.lagged_index.wrap(app)
        self._server = make_server("127.0.0.1", self._port, app, threaded=True)
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="dynamodb", daemon=True)
        self._thread.start()
        if not self.journal:
            ensure_tables(self.endpoint)
        if replayed:
            log.info("embedded DynamoDB restored %d writes from %s", replayed, self.journal and self.journal.path)

    def _replay(self, app: WSGIApp) -> int:
        assert self.journal is not None
        client = Client(app)
        entries = self.journal.entries()
        create_tables_with(lambda op, body: _post(client, op, body))
        for op, body in entries:
            _post(client, op, body)
        self.journal.rewrite(_snapshot(client))
        return len(entries)

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
        if self.lagged_index:
            self.lagged_index.stop()
        if self.journal:
            self.journal.close()


def _post(client: Client, op: str, body: str, account: str | None = None) -> dict[str, Any]:
    headers = {
        "X-Amz-Target": f"DynamoDB_20120810.{op}",
        "Content-Type": "application/x-amz-json-1.0",
        "Authorization": _AUTH,
        "Host": f"dynamodb.{REGION}.amazonaws.com",
    }
    if account:
        headers["X-Moto-Account-Id"] = account
    response = client.post("/", data=body, headers=headers)
    answer: dict[str, Any] = json.loads(response.get_data(as_text=True) or "{}")
    return answer


def _snapshot(client: Client) -> Iterable[tuple[str, str]]:
    """One PutItem per live item of every table: the compacted journal."""
    for table in _post(client, "ListTables", "{}").get("TableNames", []):
        request: dict[str, Any] = {"TableName": table}
        while True:
            page = _post(client, "Scan", json.dumps(request))
            for item in page.get("Items", []):
                yield "PutItem", json.dumps({"TableName": table, "Item": item})
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


TABLE_NAMES = {
    "TasksTable": "callme-tasks",
    "LeasesTable": "callme-leases",
    "StatsTable": "callme-stats",
    "SchedulesTable": "callme-schedules",
}


def create_tables_with(post: Callable[[str, str], Any], names: Mapping[str, str] = TABLE_NAMES) -> None:
    """Create the template's tables named in ``names`` ({logical id: table name}; idempotent)
    through ``post(operation, json_body)``."""
    for logical_id, definition in table_definitions(load_template()).items():
        if logical_id not in names:
            continue
        name = names[logical_id]
        post("CreateTable", json.dumps({"TableName": name, **definition["create"]}))
        if definition["ttl_attribute"]:
            post(
                "UpdateTimeToLive",
                json.dumps(
                    {
                        "TableName": name,
                        "TimeToLiveSpecification": {"AttributeName": definition["ttl_attribute"], "Enabled": True},
                    }
                ),
            )


class MissingTables(Exception):
    """Tables callme needs do not exist where the local stack was pointed, and it may not create them there."""


def may_create_tables(endpoint: str | None) -> bool:
    """Whether the local stack may create tables at ``endpoint``: only on a DynamoDB on this machine
    (the embedded one, None; or one on loopback, such as DynamoDB Local), never on AWS's or another
    machine's, where a table is deployed with the stack (template.yaml), not made by a test run."""
    if endpoint is None:
        return True
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ensure_tables(
    endpoint: str | None = None,
    client: Any = None,
    names: Mapping[str, str] = TABLE_NAMES,
    region: str = REGION,
) -> None:
    """Make sure the template's tables exist under ``names`` ({logical id: table name}) at ``endpoint``
    (or through ``client``, e.g. moto's). Missing ones are created where may_create_tables allows;
    elsewhere MissingTables names them and nothing is created."""
    client = client or boto3.client("dynamodb", endpoint_url=endpoint, region_name=region)
    missing = {logical_id: name for logical_id, name in names.items() if not _exists(client, name)}
    if not missing:
        return
    if not may_create_tables(endpoint):
        listed = ", ".join(sorted(missing.values()))
        variables = {
            "TasksTable": "CALLME_TABLE_NAME",
            "LeasesTable": "CALLME_LEASE_TABLE_NAME",
            "StatsTable": "CALLME_STATS_TABLE_NAME",
        }
        raise MissingTables(
            f"no table {listed} in {region} at {endpoint}; the local stack creates tables only on a DynamoDB on "
            f"this machine: set {' and '.join(variables[i] for i in sorted(missing))} to the deployed stack's "
            "tables (its TasksTableName output), or point CALLME_DYNAMODB_ENDPOINT at a local DynamoDB"
        )

    def post(op: str, body: str) -> None:
        request = json.loads(body)
        if request["TableName"] not in missing.values():
            return
        if op == "CreateTable":
            client.create_table(**request)
            client.get_waiter("table_exists").wait(TableName=request["TableName"])
        elif op == "UpdateTimeToLive":
            client.update_time_to_live(**request)

    create_tables_with(post, {logical_id: names[logical_id] for logical_id in missing})


def _exists(client: Any, table: str) -> bool:
    try:
        client.describe_table(TableName=table)
    except client.exceptions.ResourceNotFoundException:
        return False
    return True
