"""Ports (callme.ports) in memory, for tests of the domain without AWS."""

from __future__ import annotations

import threading
from collections.abc import Callable

from .ports import EVENTS_PER_PUT, PUT_BYTES, BusEvent


class InMemoryEventBus:
    """An event bus that keeps what it takes (callme.ports.EventBus). It refuses batches PutEvents
    would refuse, and refuses events as told: ``refusals`` holds, per call, the error of each event
    to refuse by its place in the batch. ``before_put`` runs before each call (to hold it up)."""

    def __init__(
        self, refusals: list[dict[int, str]] | None = None, before_put: Callable[[], object] | None = None
    ) -> None:
        self.refusals = list(refusals or [])
        self.before_put = before_put
        self.puts: list[list[BusEvent]] = []
        self.events: list[BusEvent] = []
        self._lock = threading.Lock()

    def put(self, events: list[BusEvent]) -> list[str | None]:
        if not 1 <= len(events) <= EVENTS_PER_PUT or sum(e.size for e in events) >= PUT_BYTES:
            raise ValueError(f"PutEvents refuses {len(events)} events of {sum(e.size for e in events)} bytes")
        if self.before_put is not None:
            self.before_put()
        with self._lock:
            refused = self.refusals.pop(0) if self.refusals else {}
            self.puts.append(list(events))
            self.events.extend(e for i, e in enumerate(events) if i not in refused)
        return [refused.get(i) for i in range(len(events))]
