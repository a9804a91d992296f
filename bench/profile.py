"""Where the dispatcher's CPU per callback goes, by part of the per-callback path.

``python -m bench.profile`` dispatches the throughput run's 2,000 fast entries (embedded DynamoDB
and sink in processes of their own, as in bench.throughput) ``--repetitions`` times under py-spy
(``pip install py-spy``, a dev tool: requirements-dev.txt), sampling the dispatcher's process only
and, in it, only the thread holding the interpreter lock: what the process's Python code runs on
(the system calls it makes are the rest of its CPU time). Each part's share of the samples is
multiplied by the repetition's CPU per callback (process CPU time, not wall time) and the medians
are printed, beside the floor (bench.floor) measured in the same run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import floor, throughput  # noqa: E402
from bench.capacity import CALLME, LEASE_TABLE, TASK_TABLE, payload_of  # noqa: E402
from bench.services import DynamoDBService, SinkService, use_local_credentials  # noqa: E402
from callme.clock import minute_of  # noqa: E402
from callme.dynamodb import DynamoDBLeaseStore, DynamoDBTaskRepository, connect  # noqa: E402
from callme.signing import Signer, new_secret  # noqa: E402

# The parts of a callback's path, each known by a frame of its stacks: a stack belongs to the
# first part (in this order) one of whose frames it holds.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("outcome write (PutItem)", ("_Run._write ",)),
    ("callback call (signing, request)", ("HttpCaller.",)),
    ("consistent read (BatchGetItem)", ("_FreshReads.",)),
    ("due index query", ("_Run._read ",)),
    ("scheduling loop", ("_Run._loop ",)),
    ("turn (checks, new state)", ("_Run._read_and_call ", "_Run._attempt ")),
    ("leases, peek, stats", ("_Leases.renew ", "DispatchEngine._shares ", "DispatchEngine._store_stats ")),
    ("thread pools' hand-offs", ("_worker ", "Thread.run ")),
)
OTHER = "other"


def part_of(frames: list[str]) -> str:
    """The part one sampled stack (py-spy's frames, outermost first) belongs to."""
    for name, markers in PARTS:
        if any(marker in frame + " " for frame in frames for marker in markers):
            return name
    return OTHER


def shares(lines: Iterable[str]) -> dict[str, float]:
    """Each part's share of the samples of a py-spy raw profile (``stack count`` lines; any other
    line, such as one cut short when the sampler was stopped, is left out)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            counts[part_of(stack.split(";"))] += int(count)
    total = sum(counts.values()) or 1
    return {name: counts[name] / total for name in [*(p for p, _ in PARTS), OTHER]}


def _profiled_dispatch(spy: str, output: Path, scenario: throughput.Scenario, database: Any, sink: Any) -> float:
    """One dispatch of ``scenario.entries`` fast entries, sampled into ``output``; its CPU per callback."""
    client = connect(throughput.REGION, database.url, CALLME.dispatcher_storage, max_pool=64)
    repository = DynamoDBTaskRepository(client, TASK_TABLE, scenario.shards)
    leases = DynamoDBLeaseStore(client, LEASE_TABLE)
    database.reset()
    minute = minute_of(time.time())
    tasks = throughput.make_tasks("p", scenario.entries, f"{sink.url}/fast", minute, payload_of(scenario.payload_bytes))
    throughput.insert_all(repository, tasks, scenario.insert_threads)
    sink.receipts()
    command = [spy, "record", "--pid", str(os.getpid()), "--rate", "250", "--format", "raw", "--gil", "--nonblocking"]
    sampler = subprocess.Popen(
        [*command, "--nolineno", "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(1.0)  # py-spy attached
    caller = throughput.new_caller(Signer.from_secret_document(new_secret()))
    services = {"dynamodb": database, "sink": sink}
    run = throughput.dispatch_once(repository, leases, caller, scenario, minute, scenario.entries, sink, services)
    sampler.send_signal(signal.SIGINT)
    sampler.wait(timeout=60)
    return float(run.cpu_seconds["dispatcher"] * 1000 / scenario.entries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is not installed: pip install -r requirements-dev.txt", file=sys.stderr)
        return 2
    use_local_credentials()
    scenario = throughput.Scenario()
    per_part: dict[str, list[float]] = collections.defaultdict(list)
    totals: list[float] = []
    floors: dict[str, list[float]] = collections.defaultdict(list)
    with DynamoDBService() as database, SinkService() as sink, tempfile.TemporaryDirectory() as folder:
        for number in range(args.repetitions):
            output = Path(folder) / f"profile-{number}.txt"
            cpu = _profiled_dispatch(spy, output, scenario, database, sink)
            found = shares(output.read_text().splitlines())
            for name, share in found.items():
                per_part[name].append(share * cpu)
            totals.append(cpu)
            measured = floor.measure(database.url, sink.url, throughput.FLOOR_CALLS)
            for name in ("put_item_cpu_ms", "get_cpu_ms"):
                floors[name].append(measured[name])
    result = {
        "dispatcher_cpu_ms_per_callback": round(statistics.median(totals), 3),
        "parts_ms": {name: round(statistics.median(values), 3) for name, values in per_part.items()},
        **{f"floor_{name}": round(statistics.median(values), 3) for name, values in floors.items()},
        "repetitions": args.repetitions,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
