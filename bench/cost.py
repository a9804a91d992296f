"""What a million callbacks cost on AWS, from the measured figures and published list prices.

Prices are us-east-1, on-demand, as listed on the public pricing pages in 2025 (after DynamoDB's
November 2024 on-demand price cut), without free tiers; change a constant here when a page changes.
Every line of the arithmetic is kept, printed by the benchmark and written to results.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PRICES_AS_OF = "2025 list prices, us-east-1, free tiers left out"

# https://aws.amazon.com/api-gateway/pricing/ : REST APIs, first 333 million requests a month.
API_GATEWAY_REST_PER_MILLION = 3.50
# https://aws.amazon.com/lambda/pricing/ : Arm, first 7.5 billion GB-seconds a month.
LAMBDA_REQUEST_PER_MILLION = 0.20
LAMBDA_ARM_GB_SECOND = 0.0000133334
# https://aws.amazon.com/dynamodb/pricing/on-demand/ : Standard table class, since 1 November 2024.
DYNAMODB_WRITE_PER_MILLION = 0.625
DYNAMODB_READ_PER_MILLION = 0.125
DYNAMODB_STORAGE_GB_MONTH = 0.25
# https://aws.amazon.com/eventbridge/pricing/ : Scheduler invocations after 14 million free a month.
SCHEDULER_PER_MILLION = 1.00
EVENTBRIDGE_EVENTS_PER_MILLION = 1.00  # custom events put on a bus, each started 64 KB of an entry one event
EVENTBRIDGE_EVENT_CHUNK_BYTES = 64 * 1024
API_DESTINATION_PER_MILLION = 0.20
# https://cloud.google.com/tasks/pricing : $0.40 per million billable operations after the first
# million a month; creating a task is one operation and each push delivery attempt another.
CLOUD_TASKS_PER_MILLION_OPERATIONS = 0.40
CLOUD_TASKS_OPERATIONS_PER_CALLBACK = 2
# https://upstash.com/pricing/qstash : pay as you go, $1 per 100,000 messages.
QSTASH_PER_100K_MESSAGES = 1.00

# From template.yaml.
API_MEMORY_MB = 512
DISPATCHER_MEMORY_MB = 1024
API_MEMORY_GB = API_MEMORY_MB / 1024
DISPATCHER_MEMORY_GB = DISPATCHER_MEMORY_MB / 1024
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html : CPU is allocated in
# proportion to memory, one vCPU's worth at 1,769 MB. A function's CPU time measured here is
# divided by its share to estimate its duration there (a core of this machine taken as one vCPU).
FULL_VCPU_MB = 1769


def lambda_seconds(wall: float, cpu: float, memory_mb: int) -> float:
    """Billed duration estimate: the wall time measured here, or the CPU time stretched to the
    function's share of a vCPU, whichever is longer."""
    return max(wall, cpu * FULL_VCPU_MB / min(memory_mb, FULL_VCPU_MB))


RETENTION_DAYS = 30
MINUTES_PER_MONTH = 30 * 24 * 60


@dataclass(frozen=True)
class Inputs:
    """The measured figures the cost is derived from."""

    write_units_per_task: float  # create + dispatch, base table and index
    read_units_per_task: float
    lease_write_units_per_shard_run: float
    peek_read_units_per_minute: float
    item_bytes: int  # an entry as stored after its dispatch
    api_seconds_per_create: float  # the api handler's estimated Lambda duration for one PUT /task
    dispatcher_seconds_per_callback: float  # estimated Lambda duration of a run / callbacks, fast endpoints
    slow_dispatcher_seconds_per_callback: float  # the same with endpoints answering after 1 s
    coordinator_seconds_per_minute: float  # the scheduled invocation's look at every shard
    callbacks_per_minute: int  # the load the fixed per-minute costs are spread over
    shards: int
    # Of read_units_per_task, the consistent read of each entry before its call (absent from results
    # measured before there was one).
    read_units_before_call_per_task: float = 0.0
    # Each shard run's per-minute stats item (GET /stats), one write a minute (absent before there were stats).
    stats_write_units_per_shard_run: float = 0.0
    # POST /tasks: the api handler's estimated Lambda duration for one batch of ``batch_size`` tasks.
    api_seconds_per_batch: float = 0.0
    batch_size: int = 100
    # Outcome events (OutcomeEvents=Enabled): an event's size as EventBridge counts it, and the
    # dispatcher's estimated Lambda duration to publish one (its CPU, in the publisher's thread).
    outcome_event_bytes: int = 0
    publisher_seconds_per_event: float = 0.0


@dataclass(frozen=True)
class Line:
    item: str
    arithmetic: str
    usd: float


def creation_lines(i: Inputs, batched: bool = False) -> list[Line]:
    """What creating a task costs per million: one PUT /task each, or POST /tasks of ``batch_size``."""
    m = 1_000_000
    if not batched:
        return [
            Line(
                "API Gateway REST, PUT /task",
                f"1 request x ${API_GATEWAY_REST_PER_MILLION}/M",
                API_GATEWAY_REST_PER_MILLION,
            ),
            Line("api Lambda requests", f"1 invocation x ${LAMBDA_REQUEST_PER_MILLION}/M", LAMBDA_REQUEST_PER_MILLION),
            Line(
                "api Lambda duration",
                f"{i.api_seconds_per_create * 1000:.1f} ms x {API_MEMORY_GB:g} GB x ${LAMBDA_ARM_GB_SECOND}/GB-s x 1M",
                m * i.api_seconds_per_create * API_MEMORY_GB * LAMBDA_ARM_GB_SECOND,
            ),
        ]
    n = i.batch_size
    return [
        Line(
            f"API Gateway REST, POST /tasks of {n}",
            f"1/{n} request x ${API_GATEWAY_REST_PER_MILLION}/M",
            API_GATEWAY_REST_PER_MILLION / n,
        ),
        Line(
            "api Lambda requests",
            f"1/{n} invocation x ${LAMBDA_REQUEST_PER_MILLION}/M",
            LAMBDA_REQUEST_PER_MILLION / n,
        ),
        Line(
            "api Lambda duration",
            f"{i.api_seconds_per_batch * 1000:.1f} ms per batch / {n} x {API_MEMORY_GB:g} GB"
            f" x ${LAMBDA_ARM_GB_SECOND}/GB-s x 1M",
            m * i.api_seconds_per_batch / n * API_MEMORY_GB * LAMBDA_ARM_GB_SECOND,
        ),
    ]


def outcome_event_lines(i: Inputs) -> list[Line]:
    """What OutcomeEvents=Enabled adds per million callbacks: one event each, and publishing it."""
    m = 1_000_000
    chunks = max(1, -(-i.outcome_event_bytes // EVENTBRIDGE_EVENT_CHUNK_BYTES))
    return [
        Line(
            "EventBridge PutEvents, outcome events",
            f"{chunks} x 64 KB chunk ({i.outcome_event_bytes} B event) x ${EVENTBRIDGE_EVENTS_PER_MILLION}/M",
            chunks * EVENTBRIDGE_EVENTS_PER_MILLION,
        ),
        Line(
            "dispatcher Lambda duration, publishing",
            f"{i.publisher_seconds_per_event * 1000:.3f} ms per event x {DISPATCHER_MEMORY_GB:g} GB"
            f" x ${LAMBDA_ARM_GB_SECOND}/GB-s x 1M",
            m * i.publisher_seconds_per_event * DISPATCHER_MEMORY_GB * LAMBDA_ARM_GB_SECOND,
        ),
    ]


def callme_lines(i: Inputs, batched: bool = False) -> list[Line]:
    """Cost per million callbacks, one line per priced thing (tasks created one PUT each, or in batches)."""
    m = 1_000_000
    runs_per_million = m / i.callbacks_per_minute  # dispatcher minutes needed for a million callbacks
    stored_gb = m * (i.item_bytes + 100) / 1e9  # DynamoDB counts 100 bytes of overhead per item
    return [
        *creation_lines(i, batched),
        Line(
            "DynamoDB writes, per task",
            f"{i.write_units_per_task:g} WRU x ${DYNAMODB_WRITE_PER_MILLION}/M",
            i.write_units_per_task * DYNAMODB_WRITE_PER_MILLION,
        ),
        Line(
            "DynamoDB reads, per task",
            f"{i.read_units_per_task:.4f} RRU x ${DYNAMODB_READ_PER_MILLION}/M",
            i.read_units_per_task * DYNAMODB_READ_PER_MILLION,
        ),
        Line(
            "DynamoDB shard leases",
            f"{i.lease_write_units_per_shard_run:g} WRU x {i.shards} shards x {runs_per_million:.0f} minutes"
            f" x ${DYNAMODB_WRITE_PER_MILLION}/M",
            i.lease_write_units_per_shard_run * i.shards * runs_per_million * DYNAMODB_WRITE_PER_MILLION / m,
        ),
        Line(
            "DynamoDB per-minute stats",
            f"{i.stats_write_units_per_shard_run:g} WRU x {i.shards} shards x {runs_per_million:.0f} minutes"
            f" x ${DYNAMODB_WRITE_PER_MILLION}/M",
            i.stats_write_units_per_shard_run * i.shards * runs_per_million * DYNAMODB_WRITE_PER_MILLION / m,
        ),
        Line(
            "DynamoDB storage, kept 30 days",
            f"1M x ({i.item_bytes} + 100) B = {stored_gb:.3f} GB x ${DYNAMODB_STORAGE_GB_MONTH}/GB-month",
            stored_gb * DYNAMODB_STORAGE_GB_MONTH * RETENTION_DAYS / 30,
        ),
        Line(
            "dispatcher Lambda duration",
            f"{i.dispatcher_seconds_per_callback * 1000:.2f} ms per callback x {DISPATCHER_MEMORY_GB:g} GB"
            f" x ${LAMBDA_ARM_GB_SECOND}/GB-s x 1M",
            m * i.dispatcher_seconds_per_callback * DISPATCHER_MEMORY_GB * LAMBDA_ARM_GB_SECOND,
        ),
        Line(
            "dispatcher Lambda requests",
            f"(1 scheduled + {i.shards} per shard) x {runs_per_million:.0f} minutes x ${LAMBDA_REQUEST_PER_MILLION}/M",
            (1 + i.shards) * runs_per_million * LAMBDA_REQUEST_PER_MILLION / m,
        ),
        Line(
            "scheduled look at the shards",
            f"{i.coordinator_seconds_per_minute * 1000:.0f} ms x {DISPATCHER_MEMORY_GB:g} GB"
            f" + {i.peek_read_units_per_minute:g} RRU, x {runs_per_million:.0f} minutes",
            runs_per_million
            * (
                i.coordinator_seconds_per_minute * DISPATCHER_MEMORY_GB * LAMBDA_ARM_GB_SECOND
                + i.peek_read_units_per_minute * DYNAMODB_READ_PER_MILLION / m
            ),
        ),
        Line(
            "EventBridge Scheduler, every minute",
            f"{runs_per_million:.0f} invocations x ${SCHEDULER_PER_MILLION}/M",
            runs_per_million * SCHEDULER_PER_MILLION / m,
        ),
    ]


def fixed_per_month(i: Inputs) -> float:
    """What callme costs a month with nothing to call: the scheduled look at every shard."""
    per_minute = (
        SCHEDULER_PER_MILLION / 1e6
        + LAMBDA_REQUEST_PER_MILLION / 1e6
        + i.coordinator_seconds_per_minute * DISPATCHER_MEMORY_GB * LAMBDA_ARM_GB_SECOND
        + i.peek_read_units_per_minute * DYNAMODB_READ_PER_MILLION / 1e6
    )
    return per_minute * MINUTES_PER_MONTH


def alternatives() -> list[Line]:
    """Other schedulers' list prices for a million HTTP callbacks."""
    return [
        Line(
            "EventBridge Scheduler (AWS targets only)",
            f"1M invocations x ${SCHEDULER_PER_MILLION}/M; an HTTP call needs a target of its own (next lines)",
            SCHEDULER_PER_MILLION,
        ),
        Line(
            "EventBridge Scheduler + bus + API destination",
            f"${SCHEDULER_PER_MILLION} + ${EVENTBRIDGE_EVENTS_PER_MILLION} events + ${API_DESTINATION_PER_MILLION}"
            " API destination, per M",
            SCHEDULER_PER_MILLION + EVENTBRIDGE_EVENTS_PER_MILLION + API_DESTINATION_PER_MILLION,
        ),
        Line(
            "Google Cloud Tasks",
            f"{CLOUD_TASKS_OPERATIONS_PER_CALLBACK} operations (create, deliver)"
            f" x ${CLOUD_TASKS_PER_MILLION_OPERATIONS}/M",
            CLOUD_TASKS_OPERATIONS_PER_CALLBACK * CLOUD_TASKS_PER_MILLION_OPERATIONS,
        ),
        Line("Upstash QStash", f"10 x ${QSTASH_PER_100K_MESSAGES} per 100K messages", 10 * QSTASH_PER_100K_MESSAGES),
    ]


def original_design_usd(i: Inputs, original_write_units: float) -> float:
    """The same bill with the original design's write units per task."""
    delta = (original_write_units - i.write_units_per_task) * DYNAMODB_WRITE_PER_MILLION
    return sum(line.usd for line in callme_lines(i)) + delta


def estimate(i: Inputs, original_write_units: float) -> dict[str, Any]:
    lines = callme_lines(i)
    total = sum(line.usd for line in lines)
    read_before_call = i.read_units_before_call_per_task * DYNAMODB_READ_PER_MILLION
    batched = creation_lines(i, batched=True)
    batched_total = sum(line.usd for line in callme_lines(i, batched=True))
    events = outcome_event_lines(i)
    return {
        "prices": PRICES_AS_OF,
        "inputs": i.__dict__,
        "callme_lines": [line.__dict__ for line in lines],
        "callme_per_million_usd": round(total, 4),
        "batched_lines": [line.__dict__ for line in batched],
        "batched_per_million_usd": round(batched_total, 4),
        "outcome_event_lines": [line.__dict__ for line in events],
        "outcome_events_per_million_usd": round(sum(line.usd for line in events), 4),
        "read_before_call_per_million_usd": round(read_before_call, 4),
        "without_read_before_call_per_million_usd": round(total - read_before_call, 4),
        "original_design_per_million_usd": round(original_design_usd(i, original_write_units), 4),
        "fixed_per_month_usd": round(fixed_per_month(i), 4),
        "notes": [
            f"with endpoints that answer after 1 s the dispatcher's duration is "
            f"{i.slow_dispatcher_seconds_per_callback * 1000:.1f} ms per callback instead of "
            f"{i.dispatcher_seconds_per_callback * 1000:.1f} ms: "
            f"${1e6 * i.slow_dispatcher_seconds_per_callback * DISPATCHER_MEMORY_GB * LAMBDA_ARM_GB_SECOND:.4f}"
            " per million instead of "
            f"${1e6 * i.dispatcher_seconds_per_callback * DISPATCHER_MEMORY_GB * LAMBDA_ARM_GB_SECOND:.4f}",
            "Lambda durations: the wall time measured here or the CPU time stretched to the function's share of a"
            f" vCPU ({API_MEMORY_MB} MB api, {DISPATCHER_MEMORY_MB} MB dispatcher, of {FULL_VCPU_MB} MB), whichever"
            " is longer",
            "not counted: CloudWatch Logs ingestion, X-Ray traces, data transfer out, free tiers",
        ],
        "alternatives": [line.__dict__ for line in alternatives()],
    }


def render(estimate_: dict[str, Any]) -> str:
    """The arithmetic, as text."""
    out = [f"Cost per million callbacks ({estimate_['prices']}):"]
    for line in estimate_["callme_lines"]:
        out.append(f"  {line['item']:<38} {line['arithmetic']:<78} ${line['usd']:.4f}")
    out.append(f"  {'callme, total':<38} {'':<78} ${estimate_['callme_per_million_usd']:.4f}")
    out.append(
        f"  {'(original design, 6 WRU per task)':<38} {'':<78} ${estimate_['original_design_per_million_usd']:.4f}"
    )
    without = estimate_["without_read_before_call_per_million_usd"]
    out.append(f"  {'(without the read before each call)':<38} {'':<78} ${without:.4f}")
    out.append(f"  fixed cost with nothing due: ${estimate_['fixed_per_month_usd']:.2f} a month")
    out.append("  Tasks created in batches (POST /tasks) instead of one PUT /task each:")
    for line in estimate_["batched_lines"]:
        out.append(f"    {line['item']:<36} {line['arithmetic']:<78} ${line['usd']:.4f}")
    out.append(f"  {'callme, total, created in batches':<38} {'':<78} ${estimate_['batched_per_million_usd']:.4f}")
    out.append("  With outcome events (OutcomeEvents=Enabled), on top of either:")
    for line in estimate_["outcome_event_lines"]:
        out.append(f"    {line['item']:<36} {line['arithmetic']:<78} ${line['usd']:.4f}")
    out.append(f"  {'outcome events, added':<38} {'':<78} ${estimate_['outcome_events_per_million_usd']:.4f}")
    out.extend(f"  note: {note}" for note in estimate_["notes"])
    out.append("Alternatives, list prices per million callbacks:")
    for line in estimate_["alternatives"]:
        out.append(f"  {line['item']:<46} {line['arithmetic']:<78} ${line['usd']:.2f}")
    return "\n".join(out)
