"""The ports: what the domain needs from outside it. Nothing here imports an AWS library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# What one PutEvents takes (EventBridge): at most 10 entries, whose sizes add up to less than 256 KB.
EVENTS_PER_PUT = 10
PUT_BYTES = 256 * 1024
_TIME_BYTES = 14  # an entry's Time, as EventBridge counts it


@dataclass(frozen=True)
class BusEvent:
    """One event for the event bus: its source, detail-type and detail (JSON text), and when it
    happened (Unix seconds); ``entry`` names the entry it tells of, for logs."""

    entry: str
    source: str
    detail_type: str
    detail: str
    time: float

    @property
    def size(self) -> int:
        """Bytes the entry counts for in PutEvents' limits: its Time, and its Source, DetailType and
        Detail in UTF-8 (EventBridge, "Calculating PutEvents event entry size")."""
        return _TIME_BYTES + sum(len(text.encode("utf-8")) for text in (self.source, self.detail_type, self.detail))


class EventBus(Protocol):
    """Where outcome events go: EventBridge's default bus in AWS, the log otherwise."""

    def put(self, events: list[BusEvent]) -> list[str | None]:
        """Publish one batch (at most EVENTS_PER_PUT events, less than PUT_BYTES in all). For each
        event, in order: None when the bus took it, else why not (it may be sent again). Never
        raises for the bus's own failures: they are each event's error."""
        ...
