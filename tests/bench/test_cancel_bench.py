"""The cancel measurement's smoke run (`python -m bench.cancel --entries 300`): it must not rot.

Nothing is timed but what the api function itself must hold: every call answers within its 10 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def test_the_cancel_measurement_cancels_every_entry_within_the_functions_timeout(tmp_path: Path) -> None:
    output = tmp_path / "cancel.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLME_", "POWERTOOLS_"))}
    done = subprocess.run(
        [sys.executable, "-m", "bench.cancel", "--entries", "300", "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(output.read_text())
    assert result["cancelled"] == 300 and result["still_pending"] == 0
    assert [call["status"] for call in result["calls"]][-1] == 200
    assert all(call["seconds"] < result["function_timeout_seconds"] for call in result["calls"])
