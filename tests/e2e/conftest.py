"""The local stack as a user runs it (a subprocess, `python -m local`), and a loopback callback sink."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Sink  # noqa: F401 (the e2e tests import it from here)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


class LocalStack:
    """``python -m local`` on a free port, with the test hooks on (POST /_local/tick)."""

    def __init__(self, state_dir: Path, ticks: bool = False, env: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.ticks = ticks
        self.env = env or {}
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.secret = ""
        self.output: list[str] = []

    def start(self) -> LocalStack:
        args = [sys.executable, "-m", "local", "--port", "0", "--state-dir", str(self.state_dir), "--test-hooks"]
        if not self.ticks:
            args.append("--no-ticks")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLME_")}
        env.update({"PYTHONUNBUFFERED": "1", **self.env})
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        deadline = time.monotonic() + 60
        while not (self.url and self.secret):
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("the local stack did not start:\n" + "".join(self.output)) from None
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].strip()
            if "signing secret" in line:
                self.secret = line.rsplit(" ", 1)[1].strip()
        return self

    def _pump(self, lines: queue.Queue[str]) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            lines.put(line)

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        data = body if body is None or isinstance(body, str | bytes) else json.dumps(body)
        return requests.request(method, self.url + path, data=data, timeout=kwargs.pop("timeout", 30), **kwargs)

    def put(self, name: str, **fields: Any) -> dict[str, Any]:
        response = self.request("PUT", f"/task/{name}", fields)
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def entry(self, key: str) -> dict[str, Any]:
        response = self.request("GET", f"/status/{key}")
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def tick(self, at: float, **options: Any) -> dict[str, Any]:
        """Run the dispatcher now as if the clock read ``at``; answers the run's report."""
        response = self.request("POST", "/_local/tick", {"at": at, **options}, timeout=120)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def stop(self) -> int:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode if self.process else 0

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Any]:
    stacks: list[LocalStack] = []

    def start(ticks: bool = False, env: dict[str, str] | None = None, state_dir: Path | None = None) -> LocalStack:
        stack = LocalStack(state_dir or tmp_path / "state", ticks, env).start()
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        stack.stop()


@pytest.fixture
def stack(stack_factory: Any) -> LocalStack:
    started: LocalStack = stack_factory()
    return started


def next_minute() -> int:
    return (int(time.time()) // 60 + 1) * 60
