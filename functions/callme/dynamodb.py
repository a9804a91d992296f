"""The DynamoDB adapters of the storage ports (callme.ports): the only code in callme that imports
boto3 or botocore.

Table ``tasks``: hash key ``task_name`` (S), range key ``trigger_at`` (N). Sparse GSI ``due``:
hash ``due_shard`` (N), range ``due_minute`` (N), projecting all attributes; only active entries
(pending, running) and finished ones owing a failure hook call carry the two keys, so the index
holds exactly the work still to do. ``due_shard`` holds the entry's due slot (callme.ports.due_slot:
slice x 1000 + shard), so each slice of a shard is an index partition of its own, and the entries
written before slices existed (the shard's number) are its slice 0. A task's ``headers`` are stored as their names
(``header_names``) and their values sealed together (``headers_sealed``, callme.sealing): never in
clear.
Table ``leases``: hash key ``shard`` (N); one item per due slot names the dispatcher run holding it
(items -1 and -2 keep the most shards and slices ever used).
Table ``stats``: hash key ``series`` (S, always ``minute``), range key ``slot`` (S,
``<minute, 12 digits>#<run>``): one item per dispatcher run and minute, so a window of minutes is
one Query over a range of one partition; TTL on ``expires_at``.

Every write is conditional. A write that timed out but landed, then was retried by botocore and
failed its condition, is recognised by its ``revision`` token and counted as done. No try starts,
and no retry is made, that could not end before the request's deadline (callme.deadline).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import deadline
from .errors import ServiceUnavailable
from .headers import SealedHeaders
from .hooks import HookCall, HookState
from .ports import (
    LIST_SECONDS,
    MOST_SHARDS,
    READ_BATCH,
    EntryExists,
    Fits,
    Lease,
    Page,
    SchedulePage,
    StaleChain,
    StaleEntry,
    StaleSchedule,
    TransactionRefused,
    check_sealed,
    check_storable,
    list_windows,
    listed_slot,
)
from .recurrence import Recurrence
from .schedule import Chain, Change, Schedule, Scheduled
from .settings import StorageTimeouts
from .stats import Histogram, MinuteStats
from .task import Attempt, Task, TaskDefinition, TaskKey, TaskState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import PutTypeDef, TransactWriteItemTypeDef
else:
    DynamoDBClient = Any

DUE_INDEX = "due"
WIDEST = -1  # the leases table's item that keeps the most shards entries were spread over
WIDEST_SLICES = -2  # and the one that keeps the most slices a shard's entries were spread over
_ABSENT = "attribute_not_exists(task_name)"
_REVISION = "revision = :expected"
_UNPROCESSED_ROUNDS = 6
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def connect(region: str, endpoint: str | None, timeouts: StorageTimeouts, max_pool: int = 10) -> DynamoDBClient:
    """A DynamoDB client with standard retries (throttling, 5xx) and short timeouts, which also keeps
    every try and every retry within the request's deadline (callme.deadline).

    botocore's check of each request against the API's shapes is off: it walks every attribute of
    every item (about 4 % of the dispatcher's CPU per callback), and the requests are all built
    here, typed (mypy-boto3) and run against the embedded DynamoDB by the tests. A request DynamoDB
    refuses is a ClientError, which the adapters report as ServiceUnavailable, as they did the
    check's ParamValidationError."""
    config = Config(
        region_name=region,
        retries={"mode": "standard", "max_attempts": timeouts.attempts},
        connect_timeout=timeouts.connect,
        read_timeout=timeouts.read,
        max_pool_connections=max_pool,
        parameter_validation=False,
    )
    client: DynamoDBClient = boto3.session.Session().client("dynamodb", endpoint_url=endpoint, config=config)
    guard = _DeadlineGuard(timeouts.per_try)
    client.meta.events.register_first("before-send.dynamodb", guard.before_send)
    client.meta.events.register_first("needs-retry.dynamodb", guard.needs_retry)
    return client


class _OutOfTime(Exception):
    """A try was not started (or a retry not made): it could not have ended before the deadline."""


class _DeadlineGuard:
    """botocore event handlers holding a client's tries and retries to the request's deadline."""

    # botocore's standard retry mode waits rand(0, 1) x min(2 ** (attempt - 1), 20) seconds before
    # the next try (for throttling; 25 ms instead of 1 s for other DynamoDB errors), raised to an
    # x-amz-retry-after header's value but at most 5 s beyond (botocore.retries.standard).
    _MAX_BACKOFF = 20.0
    _RETRY_AFTER_EXTRA = 5.0

    def __init__(self, per_try: float) -> None:
        self.per_try = per_try

    def before_send(self, **_: Any) -> None:
        if deadline.remaining() < self.per_try:
            raise _OutOfTime()

    def needs_retry(self, attempts: int, response: Any = None, **_: Any) -> bool | None:
        """False vetoes a retry whose wait and try might not end before the deadline; None leaves
        the decision to botocore's own handler (registered after this one)."""
        longest_wait = min(2.0 ** (attempts - 1), self._MAX_BACKOFF)
        http_response = response[0] if response else None
        if http_response is not None and "x-amz-retry-after" in http_response.headers:
            longest_wait += self._RETRY_AFTER_EXTRA
        if deadline.remaining() < longest_wait + self.per_try:
            return False
        return None


class DynamoDBTaskRepository:
    """The entries (callme.ports.TaskRepository) in the ``tasks`` table and its ``due`` index."""

    def __init__(self, client: DynamoDBClient, table: str, shards: int, slices: int = 1) -> None:
        if not 1 <= shards <= MOST_SHARDS:
            raise ValueError(f"shards must be between 1 and {MOST_SHARDS}, got {shards}")
        self._client = client
        self._table = table
        self.shards = shards
        self.slices = slices

    # -- writes -----------------------------------------------------------------------------

    def insert(self, task: Task) -> None:
        """Write a new entry; EntryExists (holding the stored one) if its key is taken."""
        written, current = self._put_conditionally(task, _ABSENT, {})
        if not written:
            raise EntryExists(current)

    def save(self, task: Task, expected_revision: str) -> None:
        """Overwrite an entry as read at ``expected_revision``; StaleEntry if it changed since."""
        written, current = self._put_conditionally(
            task, "revision = :expected", {":expected": {"S": expected_revision}}
        )
        if not written:
            raise StaleEntry(current)

    def reschedule(self, successor: Task | None, marked: list[tuple[Task, str]]) -> None:
        """In one transaction: insert ``successor`` (None when it exists already) and write each
        source marked with its ``rescheduled_to``, given with the revision it was read at, on
        condition that it is unchanged and was not rescheduled before. All or nothing, so that no
        crash leaves a successor without its source marked, or a mark without its successor; at most
        MAX_TRANSACTION_WRITES writes. TransactionRefused if a condition failed or a concurrent
        transaction won. A refusal in which every write found exactly what it writes is this very
        transaction, retried by botocore after its answer was lost: it counts as written."""
        writes = [self._put_request(successor, _ABSENT, {})] if successor else []
        unmarked = "revision = :expected AND attribute_not_exists(rescheduled_to)"
        writes += [self._put_request(task, unmarked, {":expected": {"S": expected}}) for task, expected in marked]
        tasks = ([successor] if successor else []) + [task for task, _ in marked]
        try:
            with _answered():
                self._client.transact_write_items(TransactItems=[{"Put": put} for put in writes])
        except _TransactionCancelled as cancelled:
            current = {
                task.key: to_task(reason["Item"]) if reason.get("Item") else None
                for task, reason in zip(tasks, cancelled.reasons, strict=False)
                if reason.get("Code") == "ConditionalCheckFailed"
            }
            if any(getattr(current.get(task.key), "revision", None) != task.revision for task in tasks):
                raise TransactionRefused(current) from None

    def _put_conditionally(self, task: Task, condition: str, values: dict[str, Any]) -> tuple[bool, Task | None]:
        """Put ``task`` under ``condition``: (True, None) when written, else (False, the entry as
        stored, None if there is none). A stored entry carrying this very write's revision is our
        own write, retried by botocore after its answer was lost: it counts as written."""
        try:
            with _answered():
                self._client.put_item(**self._put_request(task, condition, values))
        except _ConditionFailed as failed:
            current = to_task(failed.item) if failed.item else None
            if current is None or current.revision != task.revision:
                return False, current
        return True, None

    def _put_request(self, task: Task, condition: str, values: dict[str, Any]) -> PutTypeDef:
        """A Put of ``task`` under ``condition`` that returns the stored item when the condition fails."""
        request: PutTypeDef = {
            "TableName": self._table,
            "Item": self._row(task),
            "ConditionExpression": condition,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if values:
            request["ExpressionAttributeValues"] = values
        return request

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: TaskKey) -> Task | None:
        with _answered():
            response = self._client.get_item(TableName=self._table, Key=_key(key), ConsistentRead=True)
        item = response.get("Item")
        return to_task(item) if item else None

    def get_many(self, keys: list[TaskKey]) -> list[Task]:
        """Strongly consistent reads of many entries (missing ones are left out), 100 keys a
        request. Keys DynamoDB leaves unprocessed (throttling) are asked again after a backoff."""
        found: list[Task] = []
        for start in range(0, len(keys), READ_BATCH):
            chunk = keys[start : start + READ_BATCH]
            request: dict[str, Any] = {self._table: {"Keys": [_key(k) for k in chunk], "ConsistentRead": True}}
            for attempt in range(_UNPROCESSED_ROUNDS):
                with _answered():
                    response = self._client.batch_get_item(RequestItems=request)
                found.extend(to_task(item) for item in response["Responses"].get(self._table, []))
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))
            else:
                raise ServiceUnavailable("storage is unavailable (keys left unprocessed); retry the request")
        return found

    def entries_of(
        self, name: str, lowest: int | None, now: float, limit: int, fits: Fits | None = None, active_only: bool = False
    ) -> Page:
        """Entries of one task in trigger order, from ``lowest`` on, hiding expired ones (and
        finished ones with ``active_only``); at most ``limit``, and no more than ``fits`` takes."""
        condition = "task_name = :name"
        values: dict[str, Any] = {":name": {"S": name}}
        if lowest is not None:
            condition += " AND trigger_at >= :lowest"
            values[":lowest"] = {"N": str(lowest)}
        extra = None
        if active_only:
            active = [state for state in TaskState if state.active]
            extra = f"task_state IN ({', '.join(f':active{i}' for i in range(len(active)))})"
            values.update({f":active{i}": {"S": state.value} for i, state in enumerate(active)})
        request = {"TableName": self._table, "KeyConditionExpression": condition}
        return self._collect(self._client.query, limit, request, values, now, extra, fits)

    def all_entries(
        self, after: TaskKey | None, lowest: int | None, now: float, limit: int, fits: Fits | None = None
    ) -> Page:
        """Every entry of every task, in the table's own (stable) order, resuming after ``after``."""
        extra = None
        values: dict[str, Any] = {}
        if lowest is not None:
            extra = "trigger_at >= :lowest"
            values[":lowest"] = {"N": str(lowest)}
        request: dict[str, Any] = {"TableName": self._table}
        if after is not None:
            request["ExclusiveStartKey"] = _key(after)
        return self._collect(self._client.scan, limit, request, values, now, extra, fits)

    def _collect(
        self,
        read: Callable[..., Any],
        limit: int,
        request: dict[str, Any],
        values: dict[str, Any],
        now: float,
        extra: str | None,
        fits: Fits | None,
    ) -> Page:
        # The page ends at `limit` entries or at the first entry that does not fit; one item beyond
        # it tells whether more remain, so `next` is only given when true. DynamoDB's Limit counts
        # the items a call evaluates, before the filter, which may drop most of them (expired or past
        # entries): the calls evaluate more and more (list_windows), and a page that has made all
        # of them, or has taken LIST_SECONDS, answers what it found and the last key read, to
        # resume after.
        live = "(attribute_not_exists(expires_at) OR expires_at > :now)"
        request["FilterExpression"] = f"{live} AND {extra}" if extra else live
        request["ExpressionAttributeValues"] = {**values, ":now": {"N": str(int(now))}}
        found: list[Task] = []
        started = time.monotonic()
        for made, window in enumerate(list_windows(limit)):
            if made and time.monotonic() - started > LIST_SECONDS:
                break
            request["Limit"] = window
            with _answered():
                response = read(**request)
            for item in response.get("Items", []):
                task = to_task(item)
                if len(found) == limit or (fits is not None and not fits(task)):
                    return Page(found, True)
                found.append(task)
            if "LastEvaluatedKey" not in response:
                return Page(found, False)
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        last = _deserialized(request["ExclusiveStartKey"])
        return Page(found, True, after=TaskKey(last["task_name"], int(last["trigger_at"])))

    def has_due(self, slot: int, up_to: int) -> bool:
        with _answered():
            response = self._client.query(**self._due_query(slot, up_to), Limit=1, Select="COUNT")
        return bool(response.get("Count")) or "LastEvaluatedKey" in response

    def count_due(self, slot: int, up_to: int, most: int) -> int:
        """A Query with Select=COUNT and Limit ``most``: DynamoDB reads (and charges for) the items
        it counts, half a read unit per 4 KB of them, so at most ``most`` entries' worth; a page stops
        at 1 MB, so a count past it takes more than one request."""
        request: dict[str, Any] = {**self._due_query(slot, up_to), "Select": "COUNT"}
        counted = 0
        while counted < most:
            with _answered():
                response = self._client.query(**request, Limit=most - counted)
            counted += int(response.get("Count", 0))
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return min(counted, most)

    def due(self, slot: int, up_to: int) -> Iterator[Task]:
        """Every entry of due slot ``slot`` with work left (callme.task.Task.in_due_index) whose
        trigger minute is ``up_to`` or earlier, all pages."""
        request = self._due_query(slot, up_to)
        while True:
            with _answered():
                response = self._client.query(**request)
            for item in response.get("Items", []):
                yield to_task(item)
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _due_query(self, slot: int, up_to: int) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "IndexName": DUE_INDEX,
            "KeyConditionExpression": "due_shard = :slot AND due_minute <= :up_to",
            "ExpressionAttributeValues": {":slot": {"N": str(slot)}, ":up_to": {"N": str(up_to)}},
        }

    # -- plumbing ---------------------------------------------------------------------------

    def _row(self, task: Task) -> dict[str, Any]:
        return to_row(task, self.shards, self.slices)


class DynamoDBLeaseStore:
    """The due slots' leases (callme.ports.LeaseStore) in the ``leases`` table."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def acquire(self, shard: int, owner: str, now: float, until: float) -> Lease | None:
        """Take the shard if it is free or its holder's lease ran out; None if someone holds it."""
        taken = self._put_lease(
            shard,
            owner,
            until,
            "attribute_not_exists(#owner) OR lease_until < :now",
            {":now": {"N": _number(now)}},
        )
        return Lease(shard, owner, until) if taken else None

    def renew(self, shard: int, owner: str, until: float) -> bool:
        """Extend a lease ``owner`` holds to ``until``; False if it is not theirs any more (it ran
        out and another run took the shard)."""
        return self._put_lease(shard, owner, until, "#owner = :owner", {":owner": {"S": owner}})

    def _put_lease(self, shard: int, owner: str, until: float, condition: str, values: dict[str, Any]) -> bool:
        """Write ``owner``'s lease under ``condition``; a lease already ``owner``'s when the
        condition fails is our own put, retried by botocore after its answer was lost."""
        try:
            with _answered():
                self._client.put_item(
                    TableName=self._table,
                    Item={"shard": {"N": str(shard)}, "owner": {"S": owner}, "lease_until": {"N": _number(until)}},
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#owner": "owner"},
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except _ConditionFailed as failed:
            stored = failed.item or {}
            return bool(stored.get("owner", {}).get("S") == owner)
        return True

    def release(self, shard: int, owner: str, now: float) -> None:
        try:
            with _answered():
                self._client.put_item(
                    TableName=self._table,
                    Item={"shard": {"N": str(shard)}, "released_at": {"N": _number(now)}},
                    ConditionExpression="#owner = :owner",
                    ExpressionAttributeNames={"#owner": "owner"},
                    ExpressionAttributeValues={":owner": {"S": owner}},
                )
        except _ConditionFailed:
            pass  # the lease ran out and another run took the shard: nothing of ours to release

    def widest(self, shards: int) -> int:
        return self._widest(WIDEST, "shards", shards)

    def widest_slices(self, slices: int) -> int:
        return self._widest(WIDEST_SLICES, "slices", slices)

    def _widest(self, item_key: int, name: str, count: int) -> int:
        """Kept in the leases table's item ``item_key``: read (half a read unit), and raised (never
        lowered) by a conditional put only when ``count`` is more, whose failure returns the count
        stored meanwhile."""
        key = {"shard": {"N": str(item_key)}}
        with _answered():
            item = self._client.get_item(TableName=self._table, Key=key).get("Item")
        stored = int(item[name]["N"]) if item and name in item else 0
        if stored >= count:
            return stored
        try:
            with _answered():
                self._client.put_item(
                    TableName=self._table,
                    Item={**key, name: {"N": str(count)}},
                    ConditionExpression="attribute_not_exists(#count) OR #count < :count",
                    ExpressionAttributeNames={"#count": name},
                    ExpressionAttributeValues={":count": {"N": str(count)}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except _ConditionFailed as failed:
            return max(count, int((failed.item or {}).get(name, {}).get("N", count)))
        return count


class DynamoDBStatsStore:
    """The dispatcher's per-minute stats (callme.ports.StatsStore) in the ``stats`` table."""

    SERIES = "minute"

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def add(self, run: str, stats: MinuteStats, expires_at: int) -> None:
        """One unconditional PutItem: the key is the run's own, so a retried put writes the same item."""
        lateness = stats.lateness
        item: dict[str, Any] = {
            "series": {"S": self.SERIES},
            "slot": {"S": f"{stats.minute:012d}#{run}"},
            "minute": {"N": str(stats.minute)},
            **{name: {"N": str(getattr(stats, name))} for name in _COUNTS},
            "lateness": {"M": {str(index): {"N": str(count)} for index, count in lateness.buckets.items()}},
            "expires_at": {"N": str(expires_at)},
        }
        if lateness.low is not None and lateness.high is not None:
            item["lateness_low"] = {"N": _number(lateness.low)}
            item["lateness_high"] = {"N": _number(lateness.high)}
        with _answered():
            self._client.put_item(TableName=self._table, Item=item)

    def between(self, first: int, last: int) -> list[MinuteStats]:
        """One Query over the slots of minutes ``first`` to ``last`` (every page of it)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "series = :series AND slot BETWEEN :first AND :last",
            "ExpressionAttributeValues": {
                ":series": {"S": self.SERIES},
                ":first": {"S": f"{first:012d}"},
                ":last": {"S": f"{last:012d}~"},  # "~" sorts after "#<run>"
            },
        }
        found: list[MinuteStats] = []
        while True:
            with _answered():
                response = self._client.query(**request)
            found.extend(_minute_stats(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return found
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


_COUNTS = ("calls", "succeeded", "failed", "retried", "skipped")


def _minute_stats(item: Mapping[str, Any]) -> MinuteStats:
    low, high = item.get("lateness_low"), item.get("lateness_high")
    lateness = Histogram(
        buckets={int(index): int(count["N"]) for index, count in item.get("lateness", {}).get("M", {}).items()},
        low=float(low["N"]) if low else None,
        high=float(high["N"]) if high else None,
    )
    counts = {name: int(item[name]["N"]) for name in _COUNTS if name in item}
    return MinuteStats(minute=int(item["minute"]["N"]), lateness=lateness, **counts)


@contextmanager
def _answered() -> Iterator[None]:
    """Make the errors of the DynamoDB calls inside the domain's: a failed condition or a cancelled
    transaction for the adapters to read, ServiceUnavailable for everything else."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ConditionalCheckFailedException":
            raise _ConditionFailed(exc.response.get("Item")) from None
        if code == "TransactionCanceledException":
            reasons = exc.response.get("CancellationReasons") or []
            lost = {r.get("Code") for r in reasons} - {"None", "ConditionalCheckFailed", "TransactionConflict"}
            if not lost:
                raise _TransactionCancelled(reasons) from None
            code = f"{code}: {', '.join(sorted(map(str, lost)))}"
        raise ServiceUnavailable(f"storage is unavailable ({code or 'error'}); retry the request") from exc
    except BotoCoreError as exc:
        raise ServiceUnavailable(f"storage is unavailable ({type(exc).__name__}); retry the request") from exc
    except _OutOfTime:
        raise ServiceUnavailable("storage did not answer in time; retry the request") from None


class _ConditionFailed(Exception):
    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("condition failed")
        self.item = item


class _TransactionCancelled(Exception):
    def __init__(self, reasons: list[dict[str, Any]]) -> None:
        super().__init__("transaction cancelled")
        self.reasons = reasons


def _deserialized(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def _key(key: TaskKey) -> dict[str, Any]:
    return {"task_name": {"S": key.name}, "trigger_at": {"N": str(key.trigger_at)}}


def _number(value: float) -> str:
    return str(round(value, 3))


def to_row(task: Task, shards: int, slices: int = 1) -> dict[str, Any]:
    """The stored form of an entry. Entries with work left (``in_due_index``) carry the ``due``
    index keys, their due slot in ``due_shard``. ValueError for headers in clear: only sealed values
    are stored."""
    definition = task.definition
    row: dict[str, Any] = {
        "task_name": task.key.name,
        "trigger_at": task.key.trigger_at,
        **_definition_row(definition),
        "task_state": task.state.value,
        "created_at": _decimal(task.created_at),
        "updated_at": _decimal(task.updated_at),
        "webhook_id": task.webhook_id,
        "revision": task.revision,
        "attempts": task.attempts,
    }
    if task.history:
        row["history"] = [_attempt_row(a) for a in task.history]
    optional = {
        "response_status": task.response_status,
        "response_body": task.response_body,
        "executed_at": _decimal(task.executed_at),
        "next_attempt_at": _decimal(task.next_attempt_at),
        "rescheduled_from": task.rescheduled_from,
        "rescheduled_to": task.rescheduled_to,
        "expires_at": task.expires_at,
        "schedule": task.schedule,
        "settled": task.settled or None,
    }
    row.update({k: v for k, v in optional.items() if v is not None})
    check_storable(task)
    if task.on_failure_call is not None:
        row["on_failure_call"] = _hook_row(task.on_failure_call)
    slot = listed_slot(task, shards, slices)
    if slot is not None:
        row["due_shard"] = slot
        row["due_minute"] = task.key.trigger_at
    return {k: _serializer.serialize(v) for k, v in row.items()}


def _definition_row(definition: TaskDefinition) -> dict[str, Any]:
    """How to call, as an entry's or a schedule's item stores it (read back by ``_definition``)."""
    row = {k: v for k, v in asdict(definition).items() if k not in ("headers", "on_failure")}
    if isinstance(definition.headers, SealedHeaders):
        row["header_names"] = list(definition.headers.names)
        row["headers_sealed"] = definition.headers.sealed
    if definition.on_failure is not None:
        row["on_failure"] = definition.on_failure
    return row


def _hook_row(call: HookCall) -> dict[str, Any]:
    row: dict[str, Any] = {
        "webhook_id": call.webhook_id,
        "state": call.state.value,
        "since": _decimal(call.since),
        "attempts": call.attempts,
    }
    optional = {"status": call.status, "error": call.error, "at": _decimal(call.at), "next_at": _decimal(call.next_at)}
    row.update({k: v for k, v in optional.items() if v is not None})
    return row


def _hook_call(row: Mapping[str, Any] | None) -> HookCall | None:
    if row is None:
        return None
    return HookCall(
        webhook_id=row["webhook_id"],
        state=HookState(row["state"]),
        since=float(row["since"]),
        attempts=int(row["attempts"]),
        status=_int(row.get("status")),
        error=row.get("error"),
        at=_float(row.get("at")),
        next_at=_float(row.get("next_at")),
    )


def _attempt_row(attempt: Attempt) -> dict[str, Any]:
    row: dict[str, Any] = {"at": _decimal(attempt.at), "ms": attempt.duration_ms}
    if attempt.status is not None:
        row["status"] = attempt.status
    if attempt.error is not None:
        row["error"] = attempt.error
    return row


def _decimal(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(_number(value))


def to_task(item: Mapping[str, Any]) -> Task:
    row = _deserialized(item)
    return Task(
        key=TaskKey(row["task_name"], int(row["trigger_at"])),
        definition=_definition(row),
        state=TaskState(row["task_state"]),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        webhook_id=row["webhook_id"],
        revision=row["revision"],
        attempts=int(row.get("attempts", 0)),
        history=tuple(
            Attempt(
                at=float(a["at"]),
                duration_ms=int(a["ms"]),
                status=int(a["status"]) if "status" in a else None,
                error=a.get("error"),
            )
            for a in row.get("history", [])
        ),
        response_status=_int(row.get("response_status")),
        response_body=row.get("response_body"),
        executed_at=_float(row.get("executed_at")),
        next_attempt_at=_float(row.get("next_attempt_at")),
        rescheduled_from=row.get("rescheduled_from"),
        rescheduled_to=row.get("rescheduled_to"),
        expires_at=_int(row.get("expires_at")),
        schedule=row.get("schedule"),
        settled=bool(row.get("settled", False)),
        on_failure_call=_hook_call(row.get("on_failure_call")),
        due_slot=_int(row.get("due_shard")),
    )


def _definition(row: Mapping[str, Any]) -> TaskDefinition:
    """How to call, as stored in an entry's or a schedule's item."""
    return TaskDefinition(
        callback=row["callback"],
        callback_method=row["callback_method"],
        payload=row.get("payload", ""),
        expected_http_status=int(row["expected_http_status"]),
        retry=int(row["retry"]),
        max_delay=int(row["max_delay"]),
        headers=SealedHeaders(tuple(row["header_names"]), row["headers_sealed"]) if "header_names" in row else None,
        on_failure=row.get("on_failure"),
    )


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# -- schedules --------------------------------------------------------------------------------------
#
# Table ``schedules``: hash key ``schedule_name`` (S), range key ``part`` (S). Each schedule is two
# items: ``schedule`` (the definition, the timing, paused; written by the API) and ``chain`` (the
# pending and last runs; small, rewritten by the dispatcher at each run). See callme.schedule.

SCHEDULE_PART = "schedule"
CHAIN_PART = "chain"
_TORN_READS = 5  # reads of a schedule that found its two items from different changes, before giving up


class DynamoDBScheduleRepository:
    """The schedules (ScheduleRepository) in the ``schedules`` table; their runs in the tasks table."""

    def __init__(self, client: DynamoDBClient, table: str, tasks: DynamoDBTaskRepository) -> None:
        self._client = client
        self._table = table
        self._tasks = tasks

    def get(self, name: str) -> Scheduled | None:
        """The schedule and its chain, read together and consistently; None if there is none. Two
        items read while a change was being applied may be from either side of it: read again."""
        for _ in range(_TORN_READS):
            with _answered():
                response = self._client.query(
                    TableName=self._table,
                    KeyConditionExpression="schedule_name = :name",
                    ExpressionAttributeValues={":name": {"S": name}},
                    ConsistentRead=True,
                )
            parts = {item["part"]["S"]: item for item in response.get("Items", [])}
            if not parts:
                return None
            found = _scheduled(parts.get(SCHEDULE_PART), parts.get(CHAIN_PART))
            if found is not None:
                return found
        raise ServiceUnavailable(f"schedule {name!r} is changing too fast; retry the request")

    def page(self, after: str | None, limit: int, fits: Callable[[Scheduled], bool] | None = None) -> SchedulePage:
        """Schedules in the table's own (stable) order, resuming after the schedule ``after``: at most
        ``limit``, and no more than ``fits`` takes. One consistent Scan reads both items of each
        schedule (a schedule's items are adjacent), so a page costs its Scan calls, not a read per
        schedule; a schedule whose two items are from different changes, or were split by the
        Scan's page, is read again on its own."""
        request: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True}
        if after is not None:
            request["ExclusiveStartKey"] = {"schedule_name": {"S": after}, "part": {"S": SCHEDULE_PART}}
        parts: dict[str, dict[str, Any]] = {}  # by name, in the table's order: part -> item
        while len(parts) <= limit:
            request["Limit"] = 2 * (limit + 1 - len(parts))  # two items a schedule
            with _answered():
                response = self._client.scan(**request)
            for item in response.get("Items", []):
                parts.setdefault(item["schedule_name"]["S"], {})[item["part"]["S"]] = item
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        found: list[Scheduled] = []
        for name, items in parts.items():
            scheduled = _scheduled(items.get(SCHEDULE_PART), items.get(CHAIN_PART)) or self.get(name)
            if scheduled is None:
                continue  # deleted meanwhile
            if len(found) == limit or (fits is not None and not fits(scheduled)):
                return SchedulePage(found, True)
            found.append(scheduled)
        return SchedulePage(found, False)

    def apply(self, change: Change) -> None:
        """All or nothing: the schedule and its chain written (or deleted), and each entry written on
        its condition, provided the chain is as read. StaleSchedule otherwise. A refusal in which every
        write found what it writes (a deleted chain gone) is this very change, retried by botocore
        after its answer was lost: it counts as applied."""
        keys = {
            part: {"schedule_name": {"S": change.name}, "part": {"S": part}} for part in (SCHEDULE_PART, CHAIN_PART)
        }
        if change.chain_revision is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(schedule_name)"}
        else:
            condition = {
                "ConditionExpression": "revision = :expected",
                "ExpressionAttributeValues": {":expected": {"S": change.chain_revision}},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        items: list[dict[str, Any]]
        if change.schedule is None or change.chain is None:
            items = [
                {"Delete": {"TableName": self._table, "Key": keys[SCHEDULE_PART]}},
                {"Delete": {"TableName": self._table, "Key": keys[CHAIN_PART], **condition}},
            ]
            writes: list[str | None] = [None, None]  # the revision each item leaves stored (None: none)
        else:
            items = [
                {"Put": {"TableName": self._table, "Item": _schedule_row(change.schedule)}},
                {"Put": {"TableName": self._table, "Item": _chain_row(change.chain), **condition}},
            ]
            writes = [change.schedule.revision, change.chain.revision]
        for task, expected in change.runs:
            if expected is None:
                items.append({"Put": self._tasks._put_request(task, _ABSENT, {})})
            else:
                items.append({"Put": self._tasks._put_request(task, _REVISION, {":expected": {"S": expected}})})
            writes.append(task.revision)
        try:
            with _answered():
                self._client.transact_write_items(TransactItems=cast("list[TransactWriteItemTypeDef]", items))
        except _TransactionCancelled as cancelled:
            refused = [(w, r) for w, r in zip(writes, cancelled.reasons, strict=False) if r.get("Code") != "None"]
            if not refused or any(
                r.get("Code") != "ConditionalCheckFailed" or _revision(r.get("Item")) != w for w, r in refused
            ):
                raise StaleSchedule() from None

    def move(self, chain: Chain, expected_revision: str) -> None:
        """The dispatcher's step: overwrite the chain as read at ``expected_revision`` (one small
        write); StaleChain holding the chain as stored if it changed or vanished."""
        try:
            with _answered():
                self._client.put_item(
                    TableName=self._table,
                    Item=_chain_row(chain),
                    ConditionExpression="revision = :expected",
                    ExpressionAttributeValues={":expected": {"S": expected_revision}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except _ConditionFailed as failed:
            current = _chain(failed.item) if failed.item else None
            if current is None or current.revision != chain.revision:
                raise StaleChain(current) from None


def _revision(item: Mapping[str, Any] | None) -> str | None:
    return None if item is None else item.get("revision", {}).get("S")


def _schedule_row(schedule: Schedule) -> dict[str, Any]:
    check_sealed(schedule.definition, f"schedule {schedule.name!r}")
    row: dict[str, Any] = {
        "schedule_name": schedule.name,
        "part": SCHEDULE_PART,
        **_definition_row(schedule.definition),
        **schedule.recurrence.to_dict(),
        "paused": schedule.paused,
        "created_at": _decimal(schedule.created_at),
        "updated_at": _decimal(schedule.updated_at),
        "revision": schedule.revision,
    }
    return {k: _serializer.serialize(v) for k, v in row.items()}


def _chain_row(chain: Chain) -> dict[str, Any]:
    row: dict[str, Any] = {
        "schedule_name": chain.name,
        "part": CHAIN_PART,
        "revision": chain.revision,
        "schedule_revision": chain.schedule_revision,
    }
    row.update({k: v for k, v in (("next_run", chain.next_run), ("last_run", chain.last_run)) if v is not None})
    return {k: _serializer.serialize(v) for k, v in row.items()}


def _chain(item: Mapping[str, Any]) -> Chain:
    row = _deserialized(item)
    return Chain(
        name=row["schedule_name"],
        next_run=_int(row.get("next_run")),
        last_run=_int(row.get("last_run")),
        schedule_revision=row["schedule_revision"],
        revision=row["revision"],
    )


def _scheduled(schedule_item: Mapping[str, Any] | None, chain_item: Mapping[str, Any] | None) -> Scheduled | None:
    """The schedule and its chain, or None if the two items are not from the same change."""
    if schedule_item is None or chain_item is None:
        return None
    row = _deserialized(schedule_item)
    chain = _chain(chain_item)
    if chain.schedule_revision != row["revision"]:
        return None
    timing = {k: int(v) if isinstance(v, Decimal) else v for k, v in row.items() if k in _TIMING}
    schedule = Schedule(
        name=row["schedule_name"],
        definition=_definition(row),
        recurrence=Recurrence.from_dict(timing),
        paused=bool(row["paused"]),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        revision=row["revision"],
    )
    return Scheduled(schedule, chain)


_TIMING = ("cron", "every", "timezone", "start_at", "end_at")
