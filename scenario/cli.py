"""`kezek scenario FILE`: prints what happened as JSON Lines (SCENARIOS.md).

Exit codes: 0 the run finished; 2 the file is invalid (the message on
standard error names the line); 1 the run itself failed.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from scenario.model import ScenarioError, load


def dumps(line: dict) -> str:
    return json.dumps(line, ensure_ascii=False)


def run_file(path: str, out=sys.stdout, *, sandbox: str = "off", stats: bool = False) -> int:
    from scenario.runner import Runner

    try:
        scenario = load(path)
    except ScenarioError as e:
        print(f"kezek scenario: {e.format(path)}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"kezek scenario: {path}: {e.strerror}", file=sys.stderr)
        return 2

    def emit(line: dict) -> None:
        out.write(dumps(line) + "\n")

    runner = Runner(scenario, emit, sandbox=sandbox)
    final = asyncio.run(runner.run())
    emit(final)
    if stats:
        s = runner.stats
        print(f"kezek scenario: {s.moments} moments, {s.referrals} referrals, {s.updates} updates, "
              f"{s.notifications} notifications, {s.lines} lines in {s.seconds:.1f} s", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kezek scenario", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="a scenario file (YAML or JSON)")
    parser.add_argument("--stats", action="store_true", help="print run figures on standard error")
    parser.add_argument("--sandbox", choices=("full", "light", "off"), default="off",
                        help="workflow sandbox: full (as the production worker runs it), light (every "
                             "module shared, calls still checked), off (default: fastest)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        code = run_file(args.file, stats=args.stats, sandbox=args.sandbox)
    except Exception as e:  # the run failed, not the file
        print(f"kezek scenario: the run failed: {type(e).__name__}: {e}", file=sys.stderr)
        code = 1
    # The Temporal client may abort the interpreter at exit (sdk-python
    # issue 300, rc 134): flush and leave without the exit handlers.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
