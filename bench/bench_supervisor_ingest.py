"""Figure 2: authenticated Report with registry persistence on ``supervit supervisor`` ÷ a bare floor.

The supervisor verifies each credential (per-node secret lookup, HMAC, durable nonce), updates
the node's registry row (metrics, services, power level, realm version, time) in SQLite with group
commit, checks the directive queue and answers; the floor returns a prebuilt ReportResponse.
The fleet this sustains at a 60 s report interval is ``rps × 60``::

    python bench/bench_supervisor_ingest.py [--nodes 1000] [--duration 10] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common
import _loadgen
import _procs
from bench_node_rpc import compare

PREFIX = "bench"


def run(args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp,
        _procs.supervisor_daemon(Path(tmp)) as (sup_addr, _),
        _procs.bare_server() as (bare_addr, _),
    ):
        asyncio.run(_procs.register_nodes(sup_addr, PREFIX, args.nodes))
        workload = _loadgen.Workload("report", PREFIX, _procs.SECRET_HEX, nodes=args.nodes)
        return compare(sup_addr, bare_addr, workload, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000, help="registered nodes the reports rotate over")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    result = run(args)
    result["fleet_at_60s_interval"] = int(result["supervit"]["rps"] * 60)
    print(f"median of {args.rounds} alternating rounds; every round is in the JSON")
    rows = []
    for server in ("bare", "supervit"):
        d = result[server]
        rows.append(
            [
                "report",
                server,
                d["rps"],
                d["p50_us"],
                d["p99_us"],
                d["errors"],
                result["ratio"] if server == "supervit" else "",
            ]
        )
    _common.print_table(["rpc", "server", "rps", "p50 µs", "p99 µs", "errors", "ratio"], rows)
    print(f"sustains a fleet of ~{result['fleet_at_60s_interval']:,} nodes at a 60 s report interval")
    if args.json:
        _common.write_json(args.json, "supervisor_ingest", vars(args), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
