"""The local stack's state folder (``.callme`` by default): owned by one process at a time.

Two stacks on one folder would each replay and rewrite the DynamoDB journal and lose each other's
writes, so the folder is locked (``flock`` on ``state.lock``) before anything in it is read or
written, and stays locked for the life of the process. The kernel releases the lock when the
process ends, however it ends (``kill -9`` included), so a stale lock never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path

LOCK_NAME = "state.lock"
SECRET_NAME = "signing-secret"  # noqa: S105 (a file name, not a secret)
HEADERS_KEY_NAME = "headers-key"  # the key sealing tasks' header values (callme.sealing)


class StateFolderInUse(Exception):
    """Another process holds the state folder."""


class StateFolder:
    """A state folder, locked by this process from ``lock()`` until ``release()`` or its exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._release = threading.Lock()

    def lock(self) -> None:
        """Take the folder, or raise StateFolderInUse (naming the holder) having changed nothing in it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise StateFolderInUse(
                f"the state folder {self.path} is in use by {who} (another callme local stack?): "
                "stop it, or give this one another folder (--state-dir or CALLME_STATE_DIR)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the folder up (idempotent: a stopping stack may call it from two threads)."""
        with self._release:
            fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor releases the lock

    def signing_secret(self, new_secret: str) -> str:
        """The secret kept in the folder; ``new_secret`` becomes it on first start (mode 0600 from the start)."""
        return self._kept(SECRET_NAME, new_secret)

    def headers_key(self, new_key: str) -> str:
        """The headers key kept in the folder; ``new_key`` becomes it on first start (mode 0600)."""
        return self._kept(HEADERS_KEY_NAME, new_key)

    def _kept(self, name: str, new_value: str) -> str:
        path = self.path / name
        if path.exists():
            return path.read_text().strip()
        temporary = path.with_name(name + ".tmp")
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(new_value + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        replace_durably(temporary, path)
        return new_value


def replace_durably(temporary: Path, target: Path) -> None:
    """Move a written and fsynced file into place, and make the move itself survive a power loss."""
    os.replace(temporary, target)
    directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
