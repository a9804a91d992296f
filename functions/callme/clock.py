"""Time as the domain sees it: an injectable clock, and trigger minutes as Unix seconds."""

from __future__ import annotations

import time
from typing import Protocol

MINUTE = 60


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class FixedClock:
    """A clock for tests and for replaying a dispatch run at a chosen instant."""

    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


class OffsetClock:
    """The system clock shifted by a fixed number of seconds (the local stack's test ticks)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


def minute_of(instant: float) -> int:
    """The Unix minute (a multiple of 60) containing ``instant``."""
    return int(instant // MINUTE) * MINUTE
