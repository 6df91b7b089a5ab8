"""Instructions per request of the bare floor and supervit trees, counted by callgrind.

Timing a 2-core VM cannot tell a 2 % change from noise (runs minutes apart differ by ±10 %).
Instruction counts can: each server runs under ``valgrind --tool=callgrind`` (all its threads),
the counters are zeroed after a warm-up and dumped after the load, and the total divided by the
calls answered is repeatable to about 0.1 % (docs/performance.md, step 14)::

    git worktree add /tmp/before HEAD~1
    python bench/instructions.py --rpc create_realm /tmp/before .

What it does not see: kernel time (system calls, fsync), and anything that depends on timing.
Under valgrind everything runs ~50× slower and one thread at a time, so time-driven batching
(the report log's fold every second, lingering group commits) groups differently than in a real
run; judge changes that move batching with ``bench/side_by_side.py`` instead.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import _common
import _loadgen
import _procs
from bench_node_rpc import NODE_ID, _seed

NODES = 1000
REALMS = 100
BENCH_DIR = Path(__file__).resolve().parent


def callgrind_total(path: Path) -> int:
    """The instructions (``Ir``) a callgrind output file counts in all."""
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"{path}: no summary line (not a callgrind output file?)")


def _command(label: str, rpc: str, tree: Path | None, directory: Path, out: Path) -> tuple[list[str], str]:
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/{label}.%p", "--dump-instr=no"]
    if tree is None:
        return [*valgrind, sys.executable, str(BENCH_DIR / "_bare.py")], "bare server listening on "
    if rpc == "report":
        config = _procs.write_supervisor_config(directory)
        return [*valgrind, sys.executable, "-m", "supervit", "supervisor", "--config", str(config)], (
            "supervit supervisor listening on "
        )
    config = _procs.write_node_config(directory, node_id=NODE_ID)
    return [*valgrind, sys.executable, "-m", "supervit", "node", "--config", str(config)], "supervit node listening on "


def measure(rpc: str, label: str, tree: Path | None, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Instructions per call of one server (``tree`` None: the bare floor) under ``rpc``'s load."""
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="instructions-")))
        cmd, prefix = _command(label, rpc, tree, directory, out)
        env = {"PYTHONPATH": str((tree or BENCH_DIR.parent) / "src")}
        address, pid = stack.enter_context(_procs.started(cmd, prefix, env=env, startup_secs=300))
        if rpc == "report":
            workload = _loadgen.Workload("report", "bench", _procs.SECRET_HEX, nodes=NODES)
            if tree is not None:
                asyncio.run(_procs.register_nodes(address, "bench", NODES))
        else:
            workload = _loadgen.Workload(rpc, NODE_ID, _procs.SECRET_HEX, realm_ids=REALMS)
            if tree is not None:
                asyncio.run(_seed(address, REALMS))
        _loadgen.run_load(address, workload, concurrency=args.concurrency, duration=args.warmup, warmup=0.5)
        for old in glob.glob(f"{out}/{label}.{pid}*"):
            Path(old).unlink()
        subprocess.run(["callgrind_control", "--zero", str(pid)], check=True, capture_output=True)
        result = _loadgen.run_load(address, workload, concurrency=args.concurrency, duration=args.duration, warmup=0)
        subprocess.run(["callgrind_control", "--dump", str(pid)], check=True, capture_output=True)
        dumps = [Path(p) for p in glob.glob(f"{out}/{label}.{pid}.*")]
        deadline = time.monotonic() + 30
        while not dumps and time.monotonic() < deadline:
            time.sleep(0.2)
            dumps = [Path(p) for p in glob.glob(f"{out}/{label}.{pid}.*")]
        if not dumps:
            raise RuntimeError(f"{label}: callgrind wrote no dump")
        instructions = sum(callgrind_total(p) for p in dumps)
    if not result.calls:
        raise RuntimeError(f"{label}: no call was answered ({result.error_samples})")
    return {
        "server": label,
        "tree": None if tree is None else str(tree),
        "calls": result.calls,
        "errors": result.errors,
        "instructions": instructions,
        "k_instructions_per_call": round(instructions / result.calls / 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_tree_arguments(parser, nargs="*", default_rpc="create_realm")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of counted load (under valgrind)")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-bare", action="store_true", help="leave the bare floor out")
    parser.add_argument(
        "--keep-dumps", type=Path, help="keep the callgrind files here (for callgrind_annotate); default: deleted"
    )
    parser.add_argument("--json", help="write the figures here")
    _common.add_event_loop_argument(parser)  # trees older than --event-loop always run on asyncio
    args = parser.parse_args(argv)
    rpcs = _common.rpcs_of(parser, args)
    _common.use_event_loop(args)
    if not args.trees and args.no_bare:
        parser.error("nothing to measure: give a tree or leave out --no-bare")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("instructions.py needs valgrind (Debian/Ubuntu: apt install valgrind)", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        out_dir = args.keep_dumps or stack.enter_context(tempfile.TemporaryDirectory(prefix="callgrind-"))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for rpc in rpcs:
            servers: list[tuple[str, Path | None]] = [] if args.no_bare else [("bare", None)]
            servers += [(f"tree {i + 1}", tree) for i, tree in enumerate(args.trees)]
            measured = [measure(rpc, label, tree, args, Path(out_dir)) for label, tree in servers]
            by_label = {m["server"]: m for m in measured}
            for m in measured:
                for ref in ("bare", "tree 1"):
                    base = by_label.get(ref)
                    m[f"vs_{ref.replace(' ', '_')}"] = (
                        round(m["instructions"] / m["calls"] / (base["instructions"] / base["calls"]), 3)
                        if base is not None and m is not base
                        else None
                    )
                rows.append({"rpc": rpc, **m})
    headers = ["rpc", "server", "calls", "k instr/call", "÷ bare", "÷ tree 1"]
    table = [
        [r["rpc"], r["server"], r["calls"], r["k_instructions_per_call"], r["vs_bare"] or "", r["vs_tree_1"] or ""]
        for r in rows
    ]
    print("user-space instructions per call, all server threads (callgrind)")
    _common.print_table(headers, table)
    for i, tree in enumerate(args.trees, start=1):
        print(f"tree {i}: {tree}")
    if args.json:
        parameters = {k: v for k, v in vars(args).items() if k not in ("json", "trees")}
        _common.write_json(args.json, "instructions", {**parameters, "trees": [str(t) for t in args.trees]}, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
