"""MetricsServer: ``/metrics``, ``/healthz`` and ``/readyz`` over HTTP, served on the daemon's event loop.

Served by asyncio itself rather than a side thread on purpose: ``/healthz`` answers only while the
event loop is responsive, so a wedged daemon fails its liveness probe. The one expensive step, the
rendering of the exposition, runs in a worker thread (see :class:`DaemonMetrics`).

A deliberately small HTTP/1.1 subset: ``GET`` and ``HEAD``, one request per connection
(``Connection: close``), request heads up to 16 KiB, read within 10 s, at most 64 connections at
once (more are closed at once, so idle connections cannot pin file descriptors). Prometheus,
Kubernetes probes, load balancers and curl need no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping

from supervit._exceptions import SupervitError
from supervit.telemetry._registry import DaemonMetrics

__all__ = ["MAX_CONNECTIONS", "MetricsServer", "ReadinessCheck"]

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Async check run by ``/readyz``: None when fine, else a short reason (never a secret)."""

_HEAD_LIMIT = 16 * 1024
_READ_TIMEOUT_SECS = 10.0
_CHECK_TIMEOUT_SECS = 3.0
MAX_CONNECTIONS = 64
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
_JSON = "application/json"
_INDEX = b"supervit: /metrics (Prometheus), /healthz (liveness), /readyz (readiness)\n"


class MetricsServer:
    """Serves ``metrics`` and the probes; ``checks`` (name → check) decide ``/readyz``.

    ``/healthz``: 200 ``{"status": "ok"}`` whenever the loop answers. ``/readyz``: 200
    ``{"status": "ready", "checks": {...}}`` when every check passes, else 503 ``"not ready"``
    with each check's reason; checks run concurrently, each bounded to 3 s.
    """

    def __init__(self, metrics: DaemonMetrics, checks: Mapping[str, ReadinessCheck] | None = None) -> None:
        self.metrics = metrics
        self.checks: dict[str, ReadinessCheck] = dict(checks or {})
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port: int | None = None
        """The bound port (after :meth:`start`)."""

    async def start(self, host: str, port: int) -> int:
        """Bind ``host`` (an IP address or ``localhost``) and ``port`` (0: any free port), serve;
        returns the bound port. A port in use is a :class:`~supervit.SupervitError`."""
        # "localhost" could resolve to two addresses, and port 0 would then bind two different ports.
        bind = "127.0.0.1" if host == "localhost" else host
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self._server = await asyncio.start_server(self._accept, bind, port, limit=_HEAD_LIMIT)
        except OSError as exc:
            raise SupervitError(f"cannot listen on {shown} for metrics: {exc.strerror or exc}") from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop open connections. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Run every check: (all passed, name → "ok" or the reason)."""
        names = list(self.checks)
        results = await asyncio.gather(*(self._run_check(self.checks[name]) for name in names))
        report = {name: result or "ok" for name, result in zip(names, results, strict=True)}
        return all(result is None for result in results), report

    @staticmethod
    async def _run_check(check: ReadinessCheck) -> str | None:
        try:
            return await asyncio.wait_for(check(), _CHECK_TIMEOUT_SECS)
        except TimeoutError:
            return "check timed out"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= MAX_CONNECTIONS:
            writer.close()  # over the cap: no answer, the peer sees the connection closed
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass  # the peer went away or sent garbage: nothing to answer
        except Exception:
            log.exception("metrics endpoint failed")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_SECS)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await _respond(writer, 400, b"bad request\n", "text/plain; charset=utf-8")
            return
        method, target, _ = parts
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if method not in ("GET", "HEAD"):
            await _respond(writer, 405, b"only GET and HEAD\n", "text/plain; charset=utf-8", allow=True)
            return
        path = target.split("?", 1)[0]
        status, body, content_type = await self._route(path, headers)
        await _respond(writer, status, b"" if method == "HEAD" else body, content_type, length=len(body))

    async def _route(self, path: str, headers: Mapping[str, str]) -> tuple[int, bytes, str]:
        if path == "/metrics":
            body, content_type = await self.metrics.exposition(headers.get("accept"))
            return 200, body, content_type
        if path == "/healthz":
            return 200, _json({"status": "ok"}), _JSON
        if path == "/readyz":
            ready, checks = await self.readiness()
            return (
                (200 if ready else 503),
                _json({"status": "ready" if ready else "not ready", "checks": checks}),
                _JSON,
            )
        if path == "/":
            return 200, _INDEX, "text/plain; charset=utf-8"
        return 404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8"


def _json(value: object) -> bytes:
    return (json.dumps(value, sort_keys=True) + "\n").encode()


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    content_type: str,
    *,
    length: int | None = None,
    allow: bool = False,
) -> None:
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body) if length is None else length}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    if allow:
        head.append("Allow: GET, HEAD")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
