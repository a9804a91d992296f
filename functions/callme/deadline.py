"""How long the request being served may still take.

The api handler sets it for each request from the Lambda context (the time left, minus a margin to
write the answer). Storage calls read it: a try that could not end before it is not started, and a
retry that could not end before it is not made, so the request answers 503 in time instead of being
cut off by Lambda (a 502). Long loops (cancelling a whole task) read it to stop and say how far they
got. The domain never sees the Lambda context, only this. Nothing sets it in the dispatcher, whose
engine keeps its own clock; there every call may take as long as its client allows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from typing import ParamSpec, TypeVar

_deadline: ContextVar[float | None] = ContextVar("callme_deadline", default=None)
P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Run the enclosed work with a deadline ``seconds`` from now."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float:
    """Seconds left before the deadline (negative once past it; infinite when none is set)."""
    at = _deadline.get()
    return math.inf if at is None else at - time.monotonic()


def carried(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` bound to the caller's deadline, to run in a worker thread (threads do not
    inherit context variables)."""
    context = copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(function, *args, **kwargs)

    return run
