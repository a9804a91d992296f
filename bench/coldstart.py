"""Cold start: how long importing each Lambda handler module takes in a fresh interpreter.

Each measurement is a new ``python -c`` process that times one import statement with
``time.perf_counter`` (interpreter start-up itself is left out, being the same for all). The
handlers are timed against ``import boto3`` alone in the same run, interleaved, so that a busy
machine slows them all alike; the figure is the ratio of the medians. One ``-X importtime`` run
per handler names the packages that take the time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SUBJECTS = {
    "boto3": "import boto3",
    "api": "import handlers.api",
    "dispatcher": "import handlers.dispatcher",
}
# What template.yaml sets for both functions (values do not matter to an import).
LAMBDA_ENV = {
    "CALLME_TABLE_NAME": "callme-tasks",
    "CALLME_LEASE_TABLE_NAME": "callme-leases",
    "CALLME_STATS_TABLE_NAME": "callme-stats",
    "CALLME_DUE_SHARDS": "8",
    "CALLME_RETENTION_DAYS": "30",
    "POWERTOOLS_SERVICE_NAME": "callme",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "POWERTOOLS_METRICS_NAMESPACE": "callme",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLME_", "POWERTOOLS_", "PYTHON"))}
    env.update(LAMBDA_ENV)
    env["PYTHONPATH"] = str(ROOT / "functions")
    return env


def time_import(statement: str, env: dict[str, str]) -> float:
    """Seconds one import statement takes in a fresh interpreter."""
    code = f"import time\nstarted = time.perf_counter()\n{statement}\nprint(time.perf_counter() - started)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT / "functions", capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def heaviest_imports(statement: str, env: dict[str, str], top: int = 8) -> list[dict[str, Any]]:
    """The modules whose import took longest (``-X importtime``, cumulative), down to two levels
    below the statement's own module; modules another one had already imported are not repeated."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        env=env,
        cwd=ROOT / "functions",
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, int] = {}
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        if depth <= 2:
            found[name.strip()] = int(parts[1])
    ranked = sorted(found.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return [{"module": name, "ms": round(us / 1000, 1)} for name, us in ranked]


def measure(repetitions: int) -> dict[str, Any]:
    env = _environment()
    for statement in SUBJECTS.values():  # warm the file cache and the bytecode caches
        time_import(statement, env)
    samples: dict[str, list[float]] = {name: [] for name in SUBJECTS}
    for _ in range(repetitions):
        for name, statement in SUBJECTS.items():
            samples[name].append(time_import(statement, env))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "repetitions": repetitions,
        "samples_ms": {name: [round(v * 1000, 2) for v in values] for name, values in samples.items()},
        "median_ms": {name: round(v * 1000, 2) for name, v in medians.items()},
        "api_ratio": round(medians["api"] / medians["boto3"], 4),
        "dispatcher_ratio": round(medians["dispatcher"] / medians["boto3"], 4),
        "heaviest": {name: heaviest_imports(SUBJECTS[name], env) for name in ("api", "dispatcher")},
    }
