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
from bench_node_rpc import add_client_mode, compare, print_rows

PREFIX = "bench"


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp,
        _procs.supervisor_daemon(Path(tmp)) as supervisor,
        _procs.bare_server() as bare,
    ):
        asyncio.run(_procs.register_nodes(supervisor[0], PREFIX, args.nodes))
        for mode in args.client_mode.split(","):
            workload = _loadgen.Workload("report", PREFIX, _procs.SECRET_HEX, nodes=args.nodes, mode=mode)
            rows.append({"rpc": "report", **compare(supervisor, bare, workload, args)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000, help="registered nodes the reports rotate over")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="write the figures here")
    add_client_mode(parser)
    _common.add_event_loop_argument(parser)
    args = parser.parse_args(argv)
    loop = _common.use_event_loop(args)
    rows = run(args)
    print_rows(rows, args.rounds, loop)
    for row in rows:
        row["fleet_at_60s_interval"] = int(row["supervit"]["rps"] * 60)
        print(f"{row['mode']} client: sustains ~{row['fleet_at_60s_interval']:,} nodes at a 60 s report interval")
    if args.json:
        _common.write_json(args.json, "supervisor_ingest", vars(args), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
