"""Figure 3: a simulated fleet registering, then reporting, against one supervisor, over time.

The report interval is compressed (default 10 s instead of 60 s) so 10,000 nodes make 1,000
reports/s. Every node reports on its own phase (open loop: a slow supervisor makes reports late,
it does not slow the schedule). Every report is signed afresh (new nonce, HMAC) as a real node
does; only the static part of each node's ReportRequest is serialized once, so one generator
process simulates thousands of nodes without becoming the bottleneck.

Per window (default one minute): reports/s, errors by status code, p50/p99 latency, supervisor
CPU (all threads) and RSS, generator lateness and CPU, and nodes seen offline although they kept
reporting (admin ListNodes polled every ``--poll`` seconds, page by page when the admin API pages).
The summary checks the capacity targets (docs/performance.md)::

    python bench/bench_fleet.py [--nodes 10000] [--interval 10] [--duration 30m] [--window 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
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

from supervit.auth import Action, SharedSecret, Signer, build_payload
from supervit.protocol import supervisor_pb2, supervit_admin_pb2, supervit_admin_pb2_grpc
from supervit.supervisor import admin_payload

PREFIX = "fleet"
ADMIN_SECRET = "fedcba9876543210" * 4

# Targets of the fleet-capacity issue, checked in the summary (a benchmark reports; it never fails).
TARGET_P99_MS = 100.0
TARGET_CPU_PERCENT = 70.0


def parse_duration(text: str) -> float:
    """``90`` or ``90s`` = 90 seconds, ``30m`` = 30 minutes, ``1h`` = one hour."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip().lower()
    scale = units.get(text[-1:])
    number = text[:-1] if scale else text
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 60, 90s, 30m)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the duration must be positive")
    return value


def _static_report(node_id: str) -> bytes:
    """Everything of a node's ReportRequest except its timestamp and credential, serialized once."""
    full = _loadgen.report_request(Signer(SharedSecret.from_hex(_procs.SECRET_HEX)), node_id)
    full.ClearField("timestamp")
    full.ClearField("credential")
    return full.SerializePartialToString()


def _signed_tail(signer: Signer, node_id: str) -> bytes:
    """The per-report fields: timestamp and a fresh credential over ``report:{node}:{timestamp}``.

    Protobuf messages may be concatenated, so static bytes + these bytes is one valid request.
    """
    ts = signer.now()
    tail = supervisor_pb2.ReportRequest(timestamp=ts)
    tail.credential.CopyFrom(signer.credential(build_payload(Action.REPORT, node_id, ts), timestamp=ts))
    return tail.SerializePartialToString()


async def _reporter(
    address: str, node_ids: list[int], interval: float, start_at: float, duration: float, window: float
) -> dict[str, Any]:
    """One generator process: report for ``node_ids`` until ``duration`` has passed; bin per window."""
    windows = int(duration // window) + 1
    latencies = [array.array("l") for _ in range(windows)]  # µs of successful reports, by completion
    lateness = [array.array("l") for _ in range(windows)]  # µs the generator fired after the due time
    errors: list[collections.Counter[str]] = [collections.Counter() for _ in range(windows)]
    samples: list[str] = []
    rng = random.Random(node_ids[0] if node_ids else 0)
    names = {n: f"{PREFIX}-{n}" for n in node_ids}
    static = {n: _static_report(names[n]) for n in node_ids}
    schedule = sorted((start_at + rng.random() * interval, n) for n in node_ids)  # each node its own phase
    stop_at = start_at + duration
    signer = Signer(SharedSecret.from_hex(_procs.SECRET_HEX))

    def slot(at: float) -> int:
        return min(windows - 1, max(0, int((at - start_at) // window)))

    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary("/supervisor.v1.SupervisorService/Report")
        in_flight: set[asyncio.Task[None]] = set()

        async def fire(node: int, due: float) -> None:
            fired = time.time()
            lateness[slot(fired)].append(int(max(0.0, fired - due) * 1e6))
            body = static[node] + _signed_tail(signer, names[node])
            t0 = time.perf_counter_ns()
            try:
                await call(body, timeout=30)
                latencies[slot(time.time())].append((time.perf_counter_ns() - t0) // 1000)
            except grpc.aio.AioRpcError as exc:
                errors[slot(time.time())][exc.code().name] += 1
                if len(samples) < 5:
                    samples.append(f"{exc.code().name}: {exc.details()}")

        index = 0
        while True:
            due, node = schedule[index % len(schedule)]
            due += (index // len(schedule)) * interval
            index += 1
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
    return {
        "latencies": [a.tobytes() for a in latencies],
        "lateness": [a.tobytes() for a in lateness],
        "errors": [dict(c) for c in errors],
        "samples": samples,
    }


def _reporter_main(args: tuple[str, list[int], float, float, float, float], out: Any) -> None:
    out.put(asyncio.run(_reporter(*args)))


async def _poll_offline(admin_addr: str, stop: threading.Event, seen: set[str], polls: list[int], every: float) -> None:
    """Ask the admin API for every node's state (page by page when it pages) until ``stop``."""
    signer = Signer(SharedSecret.from_hex(ADMIN_SECRET))
    fields = supervit_admin_pb2.ListNodesRequest.DESCRIPTOR.fields_by_name
    pages = "page_size" in fields
    async with grpc.aio.insecure_channel(admin_addr) as channel:
        stub = supervit_admin_pb2_grpc.SupervisorAdminStub(channel)
        while not stop.is_set():
            offline = 0
            token = ""
            while True:
                request = supervit_admin_pb2.ListNodesRequest()
                if pages:
                    request.page_size = 1000
                    request.page_token = token
                request.credential.CopyFrom(signer.credential(admin_payload(request)))
                response = await stub.ListNodes(request, timeout=60)
                for node in response.nodes:
                    if node.state != "online":
                        seen.add(node.node_id)
                        offline += 1
                token = getattr(response, "next_page_token", "")
                if not token:
                    break
            polls.append(offline)
            await asyncio.to_thread(stop.wait, every)


def _unpack(blob: bytes) -> array.array[int]:
    values = array.array("l")
    values.frombytes(blob)
    return values


def run(args: argparse.Namespace) -> dict[str, Any]:
    window = min(args.window, args.duration)
    windows = int(args.duration // window) + 1
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        cfg = {"report_interval_secs": round(args.interval), "admin_secret": ADMIN_SECRET}
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
            start_at = time.time() + 3.0
            slices = [list(range(i, args.nodes, args.processes)) for i in range(args.processes)]
            procs = [
                ctx.Process(
                    target=_reporter_main, args=((address, s, args.interval, start_at, args.duration, window), out)
                )
                for s in slices
            ]
            for p in procs:
                p.start()
            stop = threading.Event()
            seen_offline: set[str] = set()
            polls: list[int] = []
            watcher = threading.Thread(
                target=lambda: asyncio.run(_poll_offline(admin_addr, stop, seen_offline, polls, args.poll)),
                daemon=True,
            )
            gens = [psutil.Process(p.pid) for p in procs if p.pid is not None]
            time.sleep(max(0.0, start_at - time.time()))
            watcher.start()
            sup_cpu = [0.0] * windows
            gen_cpu = [0.0] * windows
            rss_max = [0] * windows
            last_sup, last_gen, last_at = sum(sup.cpu_times()[:2]), _cpu(gens), time.time()
            while out.qsize() < len(procs) and any(p.is_alive() for p in procs):
                time.sleep(1.0)
                now = time.time()
                k = min(windows - 1, max(0, int((last_at - start_at) // window)))
                cur_sup, cur_gen = sum(sup.cpu_times()[:2]), _cpu(gens)
                sup_cpu[k] += cur_sup - last_sup
                gen_cpu[k] += cur_gen - last_gen
                rss_max[k] = max(rss_max[k], sup.memory_info().rss)
                last_sup, last_gen, last_at = cur_sup, cur_gen, now
            parts = [out.get(timeout=args.duration + 120) for _ in procs]
            stop.set()
            watcher.join(timeout=120)
            for p in procs:
                p.join()
    series = []
    all_latencies: list[int] = []
    total_errors: collections.Counter[str] = collections.Counter()
    for k in range(windows):
        span = min(window, args.duration - k * window)
        if span <= 0:
            continue
        lat = sorted(v for part in parts for v in _unpack(part["latencies"][k]))
        late = sorted(v for part in parts for v in _unpack(part["lateness"][k]))
        errs: collections.Counter[str] = collections.Counter()
        for part in parts:
            errs.update(part["errors"][k])
        all_latencies.extend(lat)
        total_errors.update(errs)
        series.append(
            {
                "t_end_s": round(k * window + span, 1),
                "reports_per_s": round(len(lat) / span, 1),
                "errors": dict(errs),
                "p50_ms": round(_common.percentile(lat, 50) / 1000, 2) if lat else None,
                "p99_ms": round(_common.percentile(lat, 99) / 1000, 2) if lat else None,
                "supervisor_cpu_percent": round(sup_cpu[k] / span * 100, 1),
                "supervisor_rss_mb": round(rss_max[k] / 2**20, 1),
                "generator_late_p99_ms": round(_common.percentile(late, 99) / 1000, 1) if late else None,
                "generator_cpu_percent": round(gen_cpu[k] / span * 100, 1),
            }
        )
    all_latencies.sort()
    reports = len(all_latencies)
    cpu_avg = round(sum(sup_cpu) / args.duration * 100, 1)
    worst_p99 = max((row["p99_ms"] or 0.0) for row in series) if series else None
    return {
        "nodes": args.nodes,
        "interval_s": args.interval,
        "duration_s": args.duration,
        "window_s": window,
        "register_s": round(register_s, 2),
        "registrations_per_s": round(args.nodes / register_s, 1),
        "reports": reports,
        "report_errors": sum(total_errors.values()),
        "errors_by_code": dict(total_errors),
        "error_samples": [e for part in parts for e in part["samples"]][:5],
        "reports_per_s": round(reports / args.duration, 1),
        "expected_reports_per_s": round(args.nodes / args.interval, 1),
        "p50_ms": round(_common.percentile(all_latencies, 50) / 1000, 2) if all_latencies else None,
        "p99_ms": round(_common.percentile(all_latencies, 99) / 1000, 2) if all_latencies else None,
        "worst_window_p99_ms": worst_p99,
        "supervisor_cpu_percent": cpu_avg,
        "supervisor_rss_mb_first": series[0]["supervisor_rss_mb"] if series else None,
        "supervisor_rss_mb_last": series[-1]["supervisor_rss_mb"] if series else None,
        "offline_false_positives": len(seen_offline),
        "offline_polls": len(polls),
        "targets": {
            "zero_errors": sum(total_errors.values()) == 0,
            f"p99_le_{TARGET_P99_MS:g}ms_every_window": worst_p99 is not None and worst_p99 <= TARGET_P99_MS,
            "zero_offline_false_positives": not seen_offline,
            f"cpu_le_{TARGET_CPU_PERCENT:g}pct": cpu_avg <= TARGET_CPU_PERCENT,
        },
        "series": series,
    }


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=10.0, help="compressed report interval (s)")
    parser.add_argument("--duration", type=parse_duration, default=60.0, help="reporting phase: 60, 90s, 30m")
    parser.add_argument("--window", type=float, default=60.0, help="seconds per row of the time series")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between offline polls of the admin API")
    parser.add_argument("--processes", type=int, default=2, help="generator processes")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    result = run(args)
    headers = [
        "t (s)",
        "reports/s",
        "errors",
        "p50 ms",
        "p99 ms",
        "sup CPU %",
        "sup RSS MB",
        "late p99 ms",
        "gen CPU %",
    ]
    rows = [
        [
            r["t_end_s"],
            r["reports_per_s"],
            ",".join(f"{k}:{v}" for k, v in r["errors"].items()) or 0,
            r["p50_ms"],
            r["p99_ms"],
            r["supervisor_cpu_percent"],
            r["supervisor_rss_mb"],
            r["generator_late_p99_ms"],
            r["generator_cpu_percent"],
        ]
        for r in result["series"]
    ]
    _common.print_table(headers, rows)
    summary = {k: v for k, v in result.items() if k not in {"series", "error_samples", "targets"}}
    _common.print_table(["figure", "value"], [[k, v] for k, v in summary.items()])
    _common.print_table(["target", "met"], [[k, "yes" if v else "NO"] for k, v in result["targets"].items()])
    if result["error_samples"]:
        print("errors:", *result["error_samples"], sep="\n  ")
    if args.json:
        _common.write_json(args.json, "fleet", vars(args), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
