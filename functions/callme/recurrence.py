"""When the runs of a recurring schedule fall: a cron expression or an interval, in a time zone.

A ``Recurrence`` is the timing of a schedule (DESIGN.md, "Recurring schedules"); it answers the
questions the service and the dispatcher ask: the next runs after a minute, and which runs an outage
missed. Every instant is a Unix minute (Unix seconds divisible by 60). The rules:

- ``cron``: five fields ``minute hour day-of-month month day-of-week`` with Vixie cron's meaning
  (ranges, steps, lists, names such as ``MON`` and ``JAN``, day-of-week 0 or 7 for Sunday, and: when
  neither day field starts with ``*``, a day matches when either one does), or an alias from
  ``CRON_ALIASES``. It is matched against the wall clock of ``timezone``. A wall-clock time that does
  not exist (spring forward) runs at the first minute after the gap, once however many of its times
  fall in the gap; a wall-clock time that happens twice (fall back) runs once, at its first occurrence.
- ``every``: ``<int>{m,h,d}``; runs at ``start_at + k * interval`` in absolute time, like EventBridge's
  ``rate()``. The time zone plays no part: ``1d`` is 24 hours, so its local time shifts by an hour
  across a DST change.
- ``start_at`` (the schedule's creation minute unless given) and ``end_at`` bound the runs, both
  inclusive. A schedule that can never run is refused.

The cron parser is cronsim (Healthchecks.io's, pinned): it follows Debian/Vixie cron, including the
``*``-prefixed day-field rule (croniter 7.0.0 ORs ``0 0 1 * */2``, accepts ``5-1`` and runs a fall-back
time twice); it is typed and has no dependency. It is driven on naive wall-clock times and our DST
rules are applied on top (``_instant``), because its own differ (it skips ``30 * * * *`` in a gap).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, cached_property
from importlib import resources
from itertools import islice
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from cronsim.cronsim import RANGES, SYMBOLIC_DAYS, SYMBOLIC_MONTHS

from .clock import MINUTE
from .errors import InvalidRequest
from .trigger import DURATION, UNIT_SECONDS

CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_FIELD_LENGTH = 200
MAX_EVERY_SECONDS = 365 * 24 * 60 * MINUTE
# How many skipped runs missed_runs lists at most: a year-long outage of "* * * * *" misses half a
# million runs, and listing them would cost more than the outage left to do.
MISSED_RUNS_LISTED = 100

_EVERY = re.compile(DURATION, re.ASCII)
_CRON_ITEM = re.compile(r"(?:\*|(?P<first>[0-9A-Za-z]+)(?:-(?P<last>[0-9A-Za-z]+))?)(?:/(?P<step>[0-9]+))?", re.ASCII)


@dataclass(frozen=True)
class _CronField:
    name: str
    values: range
    names: Mapping[str, int]

    def value(self, token: str, expression: str) -> int:
        if token.isdigit():
            number = int(token)
            if number not in self.values:
                raise _cron_error(expression, f"{self.name} {number} is out of range {self._range}")
            return number
        if token.upper() in self.names:
            return self.names[token.upper()]
        kind = "a number or a name" if self.names else "a number"
        raise _cron_error(expression, f"{self.name} {token!r} is not {kind}; {self.hint}")

    @property
    def _range(self) -> str:
        return f"{self.values.start}-{self.values.stop - 1}"

    @property
    def hint(self) -> str:
        names = list(self.names)
        named = f", names {names[0]}-{names[-1]}" if names else ""
        return f"use numbers {self._range}{named}, '*', ranges like 1-5, steps like */2 and lists like 1,3"


_CRON_FIELDS = (
    _CronField("minute", RANGES[1], {}),
    _CronField("hour", RANGES[2], {}),
    _CronField("day-of-month", RANGES[3], {}),
    _CronField("month", RANGES[4], {name: number for number, name in enumerate(SYMBOLIC_MONTHS, 1)}),
    _CronField("day-of-week", RANGES[5], {name: number for number, name in enumerate(SYMBOLIC_DAYS)}),
)


@dataclass(frozen=True)
class MissedRuns:
    """The runs after the last minute handled and up to now, that an outage kept from being handled.

    ``call`` is the most recent of them while it may still be called (``now`` before its ``max_delay``
    ran out), else None. ``skip`` are the others, to be recorded skipped, oldest first: the most recent
    ``limit`` of them. ``more_skipped`` says older missed runs exist that are not listed; they are not
    enumerated, so that the work stays bounded however long the outage.
    """

    call: int | None = None
    skip: tuple[int, ...] = ()
    more_skipped: bool = False


@dataclass(frozen=True, kw_only=True)
class Recurrence:
    """A schedule's timing: exactly one of ``cron`` and ``every``, a time zone, and the run bounds.

    Constructing one validates it (``InvalidRequest`` naming the field); ``to_dict`` and ``from_dict``
    store it as plain JSON values.
    """

    start_at: int
    cron: str | None = None
    every: str | None = None
    timezone: str = "UTC"
    end_at: int | None = None

    def __post_init__(self) -> None:
        if self.cron is not None and self.every is not None:
            raise InvalidRequest("a schedule takes exactly one of cron and every, not both")
        if self.cron is None and self.every is None:
            raise InvalidRequest('a schedule needs cron (e.g. "0 9 * * MON-FRI") or every (e.g. "15m")')
        _ = self._cron_fields if self.cron is not None else self._interval
        _ = self._zone
        _check_minute(self.start_at, "start_at")
        if self.end_at is not None:
            _check_minute(self.end_at, "end_at")
            if self.end_at < self.start_at:
                raise InvalidRequest(f"end_at {self.end_at} is before start_at {self.start_at}")
            if self.run_at_or_after(self.start_at) is None:
                raise InvalidRequest(
                    f"the schedule never runs between start_at {self.start_at} and end_at {self.end_at}"
                )

    @classmethod
    def parse(
        cls,
        *,
        cron: object = None,
        every: object = None,
        timezone: object = None,
        start_at: int | None = None,
        end_at: int | None = None,
        created_at: int,
    ) -> Recurrence:
        """Build one from a request's fields (None where absent).

        ``start_at`` and ``end_at`` are already resolved Unix minutes (``parse_trigger_at``);
        ``start_at`` defaults to ``created_at``, the minute the schedule is created.
        """
        return cls(
            cron=_text(cron, "cron"),
            every=_text(every, "every"),
            timezone=_text(timezone, "timezone") or "UTC",
            start_at=created_at if start_at is None else start_at,
            end_at=end_at,
        )

    def to_dict(self) -> dict[str, str | int]:
        """The stored form: plain JSON values, absent fields left out."""
        stored: dict[str, str | int | None] = {
            "cron": self.cron,
            "every": self.every,
            "timezone": self.timezone,
            "start_at": self.start_at,
            "end_at": self.end_at,
        }
        return {key: value for key, value in stored.items() if value is not None}

    @classmethod
    def from_dict(cls, stored: Mapping[str, object]) -> Recurrence:
        """Read back what ``to_dict`` made (numbers as ints), validating it again."""
        unknown = sorted(set(stored) - {"cron", "every", "timezone", "start_at", "end_at"})
        if unknown:
            raise InvalidRequest(f"a schedule has no field {unknown[0]!r}")
        end_at = stored.get("end_at")
        return cls(
            cron=_text(stored.get("cron"), "cron"),
            every=_text(stored.get("every"), "every"),
            timezone=_text(stored.get("timezone"), "timezone") or "UTC",
            start_at=_check_minute(stored.get("start_at"), "start_at"),
            end_at=None if end_at is None else _check_minute(end_at, "end_at"),
        )

    # -- when the runs fall -------------------------------------------------------------------

    def next_runs(self, after: int, count: int) -> list[int]:
        """The first ``count`` runs strictly after the minute ``after``, fewer when the schedule ends."""
        return list(islice(self._runs_after(after), max(count, 0)))

    def run_at_or_after(self, minute: int) -> int | None:
        """The first run at or after ``minute``, or None when the schedule has ended by then."""
        return next(self._runs_after(minute - MINUTE), None)

    def missed_runs(self, handled: int, now: int, max_delay: int, limit: int = MISSED_RUNS_LISTED) -> MissedRuns:
        """The outage rule: the runs after ``handled`` (the last minute already dealt with) and at or
        before ``now``. Only the most recent is called, if ``max_delay`` (minutes) has not run out;
        the others are skipped. At most ``limit`` + 2 runs are looked at, however long the outage."""
        newest_first = list(islice(self._runs_until(now, after=handled), limit + 2))
        if not newest_first:
            return MissedRuns()
        latest = newest_first[0]
        callable_ = now < latest + max_delay * MINUTE
        skipped = newest_first[1:] if callable_ else newest_first
        return MissedRuns(
            call=latest if callable_ else None,
            skip=tuple(reversed(skipped[:limit])),
            more_skipped=len(skipped) > limit,
        )

    def _runs_after(self, after: int) -> Iterator[int]:
        """The runs strictly after ``after``, in order."""
        after = max(after - after % MINUTE, self.start_at - MINUTE)
        runs = self._cron_runs_after(after) if self.cron is not None else self._interval_runs_after(after)
        for run in runs:
            if self.end_at is not None and run > self.end_at:
                return
            yield run

    def _runs_until(self, until: int, after: int) -> Iterator[int]:
        """The runs at or before ``until`` and strictly after ``after``, newest first."""
        until -= until % MINUTE
        if self.end_at is not None:
            until = min(until, self.end_at)
        lowest = max(after, self.start_at - MINUTE)
        runs = self._cron_runs_until(until) if self.cron is not None else self._interval_runs_until(until)
        for run in runs:
            if run <= lowest:
                return
            yield run

    def _interval_runs_after(self, after: int) -> Iterator[int]:
        step = self._interval
        run = self.start_at + ((after - self.start_at) // step + 1) * step
        while True:
            yield run
            run += step

    def _interval_runs_until(self, until: int) -> Iterator[int]:
        step = self._interval
        run = self.start_at + (until - self.start_at) // step * step
        while True:
            yield run
            run -= step

    def _cron_runs_after(self, after: int) -> Iterator[int]:
        # Every wall-clock time maps to a run no earlier than the one before it, so the wall-clock
        # times after `after`'s map to runs in order; those that map to `after` or earlier (the rest of
        # a repeated hour's first pass, or a gap folded into one minute) are left out.
        zone = self._zone
        last = after
        for wall in CronSim(self._cron_fields, _wall(after, zone)):
            run = _instant(wall, zone)
            if run > last:
                last = run
                yield run

    def _cron_runs_until(self, until: int) -> Iterator[int]:
        zone = self._zone
        wall = _wall(until, zone)
        # In a repeated hour, wall-clock times later than `until`'s may have happened before it (on the
        # first pass): start from the end of the repetition.
        wall += max(timedelta(0), _offset(wall, zone, fold=0) - _offset(wall, zone, fold=1))
        last = until + MINUTE
        for local in CronSim(self._cron_fields, wall + timedelta(minutes=1), reverse=True):
            run = _instant(local, zone)
            if run < last:
                last = run
                yield run

    @cached_property
    def _cron_fields(self) -> str:
        assert self.cron is not None
        return _cron_fields(self.cron)

    @cached_property
    def _interval(self) -> int:
        assert self.every is not None
        return _interval_seconds(self.every)

    @cached_property
    def _zone(self) -> ZoneInfo:
        if self.timezone not in _zone_names():
            raise InvalidRequest(
                f'timezone {self.timezone!r} is not an IANA time zone name such as "Europe/Lisbon" or "UTC"'
            )
        return ZoneInfo(self.timezone)


# -- validation ---------------------------------------------------------------------------------


def _cron_fields(expression: str) -> str:
    """Check ``expression`` and return its five fields (an alias replaced by them)."""
    if expression.startswith("@"):
        fields = CRON_ALIASES.get(expression.lower())
        if fields is None:
            raise _cron_error(expression, f"unknown alias; use one of {', '.join(CRON_ALIASES)}")
        return fields
    parts = expression.split()
    if len(parts) != len(_CRON_FIELDS):
        names = " ".join(field.name for field in _CRON_FIELDS)
        raise _cron_error(expression, f"has {len(parts)} fields, not 5 ({names}) or an alias like @daily")
    fields = " ".join(_cron_field(part, field, expression) for part, field in zip(parts, _CRON_FIELDS, strict=True))
    try:
        CronSim(fields, datetime(2000, 1, 1))
    except CronSimError:
        # The syntax was checked above; what cronsim still refuses is a day of the month that none
        # of the months has (0 0 30 2 *).
        raise _cron_error(expression, "can never run: none of its months has that day of the month") from None
    return fields


def _cron_field(text: str, field: _CronField, expression: str) -> str:
    """Check one field of ``expression`` and return it as cronsim is to read it."""
    items = []
    for item in text.split(","):
        if not item:
            raise _cron_error(expression, f"{field.name} list {text!r} has an empty item")
        match = _CRON_ITEM.fullmatch(item)
        if match is None:
            raise _cron_error(expression, f"{field.name} {item!r} is not valid; {field.hint}")
        first, last, step = match["first"], match["last"], match["step"]
        if step is not None and int(step) == 0:
            raise _cron_error(expression, f"{field.name} step /{step} must be at least 1")
        if first is not None and last is not None:
            low, high = field.value(first, expression), field.value(last, expression)
            if high < low:
                raise _cron_error(expression, f"{field.name} range {first}-{last} goes backwards")
            if high == low:
                # cronsim 2.8 reads "5-5/2" as "5/2" (from 5 to the end); it means just 5
                items.append(first)
                continue
        elif first is not None:
            field.value(first, expression)
        items.append(item)
    return ",".join(items)


def _cron_error(expression: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"cron {expression!r}: {problem}")


def _interval_seconds(every: str) -> int:
    match = _EVERY.fullmatch(every)
    if match is None:
        raise InvalidRequest(
            f'every {every!r} is not an interval: use a whole number followed by m, h or d, e.g. "15m", "6h", "1d"'
        )
    seconds = int(match[1]) * UNIT_SECONDS[match[2]]
    if seconds == 0:
        raise InvalidRequest(f"every {every!r} is too short: at least 1m")
    if seconds > MAX_EVERY_SECONDS:
        raise InvalidRequest(f"every {every!r} is too long: at most {MAX_EVERY_SECONDS // 86400}d")
    return seconds


def _text(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string")
    text = " ".join(value.split())
    if not text:
        raise InvalidRequest(f"{field} must not be empty")
    if len(text) > MAX_FIELD_LENGTH:
        raise InvalidRequest(f"{field} is too long: at most {MAX_FIELD_LENGTH} characters")
    return text


def _check_minute(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{field} must be a Unix timestamp")
    if value % MINUTE:
        raise InvalidRequest(f"{field} {value} is not on a minute boundary (must be divisible by 60)")
    return value


@cache
def _zone_names() -> frozenset[str]:
    """The IANA names the pinned tzdata package knows: the same on every machine, whatever its own."""
    return frozenset(resources.files("tzdata").joinpath("zones").read_text("utf-8").split())


# -- wall clock and instants --------------------------------------------------------------------


def _wall(instant: int, zone: ZoneInfo) -> datetime:
    """The wall-clock time of ``zone`` at ``instant``, naive: what cron fields are matched against."""
    return datetime.fromtimestamp(instant, zone).replace(tzinfo=None, fold=0)


def _offset(wall: datetime, zone: ZoneInfo, fold: int) -> timedelta:
    return wall.replace(tzinfo=zone, fold=fold).utcoffset() or timedelta(0)


def _instant(wall: datetime, zone: ZoneInfo) -> int:
    """The Unix minute at which a run at wall-clock time ``wall`` happens in ``zone``.

    A time that happens twice is taken at its first occurrence (fold 0); a time that does not exist
    at the first minute after the gap, that is the transition itself.
    """
    first = int(wall.replace(tzinfo=zone, fold=0).timestamp())
    if _wall(first, zone) == wall:
        return first
    # In a gap, fold 0 reads the time with the offset before the transition (an instant after it) and
    # fold 1 with the offset after it (an instant before it): the transition lies between.
    before, after = int(wall.replace(tzinfo=zone, fold=1).timestamp()), first
    while after - before > MINUTE:
        middle = (before + after) // 2 // MINUTE * MINUTE
        if _wall(middle, zone) > wall:
            after = middle
        else:
            before = middle
    return after
