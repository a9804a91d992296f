"""Running a benchmark module the way `make` does, in a clean environment, for its JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*arguments: str, output: Path) -> tuple[dict[str, Any], str]:
    """``python -m <arguments> --output <output>`` from the repository root: its JSON output and
    what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLME_", "POWERTOOLS_"))}
    done = subprocess.run(
        [sys.executable, "-m", *arguments, "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results: dict[str, Any] = json.loads(output.read_text())
    return results, done.stdout
