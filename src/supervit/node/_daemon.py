"""NodeDaemon: wires a validated node configuration into a running, authenticated SupervisedService.

Start-up order: the node database (``actrix.db``) and the nonce store (``nonce.db``) in
``data_dir``, the service registry from ``[[supervisor.supervisord.services]]``, the metrics
provider, Supervisord (re-applying values stored by UpdateConfig that are newer than the TOML
file), wrapped in AuthService, the gRPC server (health, reflection, optional
TLS/mTLS) and finally the optional reporting client. The metrics/probe HTTP endpoint
(``[supervisor.metrics] listen``) is bound first, so a taken port fails before anything opens, and
answers ``/readyz`` with 503 until the rest is up. Stopping runs the other way round: the
client stops, the server stops accepting RPCs and lets in-flight ones finish within the grace
period, then the stores close (every acknowledged write is already committed).

A stop is requested by SIGTERM/SIGINT (grace ``shutdown_grace_secs``), by an accepted Shutdown
RPC (graceful: its ``timeout_secs``; immediate: no grace beyond delivering the Shutdown answer
itself) or by :meth:`NodeDaemon.request_stop` (e.g. the client acting on a supervisor directive).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from supervit._exceptions import StorageError
from supervit._version import __version__
from supervit.auth import SqliteNonceStorage
from supervit.config import NodeConfig, SupervitConfig, format_host_port, split_listen
from supervit.inventory import ServiceCollector, ServiceInfo, ServiceState
from supervit.metrics import MetricsProvider, SystemMetricsCollector
from supervit.node._auth_service import AuthService, add_supervised_service
from supervit.node._reapply import reapply_stored_config, toml_changed_at
from supervit.node._supervisord import DEFAULT_MAX_RESPONSE_BYTES, Supervisord
from supervit.node._telemetry import NodeSampler
from supervit.rpc import (
    SUPERVISED_LIMITS,
    MemoryTrimmer,
    RpcServer,
    ServerTLS,
    StorageHealth,
    tune_for_serving,
    with_overrides,
)
from supervit.storage import ConfigStore, Database, DataDirLock, RealmStore, open_node_database
from supervit.telemetry import DaemonMetrics, MetricsServer, ReadinessCheck

__all__ = ["ClientWiring", "NodeDaemon", "ReportingClient", "ReportingClientFactory", "services_from_config"]

log = logging.getLogger(__name__)

# An immediate Shutdown still has to deliver its own "accepted" answer: grpc's stop(0) cancels
# every in-flight call at once, possibly that one, so "immediate" leaves this much grace.
RESPONSE_FLUSH_SECS = 0.25


class ReportingClient(Protocol):
    """What the daemon needs of a client that registers and reports to the supervisor.

    :class:`supervit.client.SupervitClient` has exactly this shape.
    """

    async def start_status_reporting(self) -> None:
        """Begin registering/reporting in background tasks; return promptly."""

    async def stop(self) -> None:
        """Stop reporting and release connections. Idempotent."""


@dataclass(frozen=True, slots=True)
class ClientWiring:
    """Everything the daemon hands a :data:`ReportingClientFactory`.

    The fields match ``SupervitClient(config, service_collector, metrics=, realm_version=,
    on_shutdown=)``: ``realm_version`` returns the highest stored realm version
    (``realm_sync_version``); ``await on_shutdown(reason)`` stops the daemon gracefully (the
    GRACEFUL_SHUTDOWN directive), within ``shutdown_grace_secs``.
    """

    config: SupervitConfig
    service_collector: ServiceCollector
    metrics: MetricsProvider
    realm_version: Callable[[], Awaitable[int]]
    on_shutdown: Callable[[str], Awaitable[None]]
    interceptors: tuple[Any, ...] = ()
    """grpc.aio client interceptors for the channel to the supervisor (the ``grpc_client_*``
    metrics when they are on): ``SupervitClient(..., interceptors=)``."""


ReportingClientFactory = Callable[[ClientWiring], ReportingClient]
"""Builds the reporting client once the server is bound (the advertised port is then known), e.g.::

    def factory(w: ClientWiring) -> SupervitClient:
        return SupervitClient(w.config, w.service_collector, metrics=w.metrics,
                              realm_version=w.realm_version, on_shutdown=w.on_shutdown)
"""


def services_from_config(config: NodeConfig) -> list[ServiceInfo]:
    """The services of ``[[supervisor.supervisord.services]]`` as ServiceInfo entries."""
    return [
        ServiceInfo(
            name=svc.name,
            type=svc.type_number,
            domain=svc.domain,
            port=svc.port,
            url=svc.url,
            state=ServiceState(svc.state),
            description=svc.description,
            tags=tuple(svc.tags),
        )
        for svc in config.supervisord.services
    ]


class NodeDaemon:
    """The node agent: authenticated SupervisedService on the configured address, plus stores.

    Use :meth:`run` (start, serve until a stop is requested, stop), or :meth:`start` and
    :meth:`stop` directly. ``metrics`` defaults to real system metrics; ``client_factory``, when
    given and ``[supervisor.client] endpoint`` is set, builds the reporting client.
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        metrics: MetricsProvider | None = None,
        client_factory: ReportingClientFactory | None = None,
        clock: Callable[[], float] = time.time,
        tune_process: bool = True,
    ) -> None:
        self.config = config
        self._tune_process = tune_process
        self.service_collector = ServiceCollector(services_from_config(config))
        self._metrics = metrics
        self._client_factory = client_factory
        self._clock = clock
        self._db: Database | None = None
        self._lock: DataDirLock | None = None
        self._health: StorageHealth | None = None
        self._trimmer = MemoryTrimmer()
        self._nonces: SqliteNonceStorage | None = None
        self._rpc: RpcServer | None = None
        self._client: ReportingClient | None = None
        self.supervisord: Supervisord | None = None
        self.stored_config_decisions: list[str] = []
        """What start-up did with values stored by UpdateConfig (see :mod:`supervit.node._reapply`)."""
        self.port: int | None = None
        self._stop_requested = asyncio.Event()
        self._stop_grace: float | None = None
        self._stop_reason = ""
        self._stopping: asyncio.Task[None] | None = None
        self.telemetry: DaemonMetrics | None = None
        """This daemon's metrics (None when ``[supervisor.metrics] listen`` is "")."""
        self._http: MetricsServer | None = None
        self.metrics_address: str | None = None
        """``host:port`` of ``/metrics``, ``/healthz`` and ``/readyz`` (None when disabled)."""

    @property
    def address(self) -> str:
        """``host:port`` the server is bound to (the configured ip, the bound port)."""
        if self.port is None:
            raise RuntimeError("the daemon is not started")
        ip = self.config.supervisord.ip
        return f"[{ip}]:{self.port}" if ":" in ip else f"{ip}:{self.port}"

    @property
    def stop_reason(self) -> str:
        """Why the first stop was requested ("" while running)."""
        return self._stop_reason

    @property
    def stop_requested(self) -> bool:
        """Whether a stop was requested (signal, Shutdown RPC or :meth:`request_stop`)."""
        return self._stop_requested.is_set()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> int:
        """Open the stores, start serving and the optional client; return the bound port.

        On failure everything opened so far is closed again before the error propagates. Unless
        built with ``tune_process=False`` it applies :func:`~supervit.rpc.tune_for_serving` first.
        """
        if self._tune_process:
            tune_for_serving()
        sd = self.config.supervisord
        try:
            await self._start_metrics()
            self._lock = DataDirLock.acquire(sd.data_dir, key="supervisor.supervisord.data_dir")
            self._db = await open_node_database(sd.data_dir)
            # actrix.db is the nonce store's companion: a realm or config write records its
            # request's nonce in its own transaction (one commit per request; AuthService).
            self._nonces = await SqliteNonceStorage.open(sd.data_dir, companion=self._db)
            log.debug("data dir %s: %s and %s open", sd.data_dir, self._db.path.name, self._nonces.path.name)
            telemetry = self.telemetry
            if telemetry is not None:
                self._db.commit_observer = telemetry.commit_observer(self._db.path.name)
                self._nonces.database.commit_observer = telemetry.commit_observer(self._nonces.path.name)
            realms = RealmStore(self._db, clock=self._clock)
            metrics = self._metrics or await SystemMetricsCollector.create(
                sd.data_dir, power_model=self.config.supervisor.client.power_model
            )
            self._metrics = metrics
            self.supervisord = (
                Supervisord(
                    self.config.node_id,
                    sd.node_name or self.config.node_id,
                    sd.location_tag,
                    __version__,
                    self.service_collector,
                    realm_store=realms,
                    config_store=ConfigStore(self._db, clock=self._clock),
                    data_dir=sd.data_dir,
                    clock=self._clock,
                    default_shutdown_timeout_secs=int(sd.shutdown_grace_secs),
                    # Listings stop well before the send limit (the rest follows with a page token).
                    max_response_bytes=min(DEFAULT_MAX_RESPONSE_BYTES, sd.max_message_bytes * 3 // 4),
                )
                .with_metrics_provider(metrics)
                .with_shutdown_handler(self._on_shutdown_rpc)
            )
            # Values set through UpdateConfig survive a restart unless the file changed since.
            self.stored_config_decisions = await reapply_stored_config(
                self.config,
                self.supervisord.config_store,
                self.supervisord.appliers,
                self.service_collector,
                file_time=toml_changed_at(self.config),
            )
            secret = self.config.secret
            service = AuthService(
                self.supervisord,
                self.config.node_id,
                secret,
                self._nonces,
                self.config.supervisor.max_clock_skew_secs,
                clock=self._clock,
                require_body_mac=self.config.supervisor.security.require_body_mac,
            )
            tls = ServerTLS(sd.tls_cert, sd.tls_key, sd.tls_client_ca) if sd.tls_cert and sd.tls_key else None
            # grpc enables SO_REUSEPORT by default, which would let a second node silently share
            # the port with a running one; a daemon must fail loudly instead ("address in use").
            security = self.config.supervisor.security
            (limits,) = with_overrides(
                (SUPERVISED_LIMITS,),
                max_request_bytes={SUPERVISED_LIMITS.service: security.max_request_bytes},
                max_bytes=security.max_bytes,
                max_count=security.max_count,
                key_prefix="supervisor.security",
            )
            self._rpc = RpcServer(
                max_message_bytes=sd.max_message_bytes,
                max_receive_bytes=limits.max_request_bytes,
                maximum_concurrent_rpcs=security.max_concurrent_rpcs,
                tls=tls,
                metrics=telemetry.grpc_server if telemetry is not None else None,
            )
            add_supervised_service(self._rpc, service, limits)
            # Health turns NOT_SERVING while the stores cannot write (probed with a throwaway nonce).
            self._health = StorageHealth(self._probe_storage)
            self._health.attach(self._rpc)
            self._trimmer.start()  # memory a burst of large requests left behind goes back to the OS
            self.port = await self._rpc.start(self.config.listen_addr)
            mode = "plaintext" if tls is None else ("mTLS" if tls.client_ca else "TLS")
            log.info(
                "node %r serving SupervisedService on %s (%s, secret key id %s, data dir %s)",
                self.config.node_id,
                self.address,
                mode,
                secret.key_id,
                sd.data_dir,
            )
            await self._start_client(realms)
            if telemetry is not None:
                telemetry.add_sampler(
                    "node",
                    NodeSampler(
                        realms=realms,
                        nonces=self._nonces,
                        provider=metrics,
                        services=self.service_collector,
                        client=lambda: self._client,
                    ),
                )
        except BaseException:
            await self._close()
            raise
        return self.port

    async def _probe_storage(self) -> None:
        # A real write through the nonce store, expiring at once: proves the data dir takes writes.
        if self._nonces is None:
            raise StorageError("the node is stopping")
        await self._nonces.consume(f"health-probe:{uuid.uuid4()}", self._clock())

    async def _start_metrics(self) -> None:
        listen = self.config.supervisor.metrics.listen
        if not listen:
            return
        self.telemetry = DaemonMetrics("node")
        checks: dict[str, ReadinessCheck] = {"storage": self._storage_ready}
        if self.config.client_config() is not None:
            checks["supervisor"] = self._supervisor_ready
        self._http = MetricsServer(self.telemetry, checks)
        host, port = split_listen(listen)
        self.metrics_address = format_host_port(host, await self._http.start(host, port))
        log.info("metrics and probes on http://%s/metrics (/healthz, /readyz)", self.metrics_address)

    async def _storage_ready(self) -> str | None:
        db, nonces = self._db, self._nonces
        if self.port is None or db is None or nonces is None:
            return "starting"
        if self._stop_requested.is_set():
            return "stopping"
        if self._health is not None and not self._health.serving:
            return "storage cannot write (health NOT_SERVING)"
        await db.check_writable()
        await nonces.database.check_writable()
        return None

    async def _supervisor_ready(self) -> str | None:
        client = self._client
        if client is None:
            return "starting"
        state = getattr(client, "state", None)
        if getattr(state, "registered_at", None) is None:
            return "not registered with the supervisor"
        return None

    async def _start_client(self, realms: RealmStore) -> None:
        assert self.port is not None and self._metrics is not None
        client_config = self.config.client_config(self.port)
        if client_config is None:
            log.info("no [supervisor.client] endpoint configured: serving only, not reporting")
            return
        if self._client_factory is None:
            log.warning("endpoint %s is configured but no reporting client is wired in", client_config.endpoint)
            return
        wiring = ClientWiring(
            config=client_config,
            service_collector=self.service_collector,
            metrics=self._metrics,
            realm_version=realms.max_realm_version,
            on_shutdown=self._on_shutdown_directive,
            interceptors=(self.telemetry.grpc_client.interceptor(),) if self.telemetry is not None else (),
        )
        self._client = self._client_factory(wiring)
        await self._client.start_status_reporting()
        log.info("reporting to %s as %r", ", ".join(client_config.endpoint_list), client_config.node_id)

    async def wait(self) -> None:
        """Wait until a stop is requested."""
        await self._stop_requested.wait()

    async def run(self, *, on_ready: Callable[[NodeDaemon], None] | None = None, handle_signals: bool = True) -> None:
        """Start, call ``on_ready``, serve until a stop is requested, then stop.

        With ``handle_signals`` SIGTERM and SIGINT request a graceful stop.
        """
        await self.start()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        try:
            for sig in signals:
                loop.add_signal_handler(sig, self.request_stop, None, f"signal {sig.name}")
            if on_ready is not None:
                on_ready(self)
            await self.wait()
        finally:
            await self.stop()
            for sig in signals:
                loop.remove_signal_handler(sig)

    def request_stop(self, grace: float | None = None, reason: str = "stop requested") -> None:
        """Ask :meth:`run` to stop; ``grace`` (default ``shutdown_grace_secs``) bounds in-flight RPCs.

        Several requests made before the stop begins keep the shortest grace; once stopping,
        further requests change nothing. Call from the event loop's thread only.
        """
        effective = self.config.supervisord.shutdown_grace_secs if grace is None else max(0.0, grace)
        if self._stop_grace is None or effective < self._stop_grace:
            self._stop_grace = effective
        if not self._stop_requested.is_set():
            self._stop_reason = reason
            log.info("stopping: %s (grace %.2fs)", reason, effective)
            self._stop_requested.set()

    def _on_shutdown_rpc(self, graceful: bool, timeout_secs: int, reason: str | None) -> None:
        grace = max(float(timeout_secs), RESPONSE_FLUSH_SECS) if graceful else RESPONSE_FLUSH_SECS
        kind = "graceful" if graceful else "immediate"
        self.request_stop(grace, f"{kind} Shutdown RPC" + (f" ({reason})" if reason else ""))

    async def _on_shutdown_directive(self, reason: str) -> None:
        self.request_stop(None, "GRACEFUL_SHUTDOWN directive" + (f" ({reason})" if reason else ""))

    async def __aenter__(self) -> NodeDaemon:
        """:meth:`start`, then the daemon serves until the block ends (then :meth:`stop`)."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self, grace: float | None = None) -> None:
        """Stop the client, the server (in-flight RPCs get ``grace`` seconds) and close the stores.

        ``grace`` defaults to the requested one, else ``shutdown_grace_secs``. Idempotent:
        concurrent callers wait for the same stop.
        """
        if self._stopping is None:
            if grace is None:
                grace = self._stop_grace
            if grace is None:
                grace = self.config.supervisord.shutdown_grace_secs
            self._stopping = asyncio.get_running_loop().create_task(self._stop(grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float) -> None:
        self._stop_requested.set()
        try:
            if self._client is not None:
                leave = getattr(self._client, "leave", None)
                if leave is not None:
                    # Graceful leave: one final report marked as leaving, so the supervisor shows
                    # the node "stopped" at once (SIGTERM, Shutdown RPC or GRACEFUL_SHUTDOWN alike).
                    try:
                        await leave(self._stop_reason or "stopping")
                    except Exception:
                        log.exception("the final report before leaving failed")
                try:
                    await self._client.stop()
                except Exception:
                    log.exception("the reporting client failed to stop cleanly")
            rpc, self._rpc = self._rpc, None
            if rpc is not None:
                await rpc.stop(grace)
        finally:
            await self._close()
        log.info("node %r stopped", self.config.node_id)

    async def _close(self) -> None:
        # Close in reverse order of opening; each step runs even if an earlier one fails.
        rpc, self._rpc = self._rpc, None
        health, self._health = self._health, None
        if health is not None:
            await health.close()
        await self._trimmer.close()
        nonces, self._nonces = self._nonces, None
        db, self._db = self._db, None
        http, self._http = self._http, None
        try:
            if rpc is not None:
                await rpc.stop(0)  # only reached when start failed half-way: nothing to wait for
        finally:
            try:
                if nonces is not None:
                    await nonces.close()
            finally:
                try:
                    if db is not None:
                        await db.close()
                finally:
                    try:
                        lock, self._lock = self._lock, None
                        if lock is not None:
                            lock.release()
                    finally:
                        if http is not None:
                            await http.stop()
