"""Domain errors. Each carries the HTTP status it maps to; the API maps them in one place."""

from __future__ import annotations


class CallmeError(Exception):
    """Base of every error a client can cause or observe."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(CallmeError):
    """The request is malformed or breaks a rule; the message names the field."""

    status = 400


class TaskNotFound(CallmeError):
    status = 404


class ScheduleNotFound(CallmeError):
    status = 404


class RouteNotFound(CallmeError):
    status = 404


class MethodNotAllowed(CallmeError):
    status = 405

    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__(f"method {method} is not allowed here; allowed: {', '.join(allowed)}")
        self.allowed = allowed


class Conflict(CallmeError):
    """The request is valid but clashes with the entry's current state."""

    status = 409


class PayloadTooLarge(CallmeError):
    status = 413


class ServiceUnavailable(CallmeError):
    """The storage could not answer after retries; the client may retry the same request."""

    status = 503
