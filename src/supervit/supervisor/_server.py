"""Supervisor: the database, services, gRPC servers and background work of one supervisor process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from supervit._exceptions import StorageError
from supervit.auth import CredentialVerifier
from supervit.config import format_host_port, split_host_port, split_listen
from supervit.rpc import MemoryTrimmer, RpcServer, ServerTLS, StorageHealth, tune_for_serving
from supervit.storage import Database
from supervit.supervisor._admin import ADMIN_SERVICE, AdminService
from supervit.supervisor._backends import open_store
from supervit.supervisor._config import SupervisorConfig
from supervit.supervisor._push import CatalogPusher
from supervit.supervisor._service import SUPERVISOR_SERVICE, SupervisorService
from supervit.supervisor._store import (
    CatalogStore,
    DirectiveStore,
    IngestStore,
    RegistryStore,
    SupervisorStore,
)
from supervit.supervisor._telemetry import SupervisorSampler
from supervit.telemetry import DaemonMetrics, MetricsServer

__all__ = ["Supervisor"]

log = logging.getLogger("supervit.supervisor")

_NONCE_CLEANUP_SECS = 60.0
# How often a shared store is probed for health, and the leader looks for nodes behind the catalog
# whose reports reached other replicas.
_HEALTH_PROBE_SECS = 1.0
_CATCH_UP_SECS = 5.0
_NO_REUSEPORT = [("grpc.so_reuseport", 0)]


def _with_port(listen: str, port: int) -> str:
    host, _ = split_host_port(listen)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Supervisor:
    """One supervisor: SupervisorService (plus health and reflection) on ``[server] listen``,
    SupervisorAdmin on ``[admin] listen`` when an admin secret is configured, the registry's offline
    sweep and the catalog pusher, on the backend ``[server] database_url`` chooses (embedded SQLite
    by default; PostgreSQL for replicas, see :mod:`supervit.supervisor._store`). With a shared
    backend the sweep, pushes and cleanup run only while this replica is the elected leader, and
    health turns NOT_SERVING while the store cannot be reached.

    ``clock`` (Unix seconds) is shared by every component, so tests can drive offline detection::

        supervisor = Supervisor(config)
        await supervisor.start()
        ...
        await supervisor.stop()
    """

    def __init__(
        self, config: SupervisorConfig, *, clock: Callable[[], float] = time.time, tune_process: bool = True
    ) -> None:
        self.config = config
        self._clock = clock
        self._tune_process = tune_process
        self._store: SupervisorStore | None = None
        self._server: RpcServer | None = None
        self._admin_server: RpcServer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._storage_health: StorageHealth | None = None
        self._trimmer = MemoryTrimmer()
        self._pusher: CatalogPusher | None = None
        self._serving = True
        self._stop_event = asyncio.Event()
        self.address: str | None = None
        """``host:port`` SupervisorService listens on (after :meth:`start`)."""
        self.admin_address: str | None = None
        """``host:port`` of the admin service, None when it is disabled."""
        self.telemetry: DaemonMetrics | None = None
        """This supervisor's metrics (None when ``[metrics] listen`` is "")."""
        self._http: MetricsServer | None = None
        self.metrics_address: str | None = None
        """``host:port`` of ``/metrics``, ``/healthz`` and ``/readyz`` (None when disabled)."""
        self._ready = False  # started and not stopping (readiness; the store's health is checked apart)

    # -- components (available after start) -------------------------------------------------------

    @property
    def store(self) -> SupervisorStore:
        """The storage backend."""
        if self._store is None:
            raise RuntimeError("the supervisor is not started")
        return self._store

    @property
    def registry(self) -> RegistryStore:
        """The node registry."""
        return self.store.registry

    @property
    def catalog(self) -> CatalogStore:
        """The realm catalog."""
        return self.store.catalog

    @property
    def pusher(self) -> CatalogPusher:
        """The catalog pusher."""
        if self._pusher is None:
            raise RuntimeError("the supervisor is not started")
        return self._pusher

    @property
    def ingest(self) -> IngestStore:
        """The Report/HealthCheck hot path."""
        return self.store.ingest

    @property
    def directives(self) -> DirectiveStore:
        """The directive queues."""
        return self.store.directives

    def is_leader(self) -> bool:
        """Whether this process runs the fleet-wide duties now (always, on SQLite)."""
        return self._store is not None and self._store.is_leader()

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, bind both servers and start the sweep; raises on any failure.

        Unless built with ``tune_process=False`` it applies :func:`~supervit.rpc.tune_for_serving` first.
        """
        if self._tune_process:
            tune_for_serving()
        cfg = self.config
        try:
            if cfg.metrics.listen:
                # Bound first: a taken port fails before anything opens; /readyz is 503 until serving.
                self.telemetry = DaemonMetrics("supervisor")
                self._http = MetricsServer(self.telemetry, {"storage": self._storage_ready})
                host, port = split_listen(cfg.metrics.listen)
                self.metrics_address = format_host_port(host, await self._http.start(host, port))
            telemetry = self.telemetry
            grpc_metrics = telemetry.grpc_server if telemetry is not None else None
            clock = self._clock
            self._store = store = await open_store(cfg, clock=clock)
            database = getattr(store, "database", None)  # the embedded backend's SQLite file
            if telemetry is not None and isinstance(database, Database):
                database.commit_observer = telemetry.commit_observer(database.path.name)
            registry, catalog, ingest, nonces = store.registry, store.catalog, store.ingest, store.nonces
            directives = store.directives
            interceptors = [telemetry.grpc_client.interceptor()] if telemetry is not None else []
            self._pusher = pusher = CatalogPusher(
                catalog,
                registry,
                cfg.secrets_for,
                cfg.push,
                clock=clock,
                is_leader=store.is_leader,
                interceptors=interceptors,
            )
            # The verifier's own secrets are never used: every call passes the node's secrets.
            node_verifier = CredentialVerifier((), nonces, cfg.server.max_clock_skew_secs, clock=clock)
            service = SupervisorService(cfg, ingest, node_verifier, catalog, pusher, clock=clock)
            srv = cfg.server
            tls = ServerTLS(srv.tls_cert, srv.tls_key, srv.tls_client_ca) if srv.tls_cert and srv.tls_key else None
            # grpc enables SO_REUSEPORT by default: a second supervisor on the same port would then
            # silently share it (and split the fleet between two registries). Fail loudly instead.
            limits = cfg.service_limits
            if store.shared:  # PostgreSQL stores uint64 values losslessly (numeric); SQLite up to 2**63 - 1
                limits = replace(limits, max_uint64=2**64 - 1)
            self._server = RpcServer(
                max_message_bytes=srv.max_message_bytes,
                max_receive_bytes=limits.max_request_bytes,
                maximum_concurrent_rpcs=cfg.security.max_concurrent_rpcs,
                tls=tls,
                options=_NO_REUSEPORT,
                metrics=grpc_metrics,
            )
            self._server.add_service(SUPERVISOR_SERVICE, service, limits)
            port = await self._server.start(srv.listen)
            self.address = _with_port(srv.listen, port)
            if cfg.admin_enabled and cfg.admin_secret is not None:
                admin_verifier = CredentialVerifier(
                    cfg.admin_secret, nonces, cfg.server.max_clock_skew_secs, clock=clock
                )
                admin = AdminService(
                    registry,
                    catalog,
                    pusher,
                    directives,
                    admin_verifier,
                    clock=clock,
                    require_body_mac=cfg.security.require_body_mac,
                )
                self._admin_server = RpcServer(
                    max_receive_bytes=cfg.admin_limits.max_request_bytes,
                    maximum_concurrent_rpcs=cfg.security.max_concurrent_rpcs,
                    options=_NO_REUSEPORT,
                    metrics=grpc_metrics,
                )
                self._admin_server.add_service(ADMIN_SERVICE, admin, cfg.admin_limits)
                admin_port = await self._admin_server.start(cfg.admin.listen)
                self.admin_address = _with_port(cfg.admin.listen, admin_port)
            else:
                log.info("admin service disabled (set [admin] secret to enable supervit ctl's supervisor commands)")
            if telemetry is not None:
                telemetry.add_sampler("supervisor", SupervisorSampler(service, store, pusher))
        except BaseException:
            await self._stop_servers(0)
            await self._close()
            raise
        self._ready = True
        loop = asyncio.get_running_loop()
        self._sweeper = loop.create_task(self._sweep_loop(), name="supervisor-sweep")
        self._trimmer.start()  # memory a burst of large requests left behind goes back to the OS
        if store.shared:
            self._prober = loop.create_task(self._probe_loop(), name="supervisor-store-probe")
        else:
            # The local file: health turns NOT_SERVING when a request could not write, until a
            # probe (a throwaway nonce through the report log) or a request writes again.
            self._storage_health = health = StorageHealth(self._probe_local_store)
            for server in (self._server, self._admin_server):
                if server is not None:
                    health.attach(server)
        log.info(
            "supervisor listening on %s%s (catalog v%d)",
            self.address,
            f", admin on {self.admin_address}" if self.admin_address else "",
            catalog.version,
        )
        if self.metrics_address is not None:
            log.info("metrics and probes on http://%s/metrics (/healthz, /readyz)", self.metrics_address)

    async def _storage_ready(self) -> str | None:
        store = self._store
        if store is None or not self._ready:
            return "not serving"
        health = self._storage_health
        if health is not None and not health.serving:
            return "storage cannot write (health NOT_SERVING)"
        await store.check()
        return None

    async def sweep_once(self) -> list[str]:
        """Mark silent nodes offline now; returns the ids that just went offline."""
        # Judged by every report acknowledged so far: the registry folds them first.
        gone = await self.registry.mark_offline(self.config.fleet.offline_after_missed)
        for node_id in gone:
            log.warning("node %s is offline (missed %d reports)", node_id, self.config.fleet.offline_after_missed)
        return gone

    async def _sweep_loop(self) -> None:
        # Half the shortest interval (bounded) keeps detection within about half an interval.
        period = max(0.5, min(5.0, self.config.shortest_report_interval() / 2))
        next_cleanup = time.monotonic() + _NONCE_CLEANUP_SECS
        store, pusher = self.store, self.pusher
        leading = False
        next_catch_up = 0.0
        pushed_for = -1  # the catalog version of the last catch-up: a change (any replica) triggers one
        while True:
            await asyncio.sleep(period if leading or not store.shared else min(period, 1.0))
            if not store.is_leader():
                if leading:
                    log.warning("no longer the leader: fleet-wide duties stop on this replica")
                leading = False
                continue
            if not leading and store.shared:
                log.info("elected leader: running the offline sweep, catalog pushes and cleanup")
                next_catch_up = 0.0
            leading = True
            try:
                await self.sweep_once()
                if store.shared and (time.monotonic() >= next_catch_up or self.catalog.version != pushed_for):
                    pushed_for = self.catalog.version
                    # Reports of other replicas do not reach this pusher: look for nodes behind.
                    next_catch_up = time.monotonic() + _CATCH_UP_SECS
                    await pusher.on_catalog_change()
                if time.monotonic() >= next_cleanup:
                    next_cleanup = time.monotonic() + _NONCE_CLEANUP_SECS
                    await store.cleanup()
            except StorageError as exc:
                log.warning("registry sweep failed (%s); will retry", exc)
            except Exception:
                log.exception("registry sweep failed; will retry")

    async def _probe_loop(self) -> None:
        # Fail closed and say so: health turns NOT_SERVING while the shared store is unreachable.
        store = self.store
        while True:
            try:
                await store.check()
                serving = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # StorageError, or anything else: fail closed, keep probing
                serving = False
                if self._serving:
                    log.error("store unreachable, health NOT_SERVING until it is back: %s", exc)
            if serving != self._serving:
                if serving:
                    log.warning("store reachable again: health SERVING")
                self._serving = serving
                for server in (self._server, self._admin_server):
                    if server is not None:
                        await server.set_serving(serving)
            await asyncio.sleep(_HEALTH_PROBE_SECS)

    def request_stop(self) -> None:
        """Make :meth:`run` return (after stopping); safe from signal handlers."""
        self._stop_event.set()

    async def run(self, *, on_ready: Callable[[Supervisor], None] | None = None, handle_signals: bool = True) -> None:
        """Start, call ``on_ready``, serve until SIGINT/SIGTERM or :meth:`request_stop`, then stop."""
        await self.start()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        try:
            if handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(NotImplementedError, RuntimeError):
                        loop.add_signal_handler(sig, self.request_stop)
                        installed.append(sig)
            if on_ready is not None:
                on_ready(self)
            await self._stop_event.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.stop()

    async def __aenter__(self) -> Supervisor:
        """:meth:`start`, then the daemon serves until the block ends (then :meth:`stop`)."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving (in-flight calls get ``grace`` seconds), cancel pushes, close the store."""
        grace = self.config.server.shutdown_grace_secs if grace is None else grace
        self._ready = False
        await self._stop_servers(grace)
        await self._close()
        log.info("supervisor stopped")

    async def _probe_local_store(self) -> None:
        await self.store.nonces.consume(f"health-probe:{uuid.uuid4()}", self._clock())

    async def _stop_servers(self, grace: float) -> None:
        servers = [s for s in (self._server, self._admin_server) if s is not None]
        self._server = self._admin_server = None
        await asyncio.gather(*(s.stop(grace) for s in servers))

    async def _close(self) -> None:
        health, self._storage_health = self._storage_health, None
        if health is not None:
            await health.close()
        await self._trimmer.close()
        for task in (self._sweeper, self._prober):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception as exc:  # stopping goes on: the stores must still be closed
                    log.warning("%s ended with an error while stopping: %r", task.get_name(), exc)
        self._sweeper = self._prober = None
        if self._pusher is not None:
            await self._pusher.close()
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()  # every acknowledged report reaches the registry rows first
        if self._http is not None:
            await self._http.stop()
            self._http = None
