"""Making one callback: the HTTP call itself, guarded, bounded and signed.

- The address guard: each connection goes to an address resolved once and checked by the egress
  policy (requests-hardened pins the connection to the checked address and keeps TLS hostname
  verification; callme's policy is applied on top of its own). Redirects are never followed.
- The budget: connect and read timeouts per socket operation, plus a watchdog that cuts a call
  still running after ``call_budget`` seconds (slow-dripping servers), and a cap on the bytes read.
  The watchdog is ours because no synchronous HTTP library (requests, urllib3, httpx) enforces one
  deadline on a whole call: their timeouts bound each socket operation, which a drip resets.
- The signature: Standard Webhooks headers, with the same ``webhook-id`` on every retry.
- The task's own headers (``headers``), opened from storage just before the call; callme's own
  headers are set after them, and the HTTP library frames and addresses the request itself, so
  none of them can change the signature, ``Host`` or the framing.

The same caller makes a failed entry's failure hook call (``call_on_failure``): a signed POST of
the failure notice, with the hook's own ``webhook-id`` and none of the task's headers (they are
meant for the callback's receiver, not the hook's).
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import requests
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict
from requests_hardened.ip_filter import InvalidIPAddress
from requests_hardened.ip_filter_adapter import IPFilterAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.ssl_match_hostname import CertificateError

from .egress import EgressPolicy
from .headers import refusal
from .ports import CallResult
from .sealing import HeaderVault, SealingError
from .settings import CallerConfig
from .signing import Signer
from .task import RESPONSE_BODY_LIMIT, Task
from .views import failure_notice

USER_AGENT = "callme/0.1 (+https://github.com/callme-scheduler/callme)"
READ_CAP = 64 * 1024  # bytes read of a response at most; only the first 256 are kept

_watch = threading.local()


class RefusedAddress(requests.RequestException):
    """The callback resolved to an address the egress policy refuses."""


class _Watchdog:
    """Cuts the sockets of one call when its budget runs out.

    A new connection's socket is watched as soon as it exists, through a duplicate of it: the TLS
    handshake detaches the original from its socket object, and shutting down the duplicate stops
    the handshake too. A reused connection's socket is watched as it is. One watched after the
    budget ran out is cut at once. A call that has finished is never cut (its connection may already
    be back in the pool, serving another call).
    """

    def __init__(self, budget: float) -> None:
        self.expired = False
        self._budget = budget
        self._sockets: list[socket.socket] = []
        self._duplicates: list[socket.socket] = []
        self._finished = False
        self._lock = threading.Lock()

    def __enter__(self) -> _Watchdog:
        _watch.current = self
        _DEADLINES.add(time.monotonic() + self._budget, self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._finished = True
            for duplicate in self._duplicates:
                duplicate.close()
        _watch.current = None

    def watch(self, sock: socket.socket | None, duplicate: bool = False) -> None:
        if sock is None:
            return
        with self._lock:
            if self._finished:
                return
            if duplicate:
                sock = sock.dup()
                self._duplicates.append(sock)
            self._sockets.append(sock)
            if self.expired:
                _cut(sock)

    def expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            for sock in self._sockets:
                _cut(sock)


class _Deadlines:
    """One thread for every call's budget: it expires each watchdog when its deadline passes.

    (A timer thread per call cost more CPU than the rest of the call's bookkeeping.) A watchdog
    whose call finished first stays in the heap until its deadline and is then ignored.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Watchdog]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, deadline: float, watchdog: _Watchdog) -> None:
        with self._changed:
            heapq.heappush(self._heap, (deadline, next(self._order), watchdog))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="callback-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][2] is watchdog:
                self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                if not due:
                    self._changed.wait(self._heap[0][0] - now if self._heap else None)
                    continue
            for watchdog in due:
                watchdog.expire()


_DEADLINES = _Deadlines()


def _cut(sock: socket.socket) -> None:
    """Shut a socket down under a thread blocked on it (the plain socket's shutdown, also for TLS:
    the blocked read sees the end of the stream and fails)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _current_watchdog() -> _Watchdog | None:
    return getattr(_watch, "current", None)


class _Watched:
    """A urllib3 connection that tells the current call's watchdog about its socket."""

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        watchdog = _current_watchdog()
        if watchdog is not None:
            watchdog.watch(sock, duplicate=True)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> Any:
        watchdog = _current_watchdog()
        if watchdog is not None:
            watchdog.watch(getattr(self, "sock", None))  # a reused connection
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class GuardedAdapter(IPFilterAdapter):  # type: ignore[misc]
    """requests-hardened's pinning adapter, with callme's egress policy and watched connections."""

    def __init__(self, https: bool, policy: EgressPolicy) -> None:
        self._policy = policy
        super().__init__(is_https_proto=https, allow_loopback=policy.allows_loopback())

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kwargs: Any) -> None:
        super().init_poolmanager(connections, max(maxsize, 4), block, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        address = host_params["host"].strip("[]")  # the address requests-hardened resolved and pinned
        reason = self._policy.refusal(address)
        if reason:
            raise RefusedAddress(f"refused to connect: {reason}")
        watchdog = _current_watchdog()
        if watchdog is not None and watchdog.expired:  # the name took the whole budget to resolve
            raise requests.ConnectTimeout("call budget exceeded while resolving the callback's host")
        return host_params, pool_kwargs


def new_session(policy: EgressPolicy) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies or .netrc from the environment
    session.mount("http://", GuardedAdapter(False, policy))
    session.mount("https://", GuardedAdapter(True, policy))
    return session


class HttpCaller:
    """Implements the dispatch engine's ``Caller`` with requests."""

    def __init__(
        self,
        policy: EgressPolicy,
        signer: Callable[[], Signer | None],
        config: CallerConfig,
        clock: Callable[[], float] = time.time,
        vault: HeaderVault | None = None,
    ) -> None:
        self.policy = policy
        self.signer = signer
        self.config = config
        self.clock = clock
        self.vault = vault or HeaderVault(lambda: None)
        self._sessions = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = new_session(self.policy)
        return session

    def headers_for(self, task: Task, now: float) -> CaseInsensitiveDict[str]:
        """The request headers of a call of ``task`` at ``now``: its own headers (opened from
        storage), then callme's, set last, so that none of the task's can stand in for them.
        SealingError if the task's headers cannot be opened."""
        payload = task.definition.payload
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict({"User-Agent": USER_AGENT})
        if payload:
            headers["Content-Type"] = _content_type(payload)
        if task.definition.headers is not None:
            opened = self.vault.reveal(task.key.name, task.definition.headers)
            # Refused at registration already; checked again in case the stored entry says otherwise.
            headers.update((name, value) for name, value in opened.pairs if refusal(name) is None)
        headers.update(self._own_headers(task, task.attempts + 1, task.webhook_id, now, payload))
        return headers

    def _own_headers(self, task: Task, attempt: int, message_id: str, now: float, body: str) -> dict[str, str]:
        headers = {
            "Accept-Encoding": "identity",  # the recorded start of the body stays readable
            "callme-entry": str(task.key),
            "callme-attempt": str(attempt),
        }
        signer = self.signer()
        if signer is not None:
            headers.update(signer.headers(message_id, int(now), body))
        return headers

    def call(self, task: Task) -> CallResult:
        started = self.clock()
        clock_start = time.monotonic()
        definition = task.definition
        try:
            headers = self.headers_for(task, started)
        except SealingError as exc:  # never retried: another try would not open them either
            return self._result(started, clock_start, error=f"headers not sent: {exc.message}", refused=True)
        return self._request(
            started, clock_start, definition.callback_method, definition.callback, definition.payload, headers
        )

    def call_on_failure(self, task: Task) -> CallResult:
        """Call ``task``'s failure hook once: a signed POST of the failure notice."""
        hook = task.on_failure_call
        if task.definition.on_failure is None or hook is None:
            raise ValueError(f"entry {task.key} owes no failure hook call")
        started = self.clock()
        clock_start = time.monotonic()
        body = json.dumps(failure_notice(task))
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(
            {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
        )
        headers.update(self._own_headers(task, hook.attempts + 1, hook.webhook_id, started, body))
        return self._request(started, clock_start, "POST", task.definition.on_failure, body, headers)

    def _request(
        self, started: float, clock_start: float, method: str, url: str, payload: str, headers: CaseInsensitiveDict[str]
    ) -> CallResult:
        """Make one request within the budget, and say what came of it."""
        budget_error = f"no complete answer within the {self.config.call_budget:g} s call budget"
        with _Watchdog(self.config.call_budget) as watchdog:
            try:
                with self._send(method, url, payload, headers) as response:
                    body = _read_capped(response, READ_CAP, watchdog)
            except (RefusedAddress, InvalidIPAddress) as exc:
                return self._result(started, clock_start, error=_refusal_text(exc, self.policy), refused=True)
            except _NETWORK_ERRORS as exc:
                error = budget_error if watchdog.expired else _describe(exc)
                return self._result(started, clock_start, error=error)
            if watchdog.expired:
                return self._result(started, clock_start, error=budget_error)
        return self._result(
            started,
            clock_start,
            status=response.status_code,
            body=body[:RESPONSE_BODY_LIMIT].decode("utf-8", errors="replace"),
            retry_after=_retry_after(response.headers.get("Retry-After"), started),
        )

    @contextmanager
    def _send(
        self, method: str, url: str, payload: str, headers: CaseInsensitiveDict[str]
    ) -> Iterator[requests.Response]:
        """Send one request through the session's adapter, without ``Session.send``: that one
        reads the whole body of a redirect (unbounded) even when redirects are not followed, and
        keeps cookies from one callback for the next."""
        session = self._session()
        request = requests.Request(method, url, data=payload.encode() if payload else None, headers=headers)
        prepared = session.prepare_request(request)
        adapter = session.get_adapter(prepared.url or url)
        response = adapter.send(
            prepared,
            stream=True,
            timeout=(self.config.connect_timeout, self.config.read_timeout),
            verify=session.verify,
            cert=None,
            proxies={},
        )
        try:
            yield response
        finally:
            response.close()

    @staticmethod
    def _result(started: float, clock_start: float, **fields: Any) -> CallResult:
        duration = int((time.monotonic() - clock_start) * 1000)
        return CallResult(started_at=started, duration_ms=duration, **fields)


def _read_capped(response: requests.Response, cap: int, watchdog: _Watchdog) -> bytes:
    """Read at most ``cap`` bytes, as they come (a slow drip is cut by the watchdog)."""
    chunks: list[bytes] = []
    size = 0
    raw = response.raw
    while size < cap and not watchdog.expired:
        chunk = raw.read1(min(8192, cap - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if watchdog.expired:
        raise requests.ConnectionError("call budget exceeded")
    return b"".join(chunks)


def _content_type(payload: str) -> str:
    try:
        value = json.loads(payload)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json" if isinstance(value, (dict, list)) else "text/plain; charset=utf-8"


def _retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²", which isdigit() accepts and float() does not
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
        if moment.tzinfo is None:  # "-0000": UTC, not the local time zone
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, moment.timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _refusal_text(exc: Exception, policy: EgressPolicy) -> str:
    """requests-hardened refuses before callme's policy is asked: say why in the policy's words."""
    text = str(exc)
    if isinstance(exc, InvalidIPAddress):
        try:
            reason = policy.refusal(text)
        except ValueError:
            reason = None
        return f"refused to connect: {reason or f'{text} is not a public address'}"
    return text


# What a call can fail with once the request is on its way: requests' errors, and urllib3's and
# the standard library's when the body is read from the raw stream.
_NETWORK_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what lies under it (causes, urllib3's reasons and wrapped errors), outermost first."""
    found: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(found) < 20:
        current = pending.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        reason = getattr(current, "reason", None)
        nested = [current.__cause__, current.__context__, reason, *current.args]
        pending.extend(e for e in nested if isinstance(e, BaseException))
    return found


# The plain descriptions of what lies under an error, checked in this order.
_PLAIN: tuple[tuple[tuple[type[BaseException], ...], str], ...] = (
    ((socket.gaierror, urllib3.exceptions.NameResolutionError), "could not resolve the callback's host"),
    ((ConnectionRefusedError,), "connection refused"),
    ((http.client.RemoteDisconnected,), "connection closed without a response"),  # (a ConnectionResetError)
    ((ConnectionResetError,), "connection reset"),
    ((requests.ConnectTimeout,), "connect timeout"),  # (urllib3's NewConnectionError is a ConnectTimeoutError)
    ((requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError), "read timeout"),
    (
        (http.client.IncompleteRead, urllib3.exceptions.IncompleteRead),
        "response body cut short or malformed",
    ),
)
_CERTIFICATE = (ssl.SSLCertVerificationError, ssl.CertificateError, CertificateError)
_INVALID_RESPONSE = (http.client.LineTooLong, http.client.BadStatusLine, urllib3.exceptions.InvalidChunkLength)


def _describe(exc: BaseException) -> str:
    causes = _causes(exc)
    innermost = " ".join(str(causes[-1]).split())  # a server's bytes may end up in it: one clean line
    kind = type(causes[-1]).__name__
    if "Failed to resolve" in str(exc):  # requests-hardened's resolution failure
        return "could not resolve the callback's host"
    certificate = next((e for e in causes if isinstance(e, _CERTIFICATE)), None)
    if certificate is not None:
        detail = getattr(certificate, "verify_message", None) or str(certificate)
        return f"TLS certificate verification failed: {detail}"[:200]
    for kinds, text in _PLAIN:
        if any(isinstance(e, kinds) for e in causes):
            return text
    if any(isinstance(e, (ssl.SSLError, urllib3.exceptions.SSLError)) for e in causes):
        return f"TLS error: {innermost}"[:200]
    if any(isinstance(e, _INVALID_RESPONSE) for e in causes):
        return f"invalid HTTP response: {kind}: {innermost}"[:200]
    return f"connection error: {kind}: {innermost}"[:200]
