"""Turning what a client sent (JSON bodies, query strings, path parts) into domain values.

Every rejection names the field and what is wrong with it. Unknown fields are errors, not
silently dropped. Numbers may arrive as JSON numbers or as strings of digits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .clock import minute_of
from .egress import EgressPolicy, check_callback_url
from .errors import InvalidRequest, PayloadTooLarge
from .headers import HeaderSet, check_headers
from .schedule import ScheduleRequest
from .settings import Limits
from .stats import DEFAULT_MINUTES, FEWEST_MINUTES, MOST_MINUTES
from .task import METHODS, TaskDefinition, TaskKey, TaskName, check_name
from .trigger import check_can_run, parse_trigger_at

TASK_FIELDS = (
    "task_name",
    "trigger_at",
    "callback",
    "callback_method",
    "payload",
    "expected_http_status",
    "retry",
    "max_delay",
    "headers",
    "on_failure",
)
SCHEDULE_FIELDS = (
    *(field for field in TASK_FIELDS if field != "trigger_at"),
    "cron",
    "every",
    "timezone",
    "start_at",
    "end_at",
    "paused",
)
BATCH_FIELDS = ("tasks",)
_MAX_DIGITS = 18  # of an integer sent as a string
_TRUE = ("", "true", "1", "yes")
_FALSE = ("false", "0", "no")


def parse_json_object(
    body: str | None, limits: Limits, required: bool = True, max_bytes: int | None = None
) -> dict[str, Any]:
    """Parse a request body that must be a JSON object (an empty optional body is ``{}``) of at most
    ``max_bytes`` (by default the limit on a body, ``max_body_bytes``)."""
    if body is None or not body.strip():
        if required:
            raise InvalidRequest("request body is missing: send a JSON object")
        return {}
    size = len(body.encode("utf-8"))
    most = limits.max_body_bytes if max_bytes is None else max_bytes
    if size > most:
        raise PayloadTooLarge(f"request body is {size} bytes; the limit is {most}")
    try:
        value = json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise InvalidRequest("request body is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"request body must be a JSON object, not {_json_type(value)}")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"field {key!r} appears twice")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _reject_unknown(body: Mapping[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise InvalidRequest(
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(known)}"
        )


def integer(value: object, field: str, low: int, high: int) -> int:
    """An integer given as a JSON number or a string of digits, within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidRequest(f"{field} must be an integer, not {_json_type(value)}")
    if isinstance(value, str):
        text = value[1:] if value.startswith("-") else value
        if not (text.isascii() and text.isdigit()) or len(text) > _MAX_DIGITS:
            raise InvalidRequest(f"{field} must be an integer, got {value!r}")
        value = int(value)
    if not low <= value <= high:
        raise InvalidRequest(f"{field} must be between {low} and {high}, got {value}")
    return value


def integer_pattern(low: int, high: int) -> str:
    """The strings ``integer`` accepts within ``[low, high]`` (``low`` >= 0), as a regular expression
    to match whole, written for the OpenAPI document: digits, leading zeros allowed, ``-`` only on 0."""
    if low < 0:
        raise ValueError("integer_pattern covers ranges from 0 up")
    forms = [f"-?0{{1,{_MAX_DIGITS}}}"] if low == 0 else []
    for start, stop in _digit_ranges(max(low, 1), min(high, 10**_MAX_DIGITS - 1)):
        forms.append(f"0{{0,{_MAX_DIGITS - len(str(start))}}}{_digits_between(start, stop)}")
    return "|".join(forms) or "(?!)"


def _digit_ranges(low: int, high: int) -> list[tuple[int, int]]:
    """``[low, high]`` (positive) cut where a range of same-length numbers can be written as fixed
    digits, one ``[a-b]``, then any digits: at ...9, ...99 above ``low`` and ...0, ...00 below ``high``."""
    if low > high:
        return []
    stops = {high}
    for count in range(1, len(str(high)) + 1):
        nines = int(str(low)[:-count] + "9" * count)
        if low <= nines < high:
            stops.add(nines)
        zeros = (high + 1) - (high + 1) % 10**count - 1
        if low < zeros <= high:
            stops.add(zeros)
    ranges, start = [], low
    for stop in sorted(stops):
        ranges.append((start, stop))
        start = stop + 1
    return ranges


def _digits_between(start: int, stop: int) -> str:
    pattern, free = "", 0
    for first, last in zip(str(start), str(stop), strict=True):
        if first == last:
            pattern += first
        elif (first, last) != ("0", "9"):
            pattern += f"[{first}-{last}]"
        else:
            free += 1
    return pattern + ("[0-9]" + (f"{{{free}}}" if free > 1 else "") if free else "")


@dataclass(frozen=True)
class TaskRequest:
    """``PUT /task/<name>``: the entry to register and how to call it, as judged when it was received."""

    key: TaskKey
    definition: TaskDefinition
    received_at: float  # the instant its relative trigger_at and every time rule were judged at


@dataclass(frozen=True)
class RescheduleRequest:
    """``POST /reschedule/...``: the new entry's minute (None: the next one), and whether any finished
    entry may be rescheduled (``?all=true``) or only failed and skipped ones."""

    trigger_at: int | None
    everything: bool
    received_at: float


def parse_task_request(
    name: TaskName, body: Mapping[str, Any], now: float, limits: Limits, policy: EgressPolicy
) -> TaskRequest:
    """``PUT /task/<name>`` with ``body``, received at ``now``; InvalidRequest or PayloadTooLarge
    naming the field at fault."""
    _reject_unknown(body, TASK_FIELDS)
    for required in ("trigger_at", "callback"):
        if body.get(required) is None:
            raise InvalidRequest(f"{required} is required")
    _check_body_name(name, body)
    trigger_at = parse_trigger_at(body["trigger_at"], now, limits.max_ahead_seconds)
    definition = _definition(body, limits, policy)
    check_can_run(trigger_at, definition.max_delay, now)
    return TaskRequest(TaskKey(name, trigger_at), definition, now)


def _check_body_name(name: str, body: Mapping[str, Any]) -> None:
    if "task_name" in body and body["task_name"] != name:
        raise InvalidRequest(f"task_name {body['task_name']!r} in the body differs from {name!r} in the path")


def _definition(body: Mapping[str, Any], limits: Limits, policy: EgressPolicy) -> TaskDefinition:
    """How to call, from a task's or a schedule's body (its ``callback`` present)."""
    callback = check_callback_url(body["callback"], policy, limits.max_url_length)
    method = body.get("callback_method", default_of("callback_method"))
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise InvalidRequest(f"callback_method must be one of {', '.join(METHODS)}, got {method!r}")
    payload = body.get("payload", default_of("payload"))
    if not isinstance(payload, str):
        raise InvalidRequest(f"payload must be a string, not {_json_type(payload)} (send JSON as an encoded string)")
    try:
        payload_size = len(payload.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequest("payload must be Unicode text; it holds an unpaired surrogate (\\ud800-\\udfff)") from None
    if payload_size > limits.max_payload_bytes:
        raise PayloadTooLarge(f"payload is {payload_size} bytes; the limit is {limits.max_payload_bytes}")
    numbers = {
        name: integer(body.get(name, default_of(name)), name, low, high)
        for name, (low, high) in integer_ranges(limits).items()
    }
    on_failure = body.get("on_failure")
    if on_failure is not None:
        on_failure = check_callback_url(on_failure, policy, limits.max_url_length, field="on_failure")
    return TaskDefinition(
        callback=callback,
        callback_method=method.upper(),
        payload=payload,
        expected_http_status=numbers["expected_http_status"],
        retry=numbers["retry"],
        max_delay=numbers["max_delay"],
        headers=parse_headers(body.get("headers")),
        on_failure=on_failure,
    )


def parse_schedule_request(
    name: TaskName, body: Mapping[str, Any], now: float, limits: Limits, policy: EgressPolicy
) -> ScheduleRequest:
    """``PUT /schedule/<name>`` with ``body``, received at ``now``: the task's fields but ``trigger_at``,
    exactly one of ``cron`` and ``every``, ``timezone``, ``start_at`` / ``end_at`` (``trigger_at``'s
    forms; ``start_at``, the anchor of ``every``, may be past) and ``paused``."""
    if "trigger_at" in body:
        raise InvalidRequest('a schedule has no trigger_at: give cron (e.g. "0 9 * * MON-FRI") or every (e.g. "15m")')
    _reject_unknown(body, SCHEDULE_FIELDS)
    if body.get("callback") is None:
        raise InvalidRequest("callback is required")
    _check_body_name(name, body)
    definition = _definition(body, limits, policy)
    bounds = {
        field: None
        if body.get(field) is None
        else parse_trigger_at(body[field], now, limits.max_ahead_seconds, field, past=field == "start_at")
        for field in ("start_at", "end_at")
    }
    paused = body.get("paused", False)
    if not isinstance(paused, bool):
        raise InvalidRequest(f"paused must be true or false, not {_json_type(paused)}")
    request = ScheduleRequest(
        name=name,
        definition=definition,
        cron=body.get("cron"),
        every=body.get("every"),
        timezone=body.get("timezone"),
        start_at=bounds["start_at"],
        end_at=bounds["end_at"],
        paused=paused,
        received_at=now,
    )
    request.recurrence(minute_of(now))  # checks the timing (InvalidRequest naming the field)
    return request


def parse_headers(value: object) -> HeaderSet | None:
    """The ``headers`` field: a JSON object of header names to string values (callme.headers)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(f"headers must be an object of header names to string values, not {_json_type(value)}")
    for name, text in value.items():
        if not isinstance(text, str):
            raise InvalidRequest(f"headers: the value of {name!r} must be a string, not {_json_type(text)}")
    return check_headers(value)


def parse_batch(body: str | None, limits: Limits) -> list[Any]:
    """``POST /tasks``: the items of ``{"tasks": [...]}``, each to be parsed on its own
    (``parse_batch_item``), so that a bad one refuses only itself. InvalidRequest or PayloadTooLarge
    for a batch that is not one: too large, not a list, empty or over ``max_batch_tasks``."""
    document = parse_json_object(body, limits, max_bytes=limits.max_batch_body_bytes)
    _reject_unknown(document, BATCH_FIELDS)
    if "tasks" not in document:
        raise InvalidRequest('tasks is required: send {"tasks": [{"task_name": ..., ...}, ...]}')
    items = document["tasks"]
    if not isinstance(items, list):
        raise InvalidRequest(f"tasks must be an array of tasks, not {_json_type(items)}")
    if not 1 <= len(items) <= limits.max_batch_tasks:
        raise InvalidRequest(f"tasks holds {len(items)} tasks; send 1 to {limits.max_batch_tasks} in one request")
    return items


def parse_batch_item(item: Any, now: float, limits: Limits, policy: EgressPolicy) -> TaskRequest:
    """One item of ``POST /tasks``, received at ``now``: a task as ``PUT /task/<name>`` takes it, with
    its ``task_name`` in it; InvalidRequest or PayloadTooLarge naming the field at fault."""
    if not isinstance(item, dict):
        raise InvalidRequest(f"a task must be a JSON object, not {_json_type(item)}")
    name = item.get("task_name")
    if name is None:
        raise InvalidRequest("task_name is required")
    if not isinstance(name, str):
        raise InvalidRequest(f"task_name must be a string, not {_json_type(name)}")
    return parse_task_request(check_name(name), item, now, limits, policy)


def integer_ranges(limits: Limits) -> dict[str, tuple[int, int]]:
    """The integer fields of a task and the values each may take."""
    return {
        "expected_http_status": (100, 599),
        "retry": (0, limits.max_retry),
        "max_delay": (1, limits.max_max_delay),
    }


def default_of(name: str) -> Any:
    """The value a task field takes when the body leaves it out."""
    return next(f.default for f in fields(TaskDefinition) if f.name == name)


def parse_reschedule_request(
    body: Mapping[str, Any], everything: bool, now: float, limits: Limits
) -> RescheduleRequest:
    """``POST /reschedule/...`` with ``body`` (its optional ``trigger_at``), received at ``now``."""
    _reject_unknown(body, ("trigger_at",))
    trigger_at = None
    if body.get("trigger_at") is not None:
        trigger_at = parse_trigger_at(body["trigger_at"], now, limits.max_ahead_seconds)
    return RescheduleRequest(trigger_at, everything, now)


def single_values(params: Mapping[str, list[str]]) -> dict[str, str]:
    """The query string as one value per parameter. A repeated parameter is refused, as a
    duplicate body field is, rather than silently taking one of its values."""
    repeated = sorted(name for name, values in params.items() if len(values) > 1)
    if repeated:
        listed = ", ".join(f"{name!r} ({len(params[name])} times)" for name in repeated)
        raise InvalidRequest(f"query parameter{'s' if len(repeated) > 1 else ''} {listed} repeated; give each once")
    return {name: values[0] for name, values in params.items() if values}


def check_query(params: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(allowed) - {"pretty"})
    if unknown:
        allowed_text = ", ".join(("pretty", *allowed))
        raise InvalidRequest(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"allowed here: {allowed_text}"
        )


def flag(params: Mapping[str, str], name: str) -> bool:
    """A boolean query parameter: present with no value, ``true`` or ``1`` mean yes."""
    if name not in params:
        return False
    value = (params[name] or "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidRequest(f"query parameter {name} must be true or false, got {params[name]!r}")


@dataclass(frozen=True)
class Listing:
    """A page request of ``GET /status/...``."""

    start_from: TaskKey | None
    future_only: bool
    limit: int


def parse_listing(params: Mapping[str, str], limits: Limits, name: str | None = None) -> Listing:
    check_query(params, ("start_from", "future_only", "limit"))
    start_from = None
    if params.get("start_from"):
        start_from = TaskKey.parse(params["start_from"], "start_from")
        if name is not None and start_from.name != name:
            raise InvalidRequest(
                f"start_from {params['start_from']!r} belongs to task {start_from.name!r}, not {name!r}"
            )
    limit = limits.default_page_size
    if "limit" in params:
        limit = integer(params["limit"], "limit", 1, limits.max_page_size)
    return Listing(start_from, flag(params, "future_only"), limit)


def parse_stats_minutes(params: Mapping[str, str]) -> int:
    """``GET /stats``: how many minutes, up to the current one, to show (``minutes``)."""
    check_query(params, ("minutes",))
    if "minutes" not in params:
        return DEFAULT_MINUTES
    return integer(params["minutes"], "minutes", FEWEST_MINUTES, MOST_MINUTES)


@dataclass(frozen=True)
class ScheduleListing:
    """A page request of ``GET /schedule/``: after the schedule ``start_from``, at most ``limit``."""

    start_from: str | None
    limit: int


def parse_schedule_listing(params: Mapping[str, str], limits: Limits) -> ScheduleListing:
    check_query(params, ("start_from", "limit"))
    start_from = check_name(params["start_from"]) if params.get("start_from") else None
    limit = limits.default_page_size
    if "limit" in params:
        limit = integer(params["limit"], "limit", 1, limits.max_page_size)
    return ScheduleListing(start_from, limit)
