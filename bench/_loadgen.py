"""The shared load generator: N client processes × C in-flight RPCs on grpc.aio for a fixed time.

Every call carries a fresh, valid credential (signed in the client process, so servers that verify
pay the full price and never see a replay). Workloads are named so they can cross the process
boundary; each builds ``(method path, request bytes, response parser)`` per call.

    result = run_load("127.0.0.1:50055", Workload("get_realm", node_id="n1", secret_hex=S), processes=1,
                      concurrency=32, duration=10)
    result.rps, result.p50_us, result.p99_us
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import _common
import grpc
import psutil

from supervit.auth import SharedSecret, Signer, request_payload
from supervit.protocol import common_pb2, supervised_pb2, supervisor_pb2

__all__ = ["LoadResult", "Workload", "report_request", "request_builder", "run_load"]

SUPERVISED = "/supervisor.v1.SupervisedService/"
SUPERVISOR = "/supervisor.v1.SupervisorService/"


@dataclass(frozen=True)
class Workload:
    """What each call sends. ``kind``: get_realm | create_realm | report | health_check.

    ``realm_ids`` bounds get_realm's ids (it cycles through 1..realm_ids); report/health_check use
    node ids ``{node_id}-{i}`` for i in range(nodes) so the supervisor sees a fleet.
    """

    kind: str
    node_id: str
    secret_hex: str
    realm_ids: int = 100
    nodes: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    mode: str = "stub"
    """``stub``: build a message, sign it, call through a stub that serializes it and parses the
    response, as real clients do. ``raw``: send the serialized bytes and leave the response unparsed
    (cheaper for the generator, so a loaded machine leaves the server more CPU)."""


@dataclass
class LoadResult:
    """Throughput and latency of one load run (errors are calls that did not return OK)."""

    calls: int
    errors: int
    duration_s: float
    rps: float
    p50_us: float
    p99_us: float
    error_samples: list[str]
    server_cpu_s: float | None = None
    """CPU seconds (user + system, all threads) the server process used during the measured window."""

    @property
    def server_cpu_us_per_call(self) -> float | None:
        if self.server_cpu_s is None or not self.calls:
            return None
        return round(self.server_cpu_s * 1e6 / self.calls, 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "server_cpu_s": None if self.server_cpu_s is None else round(self.server_cpu_s, 3),
            "server_cpu_us_per_call": self.server_cpu_us_per_call,
            "calls": self.calls,
            "errors": self.errors,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "error_samples": self.error_samples,
        }


_METRICS = common_pb2.SystemMetrics(
    cpu_usage_percent=12.5, memory_used_bytes=1 << 30, memory_total_bytes=8 << 30, memory_usage_percent=12.5,
    network_rx_bytes=123456, network_tx_bytes=654321, disk_used_bytes=10 << 30, disk_total_bytes=100 << 30,
    load_average_1m=0.5, load_average_5m=0.4, load_average_15m=0.3,
)  # fmt: skip


def report_request(signer: Signer, node_id: str) -> supervisor_pb2.ReportRequest:
    """A full, signed ReportRequest as a real node sends it (metrics and one service)."""
    ts = signer.now()
    req = supervisor_pb2.ReportRequest(
        node_id=node_id, timestamp=ts, location_tag="bench", version="bench", name=node_id,
        power_reserve_level=4, realm_sync_version=0,
    )  # fmt: skip
    req.metrics.CopyFrom(_METRICS)
    req.services.add(
        name="turn", type=common_pb2.TURN, is_healthy=True, active_connections=3, total_requests=100,
        failed_requests=0, average_latency_ms=1.5,
    )  # fmt: skip
    req.credential.CopyFrom(signer.credential(request_payload(req), timestamp=ts))
    return req


_RESPONSES: dict[str, Any] = {
    "GetRealm": supervised_pb2.GetRealmResponse,
    "CreateRealm": supervised_pb2.CreateRealmResponse,
    "Report": supervisor_pb2.ReportResponse,
    "HealthCheck": supervisor_pb2.HealthCheckResponse,
}


def request_builder(workload: Workload, worker: int) -> Callable[[], tuple[str, Any]]:
    """Per call: (method path, request). The request is a message in ``stub`` mode, bytes in ``raw``."""
    as_message = workload.mode == "stub"
    signer = Signer(SharedSecret.from_hex(workload.secret_hex))
    counter = itertools.count()
    node = workload.node_id

    def out(method: str, req: Any) -> tuple[str, Any]:
        return method, req if as_message else req.SerializeToString()

    def get_realm() -> tuple[str, Any]:
        req = supervised_pb2.GetRealmRequest(realm_id=1 + next(counter) % workload.realm_ids)
        req.credential.CopyFrom(signer.credential(request_payload(req, node)))
        return out(SUPERVISED + "GetRealm", req)

    def create_realm() -> tuple[str, Any]:
        # Unique ids per (process, call): pid-based blocks keep processes apart.
        realm_id = (os.getpid() % 4000) * 1_000_000 + worker * 50_000 + next(counter) + 1_000_000
        req = supervised_pb2.CreateRealmRequest(
            realm_id=realm_id % 2**32, name=f"bench-{realm_id}", enabled=True, version=1, expires_at=0
        )
        req.use_servers.append(common_pb2.TURN)
        req.credential.CopyFrom(signer.credential(request_payload(req, node)))
        return out(SUPERVISED + "CreateRealm", req)

    def report() -> tuple[str, Any]:
        node_id = f"{node}-{(worker * 7919 + next(counter)) % workload.nodes}"
        return out(SUPERVISOR + "Report", report_request(signer, node_id))

    def health_check() -> tuple[str, Any]:
        req = supervisor_pb2.HealthCheckRequest(node_id=f"{node}-{next(counter) % workload.nodes}")
        req.credential.CopyFrom(signer.credential(request_payload(req)))
        return out(SUPERVISOR + "HealthCheck", req)

    builders = {"get_realm": get_realm, "create_realm": create_realm, "report": report, "health_check": health_check}
    return builders[workload.kind]


async def _client(
    target: str, workload: Workload, concurrency: int, start_at: float, warmup: float, duration: float
) -> dict[str, Any]:
    latencies: list[int] = []
    errors = 0
    samples: list[str] = []
    async with grpc.aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        callables: dict[str, Any] = {}

        async def worker(index: int) -> None:
            nonlocal errors
            build = request_builder(workload, index)
            measure_from = start_at + warmup
            stop_at = measure_from + duration
            while True:
                now = time.time()
                if now >= stop_at:
                    return
                method, body = build()
                call = callables.get(method)
                if call is None:
                    if workload.mode == "stub":
                        response_cls = _RESPONSES[method.rsplit("/", 1)[1]]
                        call = channel.unary_unary(
                            method,
                            request_serializer=type(body).SerializeToString,
                            response_deserializer=response_cls.FromString,
                        )
                    else:
                        call = channel.unary_unary(method)
                    callables[method] = call
                t0 = time.perf_counter_ns()
                try:
                    await call(body, timeout=30)
                    ok = True
                except grpc.aio.AioRpcError as exc:
                    ok = False
                    if len(samples) < 5:
                        samples.append(f"{exc.code().name}: {exc.details()}")
                elapsed = time.perf_counter_ns() - t0
                if now >= measure_from:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors += 1

        delay = start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return {"latencies": latencies, "errors": errors, "samples": samples}


def _process_main(args: tuple[str, Workload, int, float, float, float], out: Any) -> None:
    out.put(asyncio.run(_client(*args)))


def run_load(
    target: str,
    workload: Workload,
    *,
    processes: int = 1,
    concurrency: int = 32,
    duration: float = 10.0,
    warmup: float = 1.0,
    server_pid: int | None = None,
) -> LoadResult:
    """Drive ``target`` with ``processes`` × ``concurrency`` in-flight calls; measure after warmup.

    With ``server_pid`` the server's CPU time (all its threads) over the measured window is taken
    too: CPU per call is far steadier than calls per second on a noisy machine.
    """
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 1.5  # all processes start together once imported
    procs = [
        ctx.Process(target=_process_main, args=((target, workload, concurrency, start_at, warmup, duration), out))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    server_cpu_s = None
    if server_pid is not None:
        server = psutil.Process(server_pid)
        time.sleep(max(0.0, start_at + warmup - time.time()))
        before = server.cpu_times()
        time.sleep(max(0.0, start_at + warmup + duration - time.time()))
        after = server.cpu_times()
        server_cpu_s = (after.user + after.system) - (before.user + before.system)
    parts = [out.get(timeout=duration + warmup + 120) for _ in procs]
    for p in procs:
        p.join()
    latencies = sorted(ns / 1000 for part in parts for ns in part["latencies"])
    errors = sum(part["errors"] for part in parts)
    samples = [s for part in parts for s in part["samples"]][:5]
    if not latencies:
        return LoadResult(0, errors, duration, 0.0, 0.0, 0.0, samples, server_cpu_s)
    return LoadResult(
        calls=len(latencies),
        errors=errors,
        duration_s=duration,
        rps=len(latencies) / duration,
        p50_us=round(_common.percentile(latencies, 50), 1),
        p99_us=round(_common.percentile(latencies, 99), 1),
        error_samples=samples,
        server_cpu_s=server_cpu_s,
    )
