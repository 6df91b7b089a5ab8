"""Two or more supervit trees side by side with the bare floor, alternating, in one run.

How a change is judged (docs/performance.md, "Method"): whole runs minutes apart differ by more
than most changes, so the code before and after run in the same run, round by round. Each TREE is
a checkout (its ``src/`` goes on the daemon's ``PYTHONPATH``); the load generator is this
checkout's. A checkout of an older commit for the "before" side::

    git worktree add /tmp/before HEAD~1
    python bench/side_by_side.py --rpc report --rounds 6 --duration 5 /tmp/before .

Prints, per server, the medians of the rounds and the median per-round ratios to the bare
server and to the first tree (throughput and the server's CPU per call, all its threads).

``--event-loop asyncio,uvloop`` runs the bare server and every tree on each loop (ratios to the
bare server and to tree 1 on the same loop, and of each server to itself on the first loop)::

    python bench/side_by_side.py --rpc get_realm,create_realm,report --event-loop asyncio,uvloop .
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import _common
import _loadgen
import _procs
from bench_node_rpc import NODE_ID, _seed

NODES = 1000  # registered nodes the reports rotate over (as bench_supervisor_ingest.py)
REALMS = 100  # realms seeded for get_realm (as bench_node_rpc.py)


def _start(stack: ExitStack, rpc: str, tree: Path, loop: str) -> tuple[str, int]:
    """A daemon of ``tree`` for ``rpc`` on event loop ``loop``, seeded; returns (address, pid)."""
    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="side-by-side-")))
    env = {"PYTHONPATH": str(tree / "src"), _common.EVENT_LOOP_ENV: loop}
    if rpc == "report":
        found = stack.enter_context(_procs.supervisor_daemon(directory, env=env))
        asyncio.run(_procs.register_nodes(found[0], "bench", NODES))
    else:
        found = stack.enter_context(_procs.node_daemon(directory, node_id=NODE_ID, env=env))
        asyncio.run(_seed(found[0], REALMS))
    return found


def _median_ratio(mine: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> float | None:
    ratios = [m[key] / b[key] for m, b in zip(mine, base, strict=True) if m[key] and b[key]]
    return round(statistics.median(ratios), 3) if ratios else None


def compare(rpc: str, trees: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    """Alternate the bare server and every tree's daemon for ``args.rounds`` rounds."""
    if rpc == "report":
        workload = _loadgen.Workload("report", "bench", _procs.SECRET_HEX, nodes=NODES, mode=args.client_mode)
    else:
        workload = _loadgen.Workload(rpc, NODE_ID, _procs.SECRET_HEX, realm_ids=REALMS, mode=args.client_mode)
    loops: list[str] = args.event_loop
    suffix = {loop: f"/{loop}" if len(loops) > 1 else "" for loop in loops}
    tree_of: dict[str, Path | None] = {}
    with ExitStack() as stack:
        servers = {}
        for loop in loops:
            servers[f"bare{suffix[loop]}"] = stack.enter_context(_procs.bare_server({_common.EVENT_LOOP_ENV: loop}))
            tree_of[f"bare{suffix[loop]}"] = None
            for i, tree in enumerate(trees):
                servers[f"tree {i + 1}{suffix[loop]}"] = _start(stack, rpc, tree, loop)
                tree_of[f"tree {i + 1}{suffix[loop]}"] = tree
        names = list(servers)
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else reversed(names):  # nobody always runs first
                address, pid = servers[name]
                result = _loadgen.run_load(
                    address, workload, server_pid=pid, concurrency=args.concurrency,
                    duration=args.duration, warmup=args.warmup,
                )  # fmt: skip
                rounds[name].append(result.as_dict())
    servers_out = []
    for name in names:
        mine = rounds[name]
        server, _, loop = name.partition("/")
        same_loop = f"/{loop}" if loop else ""
        first = f"{server}/{loops[0]}" if loop else name
        tree = tree_of[name]
        servers_out.append(
            {
                "server": name,
                "tree": None if tree is None else str(tree),
                "event_loop": _common.server_event_loop(loop or loops[0]),
                "rps": round(statistics.median(m["rps"] for m in mine), 1),
                "cpu_us_per_call": _median_or_none([m["server_cpu_us_per_call"] for m in mine]),
                "p50_us": round(statistics.median(m["p50_us"] for m in mine), 1),
                "errors": sum(m["errors"] for m in mine),
                "rps_vs_bare": _median_ratio(mine, rounds[f"bare{same_loop}"], "rps"),
                "cpu_vs_bare": _median_ratio(mine, rounds[f"bare{same_loop}"], "server_cpu_us_per_call"),
                "rps_vs_tree_1": _median_ratio(mine, rounds[f"tree 1{same_loop}"], "rps"),
                "cpu_vs_tree_1": _median_ratio(mine, rounds[f"tree 1{same_loop}"], "server_cpu_us_per_call"),
                "rps_vs_first_loop": _median_ratio(mine, rounds[first], "rps"),
                "cpu_vs_first_loop": _median_ratio(mine, rounds[first], "server_cpu_us_per_call"),
                "rounds": mine,
            }
        )
    return {"rpc": rpc, "mode": args.client_mode, "servers": servers_out}


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 1) if known else None


def print_rows(rows: list[dict[str, Any]], rounds: int, loops: list[str]) -> None:
    several = len(loops) > 1
    table = []
    for row in rows:
        for s in row["servers"]:
            mine = not s["server"].startswith("bare")
            cells = [
                row["rpc"], s["server"], s["rps"], s["p50_us"], s["cpu_us_per_call"], s["errors"],
                s["rps_vs_bare"] if mine else "", s["cpu_vs_bare"] if mine else "",
                s["rps_vs_tree_1"] if mine else "", s["cpu_vs_tree_1"] if mine else "",
            ]  # fmt: skip
            if several:
                cells += [s["rps_vs_first_loop"], s["cpu_vs_first_loop"]]
            table.append(cells)
    print(f"medians of {rounds} alternating rounds (ratios: median of the per-round ratios)")
    headers = ["rpc", "server", "rps", "p50 µs", "CPU µs/call", "errors", "rps ÷ bare", "CPU ÷ bare"]
    headers += ["rps ÷ tree 1", "CPU ÷ tree 1"]
    if several:
        headers += [f"rps ÷ {loops[0]}", f"CPU ÷ {loops[0]}"]
    _common.print_table(headers, table)
    if rows:
        trees = {s["server"].partition("/")[0]: s["tree"] for s in rows[0]["servers"] if s["tree"]}
        for name, tree in trees.items():
            print(f"{name}: {tree}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_tree_arguments(parser, nargs="+", default_rpc="report")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--client-mode", default="stub", choices=("stub", "raw"))
    parser.add_argument("--json", help="write the figures here")
    # Trees older than --event-loop always run on asyncio.
    _common.add_event_loop_argument(parser, several=True)
    args = parser.parse_args(argv)
    rpcs = _common.rpcs_of(parser, args)
    resolved = [_common.server_event_loop(loop) for loop in args.event_loop]
    if len(set(resolved)) < len(resolved):
        parser.error(f"--event-loop {','.join(args.event_loop)} names one loop twice ({', '.join(resolved)})")
    args.event_loop = resolved
    rows = [compare(rpc, args.trees, args) for rpc in rpcs]
    print(f"servers on the {', '.join(resolved)} event loop(s)")
    print_rows(rows, args.rounds, resolved)
    if args.json:
        params = {k: (list(map(str, v)) if k == "trees" else v) for k, v in vars(args).items()}
        _common.write_json(args.json, "side_by_side", params, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
