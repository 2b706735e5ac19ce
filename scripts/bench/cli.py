"""The benchmark suite in one command: Cloison and the baseline relay, side by side.

The usage is in the package docstring (``scripts/bench/__init__.py``).
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
from pathlib import Path

from scripts.bench.plan import QUICK, Plan, Suite
from scripts.bench.report import load_suite, write_report
from scripts.bench.runner import ROOT, Runner, _loadavg, machine, run_suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="scaled-down smoke run (< 2 min)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--plots", type=Path, default=ROOT / "docs" / "bench")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--generator-cpu", default="1")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--stretch", action="store_true", help="also try 100,000 idle connections")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the report from results.json"
    )
    args = parser.parse_args(argv)
    if args.render_only:
        write_report(load_suite(args.plots / "results.json"), args.out, args.plots)
        return 0
    info = machine()
    pinned = not args.no_pin and info["nproc"] >= 2 and shutil.which("taskset") is not None
    if pinned:
        info |= {"server_cpu": args.server_cpu, "generator_cpu": args.generator_cpu}
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    suite = Suite(args.quick, QUICK if args.quick else Plan(), info, pinned, now)
    run_suite(Runner(suite, args.server_cpu, args.generator_cpu), suite.plan, args.stretch)
    suite.machine["loadavg_end"] = _loadavg()
    suite.finished = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    write_report(suite, args.out, args.plots)
    failed = [r for r in suite.runs if r.result is None]
    print(f"wrote {args.out} and {args.plots}/; {len(failed)} run(s) failed", file=sys.stderr)
    return 1 if failed else 0
