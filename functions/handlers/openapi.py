"""The API's OpenAPI 3 document, served at ``GET /openapi.json``.

It describes what a client may send and every answer it can get; the schema-driven fuzzer
(schemathesis, in the test suite) checks the running API against it.
"""

from __future__ import annotations

from typing import Any

from callme.validation import TASK_FIELDS

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$", "example": "simpletask"}
_IDENT = {
    "type": "string",
    "description": "A task name, or one entry as <task_name>@<trigger_at>",
    "example": "faraway@1858809600",
}
_NULLABLE_INT = {"type": "integer", "nullable": True}
_NULLABLE_NUMBER = {"type": "number", "nullable": True}
_NULLABLE_STRING = {"type": "string", "nullable": True}

_TIME = {
    "description": "A Unix timestamp divisible by 60 (number or string), or +<integer>{m,h,d}",
    "oneOf": [
        {"type": "integer", "minimum": 0, "multipleOf": 60},
        {"type": "string", "pattern": "^(\\+[0-9]{1,6}[mhd]|[0-9]{1,12})$", "example": "+6h"},
    ],
}

TASK_INPUT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["trigger_at", "callback"],
    "properties": {
        "task_name": _NAME,
        "trigger_at": _TIME,
        "callback": {"type": "string", "format": "uri", "maxLength": 2048, "example": "https://example.com/run-it"},
        "callback_method": {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"], "default": "GET"},
        "payload": {"type": "string", "default": "", "description": "At most 64 KiB (UTF-8)"},
        "expected_http_status": {"type": "integer", "minimum": 100, "maximum": 599, "default": 200},
        "retry": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
        "max_delay": {"type": "integer", "minimum": 1, "maximum": 1440, "default": 10},
    },
}

ATTEMPT = {
    "type": "object",
    "required": ["at", "status", "error", "duration_ms"],
    "properties": {
        "at": {"type": "number"},
        "status": _NULLABLE_INT,
        "error": _NULLABLE_STRING,
        "duration_ms": {"type": "integer"},
    },
}

TASK = {
    "type": "object",
    "required": [*TASK_FIELDS, "task_state", "attempts", "history", "webhook_id"],
    "properties": {
        "task_name": {"type": "string"},
        "trigger_at": {"type": "integer"},
        "callback": {"type": "string"},
        "callback_method": {"type": "string"},
        "payload": {"type": "string"},
        "expected_http_status": {"type": "integer"},
        "retry": {"type": "integer"},
        "max_delay": {"type": "integer"},
        "task_state": {
            "type": "string",
            "enum": ["pending", "running", "successful", "failed", "skipped", "cancelled"],
        },
        "attempts": {"type": "integer"},
        "response_status": _NULLABLE_INT,
        "response_body": _NULLABLE_STRING,
        "executed_at": _NULLABLE_NUMBER,
        "next_attempt_at": _NULLABLE_NUMBER,
        "history": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
        "webhook_id": {"type": "string"},
        "created_at": {"type": "number"},
        "updated_at": {"type": "number"},
        "rescheduled_from": _NULLABLE_STRING,
        "rescheduled_to": _NULLABLE_STRING,
        "expires_at": _NULLABLE_INT,
    },
}

TASK_LIST = {
    "type": "object",
    "required": ["tasks"],
    "properties": {
        "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
        "next": {"type": "string", "description": "Pass back as start_from for the next page"},
    },
}

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        400: "Bad input; the error names the field",
        404: "No such entry or task",
        405: "Method not allowed here",
        409: "Conflicts with the entry's state",
        413: "Body or payload too large",
        503: "Storage unavailable; retry",
    }
    return {str(s): _json("Error", meaning[s]) for s in statuses}


_PRETTY = {
    "name": "pretty",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "Indent the JSON answer (present, or true)",
}
_LISTING = [
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
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
]
_IDENT_PARAM = {"name": "ident", "in": "path", "required": True, "schema": _IDENT}
_READ = {
    "parameters": [_IDENT_PARAM, *_LISTING],
    "responses": {
        "200": {
            "description": "One entry (for name@ts) or a page of entries (for a name)",
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [{"$ref": "#/components/schemas/Task"}, {"$ref": "#/components/schemas/TaskList"}]
                    }
                }
            },
        },
        **_errors(400, 404, 503),
    },
}
_READ_ALL = {"parameters": _LISTING, "responses": {"200": _json("TaskList", "A page of entries"), **_errors(400, 503)}}

DOCUMENT: dict[str, Any] = {
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
                "parameters": [{"name": "ident", "in": "path", "required": True, "schema": _NAME}, _PRETTY],
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
            "get": {"summary": "Same as GET /status/{ident}", **_READ},
            "delete": {
                "summary": "Cancel one pending entry, or every pending entry of a name",
                "parameters": [_IDENT_PARAM, _PRETTY],
                "responses": {
                    "200": {
                        "description": "The cancelled entry, or the list of them",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Task"},
                                        {"$ref": "#/components/schemas/TaskList"},
                                    ]
                                }
                            }
                        },
                    },
                    **_errors(400, 404, 409, 503),
                },
            },
        },
        "/task/": {"get": {"summary": "Same as GET /status/", **_READ_ALL}},
        "/status/{ident}": {"get": {"summary": "One entry, or the entries of a task (paginated)", **_READ}},
        "/status/": {"get": {"summary": "Every entry of every task (paginated)", **_READ_ALL}},
        "/reschedule/{ident}": {
            "post": {
                "summary": "New pending entries for failed and skipped entries (all finished ones with all=true)",
                "parameters": [
                    _IDENT_PARAM,
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
                                "properties": {"trigger_at": _TIME},
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
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
    },
    "components": {
        "schemas": {"TaskInput": TASK_INPUT, "Task": TASK, "TaskList": TASK_LIST, "Attempt": ATTEMPT, "Error": ERROR},
        "securitySchemes": {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}},
    },
    "security": [{"api_key": []}],
}
