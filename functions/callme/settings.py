"""Every setting of callme and its default, in one place, read once from ``CALLME_*`` variables.

``Settings`` holds each default once and checks the rules that tie settings together whenever it is
made. What each part of the code needs is built from it, never with numbers of its own: ``Limits``
(what a client may ask for), ``DispatchConfig`` (the dispatch engine), ``CallerConfig`` (one HTTP
call) and ``StorageTimeouts`` (one DynamoDB client). The handlers' wiring reads it from the
environment; tests and benchmarks make it with the changes they need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from .egress import EgressPolicy

DAY = 86400
LAMBDA_LONGEST_TIMEOUT = 900  # seconds: no Lambda function runs longer, the dispatcher's included
AUTH_MODES = {"": "none", "API_KEY": "api_key", "IAM": "iam"}  # CALLME_AUTH_MODE: how the console names it
FANOUTS = {"inline": "inline", "lambda": "lambda"}  # CALLME_FANOUT: busy shards run in-process, or one invocation each
OUTCOME_BUSES = {"log": "log", "eventbridge": "eventbridge"}  # CALLME_OUTCOME_EVENTS: where outcome events go


@dataclass(frozen=True)
class Limits:
    """The documented limits on what a client may ask for; each is enforced with a clear 4xx."""

    max_body_bytes: int
    max_payload_bytes: int
    max_url_length: int
    max_retry: int
    max_max_delay: int  # minutes: how late a call may be at most
    max_ahead_seconds: int
    default_page_size: int
    max_page_size: int
    retention_seconds: int  # finished entries are kept this long
    max_batch_tasks: int  # tasks one POST /tasks may hold
    max_batch_body_bytes: int  # POST /tasks's body


@dataclass(frozen=True)
class StorageTimeouts:
    """How long one DynamoDB try may wait (seconds), and how many tries botocore makes."""

    connect: float
    read: float
    attempts: int

    @property
    def per_try(self) -> float:
        """The longest one try can take: a connection, then a wait for the answer."""
        return self.connect + self.read


@dataclass(frozen=True)
class CallerConfig:
    """One callback: its connect and read timeouts (per socket operation), and its whole budget."""

    connect_timeout: float
    read_timeout: float
    call_budget: float


@dataclass(frozen=True)
class DispatchConfig:
    """The dispatch engine's settings (callme.dispatch)."""

    concurrency: int
    run_seconds: float  # no call starts later than this after the run began
    call_budget: float  # no call lasts longer than this (connect + read, all bytes)
    read_window: float  # a call starts at most this long after the consistent read of its entry was sent
    record_seconds: float  # kept inside the lease, after a call's budget, to write its outcome
    heartbeat_seconds: float  # a run renews its leases this often while it lives
    retention_seconds: int
    backoff_base: float
    backoff_cap: float
    record_attempts: int  # tries of each outcome write on top of botocore's own retries
    lease_wait_seconds: float | None = None  # how long to wait for a shard another run holds (None: a lease)
    host_share: int = 100  # percent of the concurrency one callback host may take in one run (100: no limit)
    split_at: int = 1000  # entries due in a shard beyond which it is split, about one run per this many

    @property
    def host_calls(self) -> int:
        """Calls one callback host may have in flight in one run; 0: no limit of its own."""
        if self.host_share >= 100:
            return 0
        return max(1, self.concurrency * self.host_share // 100)

    @property
    def call_room(self) -> float:
        """What a lease must still have when a call starts: the call's budget, then its recording."""
        return self.call_budget + self.record_seconds

    @property
    def lease_seconds(self) -> float:
        """How long a lease lasts after its last renewal (25 s by default): longer than a heartbeat
        plus a call's room, so that a call started just before a renewal was due fits in it even
        when that renewal is a whole heartbeat late. A dead run's shards are free again this long after."""
        return 2 * self.heartbeat_seconds + self.call_room

    @property
    def lease_wait(self) -> float:
        """How long a run waits for a shard another run holds: by default a whole lease, so a shard
        left by a run that died is taken over by the next one."""
        return self.lease_seconds if self.lease_wait_seconds is None else self.lease_wait_seconds


@dataclass(frozen=True)
class PublishConfig:
    """Outcome events' publisher (callme.outcomes)."""

    tries: int  # sends of an event the bus refuses, the first included
    backoff: float  # seconds before the first resend, doubling, with jitter


@dataclass(frozen=True)
class Settings:
    """callme's settings, each with its default. ``from_environ`` names the variable of each."""

    # -- storage
    table_name: str
    lease_table_name: str
    stats_table_name: str
    schedule_table_name: str = "callme-schedules"
    region: str = "us-east-1"
    dynamodb_endpoint: str | None = None
    due_shards: int = 8
    dispatch_slices: int = 1  # slices each shard's entries are spread over (one run each when split)
    # The dispatcher's run has a minute, and riding out a slow table beats leaving entries to the next.
    dispatcher_storage: StorageTimeouts = StorageTimeouts(connect=2, read=5, attempts=4)
    # An api request has the function's 10 s. DynamoDB answers in milliseconds: seconds mean a hang,
    # and a short try leaves time to try again and still answer (503 at worst) before Lambda's timeout.
    api_storage: StorageTimeouts = StorageTimeouts(connect=1, read=2, attempts=4)

    # -- what a client may ask for (Limits)
    max_body_bytes: int = 128 * 1024
    max_payload_bytes: int = 64 * 1024
    max_url_length: int = 2048
    max_retry: int = 10
    max_max_delay: int = 1440  # minutes: a call may be at most one day late
    max_ahead_days: int = 1826  # five years
    default_page_size: int = 100
    max_page_size: int = 1000
    retention_days: int = 30  # finished entries are kept this long
    max_batch_tasks: int = 100
    # A body reaches the function inside its event, as a JSON string in which a quote or a backslash
    # doubles: 3,000,000 bytes are 6,000,000 at worst, under Lambda's 6,291,456 with the headers.
    max_batch_body_bytes: int = 3_000_000
    egress: EgressPolicy = field(default_factory=EgressPolicy)

    # -- the api function
    answer_margin_seconds: float = 1.0  # kept, of the time Lambda gives a request, to write the answer
    auth_mode: str = "none"  # how the API authenticates, as the console says it: none, api_key or iam

    # -- the dispatcher (DispatchConfig, CallerConfig)
    dispatch_concurrency: int = 64
    dispatch_host_share: int = 100  # percent of a run's concurrency one callback host may take
    # A shard with more entries due than this is split, about one run per this many (at most one per
    # slice): about what one run calls in 8 s (some 128 fast callbacks a second: README, Performance).
    dispatch_split_at: int = 1000
    run_seconds: float = 40.0
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    call_budget: float = 15.0
    read_window: float = 2.0
    record_seconds: float = 2.0
    heartbeat_seconds: float = 4.0
    backoff_base: float = 1.0
    backoff_cap: float = 120.0
    record_attempts: int = 4
    fanout: str = "inline"
    dispatcher_function: str | None = None
    # Every this many minutes the scheduled invocation checks that each schedule's next run exists.
    schedule_sweep_minutes: int = 15

    # -- outcome events (PublishConfig)
    outcome_events: str = "log"  # where they go: the dispatcher's log, or EventBridge's default bus
    publish_tries: int = 4
    publish_backoff: float = 0.2

    # -- signing
    signing_secret: str | None = field(default=None, repr=False)  # a secret: never in a log line or a test report
    signing_secret_id: str | None = None

    # -- the key sealing tasks' header values (callme.sealing): given, or a Secrets Manager secret
    headers_key: str | None = field(default=None, repr=False)  # a key: never in a log line or a test report
    headers_key_id: str | None = None

    def __post_init__(self) -> None:
        """The rules between settings; ValueError naming the variables at odds."""
        if self.default_page_size > self.max_page_size:
            raise ValueError(
                f"CALLME_DEFAULT_PAGE_SIZE ({self.default_page_size}) is above "
                f"CALLME_MAX_PAGE_SIZE ({self.max_page_size})"
            )
        if self.max_payload_bytes >= self.max_body_bytes:
            raise ValueError(
                f"CALLME_MAX_PAYLOAD_BYTES ({self.max_payload_bytes}) is not below CALLME_MAX_BODY_BYTES "
                f"({self.max_body_bytes}): a payload that large could never be sent in a request body"
            )
        needed = self.run_seconds + self.dispatch.call_room
        if needed > LAMBDA_LONGEST_TIMEOUT:
            raise ValueError(
                f"CALLME_CALL_BUDGET ({self.call_budget:g}) is too long: a dispatcher run starts calls for "
                f"{self.run_seconds:g} s, and its last call needs its budget and {self.record_seconds:g} s to "
                f"record it, {needed:g} s in all, more than a Lambda function may run ({LAMBDA_LONGEST_TIMEOUT} s)"
            )

    @cached_property
    def limits(self) -> Limits:
        return Limits(
            max_body_bytes=self.max_body_bytes,
            max_payload_bytes=self.max_payload_bytes,
            max_url_length=self.max_url_length,
            max_retry=self.max_retry,
            max_max_delay=self.max_max_delay,
            max_ahead_seconds=self.max_ahead_days * DAY,
            default_page_size=self.default_page_size,
            max_page_size=self.max_page_size,
            retention_seconds=self.retention_days * DAY,
            max_batch_tasks=self.max_batch_tasks,
            max_batch_body_bytes=self.max_batch_body_bytes,
        )

    @cached_property
    def dispatch(self) -> DispatchConfig:
        return DispatchConfig(
            concurrency=self.dispatch_concurrency,
            run_seconds=self.run_seconds,
            call_budget=self.call_budget,
            read_window=self.read_window,
            record_seconds=self.record_seconds,
            heartbeat_seconds=self.heartbeat_seconds,
            retention_seconds=self.retention_days * DAY,
            backoff_base=self.backoff_base,
            backoff_cap=self.backoff_cap,
            record_attempts=self.record_attempts,
            host_share=self.dispatch_host_share,
            split_at=self.dispatch_split_at,
        )

    @cached_property
    def caller(self) -> CallerConfig:
        return CallerConfig(self.connect_timeout, self.read_timeout, self.call_budget)

    @cached_property
    def publish(self) -> PublishConfig:
        return PublishConfig(self.publish_tries, self.publish_backoff)

    @property
    def dispatcher_run_seconds(self) -> float:
        """The least time a dispatcher invocation needs (its Lambda timeout must be at least this):
        calls start for ``run_seconds``, and the last one needs its budget and its recording."""
        return self.run_seconds + self.dispatch.call_room

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> Settings:
        """Read ``CALLME_*`` variables (and AWS's region); raise ValueError naming the variable that
        is wrong. An unset or empty variable means its default."""
        read = _Reader(env, {f.name: f.default for f in fields(cls)})
        try:
            egress = EgressPolicy.from_text(env.get("CALLME_ALLOW_NETWORKS", ""))
        except ValueError as exc:
            raise ValueError(f"CALLME_ALLOW_NETWORKS: {exc}") from None
        return cls(
            table_name=read.required("CALLME_TABLE_NAME"),
            lease_table_name=read.required("CALLME_LEASE_TABLE_NAME"),
            stats_table_name=read.required("CALLME_STATS_TABLE_NAME"),
            schedule_table_name=env.get("CALLME_SCHEDULE_TABLE_NAME") or read.default("schedule_table_name"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or read.default("region"),
            dynamodb_endpoint=env.get("CALLME_DYNAMODB_ENDPOINT") or None,
            due_shards=read.integer("due_shards", "CALLME_DUE_SHARDS", 1, 1000),
            dispatch_slices=read.integer("dispatch_slices", "CALLME_DISPATCH_SLICES", 1, 100),
            dispatch_split_at=read.integer("dispatch_split_at", "CALLME_DISPATCH_SPLIT_AT", 1),
            max_body_bytes=read.integer("max_body_bytes", "CALLME_MAX_BODY_BYTES", 1024),
            max_payload_bytes=read.integer("max_payload_bytes", "CALLME_MAX_PAYLOAD_BYTES", 0, 300 * 1024),
            max_url_length=read.integer("max_url_length", "CALLME_MAX_URL_LENGTH", 16, 8192),
            max_retry=read.integer("max_retry", "CALLME_MAX_RETRY", 0, 100),
            max_max_delay=read.integer("max_max_delay", "CALLME_MAX_MAX_DELAY", 1),
            max_ahead_days=read.integer("max_ahead_days", "CALLME_MAX_AHEAD_DAYS", 1),
            default_page_size=read.integer("default_page_size", "CALLME_DEFAULT_PAGE_SIZE", 1),
            max_page_size=read.integer("max_page_size", "CALLME_MAX_PAGE_SIZE", 1),
            retention_days=read.integer("retention_days", "CALLME_RETENTION_DAYS", 1),
            egress=egress,
            auth_mode=read.choice("CALLME_AUTH_MODE", "", AUTH_MODES, "API_KEY or IAM (or unset)"),
            dispatch_concurrency=read.integer("dispatch_concurrency", "CALLME_DISPATCH_CONCURRENCY", 1, 1000),
            dispatch_host_share=read.integer("dispatch_host_share", "CALLME_DISPATCH_HOST_SHARE", 1, 100),
            connect_timeout=read.seconds("connect_timeout", "CALLME_CONNECT_TIMEOUT"),
            read_timeout=read.seconds("read_timeout", "CALLME_READ_TIMEOUT"),
            call_budget=read.seconds("call_budget", "CALLME_CALL_BUDGET"),
            fanout=read.choice("CALLME_FANOUT", read.default("fanout"), FANOUTS, "inline or lambda"),
            dispatcher_function=env.get("CALLME_DISPATCHER_FUNCTION") or None,
            schedule_sweep_minutes=read.integer("schedule_sweep_minutes", "CALLME_SCHEDULE_SWEEP_MINUTES", 1, 1440),
            outcome_events=read.choice(
                "CALLME_OUTCOME_EVENTS", read.default("outcome_events"), OUTCOME_BUSES, "log or eventbridge"
            ),
            signing_secret=env.get("CALLME_SIGNING_SECRET") or None,
            signing_secret_id=env.get("CALLME_SIGNING_SECRET_ID") or None,
            headers_key=env.get("CALLME_HEADERS_KEY") or None,
            headers_key_id=env.get("CALLME_HEADERS_KEY_ID") or None,
        )


class _Reader:
    """Reads variables, falling back to the settings' defaults; each error names its variable."""

    def __init__(self, env: Mapping[str, str], defaults: dict[str, Any]) -> None:
        self.env = env
        self.defaults = defaults

    def default(self, name: str) -> Any:
        return self.defaults[name]

    def required(self, variable: str) -> str:
        value = self.env.get(variable)
        if not value:
            raise ValueError(f"{variable} is not set")
        return value

    def integer(self, name: str, variable: str, low: int = 0, high: int = 10**12) -> int:
        text = self.env.get(variable)
        if not text:
            return int(self.defaults[name])
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{variable} must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"{variable} must be between {low} and {high}, got {value}")
        return value

    def seconds(self, name: str, variable: str) -> float:
        text = self.env.get(variable)
        if not text:
            return float(self.defaults[name])
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{variable} must be a number, got {text!r}") from None
        if not 0 < value < LAMBDA_LONGEST_TIMEOUT:
            raise ValueError(f"{variable} must be between 0 and {LAMBDA_LONGEST_TIMEOUT} seconds, got {value}")
        return value

    def choice(self, variable: str, unset: str, choices: Mapping[str, str], allowed: str) -> str:
        """The value ``choices`` gives the variable's text (``unset`` when it is not set)."""
        text = self.env.get(variable, unset)
        if text not in choices:
            raise ValueError(f"{variable} must be {allowed}, got {text!r}")
        return choices[text]
