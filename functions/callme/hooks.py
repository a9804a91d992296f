"""An entry's failure hook (``on_failure``): one call, when the entry ends ``failed`` or ``skipped``.

When such an entry finishes, its outcome write also records the hook as owed (``pending``, with a
``webhook_id`` of its own) and keeps the entry in the ``due`` index, so that a dispatcher that dies
before making the call leaves it to the next run. The hook's own outcome is recorded on the entry
once the call is made: a crash in between makes the next run call it again, with the same
``webhook_id``; nothing else can.

The hook is called like a callback (the same address rules, budget and signature) but judged on
its own: any 2xx delivers it; a network error, a 5xx, 408 or 429 is tried again after a wait, up to
HOOK_ATTEMPTS calls in all; any other answer, or an address callme refuses, gives up at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from enum import StrEnum

HOOK_ATTEMPTS = 4
# The wait before the 2nd, 3rd and 4th call: between half of it and all of it, at random, or a
# Retry-After up to the last of them. A receiver down for a quarter of an hour still hears of it.
HOOK_WAITS = (30.0, 120.0, 600.0)
_RETRYABLE = frozenset({408, 429})


class HookState(StrEnum):
    PENDING = "pending"  # owed: to be called (again)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # given up: calls used up, an answer that is not retried, an address refused


@dataclass(frozen=True)
class HookCall:
    """The failure hook's call of one entry, as recorded on it (``on_failure_call``)."""

    webhook_id: str
    state: HookState
    since: float  # when the entry ended: the instant the notice reports
    attempts: int = 0
    status: int | None = None  # of the last call
    error: str | None = None  # of the last call
    at: float | None = None  # when the last call started
    next_at: float | None = None  # when the next call is due, while one waits

    @classmethod
    def owed(cls, now: float) -> HookCall:
        return cls(webhook_id=f"msg_{uuid.uuid4().hex}", state=HookState.PENDING, since=now)

    @property
    def pending(self) -> bool:
        return self.state is HookState.PENDING

    def after_call(
        self,
        at: float,
        duration_ms: int,
        status: int | None,
        error: str | None,
        refused: bool = False,
        retry_after: float | None = None,
        jitter: float = 1.0,
    ) -> HookCall:
        """The record after one call that started at ``at`` and took ``duration_ms``: delivered,
        waiting for the next call (``jitter`` in [0, 1] places its wait between half and all of
        HOOK_WAITS'), or given up."""
        attempts = self.attempts + 1
        made = replace(self, attempts=attempts, status=status, error=error, at=at, next_at=None)
        if status is not None and 200 <= status < 300:
            return replace(made, state=HookState.DELIVERED)
        retryable = status is None or status >= 500 or status in _RETRYABLE
        if refused or not retryable or attempts >= HOOK_ATTEMPTS:
            return replace(made, state=HookState.FAILED)
        step = HOOK_WAITS[min(attempts, len(HOOK_WAITS)) - 1]
        wait = max(step / 2 + jitter * step / 2, min(retry_after or 0.0, HOOK_WAITS[-1]))
        return replace(made, next_at=at + duration_ms / 1000 + wait)
