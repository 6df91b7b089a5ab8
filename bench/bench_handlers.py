"""What supervit adds per request, without gRPC: its request handlers called in process.

A real node (``NodeDaemon``) and a real supervisor (``Supervisor``) run in this process on
temporary data directories; their services are served through supervit's bytes-in handler
(:func:`supervit.rpc.service_handler`, the same one the gRPC server calls) and called directly,
``--concurrency`` callers at a time, with requests built and signed up front as a node or the
supervisor would sign them. What is measured is everything supervit does with a request after
gRPC has read its bytes and until it hands back the answer's bytes: size and field limits, the
credential, the nonce, storage with its group commits (the committer thread included), the answer.
The bare gRPC server does none of it, so this is the part of the cost-per-request ratio that is
supervit's own::

    python bench/bench_handlers.py [--calls 40000] [--concurrency 32] [--rounds 3] [--json out.json]

Per thread CPU comes from the OS (user + system, all threads of this process). Figures are the
median of ``--rounds`` rounds; the machine's noise applies, but no client shares the process.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import _common
import _loadgen
import _procs
import psutil
from bench_node_rpc import NODE_ID, _seed

from supervit.config import load_node_config
from supervit.node import NodeDaemon
from supervit.rpc import RpcServer, service_handler
from supervit.supervisor import Supervisor, load_supervisor_config

RPCS = ("get_realm", "create_realm", "report")
REALMS = 100  # realms seeded for get_realm (as bench_node_rpc.py)
Handle = Callable[[bytes, Any], Awaitable[bytes]]


class _Context:
    """The little of a grpc.aio ServicerContext a successful call uses (a failure raises)."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    async def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"the handler refused a benchmark request: {code} {details}")


@contextmanager
def _served_services() -> Iterator[dict[str, tuple[Any, object, Any]]]:
    """Record every (service, servicer, limits) a daemon started meanwhile serves."""
    served: dict[str, tuple[Any, object, Any]] = {}
    add_service = RpcServer.add_service

    def recording(self: RpcServer, service: Any, servicer: object, limits: Any = None) -> None:
        served.setdefault(service.full_name, (service, servicer, limits))
        add_service(self, service, servicer, limits)

    with mock.patch.object(RpcServer, "add_service", recording):
        yield served


def _handler(served: dict[str, tuple[Any, object, Any]], service_name: str, method: str) -> Handle:
    service, servicer, limits = served[service_name]
    generic = service_handler(service, servicer, limits)
    details = mock.Mock(method=f"/{service_name}/{method}", invocation_metadata=())
    handler = generic.service(details)
    assert handler is not None and handler.unary_unary is not None
    return handler.unary_unary  # type: ignore[no-any-return]


def _requests(workload: _loadgen.Workload, count: int, callers: int) -> list[bytes]:
    """``count`` signed, serialized requests as the load generator's ``callers`` would send them
    (each caller its own builder; interleaved, so caller ``k`` takes every ``callers``-th)."""
    builders = [_loadgen.request_builder(replace(workload, mode="raw"), k) for k in range(callers)]
    return [builders[i % callers]()[1] for i in range(count)]


def _thread_cpu() -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}


async def _drive(handle: Handle, requests: list[bytes], concurrency: int) -> None:
    context = _Context()

    async def caller(mine: list[bytes]) -> None:
        for raw in mine:
            await handle(raw, context)

    await asyncio.gather(*(caller(requests[k::concurrency]) for k in range(concurrency)))


async def _measure(handle: Handle, requests: list[bytes], concurrency: int) -> dict[str, Any]:
    loop_thread = threading.get_native_id()
    before, started = _thread_cpu(), time.perf_counter()
    await _drive(handle, requests, concurrency)
    elapsed, after = time.perf_counter() - started, _thread_cpu()
    spent = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    calls = len(requests)
    loop_cpu = spent.get(loop_thread, 0.0)
    return {
        "calls": calls,
        "calls_per_s": round(calls / elapsed, 1),
        "cpu_us_per_call": round(sum(spent.values()) / calls * 1e6, 2),
        "loop_thread_us_per_call": round(loop_cpu / calls * 1e6, 2),
        "other_threads_us_per_call": round((sum(spent.values()) - loop_cpu) / calls * 1e6, 2),
    }


async def _node_rounds(kind: str, args: argparse.Namespace, stack: AsyncExitStack) -> list[dict[str, Any]]:
    data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-handlers-")))
    config = load_node_config(_procs.write_node_config(data, node_id=NODE_ID))
    with _served_services() as served:
        daemon = await stack.enter_async_context(NodeDaemon(config, tune_process=False))
    if kind == "get_realm":
        await _seed(daemon.address, REALMS)
    handle = _handler(served, "supervisor.v1.SupervisedService", "GetRealm" if kind == "get_realm" else "CreateRealm")
    workload = _loadgen.Workload(kind, NODE_ID, _procs.SECRET_HEX, realm_ids=REALMS)
    return await _rounds(handle, workload, args)


async def _supervisor_rounds(args: argparse.Namespace, stack: AsyncExitStack) -> list[dict[str, Any]]:
    data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-handlers-")))
    config = load_supervisor_config(_procs.write_supervisor_config(data))
    with _served_services() as served:
        supervisor = Supervisor(config, tune_process=False)
        await supervisor.start()
    stack.push_async_callback(supervisor.stop)
    assert supervisor.address is not None
    await _procs.register_nodes(supervisor.address, "bench", args.nodes)
    handle = _handler(served, "supervisor.v1.SupervisorService", "Report")
    workload = _loadgen.Workload("report", "bench", _procs.SECRET_HEX, nodes=args.nodes)
    return await _rounds(handle, workload, args)


async def _rounds(handle: Handle, workload: _loadgen.Workload, args: argparse.Namespace) -> list[dict[str, Any]]:
    # One warm-up of a tenth, then the measured rounds; every request is new (fresh nonces).
    requests = _requests(workload, args.calls // 10 + args.calls * args.rounds, args.concurrency)
    warmup, measured = requests[: args.calls // 10], requests[args.calls // 10 :]
    await _drive(handle, warmup, args.concurrency)
    return [
        await _measure(handle, measured[i * args.calls : (i + 1) * args.calls], args.concurrency)
        for i in range(args.rounds)
    ]


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for kind in args.rpcs:
        async with AsyncExitStack() as stack:
            rounds = await (_supervisor_rounds(args, stack) if kind == "report" else _node_rounds(kind, args, stack))
        median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0] if key != "calls"}
        rows.append({"rpc": kind, "rounds": rounds, **median})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpc", default=",".join(RPCS), help=f"comma-separated, of {', '.join(RPCS)}")
    parser.add_argument("--calls", type=int, default=40_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32, help="callers in flight")
    parser.add_argument("--nodes", type=int, default=1000, help="registered nodes reporting (report)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    args.rpcs = [r for r in args.rpc.split(",") if r]
    unknown = sorted(set(args.rpcs) - set(RPCS))
    if unknown or not args.rpcs:
        parser.error(f"--rpc: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(RPCS)}")
    rows = asyncio.run(run(args))
    print(f"supervit's request handlers in process, {args.concurrency} callers, median of {args.rounds} rounds")
    _common.print_table(
        ["rpc", "calls/s", "CPU µs/call", "loop thread µs", "other threads µs"],
        [
            [
                r["rpc"],
                r["calls_per_s"],
                r["cpu_us_per_call"],
                r["loop_thread_us_per_call"],
                r["other_threads_us_per_call"],
            ]
            for r in rows
        ],
    )
    if args.json:
        parameters = {k: v for k, v in vars(args).items() if k not in ("json", "rpcs")}
        _common.write_json(args.json, "handlers", parameters, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
