"""EventBridge Scheduler, locally: invoke the dispatcher at second 0 of every minute."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

log = logging.getLogger(__name__)


class MinuteTicker:
    def __init__(self, invoke: Callable[[dict[str, str]], object]) -> None:
        self._invoke = invoke
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            next_minute = (int(time.time()) // 60 + 1) * 60
            if self._stop.wait(max(0.0, next_minute - time.time())):
                return
            scheduled = datetime.fromtimestamp(next_minute, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            # Each minute runs in its own thread, as overlapping Lambda invocations would.
            threading.Thread(target=self._run, args=(scheduled,), name=f"dispatch-{scheduled}", daemon=True).start()

    def _run(self, scheduled: str) -> None:
        try:
            self._invoke({"scheduled_time": scheduled})
        except Exception:
            log.exception("dispatcher run for %s failed", scheduled)
