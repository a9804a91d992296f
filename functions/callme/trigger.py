"""Parsing ``trigger_at``: an absolute Unix minute or a relative ``+<int>{m,h,d}``; and whether an
entry due then can be called at all."""

from __future__ import annotations

import re

from .clock import MINUTE, minute_of
from .errors import InvalidRequest

# A duration ``<int>{m,h,d}``: the relative form of trigger_at after its ``+``, and a schedule's ``every``.
DURATION = r"([0-9]{1,12})([mhd])"
UNIT_SECONDS = {"m": MINUTE, "h": 60 * MINUTE, "d": 24 * 60 * MINUTE}
# The two forms of trigger_at as regular expressions (matched whole), also published in the OpenAPI document.
RELATIVE_PATTERN = r"\+" + DURATION
ABSOLUTE_PATTERN = r"[0-9]{1,15}"
_RELATIVE = re.compile(RELATIVE_PATTERN)
_ABSOLUTE = re.compile(ABSOLUTE_PATTERN)


def parse_trigger_at(
    value: object, now: float, max_ahead_seconds: int, field: str = "trigger_at", past: bool = False
) -> int:
    """Resolve ``value`` to a Unix minute not before the current one (any minute with ``past``).

    Absolute values are Unix timestamps divisible by 60, as a JSON number or a string of digits.
    Relative values ``+<int>{m,h,d}`` count from the start of the current minute. The match is
    strict: ``+6hx``, ``6h``, ``+6`` and ``+-1m`` are errors, as is anything more than
    ``max_ahead_seconds`` in the future.
    """
    current = minute_of(now)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidRequest(f'{field} must be a Unix timestamp (number or string) or a relative time like "+6h"')
    if isinstance(value, str):
        relative = _RELATIVE.fullmatch(value)
        if relative:
            amount, unit = int(relative.group(1)), relative.group(2)
            resolved = current + amount * UNIT_SECONDS[unit]
            _check_horizon(resolved, current, max_ahead_seconds, field, value)
            return resolved
        if value.startswith("+"):
            raise InvalidRequest(
                f'{field} {value!r} is not a relative time: use +<integer> followed by m, h or d, e.g. "+6h"'
            )
        if not _ABSOLUTE.fullmatch(value):
            raise InvalidRequest(f'{field} {value!r} is neither a Unix timestamp nor a relative time like "+6h"')
        timestamp = int(value)
    else:
        timestamp = value
    if timestamp % MINUTE:
        raise InvalidRequest(f"{field} {timestamp} is not on a minute boundary (must be divisible by 60)")
    if timestamp < current and not past:
        raise InvalidRequest(f"{field} {timestamp} is in the past (the current minute is {current})")
    _check_horizon(timestamp, current, max_ahead_seconds, field, value)
    return timestamp


def _check_horizon(resolved: int, current: int, max_ahead_seconds: int, field: str, value: object) -> None:
    if resolved - current > max_ahead_seconds:
        days = max_ahead_seconds // 86400
        raise InvalidRequest(f"{field} {value!r} is too far ahead: tasks can be scheduled at most {days} days ahead")


def check_can_run(trigger_at: int, max_delay: int, now: float) -> None:
    """Refuse an entry that no dispatcher run could call.

    The dispatcher runs at second 0 of every minute, and an entry is called only before
    ``trigger_at + max_delay`` minutes. The current minute's run has started before any request
    made during that minute, so the first run that can see a new entry is the next minute's:
    the entry can never be called when ``trigger_at + 60 * max_delay <= next minute``. Since
    ``trigger_at`` is never before the current minute, that is ``trigger_at`` in the current minute
    (``"+0m"``) with ``max_delay`` 1.
    """
    next_run = minute_of(now) + MINUTE
    if trigger_at + max_delay * MINUTE <= next_run:
        needed = (next_run - trigger_at) // MINUTE + 1
        raise InvalidRequest(
            f"trigger_at {trigger_at} with max_delay {max_delay} can never be called: the dispatcher runs at "
            f"second 0 of each minute, and at its next run ({next_run}) max_delay has already run out; "
            f'use a later trigger_at (e.g. "+1m") or a max_delay of {needed} or more'
        )
