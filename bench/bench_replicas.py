"""Report throughput and CPU per report: one supervisor on SQLite vs 1 and 2 replicas on PostgreSQL + Redis.

Each setup is real ``supervit supervisor`` processes; the load generator (``_loadgen``, separate
processes, signed full reports rotating over ``--nodes`` registered nodes) keeps ``--concurrency``
reports in flight per process, split evenly over the replicas. Measured over the same window:
reports/s, the supervisors' CPU (all their processes), PostgreSQL's CPU (every ``postgres``
process on the machine) and Redis's (``redis-server``). CPU per report is the steadier figure on a
shared machine; PostgreSQL and Redis may also serve other users of this machine during the run::

    python bench/bench_replicas.py [--duration 8] [--rounds 2] [--nodes 2000] [--json out.json]

Needs PostgreSQL and Redis (``SUPERVIT_BENCH_POSTGRES_URL``, ``SUPERVIT_BENCH_REDIS_URL``; the test
defaults otherwise); each setup uses a fresh schema and key prefix, removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _common
import _loadgen
import _procs
import psutil

PG_URL = os.environ.get("SUPERVIT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SUPERVIT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = "bench"


def _config(directory: Path, name: str, shared: dict[str, str] | None) -> Path:
    lines = [
        "[server]",
        'listen = "127.0.0.1:0"',
        f'data_dir = "{directory / name}"',
        'log_level = "warning"',
        *(f'{k} = "{v}"' for k, v in (shared or {}).items()),
        "[fleet]",
        f'shared_secret = "{_procs.SECRET_HEX}"',
        "report_interval_secs = 60",
        "[admin]",
        'listen = ""',
        "[metrics]",
        'listen = ""',  # several replicas on one machine: never the default port
    ]
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def _replicas(directory: Path, count: int, shared: dict[str, str] | None) -> Iterator[list[tuple[str, int]]]:
    with contextlib.ExitStack() as stack:
        found = []
        for i in range(count):
            config = _config(directory, f"sup{i}", shared)
            cmd = [sys.executable, "-m", "supervit", "supervisor", "--config", str(config)]
            found.append(stack.enter_context(_procs.started(cmd, "supervit supervisor listening on ")))
        yield found


def _named(*names: str) -> list[psutil.Process]:
    procs = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in names:
            procs.append(proc)
    return procs


def _cpu(procs: list[psutil.Process]) -> dict[int, float]:
    found = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            found[proc.pid] = times.user + times.system
    return found


def _used(before: dict[int, float], after: dict[int, float]) -> float:
    # Per process, so one that exits meanwhile (another user's backend) cannot make it negative.
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _load(targets: list[str], args: argparse.Namespace, pids: list[int]) -> dict[str, Any]:
    workload = _loadgen.Workload("report", PREFIX, _procs.SECRET_HEX, nodes=args.nodes, mode=args.client_mode)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 1.5
    procs = [
        ctx.Process(
            target=_loadgen._process_main,
            args=((targets[i % len(targets)], workload, args.concurrency, start_at, args.warmup, args.duration), out),
        )
        for i in range(args.processes)
    ]
    for p in procs:
        p.start()
    supervisors = [psutil.Process(pid) for pid in pids]
    postgres, redis = _named("postgres"), _named("redis-server")
    time.sleep(max(0.0, start_at + args.warmup - time.time()))
    wal_before = asyncio.run(_wal_lsn()) if args.shared else None
    before = [_cpu(supervisors), _cpu(postgres), _cpu(redis)]
    began = time.monotonic()
    time.sleep(max(0.0, start_at + args.warmup + args.duration - time.time()))
    postgres = _named("postgres")  # backends opened during the window count from zero
    after = [_cpu(supervisors), _cpu(postgres), _cpu(redis)]
    seconds = time.monotonic() - began
    wal = None if wal_before is None else asyncio.run(_wal_lsn()) - wal_before
    used = [_used(b, a) for b, a in zip(before, after, strict=True)]
    parts = [out.get(timeout=args.duration + args.warmup + 120) for _ in procs]
    for p in procs:
        p.join()
    latencies = sorted(ns / 1000 for part in parts for ns in part["latencies"])
    calls = len(latencies)
    errors = sum(part["errors"] for part in parts)

    def per_call(cpu: float) -> float | None:
        return round(cpu * 1e6 / calls, 1) if calls else None

    return {
        "rps": round(calls / args.duration, 1),
        "errors": errors,
        "error_samples": [s for part in parts for s in part["samples"]][:3],
        "p50_us": round(_common.percentile(latencies, 50), 1) if latencies else None,
        "p99_us": round(_common.percentile(latencies, 99), 1) if latencies else None,
        "supervisor_cpu_pct": round(100 * used[0] / seconds, 1),
        "postgres_cpu_pct": round(100 * used[1] / seconds, 1),
        "redis_cpu_pct": round(100 * used[2] / seconds, 1),
        "supervisor_us_per_report": per_call(used[0]),
        "postgres_us_per_report": per_call(used[1]),
        "redis_us_per_report": per_call(used[2]),
        "total_us_per_report": per_call(sum(used)),
        # The whole cluster's WAL: other databases' writes during the window count too.
        "wal_bytes_per_report": round(wal / calls) if wal is not None and calls else None,
    }


async def _stores_missing() -> str | None:
    import asyncpg
    import redis.asyncio

    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
        await conn.close()
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL not reachable ({type(exc).__name__})"
    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        await client.ping()
    except (OSError, redis.exceptions.RedisError) as exc:
        return f"Redis not reachable ({type(exc).__name__})"
    finally:
        await client.aclose()
    return None


async def _wal_lsn() -> int:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        return int(await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
    finally:
        await conn.close()


async def _drop(schema: str, prefix: str) -> None:
    import asyncpg
    import redis.asyncio

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=5000)]
        for i in range(0, len(keys), 5000):
            await client.delete(*keys[i : i + 5000])
    finally:
        await client.aclose()


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for setup in args.setups.split(","):
        name, _, replicas = setup.partition(":")
        backend, count, shared = {"sqlite": "sqlite", "pg": "pg+redis"}[name], int(replicas or 1), name == "pg"
        tag = uuid.uuid4().hex[:8]
        schema, prefix = f"bench_{tag}", f"bench:{tag}:"
        store = (
            {
                "database_url": PG_URL,
                "database_schema": schema,
                "nonce_store_url": REDIS_URL,
                "nonce_key_prefix": prefix,
            }
            if shared
            else None
        )
        try:
            with (
                tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp,
                _replicas(Path(tmp), count, store) as sups,
            ):
                asyncio.run(_procs.register_nodes(sups[0][0], PREFIX, args.nodes))
                args.shared = shared
                rounds = [_load([a for a, _ in sups], args, [p for _, p in sups]) for _ in range(args.rounds)]
        finally:
            if shared:
                asyncio.run(_drop(schema, prefix))
        best = max(rounds, key=lambda r: r["rps"])
        results.append({"backend": backend, "replicas": count, "best": best, "rounds": rounds})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000, help="registered nodes the reports rotate over")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--processes", type=int, default=2, help="load generator processes (split over replicas)")
    parser.add_argument("--concurrency", type=int, default=32, help="reports in flight per generator process")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--client-mode", default="raw", help="raw (cheaper generator) or stub")
    parser.add_argument("--setups", default="sqlite:1,pg:1,pg:2", help="backend:replicas, comma-separated")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    missing = asyncio.run(_stores_missing())
    if missing:
        # Not a failure on a machine without the services: say so, and record it.
        print(f"skipped: {missing} (set SUPERVIT_BENCH_POSTGRES_URL / SUPERVIT_BENCH_REDIS_URL)")
        if args.json:
            _common.write_json(args.json, "replicas", vars(args), [{"skipped": missing}])
        return 0
    results = run(args)
    print(f"best of {args.rounds} round(s) of {args.duration:g} s; shared 2-core machine, other agents running")
    headers = ["backend", "replicas", "reports/s", "p50 µs", "p99 µs", "errors", "supervisor CPU %", "PG CPU %"]
    headers += ["Redis CPU %", "sup µs/report", "PG µs/report", "Redis µs/report", "total µs/report", "WAL B/report"]
    table = []
    for r in results:
        b = r["best"]
        table.append(
            [
                r["backend"],
                r["replicas"],
                b["rps"],
                b["p50_us"],
                b["p99_us"],
                b["errors"],
                b["supervisor_cpu_pct"],
                b["postgres_cpu_pct"],
                b["redis_cpu_pct"],
                b["supervisor_us_per_report"],
                b["postgres_us_per_report"],
                b["redis_us_per_report"],
                b["total_us_per_report"],
                b["wal_bytes_per_report"],
            ]
        )
    _common.print_table(headers, table)
    if args.json:
        _common.write_json(args.json, "replicas", vars(args), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
