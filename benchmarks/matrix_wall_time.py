"""Matrix wall time: how long the whole cause-and-fix matrix takes, and where the time goes.

    python benchmarks/matrix_wall_time.py [--jobs 1,2] [--timeout 0.5] [--only C01,C31] [--repeat 1]

Runs the matrix (stub host children, exactly as ``pos-terminal matrix``) once per ``--jobs`` value
and repeat, and prints per run: wall time, this process's CPU time and its children's (the stub
hosts and crash-point terminals), and the slowest causes.  The issue's aim is the whole matrix,
both dialects, under 2 minutes on a 2-core machine with the default 0.5 s response timeout.

Figures only, no assertions: wall time depends on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator.runner import MatrixOptions, run  # noqa: E402
from specs.logs import configure_logging  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="2", help="comma-separated worker counts to compare (default 2)")
    parser.add_argument("--timeout", type=float, default=0.5, help="the terminal's response timeout (s)")
    parser.add_argument("--only", default="", help="comma-separated cause ids (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per --jobs value; the median is printed")
    parser.add_argument("--slowest", type=int, default=5, help="how many of the slowest causes to list")
    args = parser.parse_args()
    configure_logging(level="error")  # the terminal's link warnings are part of the scenarios
    only = tuple(c.strip().upper() for c in args.only.split(",") if c.strip())

    print(f"{'jobs':>4} {'run':>3} {'wall s':>8} {'cpu s':>8} {'children cpu s':>15} {'causes':>6}  result")
    for jobs in (int(j) for j in args.jobs.split(",")):
        walls = []
        for n in range(1, args.repeat + 1):
            before, started = os.times(), time.perf_counter()
            result = run(MatrixOptions(only=only, jobs=jobs, response_timeout_seconds=args.timeout))
            wall, after = time.perf_counter() - started, os.times()
            walls.append(wall)
            own = (after.user - before.user) + (after.system - before.system)
            children = (after.children_user - before.children_user) + (after.children_system - before.children_system)
            print(f"{jobs:>4} {n:>3} {wall:>8.1f} {own:>8.1f} {children:>15.1f} {len(result.rows):>6}  "
                  f"{'ok' if result.ok else 'NOT AS EXPECTED'}")
            slowest = sorted(result.rows, key=lambda r: r.seconds, reverse=True)[:args.slowest]
            print("         slowest: " + ", ".join(f"{r.scenario.id} {r.seconds:.1f} s" for r in slowest))
        if args.repeat > 1:
            print(f"{jobs:>4} median wall {statistics.median(walls):.1f} s over {args.repeat} runs")


if __name__ == "__main__":
    main()
