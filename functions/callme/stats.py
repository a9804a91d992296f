"""Per-minute stats of the dispatcher's calls: counts by outcome and a histogram of lateness.

A dispatcher run tallies the outcomes it settles by minute and stores its tally once, when it ends:
one small item per run and minute (callme.ports.StatsStore), so stats cost nothing per call.
``GET /stats`` merges the items of a window. Counts add up; lateness is kept in fixed buckets, which
add up bucket by bucket, so the p50 and p99 of a minute come out of items written by different runs.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .clock import MINUTE, minute_of

# Upper bounds (seconds, inclusive) of the lateness buckets; one more bucket holds what is beyond the
# last. Fine under a few seconds, where a healthy dispatcher's calls fall; coarse up to a day, the
# longest max_delay, which bounds how late a call can ever start.
LATENESS_BOUNDS: tuple[float, ...] = (
    0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300,
    600, 900, 1800, 3600, 7200, 14400, 43200, 86400,
)  # fmt: skip
OUTCOMES = ("succeeded", "failed", "retried", "skipped")
FEWEST_MINUTES, MOST_MINUTES, DEFAULT_MINUTES = 15, 1440, 60  # GET /stats?minutes=N


def _ms(seconds: float) -> float:
    return round(seconds, 3)


@dataclass
class Histogram:
    """Lateness in the fixed buckets of LATENESS_BOUNDS (bucket index: count, only those not empty),
    with the lowest and highest value seen, which pin the percentiles at both ends."""

    buckets: dict[int, int] = field(default_factory=dict)
    low: float | None = None
    high: float | None = None

    @property
    def count(self) -> int:
        return sum(self.buckets.values())

    def add(self, seconds: float) -> None:
        index = bisect.bisect_left(LATENESS_BOUNDS, seconds)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self._widen(_ms(seconds), _ms(seconds))

    def merge(self, other: Histogram) -> None:
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count
        if other.low is not None and other.high is not None:
            self._widen(other.low, other.high)

    def _widen(self, low: float, high: float) -> None:
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)

    def percentile(self, fraction: float) -> float | None:
        """The value below which ``fraction`` of the values lie (nearest rank), None without values.

        Within its bucket, narrowed to the lowest and highest values seen, the value is interpolated
        linearly: exact for one value (or equal ones), and never more than a bucket's width off.
        """
        total = self.count
        if not total or self.low is None or self.high is None:
            return None
        rank = max(1, math.ceil(fraction * total))
        seen = 0
        for index in sorted(self.buckets):
            count = self.buckets[index]
            if seen + count >= rank:
                lower = max(LATENESS_BOUNDS[index - 1], self.low) if index else self.low
                upper = min(LATENESS_BOUNDS[index], self.high) if index < len(LATENESS_BOUNDS) else self.high
                return _ms(lower + (upper - lower) * (rank - seen) / count)
            seen += count
        return self.high  # unreachable: the ranks end at the total


@dataclass
class MinuteStats:
    """One minute's calls (each attempt made), their outcomes and their lateness (how long after
    the start of its entry's trigger minute each call started)."""

    minute: int
    calls: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    lateness: Histogram = field(default_factory=Histogram)

    def merge(self, other: MinuteStats) -> None:
        self.calls += other.calls
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.retried += other.retried
        self.skipped += other.skipped
        self.lateness.merge(other.lateness)

    def view(self) -> dict[str, Any]:
        """The minute as ``GET /stats`` shows it: nulls for lateness when nothing was called."""
        return {
            "minute": self.minute,
            "calls": self.calls,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retried": self.retried,
            "skipped": self.skipped,
            "lateness_p50": self.lateness.percentile(0.50),
            "lateness_p99": self.lateness.percentile(0.99),
        }


class StatsTally:
    """What one dispatcher run did, by minute; stored once when the run ends. Used from the run's
    loop thread only."""

    def __init__(self) -> None:
        self.minutes: dict[int, MinuteStats] = {}

    def _of(self, at: float) -> MinuteStats:
        minute = minute_of(at)
        if minute not in self.minutes:
            self.minutes[minute] = MinuteStats(minute)
        return self.minutes[minute]

    def called(self, at: float, lateness: float) -> None:
        """A call started at ``at``, ``lateness`` seconds after its entry's trigger minute began."""
        stats = self._of(at)
        stats.calls += 1
        stats.lateness.add(lateness)

    def ended(self, at: float, outcome: str) -> None:
        """An attempt at ``at`` (its call's start, or when the entry was skipped) came to ``outcome``."""
        if outcome not in OUTCOMES:
            raise ValueError(f"not an outcome: {outcome}")
        stats = self._of(at)
        setattr(stats, outcome, getattr(stats, outcome) + 1)


def window(now: float, minutes: int) -> tuple[int, int]:
    """The first and the last minute of the ``minutes`` minutes up to the current one."""
    last = minute_of(now)
    return last - (minutes - 1) * MINUTE, last


def window_view(first: int, last: int, stored: Iterable[MinuteStats]) -> dict[str, Any]:
    """``GET /stats``: every minute from ``first`` to ``last``, oldest first, each merged from the
    items of every run that worked in it (zeros and nulls for a minute without any)."""
    merged = {minute: MinuteStats(minute) for minute in range(first, last + 1, MINUTE)}
    for item in stored:
        if item.minute in merged:
            merged[item.minute].merge(item)
    return {"from": first, "to": last, "minutes": [stats.view() for stats in merged.values()]}


def recent(between: Callable[[int, int], Iterable[MinuteStats]], now: float, minutes: int) -> dict[str, Any]:
    """``GET /stats?minutes=N``: the last ``minutes`` minutes, read with ``between`` (a StatsStore's)."""
    first, last = window(now, minutes)
    return window_view(first, last, between(first, last))
