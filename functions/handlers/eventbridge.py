"""Where outcome events go (callme.ports.EventBus): EventBridge's default bus with
``CALLME_OUTCOME_EVENTS=eventbridge`` (the template's ``OutcomeEvents=Enabled``), else the log.

The EventBridge bus makes one PutEvents per batch and turns every failure into the errors of the
events it concerns: a per-entry error (``FailedEntryCount``) for that event, a refused or failed
call for all of them. So the publisher (callme.outcomes) sends again what was not taken, and
never sees an exception from AWS.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from callme.ports import BusEvent

from .observability import logger

# PutEvents answers in milliseconds; a bus that takes seconds is failing, and the publisher's own
# resends (with backoff) come on top of botocore's tries.
_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})


class EventBridgeBus:
    """PutEvents on the account's default bus (the only one the template lets the dispatcher use)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def put(self, events: list[BusEvent]) -> list[str | None]:
        entries = [
            {
                "Source": event.source,
                "DetailType": event.detail_type,
                "Detail": event.detail,
                "Time": datetime.fromtimestamp(event.time, UTC),
            }
            for event in events
        ]
        try:
            answer = self.client.put_events(Entries=entries)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            return [f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}"] * len(events)
        except BotoCoreError as exc:
            return [f"{type(exc).__name__}: {exc}"] * len(events)
        results = answer.get("Entries", [])
        return [_error_of(results[i] if i < len(results) else None) for i in range(len(events))]


def _error_of(result: dict[str, Any] | None) -> str | None:
    if result is None:
        return "no result for this entry"
    if result.get("ErrorCode"):
        return f"{result['ErrorCode']}: {result.get('ErrorMessage', '')}"
    return None


@cache
def events_client(region: str, endpoint: str | None = None) -> Any:
    return boto3.session.Session().client("events", region_name=region, endpoint_url=endpoint, config=_CLIENT_CONFIG)


class LogBus:
    """Each event as one JSON log line, shaped as EventBridge delivers it (locally, and in AWS
    when outcome events are not enabled)."""

    def put(self, events: list[BusEvent]) -> list[str | None]:
        for event in events:
            logger.info(
                "outcome event",
                extra={
                    "event": {
                        "source": event.source,
                        "detail-type": event.detail_type,
                        "time": datetime.fromtimestamp(event.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "detail": json.loads(event.detail),
                    }
                },
            )
        return [None] * len(events)
