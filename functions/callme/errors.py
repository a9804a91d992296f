"""Domain errors: what went wrong, in the domain's words. The API module maps each to an HTTP status
(handlers/api.py, ``STATUSES``); nothing here knows HTTP."""

from __future__ import annotations


class CallmeError(Exception):
    """Base of every error a client can cause or observe."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(CallmeError):
    """The request is malformed or breaks a rule; the message names the field."""


class TaskNotFound(CallmeError):
    """No such entry, or no entry of such a task."""


class ScheduleNotFound(CallmeError):
    """No such recurring schedule."""


class Conflict(CallmeError):
    """The request is valid but clashes with the entry's current state."""


class PayloadTooLarge(CallmeError):
    """The request body or the payload is larger than the limits allow."""


class ServiceUnavailable(CallmeError):
    """Storage could not answer in time (or an entry changed too fast); the same request may be retried."""
