"""The API's OpenAPI 3 document, served at ``GET /openapi.json``.

It describes what a client may send and every answer it can get. It is built from the definitions
validation itself uses (the name and time patterns, the methods, the states, the defaults, the
integer ranges) and the limits in force, so the two cannot drift apart; what a schema cannot say
is listed in RULES_BEYOND_THE_SCHEMA. The schema-driven fuzzer (schemathesis, in the test suite)
checks the running API against it.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from callme.headers import (
    FORBIDDEN_NAMES,
    FORBIDDEN_PREFIXES,
    MASK,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    NAME_SYMBOLS,
    VALUE_PATTERN_TEXT,
)
from callme.hooks import HookState
from callme.settings import DAY, Limits
from callme.stats import DEFAULT_MINUTES, FEWEST_MINUTES, MOST_MINUTES, OUTCOMES
from callme.task import METHODS, NAME_PATTERN, TaskState
from callme.trigger import ABSOLUTE_PATTERN, DURATION, RELATIVE_PATTERN
from callme.validation import SCHEDULE_FIELDS, TASK_FIELDS, default_of, integer_pattern, integer_ranges

# What a body may hold that the schema cannot say: every document-valid body the API refuses breaks
# one of these (tests/integration/test_openapi_document.py checks it against the API's answers).
RULES_BEYOND_THE_SCHEMA = {
    "past": "trigger_at is not before the current minute",
    "horizon": "trigger_at is at most {ahead_days} days ahead",
    "minute": "a trigger_at sent as a string of digits is divisible by 60, as a number must be",
    "callable": (
        "trigger_at plus max_delay minutes is after the next minute, when the dispatcher next runs "
        '(so "+0m" needs a max_delay of 2 or more)'
    ),
    "callback": (
        "callback is a valid URL with a well-formed host (DNS labels, IDNA A-labels or an IP literal), "
        "no user:password@, a port from 1 to 65535, and an address "
        "callbacks may reach (not loopback, private, link-local and the like; see the README's Security)"
    ),
    "task_name": "task_name, when given, equals the name in the path",
    "headers": (
        "headers: each name an HTTP token (letters, digits and {name_symbols}) given once whatever its case, "
        "not one callme sets or the connection owns ({forbidden}); names and values add up to at most "
        "{header_bytes} bytes; the deployment has a headers key"
    ),
    "on_failure": "on_failure follows the rules of callback",
    "payload": "payload is at most {payload_bytes} bytes of UTF-8 (Unicode text: no unpaired surrogates)",
    "body": "the request body is at most {body_bytes} bytes",
}


# What a schedule's body must also hold, beyond the schema (and the task's rules, but trigger_at's).
SCHEDULE_RULES = {
    "timing": "exactly one of cron and every",
    "cron": (
        "cron is 5 fields (minute hour day-of-month month day-of-week) with Vixie cron's ranges, steps, "
        "lists and names, or one of @hourly @daily @weekly @monthly @yearly, and matches some date"
    ),
    "every": "every is at least 1m and at most a year",
    "timezone": "timezone is an IANA time zone name",
    "bounds": "start_at and end_at take trigger_at's forms (start_at may be past); end_at is not before start_at",
    "ends": "the schedule has a run after now",
}


def whole(pattern: str) -> str:
    """A Python pattern matched with ``fullmatch``, as an anchored ECMA-262 pattern for OpenAPI."""
    return f"^(?:{pattern})$"


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


def _integer(low: int, high: int, default: int) -> dict[str, Any]:
    """An integer field: a JSON number, or a string of digits (validation.integer takes both)."""
    return {
        "oneOf": [
            {"type": "integer", "minimum": low, "maximum": high},
            {"type": "string", "pattern": whole(integer_pattern(low, high))},
        ],
        "description": f"{low} to {high}, as a number or a string of digits",
        "default": default,
    }


def _time(limits: Limits) -> dict[str, Any]:
    return {
        "description": (
            "A Unix timestamp divisible by 60 (number or string), or +<integer>{m,h,d} from the start of the "
            f"current minute; not in the past, at most {limits.max_ahead_seconds // DAY} days ahead"
        ),
        "oneOf": [
            {"type": "integer", "multipleOf": 60},
            {"type": "string", "pattern": whole(f"{RELATIVE_PATTERN}|{ABSOLUTE_PATTERN}"), "example": "+6h"},
        ],
    }


def _task_input(limits: Limits) -> dict[str, Any]:
    rules = {
        key: rule.format(
            ahead_days=limits.max_ahead_seconds // DAY,
            payload_bytes=limits.max_payload_bytes,
            body_bytes=limits.max_body_bytes,
            name_symbols=NAME_SYMBOLS,
            forbidden=", ".join([*FORBIDDEN_NAMES, *(f"{prefix}*" for prefix in FORBIDDEN_PREFIXES)]),
            header_bytes=MAX_HEADER_BYTES,
        )
        for key, rule in RULES_BEYOND_THE_SCHEMA.items()
    }
    url = {
        "type": "string",
        "pattern": whole(f"{_any_case('http')}[Ss]?://[!-~]+"),
        "maxLength": limits.max_url_length,
        "example": "https://example.com/run-it",
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["trigger_at", "callback"],
        "description": "Also required, beyond this schema: " + "; ".join(rules.values()) + ".",
        "properties": {
            "task_name": {"type": "string", "pattern": whole(NAME_PATTERN.pattern), "example": "simpletask"},
            "trigger_at": _time(limits),
            "callback": url,
            "callback_method": {
                "type": "string",
                "pattern": whole("|".join(_any_case(method) for method in METHODS)),
                "description": f"{', '.join(METHODS)}, in any case",
                "default": default_of("callback_method"),
            },
            "payload": {
                "type": "string",
                "maxLength": limits.max_payload_bytes,
                "default": default_of("payload"),
                "description": f"At most {limits.max_payload_bytes} bytes of UTF-8",
            },
            **{field: _integer(low, high, default_of(field)) for field, (low, high) in integer_ranges(limits).items()},
            "headers": {
                "type": "object",
                "maxProperties": MAX_HEADERS,
                "additionalProperties": {"type": "string", "pattern": VALUE_PATTERN_TEXT},
                "description": (
                    "Extra request headers sent on every attempt; answers show each name with its value masked"
                ),
                "example": {"Authorization": "Bearer <token>"},
            },
            "on_failure": {
                **url,
                "description": "Called once (a signed POST) when the entry ends failed or skipped",
                "example": "https://example.com/callme-failed",
            },
        },
    }


def _schedule_input(limits: Limits) -> dict[str, Any]:
    """PUT /schedule/{name}: the task's fields but trigger_at, and the timing."""
    task = _task_input(limits)
    properties = {k: v for k, v in task["properties"].items() if k in SCHEDULE_FIELDS}
    bound = {**_time(limits), "description": "Any trigger_at form; start_at may be in the past"}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["callback"],
        "description": "Also required, beyond this schema: "
        + "; ".join(SCHEDULE_RULES.values())
        + "; and the task's rules that do not concern trigger_at.",
        "properties": {
            **properties,
            "cron": {"type": "string", "example": "0 9 * * MON-FRI"},
            "every": {"type": "string", "pattern": whole(DURATION), "example": "15m"},
            "timezone": {"type": "string", "default": "UTC", "example": "Europe/Lisbon"},
            "start_at": bound,
            "end_at": bound,
            "paused": {"type": "boolean", "default": False},
        },
    }


def _schedule() -> dict[str, Any]:
    task = _task()["properties"]
    nullable_string = {"type": "string", "nullable": True}
    return {
        "type": "object",
        "required": [*SCHEDULE_FIELDS, "next_runs"],
        "properties": {
            **{field: task[field] for field in TASK_FIELDS if field != "trigger_at"},
            "cron": nullable_string,
            "every": nullable_string,
            "timezone": {"type": "string"},
            "start_at": {"type": "integer"},
            "end_at": {"type": "integer", "nullable": True},
            "paused": {"type": "boolean"},
            "next_runs": {
                "type": "array",
                "items": {"type": "integer"},
                "description": "The next 5 trigger minutes (none while paused or once ended)",
            },
            "created_at": {"type": "number"},
            "updated_at": {"type": "number"},
            "cancelled": {
                **nullable_string,
                "description": "DELETE: the pending run it cancelled (<name>@<trigger_at>)",
            },
        },
    }


SCHEDULE_LIST = {
    "type": "object",
    "required": ["schedules"],
    "properties": {
        "schedules": {"type": "array", "items": {"$ref": "#/components/schemas/Schedule"}},
        "next": {"type": "string", "description": "Pass back as start_from for the next page"},
    },
}


ATTEMPT = {
    "type": "object",
    "required": ["at", "status", "error", "duration_ms"],
    "properties": {
        "at": {"type": "number"},
        "status": {"type": "integer", "nullable": True},
        "error": {"type": "string", "nullable": True},
        "duration_ms": {"type": "integer"},
    },
}


def _task() -> dict[str, Any]:
    nullable_int = {"type": "integer", "nullable": True}
    nullable_number = {"type": "number", "nullable": True}
    nullable_string = {"type": "string", "nullable": True}
    return {
        "type": "object",
        "required": [*TASK_FIELDS, "task_state", "attempts", "history", "webhook_id"],
        "properties": {
            "task_name": {"type": "string"},
            "trigger_at": {"type": "integer"},
            "callback": {"type": "string"},
            "callback_method": {"type": "string", "enum": list(METHODS)},
            "payload": {"type": "string"},
            "expected_http_status": {"type": "integer"},
            "retry": {"type": "integer"},
            "max_delay": {"type": "integer"},
            "task_state": {"type": "string", "enum": [state.value for state in TaskState]},
            "attempts": {"type": "integer"},
            "response_status": nullable_int,
            "response_body": nullable_string,
            "executed_at": nullable_number,
            "next_attempt_at": nullable_number,
            "history": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
            "webhook_id": {"type": "string"},
            "created_at": {"type": "number"},
            "updated_at": {"type": "number"},
            "rescheduled_from": nullable_string,
            "rescheduled_to": nullable_string,
            "expires_at": nullable_int,
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string", "enum": [MASK]},
                "description": "The names of the task's own headers; their values are never shown",
            },
            "on_failure": nullable_string,
            "on_failure_call": {"allOf": [{"$ref": "#/components/schemas/HookCall"}], "nullable": True},
            "schedule": {"type": "string", "description": "The recurring schedule this entry is a run of"},
        },
    }


HOOK_CALL = {
    "type": "object",
    "description": "The failure hook's call, once owed",
    "required": ["state", "attempts", "status", "error", "at", "next_at", "webhook_id"],
    "properties": {
        "state": {"type": "string", "enum": [state.value for state in HookState]},
        "attempts": {"type": "integer"},
        "status": {"type": "integer", "nullable": True},
        "error": {"type": "string", "nullable": True},
        "at": {"type": "number", "nullable": True},
        "next_at": {"type": "number", "nullable": True},
        "webhook_id": {"type": "string"},
    },
}
_TASKS = {"type": "array", "items": {"$ref": "#/components/schemas/Task"}}
TASK_LIST = {
    "type": "object",
    "required": ["tasks"],
    "properties": {
        "tasks": _TASKS,
        "next": {"type": "string", "description": "Pass back as start_from for the next page"},
    },
}
CANCELLED = {
    "type": "object",
    "required": ["cancelled", "tasks"],
    "properties": {
        "cancelled": {"type": "integer", "description": "How many pending entries were cancelled"},
        "tasks": {**_TASKS, "description": "The first of them, as many as one answer holds"},
    },
}
_LATENESS = "seconds after the start of the trigger minute that a call started, to the precision of fixed buckets"
STATS = {
    "type": "object",
    "required": ["from", "to", "minutes"],
    "properties": {
        "from": {"type": "integer", "description": "The first minute (Unix seconds)"},
        "to": {"type": "integer", "description": "The last minute: the current one"},
        "minutes": {
            "type": "array",
            "description": "Every minute from `from` to `to`, oldest first",
            "items": {
                "type": "object",
                "required": ["minute", "calls", *OUTCOMES, "lateness_p50", "lateness_p99"],
                "properties": {
                    "minute": {"type": "integer"},
                    "calls": {"type": "integer", "description": "Calls made (every attempt)"},
                    "succeeded": {"type": "integer", "description": "Entries that ended successful"},
                    "failed": {"type": "integer", "description": "Entries that ended failed"},
                    "retried": {"type": "integer", "description": "Attempts followed by a retry"},
                    "skipped": {"type": "integer", "description": "Entries skipped, past their max_delay"},
                    "lateness_p50": {"type": "number", "nullable": True, "description": f"Median {_LATENESS}"},
                    "lateness_p99": {"type": "number", "nullable": True, "description": f"99th percentile {_LATENESS}"},
                },
            },
        },
    },
}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "cancelled": {"type": "integer", "description": "DELETE /task/<name>: entries cancelled before it stopped"},
    },
}


def _batch(limits: Limits) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["tasks"],
        "description": f"At most {limits.max_batch_body_bytes} bytes in all (a PUT body's limit does not apply)",
        "properties": {
            "tasks": {
                "type": "array",
                "minItems": 1,
                "maxItems": limits.max_batch_tasks,
                "description": "Each task as PUT /task/{ident} takes it, its task_name in it; each is judged alone",
                "items": {"allOf": [{"$ref": "#/components/schemas/TaskInput"}, {"required": ["task_name"]}]},
            }
        },
    }


BATCH_RESULTS = {
    "type": "object",
    "required": ["results"],
    "properties": {
        "results": {
            "type": "array",
            "description": "One result per task sent, in the same order",
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["status", "task"],
                        "properties": {
                            "status": {"type": "integer", "enum": [200, 201], "description": "As PUT answers it"},
                            "task": {"$ref": "#/components/schemas/Task"},
                            "trimmed": {
                                "type": "string",
                                "description": "Present when the task is shown without its payload, to keep "
                                "the answer within Lambda's limit",
                            },
                        },
                    },
                    {
                        "type": "object",
                        "required": ["status", "error"],
                        "properties": {
                            "status": {"type": "integer", "enum": [400, 409, 413, 503]},
                            "error": {"type": "string", "description": "Why this task was not registered"},
                        },
                    },
                ]
            },
        }
    },
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _one_of(description: str, *schemas: str) -> dict[str, Any]:
    choices = [{"$ref": f"#/components/schemas/{schema}"} for schema in schemas]
    return {"description": description, "content": {"application/json": {"schema": {"oneOf": choices}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        400: "Bad input; the error names the field",
        404: "No such entry, task or schedule",
        405: "Method not allowed here",
        409: "Conflicts with the entry's state",
        413: "Body or payload too large",
        503: "Storage unavailable or too slow to answer in time; retry (Retry-After)",
    }
    return {str(s): _json("Error", meaning[s]) for s in statuses}


_PRETTY = {
    "name": "pretty",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "Indent the JSON answer (present, or true)",
}


def _listing(limits: Limits) -> list[dict[str, Any]]:
    return [
        _PRETTY,
        {
            "name": "start_from",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "The `next` of the previous page (<task_name>@<trigger_at>)",
        },
        {
            "name": "future_only",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "Hide entries whose trigger minute has passed",
        },
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": limits.max_page_size},
            "description": f"At most this many entries (default {limits.default_page_size}); a page also "
            "stops before the answer would grow too large",
        },
    ]


def _schedule_paths(limits: Limits, name: dict[str, Any]) -> dict[str, Any]:
    """The recurring schedules' routes (callme.schedule)."""
    path = [{"name": "name", "in": "path", "required": True, "schema": name}, _PRETTY]
    listing = [
        _PRETTY,
        {
            "name": "start_from",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "The `next` of the previous page (a schedule's name)",
        },
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": limits.max_page_size},
            "description": f"At most this many schedules (default {limits.default_page_size}); a page also "
            "stops before the answer would grow too large",
        },
    ]
    return {
        "/schedule/{name}": {
            "put": {
                "summary": "Create or change a recurring schedule (cron or every); each run is an entry <name>@<ts>",
                "parameters": path,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScheduleInput"}}},
                },
                "responses": {
                    "201": _json("Schedule", "Created"),
                    "200": _json("Schedule", "Changed (or unchanged)"),
                    **_errors(400, 409, 413, 503),
                },
            },
            "get": {
                "summary": "One schedule, with its next runs",
                "parameters": path,
                "responses": {"200": _json("Schedule", "The schedule"), **_errors(400, 404, 503)},
            },
            "delete": {
                "summary": "Stop a schedule: its pending run is cancelled, its past runs stay readable",
                "parameters": path,
                "responses": {"200": _json("Schedule", "The schedule as it was"), **_errors(400, 404, 503)},
            },
        },
        "/schedule/": {
            "get": {
                "summary": "Every schedule (paginated)",
                "parameters": listing,
                "responses": {"200": _json("ScheduleList", "A page of schedules"), **_errors(400, 503)},
            }
        },
    }


@cache
def document(limits: Limits) -> dict[str, Any]:
    """The OpenAPI document of the API under ``limits``, from the definitions validation uses."""
    name = {"type": "string", "pattern": whole(NAME_PATTERN.pattern), "example": "simpletask"}
    ident = {
        "name": "ident",
        "in": "path",
        "required": True,
        "schema": {
            "type": "string",
            "description": "A task name, or one entry as <task_name>@<trigger_at>",
            "example": "faraway@1858809600",
        },
    }
    read = {
        "parameters": [ident, *_listing(limits)],
        "responses": {
            "200": _one_of("One entry (for name@ts) or a page of entries (for a name)", "Task", "TaskList"),
            **_errors(400, 404, 503),
        },
    }
    read_all = {
        "parameters": _listing(limits),
        "responses": {"200": _json("TaskList", "A page of entries"), **_errors(400, 503)},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "callme",
            "version": "1.0",
            "description": "Schedule HTTP callbacks: register a task, and at its minute callme calls the URL.",
        },
        "paths": {
            "/task/{ident}": {
                "put": {
                    "summary": "Register an entry <name>@<trigger_at> (re-PUT replaces one not yet called)",
                    "parameters": [{"name": "ident", "in": "path", "required": True, "schema": name}, _PRETTY],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskInput"}}},
                    },
                    "responses": {
                        "201": _json("Task", "Created"),
                        "200": _json("Task", "Replaced the pending entry"),
                        **_errors(400, 409, 413, 503),
                    },
                },
                "get": {"summary": "Same as GET /status/{ident}", **read},
                "delete": {
                    "summary": "Cancel one pending entry, or every pending entry of a name",
                    "parameters": [ident, _PRETTY],
                    "responses": {
                        "200": _one_of("The cancelled entry, or how many were cancelled", "Task", "Cancelled"),
                        **_errors(400, 404, 409, 503),
                    },
                },
            },
            "/task/": {"get": {"summary": "Same as GET /status/", **read_all}},
            "/status/{ident}": {"get": {"summary": "One entry, or the entries of a task (paginated)", **read}},
            "/status/": {"get": {"summary": "Every entry of every task (paginated)", **read_all}},
            "/reschedule/{ident}": {
                "post": {
                    "summary": "New pending entries for failed and skipped entries (all finished ones with all=true)",
                    "parameters": [
                        ident,
                        _PRETTY,
                        {"name": "all", "in": "query", "required": False, "schema": {"type": "string"}},
                    ],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {"trigger_at": _time(limits)},
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json("TaskList", "The new entries"),
                        "200": _json("TaskList", "Nothing to reschedule"),
                        **_errors(400, 404, 409, 413, 503),
                    },
                }
            },
            **_schedule_paths(limits, name),
            "/stats": {
                "get": {
                    "summary": "Calls per minute by outcome, and lateness p50 / p99, as the dispatcher recorded them",
                    "parameters": [
                        _PRETTY,
                        {
                            "name": "minutes",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": FEWEST_MINUTES, "maximum": MOST_MINUTES},
                            "description": f"How many minutes up to the current one (default {DEFAULT_MINUTES})",
                        },
                    ],
                    "responses": {"200": _json("Stats", "One element per minute"), **_errors(400, 503)},
                }
            },
            "/tasks": {
                "post": {
                    "summary": f"Register up to {limits.max_batch_tasks} entries, each as PUT would, each on its own",
                    "parameters": [_PRETTY],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskBatch"}}},
                    },
                    "responses": {
                        "200": _json("BatchResults", "Each task's result, in order (some may be refused)"),
                        **_errors(400, 413),
                    },
                }
            },
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
        },
        "components": {
            "schemas": {
                "TaskInput": _task_input(limits),
                "ScheduleInput": _schedule_input(limits),
                "Schedule": _schedule(),
                "ScheduleList": SCHEDULE_LIST,
                "TaskBatch": _batch(limits),
                "BatchResults": BATCH_RESULTS,
                "Task": _task(),
                "TaskList": TASK_LIST,
                "Cancelled": CANCELLED,
                "Attempt": ATTEMPT,
                "HookCall": HOOK_CALL,
                "Stats": STATS,
                "Error": ERROR,
            },
            "securitySchemes": {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}},
        },
        "security": [{"api_key": []}],
    }
