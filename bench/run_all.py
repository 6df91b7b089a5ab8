"""Run the whole benchmark suite; each script prints its table and writes JSON into --out.

    python bench/run_all.py [--out bench/results] [--quick]

``--quick`` uses tiny parameters (a smoke run, figures meaningless); without it the suite takes
roughly 10 minutes on a 2-core machine. docs/performance.md records a full run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

FULL: dict[str, list[str]] = {
    "bench_verify": [],
    "bench_handlers": [],
    "bench_realm_paging": [],
    "bench_node_rpc": ["--duration", "8", "--rounds", "5", "--client-mode", "stub,raw"],
    "bench_supervisor_ingest": ["--duration", "8", "--rounds", "5", "--client-mode", "stub,raw"],
    "bench_metrics_overhead": ["--duration", "8", "--rounds", "5"],
    "bench_fleet": ["--nodes", "10000", "--interval", "10", "--duration", "5m"],
    "bench_footprint": ["--duration", "60"],
    "bench_hostile": [],
    "bench_replicas": ["--duration", "8", "--rounds", "2"],
}
QUICK: dict[str, list[str]] = {
    "bench_verify": ["--count", "200"],
    "bench_handlers": ["--calls", "200", "--rounds", "1", "--concurrency", "4", "--nodes", "20"],
    "bench_realm_paging": ["--sizes", "200,400", "--pages", "20"],
    "bench_node_rpc": ["--duration", "0.25", "--warmup", "0.1", "--rounds", "1", "--concurrency", "4"],
    "bench_supervisor_ingest": [
        "--duration",
        "0.25",
        "--warmup",
        "0.1",
        "--rounds",
        "1",
        "--nodes",
        "20",
        "--concurrency",
        "4",
    ],
    "bench_metrics_overhead": [
        "--duration",
        "0.25",
        "--warmup",
        "0.1",
        "--rounds",
        "1",
        "--nodes",
        "20",
        "--realms",
        "10",
        "--concurrency",
        "4",
        "--micro-calls",
        "1000",
    ],
    "bench_fleet": ["--nodes", "50", "--interval", "1", "--duration", "2", "--window", "1", "--processes", "1"],
    "bench_footprint": ["--duration", "2", "--settle", "1"],
    "bench_hostile": ["--count", "5", "--flood", "20", "--settle", "0.5"],
    "bench_replicas": ["--duration", "0.25", "--warmup", "0.1", "--rounds", "1", "--nodes", "20", "--concurrency", "4"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--quick", action="store_true", help="tiny parameters: check that every script runs")
    parser.add_argument("--only", action="append", help="run only these scripts (repeatable)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    plan = QUICK if args.quick else FULL
    failed = []
    for name, extra in plan.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        cmd = [sys.executable, str(BENCH / f"{name}.py"), *extra, "--json", str(args.out / f"{name}.json")]
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(name)
        print(f"   ({time.perf_counter() - started:.0f} s)\n", flush=True)
    if failed:
        print("failed:", ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
