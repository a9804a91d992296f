"""Configuration, parsed once from a mapping of environment variables and validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .egress import EgressPolicy
from .limits import DAY, Limits


@dataclass(frozen=True)
class Settings:
    table_name: str
    lease_table_name: str
    schedule_table_name: str = "callme-schedules"
    region: str = "us-east-1"
    dynamodb_endpoint: str | None = None
    due_shards: int = 8
    limits: Limits = field(default_factory=Limits)
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    dispatch_concurrency: int = 64
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    call_budget: float = 15.0
    fanout: str = "inline"
    dispatcher_function: str | None = None
    signing_secret: str | None = None
    signing_secret_id: str | None = None

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> Settings:
        """Read ``CALLME_*`` variables; raise ValueError naming the variable that is wrong."""
        reader = _Reader(env)
        limits = Limits(
            max_body_bytes=reader.integer("CALLME_MAX_BODY_BYTES", Limits.max_body_bytes, 1024),
            max_payload_bytes=reader.integer("CALLME_MAX_PAYLOAD_BYTES", Limits.max_payload_bytes, 0, 300 * 1024),
            max_url_length=reader.integer("CALLME_MAX_URL_LENGTH", Limits.max_url_length, 16, 8192),
            max_retry=reader.integer("CALLME_MAX_RETRY", Limits.max_retry, 0, 100),
            max_max_delay=reader.integer("CALLME_MAX_MAX_DELAY", Limits.max_max_delay, 1),
            max_ahead_seconds=reader.integer("CALLME_MAX_AHEAD_DAYS", Limits.max_ahead_seconds // DAY, 1) * DAY,
            default_page_size=reader.integer("CALLME_DEFAULT_PAGE_SIZE", Limits.default_page_size, 1),
            max_page_size=reader.integer("CALLME_MAX_PAGE_SIZE", Limits.max_page_size, 1),
            retention_seconds=reader.integer("CALLME_RETENTION_DAYS", Limits.retention_seconds // DAY, 1) * DAY,
        )
        if limits.default_page_size > limits.max_page_size:
            raise ValueError(
                f"CALLME_DEFAULT_PAGE_SIZE ({limits.default_page_size}) is above "
                f"CALLME_MAX_PAGE_SIZE ({limits.max_page_size})"
            )
        try:
            egress = EgressPolicy.from_text(env.get("CALLME_ALLOW_NETWORKS", ""))
        except ValueError as exc:
            raise ValueError(f"CALLME_ALLOW_NETWORKS: {exc}") from None
        fanout = env.get("CALLME_FANOUT", "inline")
        if fanout not in ("inline", "lambda"):
            raise ValueError(f"CALLME_FANOUT must be inline or lambda, got {fanout!r}")
        return cls(
            table_name=reader.required("CALLME_TABLE_NAME"),
            lease_table_name=reader.required("CALLME_LEASE_TABLE_NAME"),
            schedule_table_name=env.get("CALLME_SCHEDULE_TABLE_NAME") or "callme-schedules",
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            dynamodb_endpoint=env.get("CALLME_DYNAMODB_ENDPOINT") or None,
            due_shards=reader.integer("CALLME_DUE_SHARDS", 8, 1, 1000),
            limits=limits,
            egress=egress,
            dispatch_concurrency=reader.integer("CALLME_DISPATCH_CONCURRENCY", 64, 1, 1000),
            connect_timeout=reader.number("CALLME_CONNECT_TIMEOUT", 3.0),
            read_timeout=reader.number("CALLME_READ_TIMEOUT", 10.0),
            call_budget=reader.number("CALLME_CALL_BUDGET", 15.0),
            fanout=fanout,
            dispatcher_function=env.get("CALLME_DISPATCHER_FUNCTION") or None,
            signing_secret=env.get("CALLME_SIGNING_SECRET") or None,
            signing_secret_id=env.get("CALLME_SIGNING_SECRET_ID") or None,
        )


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def required(self, name: str) -> str:
        value = self.env.get(name)
        if not value:
            raise ValueError(f"{name} is not set")
        return value

    def integer(self, name: str, default: int, low: int = 0, high: int = 10**12) -> int:
        text = self.env.get(name)
        if not text:
            return default
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"{name} must be between {low} and {high}, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        text = self.env.get(name)
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {text!r}") from None
        if not 0 < value < 900:
            raise ValueError(f"{name} must be between 0 and 900 seconds, got {value}")
        return value
