"""``python -m local``: run callme on this machine (``make run``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))

from local.stack import Options, run  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("CALLME_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("CALLME_PORT", "6777")))
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("CALLME_STATE_DIR", ".callme")),
        help="where the embedded DynamoDB journal, the signing secret and the headers key are kept (default .callme)",
    )
    parser.add_argument("--no-ticks", action="store_true", help="do not run the dispatcher every minute")
    parser.add_argument("--test-hooks", action="store_true", help="enable POST /_local/tick (for tests)")
    args = parser.parse_args(argv)
    run(Options(args.host, args.port, args.state_dir, not args.no_ticks, args.test_hooks))


if __name__ == "__main__":
    main()
