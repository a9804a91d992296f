"""The Makefile's menu: `make help` lists every documented target."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_documented_target() -> None:
    documented = re.findall(r"^([^\s:#]+):.*## ", (ROOT / "Makefile").read_text(), flags=re.M)
    menu = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    listed = [line.split()[1] for line in menu.splitlines() if line.strip().startswith("make ")]
    assert "test-e2e" in documented
    assert listed == documented
