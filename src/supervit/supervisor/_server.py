"""Supervisor: the database, services, gRPC servers and background work of one supervisor process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable

from supervit.auth import CredentialVerifier
from supervit.rpc import RpcServer, ServerTLS
from supervit.storage import Database
from supervit.supervisor._admin import ADMIN_SERVICE, AdminService
from supervit.supervisor._catalog import RealmCatalog
from supervit.supervisor._config import SupervisorConfig, split_host_port
from supervit.supervisor._directives import DirectiveQueue
from supervit.supervisor._ingest import ReportIngest
from supervit.supervisor._push import CatalogPusher
from supervit.supervisor._registry import NodeRegistry, RegistryNonceStorage
from supervit.supervisor._schema import open_supervisor_database
from supervit.supervisor._service import SUPERVISOR_SERVICE, SupervisorService

__all__ = ["Supervisor"]

log = logging.getLogger("supervit.supervisor")

_NONCE_CLEANUP_SECS = 60.0
_NO_REUSEPORT = [("grpc.so_reuseport", 0)]


def _with_port(listen: str, port: int) -> str:
    host, _ = split_host_port(listen)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Supervisor:
    """One supervisor: SupervisorService (plus health and reflection) on ``[server] listen``,
    SupervisorAdmin on ``[admin] listen`` when an admin secret is configured, the registry's offline
    sweep and the catalog pusher.

    ``clock`` (Unix seconds) is shared by every component, so tests can drive offline detection::

        supervisor = Supervisor(config)
        await supervisor.start()
        ...
        await supervisor.stop()
    """

    def __init__(self, config: SupervisorConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._db: Database | None = None
        self._server: RpcServer | None = None
        self._admin_server: RpcServer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._registry: NodeRegistry | None = None
        self._catalog: RealmCatalog | None = None
        self._pusher: CatalogPusher | None = None
        self._directives: DirectiveQueue | None = None
        self._nonces: RegistryNonceStorage | None = None
        self._ingest: ReportIngest | None = None
        self._stop_event = asyncio.Event()
        self.address: str | None = None
        """``host:port`` SupervisorService listens on (after :meth:`start`)."""
        self.admin_address: str | None = None
        """``host:port`` of the admin service, None when it is disabled."""

    # -- components (available after start) -------------------------------------------------------

    @property
    def registry(self) -> NodeRegistry:
        """The node registry."""
        if self._registry is None:
            raise RuntimeError("the supervisor is not started")
        return self._registry

    @property
    def catalog(self) -> RealmCatalog:
        """The realm catalog."""
        if self._catalog is None:
            raise RuntimeError("the supervisor is not started")
        return self._catalog

    @property
    def pusher(self) -> CatalogPusher:
        """The catalog pusher."""
        if self._pusher is None:
            raise RuntimeError("the supervisor is not started")
        return self._pusher

    @property
    def ingest(self) -> ReportIngest:
        """The Report/HealthCheck hot path."""
        if self._ingest is None:
            raise RuntimeError("the supervisor is not started")
        return self._ingest

    @property
    def directives(self) -> DirectiveQueue:
        """The directive queues."""
        if self._directives is None:
            raise RuntimeError("the supervisor is not started")
        return self._directives

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database, bind both servers and start the sweep; raises on any failure."""
        cfg = self.config
        try:
            self._db = db = await open_supervisor_database(
                cfg.server.data_dir, synchronous=cfg.server.sqlite_synchronous
            )
            clock = self._clock
            self._registry = registry = NodeRegistry(db, clock=clock)
            self._catalog = catalog = RealmCatalog(db, clock=clock)
            await catalog.load()
            self._ingest = ingest = ReportIngest(registry, clock=clock)
            await ingest.load()
            self._directives = directives = DirectiveQueue(db, clock=clock, on_enqueued=ingest.directive_queued)
            self._nonces = nonces = RegistryNonceStorage(db, clock=clock)
            self._pusher = pusher = CatalogPusher(catalog, registry, cfg.secrets_for, cfg.push, clock=clock)
            # The verifier's own secrets are never used: every call passes the node's secrets.
            node_verifier = CredentialVerifier((), nonces, cfg.server.max_clock_skew_secs, clock=clock)
            service = SupervisorService(cfg, ingest, node_verifier, catalog, pusher, clock=clock)
            srv = cfg.server
            tls = ServerTLS(srv.tls_cert, srv.tls_key, srv.tls_client_ca) if srv.tls_cert and srv.tls_key else None
            # grpc enables SO_REUSEPORT by default: a second supervisor on the same port would then
            # silently share it (and split the fleet between two registries). Fail loudly instead.
            self._server = RpcServer(max_message_bytes=srv.max_message_bytes, tls=tls, options=_NO_REUSEPORT)
            self._server.add_service(SUPERVISOR_SERVICE, service)
            port = await self._server.start(srv.listen)
            self.address = _with_port(srv.listen, port)
            if cfg.admin_enabled and cfg.admin_secret is not None:
                admin_verifier = CredentialVerifier(
                    cfg.admin_secret, nonces, cfg.server.max_clock_skew_secs, clock=clock
                )
                admin = AdminService(registry, catalog, pusher, directives, admin_verifier, clock=clock, ingest=ingest)
                self._admin_server = RpcServer(options=_NO_REUSEPORT)
                self._admin_server.add_service(ADMIN_SERVICE, admin)
                admin_port = await self._admin_server.start(cfg.admin.listen)
                self.admin_address = _with_port(cfg.admin.listen, admin_port)
            else:
                log.info("admin service disabled (set [admin] secret to enable supervit ctl's supervisor commands)")
        except BaseException:
            await self._stop_servers(0)
            await self._close()
            raise
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(), name="supervisor-sweep")
        log.info(
            "supervisor listening on %s%s (catalog v%d)",
            self.address,
            f", admin on {self.admin_address}" if self.admin_address else "",
            catalog.version,
        )

    async def sweep_once(self) -> list[str]:
        """Mark silent nodes offline now; returns the ids that just went offline."""
        await self.ingest.flush()  # judge by every report acknowledged so far
        gone = await self.registry.mark_offline(self.config.fleet.offline_after_missed)
        for node_id in gone:
            log.warning("node %s is offline (missed %d reports)", node_id, self.config.fleet.offline_after_missed)
        return gone

    async def _sweep_loop(self) -> None:
        # Half the shortest interval (bounded) keeps detection within about half an interval.
        period = max(0.5, min(5.0, self.config.shortest_report_interval() / 2))
        next_cleanup = time.monotonic() + _NONCE_CLEANUP_SECS
        while True:
            await asyncio.sleep(period)
            try:
                await self.sweep_once()
                if time.monotonic() >= next_cleanup:
                    next_cleanup = time.monotonic() + _NONCE_CLEANUP_SECS
                    if self._nonces is not None:
                        await self._nonces.cleanup()
            except Exception:
                log.exception("registry sweep failed; will retry")

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

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving (in-flight calls get ``grace`` seconds), cancel pushes, close the database."""
        grace = self.config.server.shutdown_grace_secs if grace is None else grace
        await self._stop_servers(grace)
        await self._close()
        log.info("supervisor stopped")

    async def _stop_servers(self, grace: float) -> None:
        servers = [s for s in (self._server, self._admin_server) if s is not None]
        self._server = self._admin_server = None
        await asyncio.gather(*(s.stop(grace) for s in servers))

    async def _close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._pusher is not None:
            await self._pusher.close()
        if self._ingest is not None:
            await self._ingest.flush()  # every acknowledged report reaches the database
        if self._db is not None:
            await self._db.close()
            self._db = None
