"""A grpc.aio server for supervit services: size limit, TLS/mTLS, health and reflection."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor as _descriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from supervit._exceptions import ConfigError, SupervitError
from supervit.rpc._handlers import StorageObserver, service_handler
from supervit.rpc._limits import ServiceLimits
from supervit.telemetry import GrpcServerMetrics

__all__ = ["DEFAULT_MAX_CONCURRENT_RPCS", "DEFAULT_MAX_MESSAGE_BYTES", "RpcServer", "ServerTLS"]

log = logging.getLogger(__name__)
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_CONCURRENT_RPCS = 256
"""Calls served at once; more are refused with RESOURCE_EXHAUSTED (bounds memory under a flood)."""


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """Server certificate and key (PEM); with ``client_ca`` clients must present a cert it signed (mTLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        def read(path: Path, key: str) -> bytes:
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from None

        ca = read(self.client_ca, "tls_client_ca") if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(read(self.key, "tls_key"), read(self.cert, "tls_cert"))],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


def _bind_problem(address: str) -> str:
    """Why grpc could not bind ``address``, in plain words (grpc only says "Failed to bind").

    TLS files are checked with the configuration, so what is left is the socket itself: probe it.
    """
    text = address.strip()
    if text.startswith("["):
        host, _, port_text = text[1:].partition("]:")
    else:
        host, _, port_text = text.rpartition(":")
    try:
        port = int(port_text)
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (ValueError, OSError):
        return "not an address this host can bind"
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "address already in use (another process listens there)"
            if exc.errno == errno.EADDRNOTAVAIL:
                return "address not available on this host"
            if exc.errno == errno.EACCES:
                return "permission denied (ports below 1024 need privileges)"
            return exc.strerror or str(exc)
    return "the gRPC server refused the address"


class RpcServer:
    """Hosts supervit services plus ``grpc.health.v1.Health`` and server reflection.

    Messages larger than ``max_message_bytes`` (requests: ``max_receive_bytes`` when given, the
    service's limit) are refused by gRPC with ``RESOURCE_EXHAUSTED``, before they are buffered
    whole; more than ``maximum_concurrent_rpcs`` calls at once are refused the same way.
    With ``metrics`` every service, health and reflection included, is counted and timed.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_receive_bytes: int | None = None,
        maximum_concurrent_rpcs: int | None = DEFAULT_MAX_CONCURRENT_RPCS,
        tls: ServerTLS | None = None,
        options: Sequence[tuple[str, Any]] = (),
        metrics: GrpcServerMetrics | None = None,
    ) -> None:
        self.tls = tls
        receive = max_message_bytes if max_receive_bytes is None else min(max_receive_bytes, max_message_bytes)
        self._metrics = metrics
        self._server = grpc.aio.server(
            maximum_concurrent_rpcs=maximum_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", receive),
                ("grpc.max_send_message_length", max_message_bytes),
                # Let idle clients keep their connections alive with pings (client keepalive).
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 1_000),
                # grpc shares ports by default; a second daemon on a taken port must fail, not co-listen.
                ("grpc.so_reuseport", 0),
                # No BDP probing: the per-stream window stays small, so grpc-core refuses a message
                # larger than the receive limit from its length prefix instead of buffering it
                # whole (400 concurrent 4 MB requests: node peak RSS ~50 MB instead of ~400-600 MB,
                # bench/bench_hostile.py). Our messages are small; window growth buys nothing.
                ("grpc.http2.bdp_probe", 0),
                *options,
            ],
        )
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self._add_standard(health_pb2_grpc.add_HealthServicer_to_server, self.health)
        self._service_names: list[str] = []
        self.port: int | None = None
        self.storage_health: StorageObserver | None = None
        """Told of storage failures and successes of requests (see :class:`~supervit.rpc.StorageHealth`)."""

    @property
    def server(self) -> grpc.aio.Server:
        """The underlying grpc.aio server (to add further services)."""
        return self._server

    def add_service(
        self, service: _descriptor.ServiceDescriptor, servicer: object, limits: ServiceLimits | None = None
    ) -> None:
        """Serve ``service`` from ``servicer`` with precise INVALID_ARGUMENT handling and ``limits``
        (default: supervit's table for the service)."""
        handler = service_handler(
            service, servicer, limits, observer=lambda: self.storage_health, metrics=self._metrics
        )
        self._server.add_generic_rpc_handlers((handler,))
        self._service_names.append(service.full_name)

    def _add_standard(self, add: Callable[[Any, Any], None], servicer: object) -> None:
        """Register a grpc-generated servicer (health, reflection), instrumented when metrics are on."""
        if self._metrics is None:
            add(servicer, self._server)
            return
        capture = _Capture()
        add(servicer, capture)
        self._server.add_generic_rpc_handlers(tuple(self._metrics.generic(h) for h in capture.generic))

    async def start(self, address: str) -> int:
        """Bind ``host:port`` (port 0 = any), start serving, return the bound port."""
        names = [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
        self._add_standard(
            reflection_pb2_grpc.add_ServerReflectionServicer_to_server,
            reflection.aio.ReflectionServicer(names),  # type: ignore[attr-defined]
        )
        try:
            if self.tls is not None:
                port = self._server.add_secure_port(address, self.tls.credentials())
            else:
                port = self._server.add_insecure_port(address)
        except RuntimeError:
            raise SupervitError(f"cannot listen on {address}: {_bind_problem(address)}") from None
        if port == 0:
            raise SupervitError(f"cannot listen on {address}: {_bind_problem(address)}")
        await self._server.start()
        for name in ["", *self._service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.port = port
        return port

    async def set_serving(self, serving: bool) -> None:
        """Report every hosted service (and the server, ``""``) SERVING or NOT_SERVING."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self._service_names]:
            await self.health.set(name, status)

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, refuse new RPCs, let in-flight ones finish within ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


class _Capture:
    """Stands in for the server when grpc-generated code registers a servicer, keeping its handlers."""

    def __init__(self) -> None:
        self.generic: list[grpc.GenericRpcHandler[Any, Any]] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        """Ignored: the same methods also arrive through :meth:`add_generic_rpc_handlers`."""
