"""DynamoDB request units per task lifecycle, counted from the requests the code actually makes.

A ``CapacityMeter`` hooks a boto3 DynamoDB client (botocore's ``before-call`` and ``after-call``
events): for every request it sees what was sent and what came back, reads the item's old image
with a second, unhooked client before a write (so the meter's own reads are never counted), and
prices the request by DynamoDB's documented capacity rules:

- Item size: attribute name bytes plus value sizes; a number is about one byte per two significant
  digits plus one; a list or map takes 3 bytes plus one per element plus its elements
  (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html).
- Writes: one write unit per started KB of the larger of the old and the new item image; a
  conditional write whose condition fails still consumes the size of the existing item (at least 1).
- Reads: one read unit per started 4 KB, half for an eventually consistent read; a Query or Scan
  adds up the sizes of the items it evaluated (before its filter) before rounding; BatchGetItem
  rounds each item.
- Global secondary indexes (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html,
  "Provisioned throughput considerations"): putting an item into the index costs the index entry's
  size in KB; changing projected non-key attributes costs one write per KB; changing an index key
  costs a delete plus a put; removing the index keys costs a delete of the old entry. A Query on an
  index is charged to the index.

The lifecycle measured is the happy path: one ``PUT /task`` (TaskService.put_task) and one
successful dispatch run over a realistic batch (DispatchEngine.busy_shards + run, as the
dispatcher handler does), whose reads are the index Query and the strongly consistent
BatchGetItem of each entry just before its call. The original callme design is priced by the same meter, from the writes
its description makes: a put on create, a claim put and an outcome put on dispatch.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import boto3

from callme.clock import FixedClock, minute_of
from callme.dispatch import DispatchEngine
from callme.dynamodb import DynamoDBLeaseStore, DynamoDBStatsStore, DynamoDBTaskRepository, to_row
from callme.egress import EgressPolicy
from callme.ports import CallResult
from callme.sealing import HeaderVault
from callme.service import TaskService
from callme.settings import Settings
from callme.task import Attempt, Task, TaskDefinition, TaskKey, TaskState, Verdict, check_name
from callme.validation import parse_task_request

WRITE_UNIT = 1024
READ_UNIT = 4096
_WRITES = ("PutItem", "UpdateItem", "DeleteItem")

# -- item sizes --------------------------------------------------------------------------------


def number_size(text: str) -> int:
    """Bytes of a DynamoDB number: one per two significant digits, plus one."""
    digits = text.lstrip("+-").replace(".", "")
    digits = digits.split("e")[0].split("E")[0].strip("0")
    return (max(len(digits), 1) + 1) // 2 + 1


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value in DynamoDB JSON (``{"S": "..."}``), without its name."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        return number_size(str(data))
    if kind == "B":
        return len(data) if isinstance(data, bytes) else len(data) * 3 // 4 - str(data).count("=")
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in data)
    if kind == "NS":
        return sum(number_size(n) for n in data)
    if kind == "BS":
        return sum(value_size({"B": b}) for b in data)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in data.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: Mapping[str, Any] | None) -> int:
    """Bytes of an item: attribute name bytes plus value sizes."""
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_UNIT))
    return float(units) if consistent else units / 2


# -- the meter ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Index:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL, KEYS_ONLY or INCLUDE
    included: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    name: str
    keys: tuple[str, ...]
    indexes: tuple[Index, ...] = ()


@dataclass
class Charge:
    """What one request consumed."""

    operation: str
    table: str
    phase: str
    base_write: float = 0.0
    base_read: float = 0.0
    index_write: float = 0.0
    index_read: float = 0.0
    items: int = 0
    item_bytes: int = 0  # the larger of the old and new image, for writes
    note: str = ""


@dataclass
class Totals:
    requests: int = 0
    base_write: float = 0.0
    index_write: float = 0.0
    base_read: float = 0.0
    index_read: float = 0.0
    by_operation: dict[str, int] = field(default_factory=dict)

    def add(self, charge: Charge) -> None:
        self.requests += 1
        self.base_write += charge.base_write
        self.index_write += charge.index_write
        self.base_read += charge.base_read
        self.index_read += charge.index_read
        key = f"{charge.operation} {charge.table}"
        self.by_operation[key] = self.by_operation.get(key, 0) + 1

    def as_dict(self, per: float = 1.0) -> dict[str, Any]:
        return {
            "requests": round(self.requests / per, 6),
            "write_units_base": round(self.base_write / per, 6),
            "write_units_gsi": round(self.index_write / per, 6),
            "write_units": round((self.base_write + self.index_write) / per, 6),
            "read_units_base": round(self.base_read / per, 6),
            "read_units_gsi": round(self.index_read / per, 6),
            "read_units": round((self.base_read + self.index_read) / per, 6),
            "requests_by_operation": {k: round(v / per, 6) for k, v in sorted(self.by_operation.items())},
        }


class CapacityMeter:
    """Prices every DynamoDB request a hooked client makes. ``phase`` labels what follows."""

    def __init__(self, plain_client: Any) -> None:
        self.plain = plain_client
        self.tables: dict[str, Table] = {}
        self.charges: list[Charge] = []
        self.phase = "setup"
        self._lock = threading.Lock()

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-call.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)

    def totals(self, phase: str, tables: Iterable[str] | None = None) -> Totals:
        wanted = set(tables) if tables is not None else None
        found = Totals()
        for charge in self.charges:
            if charge.phase == phase and (wanted is None or charge.table in wanted):
                found.add(charge)
        return found

    # -- hooks ---------------------------------------------------------------------------------

    def _before(self, model: Any, params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        request = json.loads(params["body"])
        context["bench_request"] = request
        if model.name in _WRITES:
            table = self._table(request["TableName"])
            key = request.get("Key") or {k: request["Item"][k] for k in table.keys}
            answer = self.plain.get_item(TableName=table.name, Key=key, ConsistentRead=True)
            context["bench_old_image"] = answer.get("Item")

    def _after(self, parsed: Mapping[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        request = context.get("bench_request", {})
        ok = "Error" not in parsed
        charge = self._price(model.name, request, parsed, ok, context.get("bench_old_image"))
        with self._lock:
            self.charges.append(charge)

    # -- pricing -------------------------------------------------------------------------------

    def _price(
        self, operation: str, request: Mapping[str, Any], answer: Mapping[str, Any], ok: bool, old: Any
    ) -> Charge:
        name = request.get("TableName") or next(iter(request.get("RequestItems", {})), "")
        charge = Charge(operation, name, self.phase)
        if operation in _WRITES:
            self._price_write(charge, operation, request, ok, old)
        elif operation == "GetItem":
            charge.base_read = read_units(item_size(answer.get("Item")), bool(request.get("ConsistentRead")))
            charge.items = 1 if answer.get("Item") else 0
        elif operation == "BatchGetItem":
            for table_name, found in answer.get("Responses", {}).items():
                consistent = bool(request["RequestItems"][table_name].get("ConsistentRead"))
                charge.base_read += sum(read_units(item_size(item), consistent) for item in found)
                charge.items += len(found)
        elif operation in ("Query", "Scan"):
            items = answer.get("Items")
            if items is None or request.get("FilterExpression"):
                # Select=COUNT, or a filter: price the items it evaluated, read again unhooked
                items = getattr(self.plain, operation.lower())(**_evaluated(request))["Items"]
            units = read_units(sum(item_size(i) for i in items), bool(request.get("ConsistentRead")))
            charge.items = len(items)
            if request.get("IndexName"):
                charge.index_read = units
            else:
                charge.base_read = units
        else:
            charge.note = "not priced"
        return charge

    def _price_write(self, charge: Charge, operation: str, request: Mapping[str, Any], ok: bool, old: Any) -> None:
        table = self._table(request["TableName"])
        if not ok:  # a failed condition still consumes the existing item's size
            charge.base_write = write_units(item_size(old))
            charge.note = "condition failed"
            return
        if operation == "PutItem":
            new = request["Item"]
        elif operation == "DeleteItem":
            new = None
        else:
            new = self.plain.get_item(TableName=table.name, Key=request["Key"], ConsistentRead=True).get("Item")
        charge.item_bytes = max(item_size(old), item_size(new))
        charge.base_write = write_units(charge.item_bytes)
        for index in table.indexes:
            charge.index_write += _index_writes(table, index, old, new)

    def _table(self, name: str) -> Table:
        if name not in self.tables:
            described = self.plain.describe_table(TableName=name)["Table"]
            indexes = tuple(
                Index(
                    gsi["IndexName"],
                    tuple(k["AttributeName"] for k in gsi["KeySchema"]),
                    gsi["Projection"]["ProjectionType"],
                    tuple(gsi["Projection"].get("NonKeyAttributes", ())),
                )
                for gsi in described.get("GlobalSecondaryIndexes", [])
            )
            keys = tuple(k["AttributeName"] for k in described["KeySchema"])
            self.tables[name] = Table(name, keys, indexes)
        return self.tables[name]


def _evaluated(request: Mapping[str, Any]) -> dict[str, Any]:
    """A Query or Scan reading what ``request`` evaluates: every item within its Limit, before its
    filter and its Select (which DynamoDB charges all the same)."""
    again = {k: v for k, v in request.items() if k not in ("Select", "FilterExpression")}
    condition = request.get("KeyConditionExpression", "")
    for part in ("ExpressionAttributeValues", "ExpressionAttributeNames"):
        kept = {k: v for k, v in request.get(part, {}).items() if re.search(re.escape(k) + r"\b", condition)}
        if kept:
            again[part] = kept
        else:
            again.pop(part, None)
    return again


def _projected(table: Table, index: Index, item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The index entry of ``item``, or None when it lacks an index key (a sparse index)."""
    if not item or any(k not in item for k in index.keys):
        return None
    if index.projection == "ALL":
        return dict(item)
    wanted = set(table.keys) | set(index.keys)
    if index.projection == "INCLUDE":
        wanted |= set(index.included)
    return {k: v for k, v in item.items() if k in wanted}


def _index_writes(table: Table, index: Index, old: Any, new: Any) -> int:
    before, after = _projected(table, index, old), _projected(table, index, new)
    if before is None and after is None:
        return 0
    if before is None:
        return write_units(item_size(after))  # put into the index
    if after is None:
        return write_units(item_size(before))  # index keys removed: delete the old entry
    if any(before[k] != after[k] for k in index.keys):
        return write_units(item_size(before)) + write_units(item_size(after))  # key change
    if before != after:
        return write_units(max(item_size(before), item_size(after)))  # projected attributes changed
    return 0


# -- the lifecycle -----------------------------------------------------------------------------

TASK_TABLE = "callme-tasks"
LEASE_TABLE = "callme-leases"
STATS_TABLE = "callme-stats"
CALLME = Settings(TASK_TABLE, LEASE_TABLE, STATS_TABLE)  # callme's defaults, as deployed with nothing changed
CALLBACK = "https://hooks.example.com/callme/invoice-reminder"
HEADERS_KEY = "bench-headers-key-" + "0" * 32  # seals the header values of the tasks that have some


class InstantCaller:
    """Answers every call with ``status`` (200 by default) at once, and every failure hook with 204:
    the storage side of a dispatch, alone."""

    def __init__(self, clock: Any = None, status: int = 200) -> None:
        self.clock = clock
        self.status = status

    def call(self, task: Task) -> CallResult:
        now = self.clock.now() if self.clock else time.time()
        return CallResult(started_at=now, duration_ms=1, status=self.status, body="ok")

    def call_on_failure(self, task: Task) -> CallResult:
        now = self.clock.now() if self.clock else time.time()
        return CallResult(started_at=now, duration_ms=1, status=204)


def use_tables(endpoint: str, log_level: str = "ERROR") -> None:
    """Point the handlers (``handlers.wiring``) at the benchmark's tables in the DynamoDB at ``endpoint``."""
    os.environ.update(
        {
            "CALLME_TABLE_NAME": TASK_TABLE,
            "CALLME_LEASE_TABLE_NAME": LEASE_TABLE,
            "CALLME_STATS_TABLE_NAME": STATS_TABLE,
            "CALLME_DYNAMODB_ENDPOINT": endpoint,
            "POWERTOOLS_SERVICE_NAME": "callme",
            "POWERTOOLS_LOG_LEVEL": log_level,
        }
    )


def client_for(endpoint: str) -> Any:
    from local.dynamodb import REGION

    return boto3.session.Session().client(
        "dynamodb", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
    )


def payload_of(size: int) -> str:
    """A JSON payload of exactly ``size`` bytes."""
    head = '{"invoice":"INV-2026-000123","action":"remind","note":"'
    return head + "x" * max(0, size - len(head) - 2) + '"}'


def measure(
    endpoint: str,
    entries: int,
    shards: int,
    payload_bytes: int,
    concurrency: int,
    fields: Mapping[str, Any] | None = None,
    status: int = 200,
) -> dict[str, Any]:
    """Create ``entries`` tasks through the API's service, dispatch them once, price every request.
    ``fields`` are added to each task's body; ``status`` is what every callback answers (entries
    that end failed call their failure hook, if they have one)."""
    plain = client_for(endpoint)
    meter = CapacityMeter(plain)
    hooked = client_for(endpoint)
    meter.attach(hooked)
    repository = DynamoDBTaskRepository(hooked, TASK_TABLE, shards)
    now = time.time()
    trigger = minute_of(now) + 60
    payload = payload_of(payload_bytes)

    meter.phase = "create"
    service = TaskService(repository, FixedClock(now), CALLME.limits, HeaderVault(lambda: HEADERS_KEY))
    body = {
        "trigger_at": str(trigger),
        "callback": CALLBACK,
        "callback_method": "POST",
        "payload": payload,
        **(fields or {}),
    }
    for i in range(entries):
        name = check_name(f"invoice-reminder-{i:06d}")
        service.put_task(parse_task_request(name, body, now, CALLME.limits, EgressPolicy()))

    clock = FixedClock(trigger + 1)
    engine = DispatchEngine(
        repository,
        DynamoDBLeaseStore(hooked, LEASE_TABLE),
        InstantCaller(clock, status),
        clock,
        replace(CALLME.dispatch, concurrency=concurrency),
        sleep=clock.advance,
        stats=DynamoDBStatsStore(hooked, STATS_TABLE),
    )
    meter.phase = "peek"  # the scheduled invocation's look at every shard, once a minute
    busy = engine.busy_shards(trigger)
    meter.phase = "dispatch"
    report = engine.run(busy)
    ended = report.succeeded if status == 200 else report.failed
    if ended != entries:
        raise RuntimeError(f"capacity run: {ended} of {entries} entries ended as expected: {report}")

    sizes = {"created": largest_write(meter, "create"), **_sizes(plain, trigger)}
    original = _original_design(plain, endpoint, shards, payload, trigger + 3600, min(entries, 50))
    create = meter.totals("create")
    dispatch_entries = meter.totals("dispatch", [TASK_TABLE])
    leases = meter.totals("dispatch", [LEASE_TABLE])
    # One run here for every shard: in AWS each shard run stores its own item per minute, of this size.
    stats = meter.totals("dispatch", [STATS_TABLE])
    peek = meter.totals("peek")
    per_task_writes = (
        create.base_write + create.index_write + dispatch_entries.base_write + dispatch_entries.index_write
    ) / entries
    lease_per_task = (leases.base_write + leases.index_write) / entries
    reads_per_task = (
        create.base_read
        + create.index_read
        + dispatch_entries.base_read
        + dispatch_entries.index_read
        + peek.base_read
        + peek.index_read
    ) / entries
    return {
        "entries": entries,
        "shards": shards,
        "busy_shards": len(busy),
        "entries_per_shard_run": entries / max(1, len(busy)),
        "payload_bytes": len(payload.encode()),
        "item_bytes": sizes,
        "per_task": {
            "create": create.as_dict(entries),
            "dispatch": dispatch_entries.as_dict(entries),
            "lease_amortised": leases.as_dict(entries),
            "peek_amortised": peek.as_dict(entries),
        },
        "per_shard_run": leases.as_dict(max(1, len(busy))),
        "stats_per_shard_run": stats.as_dict(),
        "per_minute_peek": peek.as_dict(),
        "write_units_per_task": round(per_task_writes, 6),
        "write_units_base_per_task": round((create.base_write + dispatch_entries.base_write) / entries, 6),
        "write_units_gsi_per_task": round((create.index_write + dispatch_entries.index_write) / entries, 6),
        "lease_write_units_per_task": round(lease_per_task, 6),
        "write_units_per_task_with_leases": round(per_task_writes + lease_per_task, 6),
        "read_units_per_task": round(reads_per_task, 6),
        # the dispatch's only base-table reads: the consistent BatchGetItem of each entry before its call
        "read_units_before_call_per_task": round(dispatch_entries.base_read / entries, 6),
        "original_design": original,
    }


def _sizes(plain: Any, trigger: int) -> dict[str, int]:
    """The size of the first entry as stored after its dispatch."""
    sample = plain.get_item(
        TableName=TASK_TABLE,
        Key={"task_name": {"S": "invoice-reminder-000000"}, "trigger_at": {"N": str(trigger)}},
        ConsistentRead=True,
    )["Item"]
    return {"after_dispatch": item_size(sample)}


def largest_write(meter: CapacityMeter, phase: str) -> int:
    return max((c.item_bytes for c in meter.charges if c.phase == phase), default=0)


def _original_design(plain: Any, endpoint: str, shards: int, payload: str, trigger: int, count: int) -> dict[str, Any]:
    """The original callme lifecycle, by its description: a put on create, then on dispatch a put
    claiming the entry (running) and a put recording the outcome, each a whole item."""
    meter = CapacityMeter(plain)
    client = client_for(endpoint)
    meter.attach(client)
    meter.phase = "original"
    for i in range(count):
        key = TaskKey(f"original-{i:06d}", trigger)
        created = Task.new(key, TaskDefinition(CALLBACK, "POST", payload), trigger - 600)
        client.put_item(TableName=TASK_TABLE, Item=to_row(created, shards))
        claimed = replace(created, state=TaskState.RUNNING, updated_at=trigger + 1.0)
        client.put_item(TableName=TASK_TABLE, Item=to_row(claimed, shards))
        attempt = Attempt(at=trigger + 1.0, duration_ms=3, status=200)
        done = claimed.after_attempt(attempt, "ok", Verdict.SUCCESS, None, 30 * 86400)
        client.put_item(TableName=TASK_TABLE, Item=to_row(done, shards))
    totals = meter.totals("original")
    result = totals.as_dict(count)
    result["entries"] = count
    return result
