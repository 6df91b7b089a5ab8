"""What does hostile, unauthenticated traffic cost a supervit process (issue 10)?

1. **CPU per refused request.** For each of the most expensive requests a stranger can send (the
   largest request a service accepts, signed with a wrong secret but inside the time window so
   the fingerprint and HMAC run; a non-UTF-8 one; an oversize one; garbage), the server
   process's CPU time (user + system, every thread) over ``--count`` requests, per request.
   Target: at most 5 ms for the worst.
2. **Memory under a flood.** ``--flood`` concurrent requests of 4 MB with a wrong signature
   against a node: the node's RSS before, its peak while they are in flight, and ``--settle``
   seconds after. Target: peak at most 300 MB, back near the baseline after.

Real ``supervit supervisor`` and ``supervit node`` processes on loopback::

    python bench/bench_hostile.py [--count 200] [--flood 400] [--settle 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common
import _procs
import grpc
import psutil

from supervit.auth import SharedSecret, Signer, request_payload
from supervit.protocol import common_pb2, supervised_pb2, supervisor_pb2

WRONG = Signer(SharedSecret.from_hex("fedcba9876543210" * 4))
CPU_TARGET_MS = 5.0
RSS_TARGET_MB = 300.0


def _largest_registration() -> supervisor_pb2.RegisterNodeRequest:
    # Every field at its limit (docs/security.md): about 200 KB, below the 256 KB request limit.
    request = supervisor_pb2.RegisterNodeRequest(
        node_id="n" * 128,
        name="x" * 256,
        location_tag="l" * 128,
        version="v" * 64,
        agent_addr="10.0.0.1:" + "1" * 5,
        location="r" * 256,
        service_tags=[f"{i}".ljust(64, "t") for i in range(64)],
        services=[
            supervisor_pb2.ServiceAdvertisement(
                name=f"s{i}".ljust(128, "n"),
                type=2,
                domain_name="d" * 256,
                port_info="p" * 128,
                status=1,
                description="x" * 1024,
                url="u" * 512,
                tags=[f"{i}-{t}".ljust(64, "t") for t in range(32)],
            )
            for i in range(48)
        ],
    )
    request.credential.CopyFrom(WRONG.credential(request_payload(request)))
    return request


def _oversize_registration() -> bytes:
    request = supervisor_pb2.RegisterNodeRequest(
        node_id="n1", name="n", location_tag="l", version="1", agent_addr="10.0.0.1:1",
        service_tags=[f"tag-{i}" for i in range(350_000)],
    )  # fmt: skip
    request.credential.CopyFrom(WRONG.credential("register:n1:x"))
    return request.SerializeToString()


def _largest_report() -> bytes:
    request = supervisor_pb2.ReportRequest(
        node_id="n" * 128, timestamp=WRONG.now(), location_tag="l" * 128, version="v" * 64, name="x" * 256,
        power_reserve_level=3, realm_sync_version=1,
    )  # fmt: skip
    for i in range(64):
        request.services.add(
            name=f"s{i}".ljust(128, "n"), type=2, is_healthy=True, active_connections=1, total_requests=2,
            failed_requests=0, average_latency_ms=1.0, url="u" * 512, domain="d" * 256,
        )  # fmt: skip
    request.credential.CopyFrom(WRONG.credential(request_payload(request)))
    return request.SerializeToString()


def _update_config(value_bytes: int) -> bytes:
    request = supervised_pb2.UpdateConfigRequest(
        config_type=common_pb2.CUSTOM, config_key="k" * 256, config_value="v" * value_bytes, apply_immediately=True
    )
    request.credential.CopyFrom(WRONG.credential(request_payload(request, "bench-node")))
    return request.SerializeToString()


def _non_utf8(raw: bytes) -> bytes:
    return raw + b"\x12\x02\xc3\x28"  # field 2 (name) again, invalid UTF-8


async def _cost(address: str, pid: int, method: str, body: bytes, count: int) -> dict[str, Any]:
    codes: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(method)
        queue = iter(range(count))

        async def worker() -> None:
            for _ in queue:
                try:
                    await call(body, timeout=30)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] += 1

        await worker_round(worker, 1)  # warm the connection and the code paths
        queue = iter(range(count))
        before, _ = _procs.cpu_and_rss(pid)
        await worker_round(worker, 4)
        after, _ = _procs.cpu_and_rss(pid)
    return {"cpu_ms_per_request": round((after - before) * 1000 / count, 3), "codes": dict(codes)}


async def worker_round(worker: Any, tasks: int) -> None:
    await asyncio.gather(*(worker() for _ in range(tasks)))


def _sample_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.01)


async def _flood(address: str, pid: int, flood: int, settle: float) -> dict[str, Any]:
    body = _update_config(4 * 1024 * 1024 - 512)
    _, baseline = _procs.cpu_and_rss(pid)
    peak = [baseline]
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(pid, stop, peak), daemon=True)
    sampler.start()
    codes: Counter[str] = Counter()
    channels = [grpc.aio.insecure_channel(address) for _ in range(8)]
    try:
        calls = [c.unary_unary("/supervisor.v1.SupervisedService/UpdateConfig") for c in channels]

        async def one(i: int) -> None:
            try:
                await calls[i % len(calls)](body, timeout=60)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(flood)))
        elapsed = time.perf_counter() - started
    finally:
        for channel in channels:
            await channel.close(None)
    await asyncio.sleep(settle)
    stop.set()
    sampler.join()
    _, after = _procs.cpu_and_rss(pid)
    mb = 1024 * 1024
    return {
        "requests": flood,
        "request_bytes": len(body),
        "seconds": round(elapsed, 2),
        "rss_baseline_mb": round(baseline / mb, 1),
        "rss_peak_mb": round(peak[0] / mb, 1),
        "rss_after_mb": round(after / mb, 1),
        "codes": dict(codes),
    }


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"cpu": [], "flood": None}
    (tmp / "sup").mkdir()
    (tmp / "node").mkdir()
    registration = _largest_registration()
    plans = [
        ("SupervisorService", "RegisterNode, largest accepted, wrong secret", "RegisterNode",
         registration.SerializeToString()),
        ("SupervisorService", "RegisterNode, non-UTF-8 field, wrong secret", "RegisterNode",
         _non_utf8(registration.SerializeToString())),
        ("SupervisorService", "RegisterNode, 3.5 MB / 350k tags", "RegisterNode", _oversize_registration()),
        ("SupervisorService", "Report, largest accepted, wrong secret", "Report", _largest_report()),
        ("SupervisorService", "100 KB of garbage", "Report", bytes(range(256)) * 400),
    ]  # fmt: skip
    node_plans = [
        ("SupervisedService", "UpdateConfig, 64 KB value, wrong secret", "UpdateConfig", _update_config(64 * 1024)),
        ("SupervisedService", "UpdateConfig, 4 MB", "UpdateConfig", _update_config(4 * 1024 * 1024 - 512)),
    ]
    with _procs.supervisor_daemon(tmp / "sup") as (address, pid):
        for service, label, method, body in plans:
            row = await _cost(address, pid, f"/supervisor.v1.{service}/{method}", body, args.count)
            results["cpu"].append({"service": service, "request": label, "bytes": len(body), **row})
    with _procs.node_daemon(tmp / "node") as (address, pid):
        for service, label, method, body in node_plans:
            row = await _cost(address, pid, f"/supervisor.v1.{service}/{method}", body, args.count)
            results["cpu"].append({"service": service, "request": label, "bytes": len(body), **row})
        results["flood"] = await _flood(address, pid, args.flood, args.settle)
    worst = max(row["cpu_ms_per_request"] for row in results["cpu"])
    flood = results["flood"]
    results["targets"] = {
        "worst_cpu_ms": worst,
        "worst_cpu_ok": worst <= CPU_TARGET_MS,
        "peak_rss_ok": flood["rss_peak_mb"] <= RSS_TARGET_MB,
        "rss_back_near_baseline": flood["rss_after_mb"] <= flood["rss_baseline_mb"] * 1.5 + 20,
    }
    return results


def _codes(codes: dict[str, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in codes.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="requests per kind for the CPU figures")
    parser.add_argument("--flood", type=int, default=400, help="concurrent 4 MB requests against the node")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait before the after-flood RSS")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    _common.print_table(
        ["service", "unauthenticated request", "bytes", "server CPU ms/request", "answers"],
        [
            [r["service"], r["request"], r["bytes"], r["cpu_ms_per_request"], _codes(r["codes"])]
            for r in results["cpu"]
        ],
    )  # fmt: skip
    flood = results["flood"]
    print()
    _common.print_table(
        ["flood", "RSS before MB", "RSS peak MB", f"RSS {args.settle:g}s after MB", "seconds", "answers"],
        [[
            f"{flood['requests']} x {flood['request_bytes'] // 1024} KB", flood["rss_baseline_mb"],
            flood["rss_peak_mb"], flood["rss_after_mb"], flood["seconds"], _codes(flood["codes"]),
        ]],
    )  # fmt: skip
    targets = results["targets"]
    cpu_verdict = "ok" if targets["worst_cpu_ok"] else "MISSED"
    print(
        f"\nworst CPU {targets['worst_cpu_ms']} ms (target <= {CPU_TARGET_MS}): {cpu_verdict};"
        f" peak RSS target <= {RSS_TARGET_MB:g} MB: {'ok' if targets['peak_rss_ok'] else 'MISSED'};"
        f" back near baseline: {'yes' if targets['rss_back_near_baseline'] else 'NO'}"
    )
    if args.json:
        _common.write_json(args.json, "bench_hostile", vars(args) | {"json": str(args.json)}, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
