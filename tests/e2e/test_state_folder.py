"""Two local stacks on one state folder: the second refuses and touches nothing; no data is lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in sorted(folder.iterdir())}


def test_a_second_stack_on_the_same_folder_refuses_and_the_first_keeps_its_data(
    stack_factory: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "state"
    first = stack_factory(state_dir=folder)
    first.put("before", trigger_at="1858809600", callback="http://example.com/")
    before = snapshot(folder)

    second = subprocess.run(
        [sys.executable, "-m", "local", "--port", "0", "--state-dir", str(folder), "--no-ticks"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert second.returncode != 0
    assert str(folder) in second.stderr
    assert f"process {first.process.pid}" in second.stderr
    assert "listening" not in second.stdout
    assert snapshot(folder) == before
    first.put("after", trigger_at="1858809600", callback="http://example.com/")
    first.kill()  # kill -9: the kernel releases the folder
    restarted = stack_factory(state_dir=folder)
    assert restarted.entry("before@1858809600")["task_state"] == "pending"
    assert restarted.entry("after@1858809600")["task_state"] == "pending"
