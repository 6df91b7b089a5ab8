"""Figure 6: the agent's footprint: ``supervit node`` reporting every second to a supervisor, idle.

Starts a real supervisor and a real node (reporting and health-checking every 1 s, serving its
SupervisedService), lets the node settle, then samples its RSS and CPU time for ``--duration``
seconds (default 60). Targets: RSS <= 60 MB, CPU <= 2 % of one core::

    python bench/bench_footprint.py [--duration 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
import _procs
import psutil


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        root = Path(tmp)
        (root / "sup").mkdir()
        (root / "node").mkdir()
        with _procs.supervisor_daemon(root / "sup", report_interval_secs=1) as (sup_addr, sup_pid):
            node_cfg = _procs.write_node_config(
                root / "node",
                endpoint=f"http://{sup_addr}",
                status_report_interval_secs="1",
                health_check_interval_secs="1",
            )
            cmd = [sys.executable, "-m", "supervit", "node", "--config", str(node_cfg)]
            with _procs.started(cmd, "supervit node listening on ") as (_, pid):
                proc = psutil.Process(pid)
                time.sleep(args.settle)
                cpu0 = sum(proc.cpu_times()[:2])
                rss: list[int] = []
                t0 = time.monotonic()
                while time.monotonic() - t0 < args.duration:
                    rss.append(proc.memory_info().rss)
                    time.sleep(1)
                elapsed = time.monotonic() - t0
                cpu1 = sum(proc.cpu_times()[:2])
                sup = psutil.Process(sup_pid)
                sup_rss = sup.memory_info().rss
    return {
        "duration_s": round(elapsed, 1),
        "report_interval_s": 1,
        "node_rss_mb_max": round(max(rss) / 2**20, 1),
        "node_rss_mb_mean": round(sum(rss) / len(rss) / 2**20, 1),
        "node_cpu_percent": round((cpu1 - cpu0) / elapsed * 100, 2),
        "supervisor_rss_mb": round(sup_rss / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before sampling starts")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    result = run(args)
    _common.print_table(["figure", "value"], [[k, v] for k, v in result.items()])
    if args.json:
        _common.write_json(args.json, "footprint", vars(args), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
