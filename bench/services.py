"""The benchmark's stand-ins for what is not the dispatcher: DynamoDB and the callback endpoints.

Each runs in a process of its own, as they do in AWS (the table and the receivers are elsewhere),
so that the process being measured is the dispatcher alone. On a small machine they still share
its cores, which is why every figure is measured side by side with its ceilings in the same run.

- ``python -m bench.services dynamodb``: the local stack's embedded DynamoDB (moto), tables from
  template.yaml. ``POST /moto-api/reset`` empties it between runs.
- ``python -m bench.services sink``: a loopback HTTP/1.1 server that answers ``200 ok`` at once, or
  after ``<s>`` seconds for paths under ``/delay/<s>/``, without a thread per request (asyncio), so
  that it is never the bottleneck it is meant to stand in for. ``GET /_receipts`` answers, and
  forgets, when each ``callme-entry`` arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

import requests

ROOT = Path(__file__).resolve().parent.parent
_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def use_local_credentials() -> None:
    """boto3 signs every request, even to the embedded DynamoDB: give it dummy credentials."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process, from /proc (0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Service:
    """A child process serving on loopback until stopped; ``url`` is where it listens."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)]),
            "PYTHONUNBUFFERED": "1",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
        }
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.services", self.kind],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the {self.kind} service did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1].strip()
        return self

    @property
    def pid(self) -> int:
        return self._process.pid if self._process else 0

    def cpu_seconds(self) -> float:
        """CPU time the service's process has used so far (Linux; 0 elsewhere)."""
        return process_cpu_seconds(self.pid)

    def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        assert process.stdin is not None
        process.stdin.close()  # the service exits when its standard input closes
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DynamoDBService(Service):
    def __init__(self) -> None:
        super().__init__("dynamodb")

    def reset(self) -> None:
        """Empty every table: moto forgets everything, then the template's tables are made again."""
        from local.dynamodb import ensure_tables

        requests.post(f"{self.url}/moto-api/reset", timeout=30).raise_for_status()
        ensure_tables(self.url)


class SinkService(Service):
    def __init__(self) -> None:
        super().__init__("sink")

    def receipts(self) -> dict[str, float]:
        """When each entry's call arrived (Unix time), since the last time this was asked."""
        answer: dict[str, float] = requests.get(f"{self.url}/_receipts", timeout=30).json()
        return answer


# -- the child processes -------------------------------------------------------------------------


def _serve_dynamodb() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from local.dynamodb import EmbeddedDynamoDB

    database = EmbeddedDynamoDB(None)
    database.start()
    print(f"listening on {database.endpoint}", flush=True)
    sys.stdin.read()
    database.stop()


class _Sink:
    def __init__(self) -> None:
        self.receipts: dict[str, float] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                received = time.time()
                request_line, _, header_block = head.partition(b"\r\n")
                target = request_line.split(b" ", 2)[1].decode()
                length, entry = 0, None
                for line in header_block.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"callme-entry":
                        entry = value.strip().decode()
                if length:
                    await reader.readexactly(length)
                if entry:
                    self.receipts[entry] = received
                if target == "/_receipts":
                    body = json.dumps(self.receipts).encode()
                    self.receipts = {}
                    header = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                    writer.write(header.encode() + body)
                    continue
                if target.startswith("/delay/"):
                    await asyncio.sleep(float(target.split("/")[2]))
                writer.write(_RESPONSE)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError, IndexError):
            pass
        finally:
            writer.close()

    async def serve(self) -> None:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
        print(f"listening on http://127.0.0.1:{port}", flush=True)
        loop = asyncio.get_running_loop()
        stopped = loop.create_future()

        def wait_for_stdin() -> None:
            sys.stdin.read()
            loop.call_soon_threadsafe(stopped.set_result, None)

        threading.Thread(target=wait_for_stdin, daemon=True).start()
        async with server:
            await stopped


def main(argv: list[str]) -> None:
    kind = argv[0] if argv else ""
    if kind == "dynamodb":
        _serve_dynamodb()
    elif kind == "sink":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_Sink().serve())
    else:
        raise SystemExit("usage: python -m bench.services dynamodb|sink")


if __name__ == "__main__":
    main(sys.argv[1:])
