"""Making one callback: the HTTP call itself, guarded, bounded and signed.

- The address guard: each connection goes to an address resolved once and checked by the egress
  policy (requests-hardened pins the connection to the checked address and keeps TLS hostname
  verification; callme's policy is applied on top of its own). Redirects are never followed.
- The budget: connect and read timeouts per socket operation, plus a watchdog that cuts a call
  still running after ``call_budget`` seconds (slow-dripping servers), and a cap on the bytes read.
- The signature: Standard Webhooks headers, with the same ``webhook-id`` on every retry.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests_hardened.ip_filter import InvalidIPAddress
from requests_hardened.ip_filter_adapter import IPFilterAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .dispatch import CallResult
from .egress import EgressPolicy
from .signing import Signer
from .task import RESPONSE_BODY_LIMIT, Task

USER_AGENT = "callme/0.1 (+https://github.com/callme-scheduler/callme)"
READ_CAP = 64 * 1024  # bytes read of a response at most; only the first 256 are kept

_watch = threading.local()


class RefusedAddress(requests.RequestException):
    """The callback resolved to an address the egress policy refuses."""


@dataclass(frozen=True)
class CallerConfig:
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    call_budget: float = 15.0


class _Watchdog:
    """Cuts the connections of one call when its budget runs out."""

    def __init__(self, budget: float) -> None:
        self.connections: list[HTTPConnection] = []
        self.expired = False
        self._timer = threading.Timer(budget, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        _watch.current = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _watch.current = None

    def _expire(self) -> None:
        self.expired = True
        for connection in self.connections:
            sock = getattr(connection, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Watched:
    """A urllib3 connection that tells the current call's watchdog about itself."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        watchdog = getattr(_watch, "current", None)
        if watchdog is not None:
            watchdog.connections.append(self)
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

    def __init__(self, https: bool, policy: EgressPolicy, pool_size: int) -> None:
        self._policy = policy
        self._pool_size = pool_size
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
        return host_params, pool_kwargs


def new_session(policy: EgressPolicy, pool_size: int = 4) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies or .netrc from the environment
    session.mount("http://", GuardedAdapter(False, policy, pool_size))
    session.mount("https://", GuardedAdapter(True, policy, pool_size))
    return session


class HttpCaller:
    """Implements the dispatch engine's ``Caller`` with requests."""

    def __init__(
        self,
        policy: EgressPolicy,
        signer: Callable[[], Signer | None],
        config: CallerConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.signer = signer
        self.config = config
        self.clock = clock
        self._sessions = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = new_session(self.policy)
        return session

    def headers_for(self, task: Task, now: float) -> dict[str, str]:
        payload = task.definition.payload
        headers = {
            "User-Agent": USER_AGENT,
            "callme-entry": str(task.key),
            "callme-attempt": str(task.attempts + 1),
        }
        if payload:
            headers["Content-Type"] = _content_type(payload)
        signer = self.signer()
        if signer is not None:
            headers.update(signer.headers(task.webhook_id, int(now), payload))
        return headers

    def call(self, task: Task) -> CallResult:
        started = self.clock()
        clock_start = time.monotonic()
        definition = task.definition
        headers = self.headers_for(task, started)
        response = None
        try:
            with _Watchdog(self.config.call_budget) as watchdog:
                try:
                    response = self._session().request(
                        definition.callback_method,
                        definition.callback,
                        data=definition.payload.encode() if definition.payload else None,
                        headers=headers,
                        timeout=(self.config.connect_timeout, self.config.read_timeout),
                        allow_redirects=False,
                        stream=True,
                    )
                    body = _read_capped(response, READ_CAP, watchdog)
                except (RefusedAddress, InvalidIPAddress) as exc:
                    return self._result(started, clock_start, error=_refusal_text(exc), refused=True)
                except requests.RequestException as exc:
                    if watchdog.expired:
                        error = f"no complete answer within the {self.config.call_budget:g} s call budget"
                    else:
                        error = _describe(exc)
                    return self._result(started, clock_start, error=error)
                if watchdog.expired:
                    error = f"no complete answer within the {self.config.call_budget:g} s call budget"
                    return self._result(started, clock_start, status=None, error=error)
        finally:
            if response is not None:
                response.close()
        return self._result(
            started,
            clock_start,
            status=response.status_code,
            body=body[:RESPONSE_BODY_LIMIT].decode("utf-8", errors="replace"),
            retry_after=_retry_after(response.headers.get("Retry-After"), started),
        )

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
        chunk = raw.read1(min(8192, cap - size)) if hasattr(raw, "read1") else raw.read(min(8192, cap - size))
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
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _refusal_text(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, InvalidIPAddress):
        return f"refused to connect: {text} is not a public address"
    return text


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.ReadTimeout):
        return "read timeout"
    if isinstance(exc, requests.ConnectionError):
        cause = str(exc)
        if "Failed to resolve" in cause or "Name or service not known" in cause:
            return "could not resolve the callback's host"
        if "refused" in cause.lower():
            return "connection refused"
        if "reset" in cause.lower():
            return "connection reset"
        return f"connection error: {cause[:200]}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"
