"""Soak: N terminals for M minutes against a stub host child with a fault mix, then settlement and the
invariants G1-G8 against the host's ledgers.

    python benchmarks/soak.py                       # 50 terminals, 1 minute, 50/s, the default fault mix
    python benchmarks/soak.py --minutes 10 --terminals 200 --rate 100 --report soak-report

It is ``pos-terminal load`` run as a library (:func:`emulator.load.run_load`), open loop, with the
transaction mix sale=70,void=5,refund=5,balance=10,offline_sale=10 and the fault mix
drop_response=2,delay_response=2,close_before_processing=1,close_after_processing=1 (percent of the
mix's requests; lost answers make the terminals reverse, offline sales make them store and forward).
It prints the operation counts per type and outcome, what went on the wire, this process's peak
memory, descriptors and CPU per operation (its own and the stub host's), the settlement, each
invariant's verdict and every mismatch with its terminal and STAN.  Exit status 1 when the books are not equal (money lost or doubled) or a
terminal did not settle; figures only otherwise, no timing assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator.load import LoadOptions, parse_mix, run_load  # noqa: E402
from emulator.load_report import format_summary, write_reports  # noqa: E402
from specs.logs import configure_logging  # noqa: E402

DEFAULT_MIX = "sale=70,void=5,refund=5,balance=10,offline_sale=10"
DEFAULT_FAULTS = "drop_response=2,delay_response=2,close_before_processing=1,close_after_processing=1"


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").is_dir() else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terminals", type=int, default=50, help="terminals (default 50)")
    parser.add_argument("--minutes", type=float, default=1.0, help="length of the load phase (default 1)")
    parser.add_argument("--rate", type=float, default=50.0, help="operations per second over all terminals")
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"transaction mix (default {DEFAULT_MIX})")
    parser.add_argument("--faults", default=DEFAULT_FAULTS, help=f"fault mix, percent (default {DEFAULT_FAULTS})")
    parser.add_argument("--dialect", default="intl-bcd", help="intl-ascii, intl-bcd or cup (default intl-bcd)")
    parser.add_argument("--timeout", type=float, default=1.0, help="the terminals' response timeout (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", default=None, help="write load.json and load.html into this directory")
    args = parser.parse_args()
    configure_logging(level="error")  # lost answers are the point here, not warnings
    options = LoadOptions(terminals=args.terminals, rate=args.rate, duration_seconds=args.minutes * 60,
                          mix=parse_mix(args.mix), faults=parse_mix(args.faults, option="--faults", allowed=None),
                          dialect=args.dialect, timeout_seconds=args.timeout, seed=args.seed)
    fds_before, times_before = _descriptors(), os.times()
    result = asyncio.run(run_load(options, progress=sys.stderr.isatty()))
    times = os.times()
    data = result.as_dict()
    print(format_summary(data))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    own = (times.user - times_before.user) + (times.system - times_before.system)
    host = (times.children_user - times_before.children_user) + (times.children_system - times_before.children_system)
    operations = sum(t["count"] for t in data["types"])
    print(f"soak process: peak RSS {peak_mb:.0f} MB, descriptors {fds_before} before, {_descriptors()} after; "
          f"CPU {own:.1f} s ({own / operations * 1000:.2f} ms per operation), stub host {host:.1f} s, start-up included "
          f"({host / operations * 1000:.2f} ms per operation)")
    if args.report:
        print("reports:", ", ".join(str(p) for p in write_reports(data, args.report).values()))
    sys.exit(0 if result.books_equal else 1)


if __name__ == "__main__":
    main()
