"""Start the processes a benchmark measures (real ``supervit`` daemons, the bare floor) and stop them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
SECRET_HEX = "0f1e2d3c4b5a6978" * 4  # not the published example secret (the daemons refuse it)


@contextmanager
def started(
    cmd: list[str],
    prefix: str,
    *,
    env: dict[str, str] | None = None,
    also: dict[str, str] | None = None,
    startup_secs: float = 30,
) -> Iterator[tuple[str, int]]:
    """Run ``cmd``; wait (at most ``startup_secs``) for its ``<prefix>host:port`` stdout line;
    yield (address, pid); terminate it.

    ``also`` maps further line prefixes to be read right after the first (filled in place).
    """
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, **(env or {})}
    )
    try:
        assert proc.stdout is not None
        deadline = time.time() + startup_secs
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{cmd[:4]} exited with {proc.wait()} before listening")
            if line.startswith(prefix):
                for extra in also or {}:
                    more = proc.stdout.readline()
                    if more.startswith(extra):
                        also[extra] = more[len(extra) :].strip()  # type: ignore[index]
                yield line[len(prefix) :].strip(), proc.pid
                break
        else:
            raise RuntimeError(f"{cmd[:4]} did not report its address within {startup_secs:.0f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def bare_server(env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """The no-auth, no-storage floor server (``env`` added to its environment)."""
    with started([sys.executable, str(BENCH_DIR / "_bare.py")], "bare server listening on ", env=env) as found:
        yield found


def write_node_config(
    directory: Path,
    node_id: str = "bench-node",
    endpoint: str | None = None,
    *,
    metrics_listen: str = "",
    **extra: str,
) -> Path:
    """A node TOML for a benchmark: loopback, port 0, data in ``directory``.

    Metrics are off unless ``metrics_listen`` is given (never the default port: benchmarks run
    several daemons on one machine).
    """
    lines = [
        "[supervisor]",
        *(f"{k} = {v}" for k, v in extra.items()),
        "[supervisor.metrics]",
        f'listen = "{metrics_listen}"',
        "[supervisor.client]",
        f'node_id = "{node_id}"',
        f'shared_secret = "{SECRET_HEX}"',
        *([f'endpoint = "{endpoint}"'] if endpoint else []),
        "[supervisor.supervisord]",
        'ip = "127.0.0.1"',
        "port = 0",
        f'data_dir = "{directory / "data"}"',
        'log_level = "warning"',
    ]
    path = directory / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def node_daemon(
    directory: Path, *, also: dict[str, str] | None = None, env: dict[str, str] | None = None, **kwargs: str
) -> Iterator[tuple[str, int]]:
    """A real ``supervit node`` subprocess; ``also`` as for :func:`started` (e.g. the metrics line);
    ``env`` is added to its environment (e.g. ``PYTHONPATH`` at another tree's ``src``)."""
    config = write_node_config(directory, **kwargs)
    cmd = [sys.executable, "-m", "supervit", "node", "--config", str(config)]
    extra = {"supervit node metrics listening on ": ""} if also is not None else None
    with started(cmd, "supervit node listening on ", env=env, also=extra) as found:
        if also is not None and extra is not None:
            also.update(extra)
        yield found


def cpu_and_rss(pid: int) -> tuple[float, int]:
    """(user+system CPU seconds so far, RSS bytes) of a process."""
    proc = psutil.Process(pid)
    times = proc.cpu_times()
    return times.user + times.system, proc.memory_info().rss


def write_supervisor_config(
    directory: Path, *, report_interval_secs: int = 60, admin_secret: str | None = None, metrics_listen: str = ""
) -> Path:
    """A supervisor TOML for a benchmark: loopback, port 0, fleet secret, data in ``directory``.

    Metrics are off unless ``metrics_listen`` is given.
    """
    lines = [
        "[server]",
        'listen = "127.0.0.1:0"',
        f'data_dir = "{directory / "supervisor-data"}"',
        'log_level = "warning"',
        "[fleet]",
        f'shared_secret = "{SECRET_HEX}"',
        f"report_interval_secs = {report_interval_secs}",
        "[admin]",
        'listen = "127.0.0.1:0"',
        *([f'secret = "{admin_secret}"'] if admin_secret else []),
        "[metrics]",
        f'listen = "{metrics_listen}"',
    ]
    path = directory / "supervisor.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def supervisor_daemon(
    directory: Path, *, also: dict[str, str] | None = None, env: dict[str, str] | None = None, **kwargs: object
) -> Iterator[tuple[str, int]]:
    """A real ``supervit supervisor`` subprocess (yields its SupervisorService address and pid).

    With ``also`` (a dict, filled in place) the metrics line is read too (no admin secret given);
    ``env`` is added to its environment.
    """
    config = write_supervisor_config(directory, **kwargs)  # type: ignore[arg-type]
    cmd = [sys.executable, "-m", "supervit", "supervisor", "--config", str(config)]
    extra = {"supervit supervisor metrics listening on ": ""} if also is not None else None
    with started(cmd, "supervit supervisor listening on ", env=env, also=extra) as found:
        if also is not None and extra is not None:
            also.update(extra)
        yield found


async def register_nodes(address: str, prefix: str, count: int, *, concurrency: int = 64) -> None:
    """RegisterNode ``{prefix}-0`` … ``{prefix}-{count-1}`` with valid credentials."""
    import asyncio

    import grpc

    from supervit.auth import SharedSecret, Signer, request_payload
    from supervit.protocol import supervisor_pb2

    signer = Signer(SharedSecret.from_hex(SECRET_HEX))
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary("/supervisor.v1.SupervisorService/RegisterNode")
        ids = iter(range(count))

        async def worker() -> None:
            for i in ids:
                node_id = f"{prefix}-{i}"
                req = supervisor_pb2.RegisterNodeRequest(
                    node_id=node_id, name=node_id, location_tag="bench", version="bench",
                    agent_addr=f"127.0.0.1:{20000 + i % 40000}", power_reserve_level_init=5,
                )  # fmt: skip
                req.credential.CopyFrom(signer.credential(request_payload(req)))
                await call(req.SerializeToString(), timeout=60)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
