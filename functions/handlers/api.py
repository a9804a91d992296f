"""The task API: API Gateway (REST) -> Powertools resolver -> TaskService.

This module is the one place where HTTP meets the domain: routes, query strings, request bodies
parsed into typed requests (callme.validation), status codes, and the one mapping of domain errors
to responses (STATUSES).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from callme import deadline
from callme.errors import (
    CallmeError,
    Conflict,
    InvalidRequest,
    PayloadTooLarge,
    ScheduleNotFound,
    ServiceUnavailable,
    TaskNotFound,
)
from callme.stats import recent
from callme.task import NAME_RULE, Task, TaskKey, check_name
from callme.validation import (
    RescheduleRequest,
    TaskRequest,
    check_query,
    flag,
    parse_batch,
    parse_batch_item,
    parse_json_object,
    parse_listing,
    parse_reschedule_request,
    parse_schedule_listing,
    parse_schedule_request,
    parse_stats_minutes,
    parse_task_request,
    single_values,
)
from callme.views import AnswerFormat, ItemResult, results_view, schedule_view, schedules_view, task_view, tasks_view

from . import console, wiring
from . import openapi as openapi_document
from .observability import logger

app = APIGatewayRestResolver()
_ROUTES: dict[str, list[str]] = {}
_NAMED_PREFIXES = ("/task/", "/status/", "/reschedule/", "/schedule/")
# Error messages may quote what the client sent; beyond this many characters they are cut, so that
# every error answer stays far under Lambda's response limit (12 bytes a character at worst, carried).
_ERROR_CHARACTERS = 2000


def route(rule: str, method: str) -> Callable[[Callable[..., Response[str]]], Callable[..., Response[str]]]:
    """Register a route, remembering its methods so that other methods get a 405."""
    _ROUTES.setdefault(rule, []).append(method)
    return app.route(rule, method)


# -- reading ------------------------------------------------------------------------------------


@route("/task/<ident>", "GET")
@route("/status/<ident>", "GET")
def read(ident: str) -> Response[str]:
    service = wiring.task_service()
    if "@" in ident:
        key = TaskKey.parse(ident)
        # One path, /task/{ident}, serves both forms: the listing parameters are checked here as on
        # the list, and have nothing to shape.
        parse_listing(_query(), service.limits, name=key.name)
        return _json(200, task_view(service.get_entry(key)))
    listing = parse_listing(_query(), service.limits, name=ident)
    listed = service.list_entries(check_name(ident), listing, _format())
    return _json(200, tasks_view(listed.tasks, listed.next))


@route("/task", "GET")
@route("/status", "GET")
def read_all() -> Response[str]:
    service = wiring.task_service()
    listed = service.list_entries(None, parse_listing(_query(), service.limits), _format())
    return _json(200, tasks_view(listed.tasks, listed.next))


# -- writing ------------------------------------------------------------------------------------


@route("/task/<ident>", "PUT")
def put_task(ident: str) -> Response[str]:
    check_query(_query(), ())
    settings = wiring.settings()
    name = check_name(ident)
    body = parse_json_object(_body(), settings.limits)
    request = parse_task_request(name, body, wiring.clock().now(), settings.limits, settings.egress)
    task, created = wiring.task_service().put_task(request)
    return _json(201 if created else 200, task_view(task))


@route("/tasks", "POST")
def put_tasks() -> Response[str]:
    check_query(_query(), ())
    settings = wiring.settings()
    items = parse_batch(_body(), settings.limits)
    now = wiring.clock().now()
    requests = [_batch_item(item, now) for item in items]
    results = [_item_result(outcome) for outcome in wiring.task_service().put_tasks(requests)]
    # Items storage could not take are each a 503: say when to send them again, as for one PUT.
    again = {"Retry-After": "1"} if any(result.status == 503 for result in results) else None
    return _json(200, results_view(results, _format()), again)


def _batch_item(item: Any, now: float) -> TaskRequest | CallmeError:
    settings = wiring.settings()
    try:
        return parse_batch_item(item, now, settings.limits, settings.egress)
    except CallmeError as refusal:
        return refusal


def _item_result(outcome: tuple[Task, bool] | CallmeError) -> ItemResult:
    """One item's result, its status as PUT /task would answer it."""
    if isinstance(outcome, CallmeError):
        if isinstance(outcome, ServiceUnavailable):
            logger.warning("storage unavailable", extra={"error": outcome.message})
        return ItemResult(status_of(outcome), error=_cut(outcome.message))
    task, created = outcome
    return ItemResult(201 if created else 200, task)


@route("/task/<ident>", "DELETE")
def cancel(ident: str) -> Response[str]:
    check_query(_query(), ())
    service = wiring.task_service()
    if "@" in ident:
        return _json(200, task_view(service.cancel_entry(TaskKey.parse(ident))))
    done = service.cancel_name(check_name(ident), _format())
    if done.unfinished is not None:
        message = (
            f"cancelled {done.count} pending entries of task {ident!r}, then stopped ({done.unfinished}); "
            f"some may still be pending: send DELETE /task/{ident} again to cancel the rest"
        )
        return error_response(ServiceUnavailable(message), {"cancelled": done.count})
    return _json(200, {"cancelled": done.count, **tasks_view(done.first)})


@route("/reschedule/<ident>", "POST")
def reschedule(ident: str) -> Response[str]:
    query = _query()
    check_query(query, ("all",))
    service = wiring.task_service()
    if "@" in ident:
        key = TaskKey.parse(ident)
        created = service.reschedule_entry(key, _reschedule_request(query))
    else:
        name = check_name(ident)
        created = service.reschedule_task(name, _reschedule_request(query))
    return _json(201 if created else 200, tasks_view(created))


def _reschedule_request(query: dict[str, str]) -> RescheduleRequest:
    body = parse_json_object(_body(), wiring.settings().limits, required=False)
    return parse_reschedule_request(body, flag(query, "all"), wiring.clock().now(), wiring.settings().limits)


# -- recurring schedules (callme.schedule) ------------------------------------------------------------


@route("/schedule/<ident>", "PUT")
def put_schedule(ident: str) -> Response[str]:
    check_query(_query(), ())
    settings = wiring.settings()
    name = check_name(ident)
    body = parse_json_object(_body(), settings.limits)
    request = parse_schedule_request(name, body, wiring.clock().now(), settings.limits, settings.egress)
    scheduled, created = wiring.schedule_service().put_schedule(request)
    return _json(201 if created else 200, schedule_view(scheduled))


@route("/schedule/<ident>", "GET")
def read_schedule(ident: str) -> Response[str]:
    check_query(_query(), ())
    return _json(200, schedule_view(wiring.schedule_service().get_schedule(check_name(ident))))


@route("/schedule", "GET")
def read_schedules() -> Response[str]:
    service = wiring.schedule_service()
    listed = service.list_schedules(parse_schedule_listing(_query(), service.limits), _format())
    return _json(200, schedules_view(listed.schedules, listed.next))


@route("/schedule/<ident>", "DELETE")
def delete_schedule(ident: str) -> Response[str]:
    check_query(_query(), ())
    removal = wiring.schedule_service().delete_schedule(check_name(ident))
    cancelled = None if removal.cancelled is None else str(removal.cancelled)
    return _json(200, {**schedule_view(removal.schedule), "next_runs": [], "cancelled": cancelled})


@route("/stats", "GET")
def stats() -> Response[str]:
    minutes = parse_stats_minutes(_query())
    return _json(200, recent(wiring.api_stats().between, wiring.clock().now(), minutes))


@route("/openapi.json", "GET")
def openapi() -> Response[str]:
    return _json(200, openapi_document.document(wiring.settings().limits))


# -- the console (handlers/console.py; in AWS these paths need no key) ----------------------------


@route("/console", "GET")
def console_page() -> Response[str]:
    if app.current_event.path.endswith("/"):  # the page names its files relative to /console
        return Response(status_code=308, headers={"Location": "../console", **console.SECURITY_HEADERS})
    return _sent(console.page(app.current_event.headers.get("If-None-Match")))


@route("/console/<name>", "GET")
def console_file(name: str) -> Response[str]:
    if name == console.CONFIG:
        return _sent(console.config(wiring.settings().auth_mode, _ROUTES))
    found = console.asset(name, _query().get("v"), app.current_event.headers.get("If-None-Match"))
    if found is None:
        return _error(404, f"the console has no file {name!r}")
    return _sent(found)


def _sent(answer: console.ConsoleAnswer) -> Response[str]:
    return Response(
        status_code=answer.status, content_type=answer.content_type, body=answer.body, headers=answer.headers
    )


# -- errors -------------------------------------------------------------------------------------


# The one mapping of domain errors (callme.errors) to HTTP statuses; a subclass takes its nearest ancestor's.
STATUSES: dict[type[CallmeError], int] = {
    CallmeError: 400,
    InvalidRequest: 400,
    TaskNotFound: 404,
    ScheduleNotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    ServiceUnavailable: 503,
}


@app.exception_handler(CallmeError)  # type: ignore[untyped-decorator]
def domain_error(error: CallmeError) -> Response[str]:
    return error_response(error)


def error_response(error: CallmeError, details: dict[str, Any] | None = None) -> Response[str]:
    """A domain error as HTTP: its status (STATUSES), ``{"error": ...}`` (plus ``details``) and headers."""
    headers: dict[str, str] = {}
    if isinstance(error, ServiceUnavailable):
        headers["Retry-After"] = "1"
        logger.warning("storage unavailable", extra={"error": error.message})
    return _error(status_of(error), error.message, headers, details)


def status_of(error: CallmeError) -> int:
    """The HTTP status of a domain error: its own in STATUSES, else its nearest ancestor's."""
    return next(STATUSES[kind] for kind in type(error).__mro__ if kind in STATUSES)


def _error(
    status: int, message: str, headers: dict[str, str] | None = None, details: dict[str, Any] | None = None
) -> Response[str]:
    """``{"error": message}`` (plus ``details``)."""
    return _json(status, {"error": _cut(message), **(details or {})}, headers)


def _cut(message: str) -> str:
    """A message quoting what the client sent, cut after _ERROR_CHARACTERS."""
    if len(message) > _ERROR_CHARACTERS:
        return f"{message[:_ERROR_CHARACTERS]}... ({len(message) - _ERROR_CHARACTERS} more characters)"
    return message


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def unexpected_error(error: Exception) -> Response[str]:
    logger.exception("unexpected error")
    return _json(500, {"error": "internal error; it has been logged"})


@app.not_found
def no_route(_: Exception) -> Response[str]:
    event = app.current_event
    path = event.path.rstrip("/") or "/"
    allowed = next((methods for rule, methods in _ROUTES.items() if _matches(rule, path)), None)
    if allowed is not None and event.http_method not in allowed:
        methods = ", ".join(sorted(set(allowed)))
        return _error(405, f"method {event.http_method} is not allowed here; allowed: {methods}", {"Allow": methods})
    for prefix in _NAMED_PREFIXES:
        rest = path[len(prefix) :]
        if path.startswith(prefix) and "/" not in rest:
            return _error(400, f"{rest!r} is not a task name or <task_name>@<trigger_at>: {NAME_RULE}")
    return _json(404, {"error": f"no route {event.http_method} {event.path}; see the API reference in the README"})


def _matches(rule: str, path: str) -> bool:
    pattern = re.sub(r"<\w+>", "[^/]+", rule.rstrip("/"))
    return re.fullmatch(pattern, path) is not None


# -- plumbing -----------------------------------------------------------------------------------


def _query() -> dict[str, str]:
    event = app.current_event
    if event.multi_value_query_string_parameters:
        return single_values(event.multi_value_query_string_parameters)
    return event.query_string_parameters or {}


def _body() -> str | None:
    try:
        return app.current_event.decoded_body
    except (UnicodeDecodeError, binascii.Error):
        raise InvalidRequest("request body is not UTF-8 text") from None


def _format() -> AnswerFormat:
    query = app.current_event.query_string_parameters or {}
    return AnswerFormat(pretty="pretty" in query and (query["pretty"] or "").lower() not in ("false", "0", "no"))


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(status_code=status, content_type="application/json", body=_format().text(body), headers=headers)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("httpMethod") == "HEAD":  # API Gateway passes HEAD on; it is GET without the body, dropped there
        event = {**event, "httpMethod": "GET"}
    # Storage gives up in time for an answer (503 at worst) before Lambda cuts the function off.
    margin = wiring.settings().answer_margin_seconds  # to write the answer after the last storage call
    with deadline.within(context.get_remaining_time_in_millis() / 1000 - margin):
        return app.resolve(event, context)
