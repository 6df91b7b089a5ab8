"""Figure 3: a simulated fleet of 10,000 nodes registering, then reporting, against one supervisor.

The report interval is compressed (default 10 s instead of 60 s) so the run stays short. Every node
reports on its own phase (open loop: a slow supervisor makes reports late, it does not slow the
schedule). Measured: registration rate, sustained reports/s, report latency p50/p99, supervisor RSS
and CPU, how late the generator fired, and offline false positives (nodes the supervisor marked
offline although they kept reporting; polled through the admin API every few seconds; must be 0)::

    python bench/bench_fleet.py [--nodes 10000] [--interval 10] [--duration 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing as mp
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _common
import _loadgen
import _procs
import grpc
import psutil

from supervit.auth import SharedSecret, Signer
from supervit.supervisor import AdminClient

PREFIX = "fleet"
ADMIN_SECRET = "fedcba9876543210" * 4


async def _reporter(
    address: str, node_ids: list[int], interval: float, start_at: float, duration: float
) -> dict[str, Any]:
    latencies: list[int] = []
    lateness: list[float] = []
    errors: list[str] = []
    rng = random.Random(node_ids[0] if node_ids else 0)
    schedule = sorted((start_at + rng.random() * interval, n) for n in node_ids)  # each node its own phase
    stop_at = start_at + duration
    signer = Signer(SharedSecret.from_hex(_procs.SECRET_HEX))
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary("/supervisor.v1.SupervisorService/Report")
        in_flight: set[asyncio.Task[None]] = set()

        async def fire(node: int, due: float) -> None:
            lateness.append(max(0.0, time.time() - due))
            body = _loadgen.report_request(signer, f"{PREFIX}-{node}").SerializeToString()
            t0 = time.perf_counter_ns()
            try:
                await call(body, timeout=30)
                latencies.append(time.perf_counter_ns() - t0)
            except grpc.aio.AioRpcError as exc:
                errors.append(f"{exc.code().name}: {exc.details()}")

        for index in itertools.count():
            due, node = schedule[index % len(schedule)]
            due += (index // len(schedule)) * interval
            if due >= stop_at:
                break
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(fire(node, due))  # open loop: never wait for the answer
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)
    return {"latencies": latencies, "lateness": lateness, "errors": errors[:5], "error_count": len(errors)}


def _reporter_main(args: tuple[str, list[int], float, float, float], out: Any) -> None:
    out.put(asyncio.run(_reporter(*args)))


async def _watch_offline(admin_addr: str, stop: threading.Event, seen: set[str], polls: list[int]) -> None:
    async with AdminClient(admin_addr, SharedSecret.from_hex(ADMIN_SECRET), timeout_secs=60) as admin:
        while not stop.is_set():
            response = await admin.list_nodes()
            offline = [n.node_id for n in response.nodes if n.state != "online"]
            seen.update(offline)
            polls.append(len(offline))
            await asyncio.sleep(3)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        cfg = {"report_interval_secs": int(args.interval), "admin_secret": ADMIN_SECRET}
        config = _procs.write_supervisor_config(Path(tmp), **cfg)  # type: ignore[arg-type]
        cmd = [sys.executable, "-m", "supervit", "supervisor", "--config", str(config)]
        admin_prefix = "supervit supervisor admin listening on "
        also = {admin_prefix: ""}
        with _procs.started(cmd, "supervit supervisor listening on ", also=also) as (address, pid):
            sup = psutil.Process(pid)
            admin_addr = also[admin_prefix]
            t0 = time.perf_counter()
            asyncio.run(_procs.register_nodes(address, PREFIX, args.nodes, concurrency=128))
            register_s = time.perf_counter() - t0

            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            start_at = time.time() + 2.0
            slices = [list(range(i, args.nodes, args.processes)) for i in range(args.processes)]
            procs = [
                ctx.Process(target=_reporter_main, args=((address, s, args.interval, start_at, args.duration), out))
                for s in slices
            ]
            for p in procs:
                p.start()
            stop = threading.Event()
            seen_offline: set[str] = set()
            polls: list[int] = []
            watcher = threading.Thread(
                target=lambda: asyncio.run(_watch_offline(admin_addr, stop, seen_offline, polls)), daemon=True
            )
            time.sleep(max(0.0, start_at - time.time()))
            cpu0 = sum(sup.cpu_times()[:2])
            watcher.start()
            rss_max = 0
            while any(p.is_alive() for p in procs) and out.qsize() < len(procs):
                rss_max = max(rss_max, sup.memory_info().rss)
                time.sleep(1)
            parts = [out.get(timeout=args.duration + 120) for _ in procs]
            cpu1 = sum(sup.cpu_times()[:2])
            stop.set()
            watcher.join(timeout=120)
            for p in procs:
                p.join()
    latencies = sorted(ns / 1000 for part in parts for ns in part["latencies"])
    lateness = sorted(x for part in parts for x in part["lateness"])
    reports = len(latencies)
    return {
        "nodes": args.nodes,
        "interval_s": args.interval,
        "register_s": round(register_s, 2),
        "registrations_per_s": round(args.nodes / register_s, 1),
        "reports": reports,
        "report_errors": sum(part["error_count"] for part in parts),
        "error_samples": [e for part in parts for e in part["errors"]][:5],
        "reports_per_s": round(reports / args.duration, 1),
        "expected_reports_per_s": round(args.nodes / args.interval, 1),
        "p50_ms": round(_common.percentile(latencies, 50) / 1000, 2) if latencies else None,
        "p99_ms": round(_common.percentile(latencies, 99) / 1000, 2) if latencies else None,
        "generator_late_p99_ms": round(_common.percentile(lateness, 99) * 1000, 1) if lateness else None,
        "supervisor_rss_mb_max": round(rss_max / 2**20, 1),
        "supervisor_cpu_percent": round((cpu1 - cpu0) / args.duration * 100, 1),
        "offline_false_positives": len(seen_offline),
        "offline_polls": len(polls),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=10.0, help="compressed report interval (s)")
    parser.add_argument("--duration", type=float, default=60.0, help="reporting phase (s)")
    parser.add_argument("--processes", type=int, default=2, help="generator processes")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    result = run(args)
    _common.print_table(["figure", "value"], [[k, v] for k, v in result.items() if k != "error_samples"])
    if result["error_samples"]:
        print("errors:", *result["error_samples"], sep="\n  ")
    if args.json:
        _common.write_json(args.json, "fleet", vars(args), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
