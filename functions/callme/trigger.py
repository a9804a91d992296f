"""Parsing ``trigger_at``: an absolute Unix minute or a relative ``+<int>{m,h,d}``."""

from __future__ import annotations

import re

from .clock import MINUTE, minute_of
from .errors import InvalidRequest

# The two forms as regular expressions (matched whole), also published in the OpenAPI document.
RELATIVE_PATTERN = r"\+([0-9]{1,12})([mhd])"
ABSOLUTE_PATTERN = r"[0-9]{1,15}"
_RELATIVE = re.compile(RELATIVE_PATTERN)
_ABSOLUTE = re.compile(ABSOLUTE_PATTERN)
_UNIT_SECONDS = {"m": MINUTE, "h": 60 * MINUTE, "d": 24 * 60 * MINUTE}


def parse_trigger_at(value: object, now: float, max_ahead_seconds: int, field: str = "trigger_at") -> int:
    """Resolve ``value`` to a Unix minute not before the current one.

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
            resolved = current + amount * _UNIT_SECONDS[unit]
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
    if timestamp < current:
        raise InvalidRequest(f"{field} {timestamp} is in the past (the current minute is {current})")
    _check_horizon(timestamp, current, max_ahead_seconds, field, value)
    return timestamp


def _check_horizon(resolved: int, current: int, max_ahead_seconds: int, field: str, value: object) -> None:
    if resolved - current > max_ahead_seconds:
        days = max_ahead_seconds // 86400
        raise InvalidRequest(f"{field} {value!r} is too far ahead: tasks can be scheduled at most {days} days ahead")
