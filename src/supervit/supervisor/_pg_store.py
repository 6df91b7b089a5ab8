"""The shared backend: PostgreSQL for the registry, directives and catalog; nonces in Redis or PostgreSQL.

Several supervisor replicas open the same database (and schema) and serve any node and any admin
call. Besides its connection pool, each replica keeps one **control connection** that

* holds the fleet's leader lock (``pg_try_advisory_lock``; the server releases it when the
  session ends, so a killed leader's lock is free as soon as its connection drops; TCP keepalives
  of a few seconds bound how long a partitioned leader's lock lingers), retried every second by
  the others;
* pings the server every second: a leader whose ping fails steps down at once;
* LISTENs for catalog changes of the other replicas (and re-reads the catalog versions every few
  seconds in case a notification was lost with a connection).

Why asyncpg: it speaks the binary protocol natively in asyncio with prepared-statement caching and
a built-in pool, the fastest well-kept driver for this workload (one array-parameter statement per
group of reports); redis-py's asyncio client for Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import redis.asyncio

from supervit.auth import NonceStorage
from supervit.supervisor._config import SupervisorConfig
from supervit.supervisor._pg_catalog import CATALOG_CHANNEL, PgCatalog
from supervit.supervisor._pg_errors import store_errors
from supervit.supervisor._pg_ingest import PgIngest
from supervit.supervisor._pg_nonces import PgNonceStorage, RedisNonceStorage
from supervit.supervisor._pg_pool import PgPool
from supervit.supervisor._pg_registry import PgDirectiveQueue, PgRegistry
from supervit.supervisor._pg_schema import lock_key, migrate

__all__ = ["PgStore", "connect_settings"]

log = logging.getLogger("supervit.supervisor")

_CONTROL_PERIOD_SECS = 1.0
_CATALOG_REFRESH_SECS = 5.0


def connect_settings(schema: str) -> dict[str, str]:
    """Session settings of every supervisor connection: the fleet's schema, a name in
    ``pg_stat_activity``, and keepalives that let the server notice a vanished replica in ~10 s."""
    return {
        "search_path": schema,
        "application_name": "supervit-supervisor",
        "tcp_keepalives_idle": "5",
        "tcp_keepalives_interval": "2",
        "tcp_keepalives_count": "3",
    }


class PgStore:
    """:class:`~supervit.supervisor.SupervisorStore` on PostgreSQL (+ Redis). Open with :meth:`open`."""

    shared = True

    def __init__(
        self,
        config: SupervisorConfig,
        pool: Any,
        redis_nonces: RedisNonceStorage | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        srv = config.server
        self._dsn = srv.database_url
        self._schema = srv.database_schema
        self._timeout = srv.database_timeout_secs
        self.db = db = PgPool(pool, timeout=srv.database_timeout_secs)
        self.registry = PgRegistry(db, clock=clock)
        self.catalog = PgCatalog(db, srv.database_schema, clock=clock)
        self.directives = PgDirectiveQueue(db, clock=clock)
        self._redis = redis_nonces
        self._pg_nonces = PgNonceStorage(db, clock=clock)
        self.nonces: NonceStorage = redis_nonces if redis_nonces is not None else self._pg_nonces
        self.ingest = PgIngest(db, self.registry, redis=redis_nonces, clock=clock)
        self._leader = False
        self._control: Any = None
        self._control_task: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, config: SupervisorConfig, *, clock: Callable[[], float] = time.time) -> PgStore:
        """Migrate the schema (one replica at a time), open the pool and Redis, start the control loop.

        Raises :class:`StoreUnavailableError` if PostgreSQL or Redis cannot be reached.
        """
        srv = config.server
        settings = connect_settings(srv.database_schema)
        with store_errors("connect to PostgreSQL"):
            conn = await asyncpg.connect(srv.database_url, timeout=srv.database_timeout_secs)
            try:
                before, applied = await migrate(conn, srv.database_schema)
            finally:
                await conn.close()
            if applied:
                log.info("database schema %s: migrated from v%d to v%d", srv.database_schema, before, applied[-1])
            pool = await asyncpg.create_pool(
                srv.database_url,
                min_size=1,
                max_size=srv.database_pool_size,
                timeout=srv.database_timeout_secs,
                command_timeout=srv.database_timeout_secs,
                server_settings=settings,
            )
        redis_nonces: RedisNonceStorage | None = None
        try:
            if srv.nonce_store_url is not None:
                # A blocking pool: a burst of RegisterNode/admin calls waits for a connection
                # (up to the timeout) instead of failing with "too many connections".
                redis_pool = redis.asyncio.BlockingConnectionPool.from_url(
                    srv.nonce_store_url,
                    max_connections=srv.database_pool_size * 2,
                    timeout=srv.database_timeout_secs,
                    socket_timeout=srv.database_timeout_secs,
                    socket_connect_timeout=srv.database_timeout_secs,
                )
                client = redis.asyncio.Redis.from_pool(redis_pool)  # owns (and closes) the pool
                redis_nonces = RedisNonceStorage(client, srv.nonce_key_prefix)
                await redis_nonces.ping()
            store = cls(config, pool, redis_nonces, clock=clock)
            await store.catalog.load()
        except BaseException:
            if redis_nonces is not None:
                await redis_nonces.close()
            await pool.close()
            raise
        store._control_task = asyncio.get_running_loop().create_task(store._control_loop(), name="supervisor-control")
        return store

    # -- leadership and catalog notifications ------------------------------------------------

    def is_leader(self) -> bool:
        """Whether this replica holds the leader lock (checked every second)."""
        return self._leader

    async def _control_loop(self) -> None:
        key = lock_key(self._schema, "leader")
        next_refresh = 0.0
        while True:
            try:
                if self._control is None or self._control.is_closed():
                    self._set_leader(False, "control connection lost")
                    self._control = await asyncpg.connect(
                        self._dsn, timeout=self._timeout, server_settings=connect_settings(self._schema)
                    )
                    await self._control.add_listener(CATALOG_CHANNEL, self._notified)
                    next_refresh = 0.0  # changes may have been missed meanwhile
                if not self._leader:
                    if await self._control.fetchval("SELECT pg_try_advisory_lock($1)", key, timeout=self._timeout):
                        self._set_leader(True, "took the leader lock")
                else:
                    await self._control.fetchval("SELECT 1", timeout=self._timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._set_leader(False, f"store unreachable ({type(exc).__name__})")
                if self._control is not None:
                    self._control.terminate()  # its session (and any lock) ends with it
                    self._control = None
            if time.monotonic() >= next_refresh:
                # Apart from the leader lock: a slow pool must not cost the leadership.
                next_refresh = time.monotonic() + _CATALOG_REFRESH_SECS
                await self._refresh_catalog()
            await asyncio.sleep(_CONTROL_PERIOD_SECS)

    def _set_leader(self, leader: bool, why: str) -> None:
        if leader != self._leader:
            log.info("%s the fleet leader: %s", "now" if leader else "no longer", why)
        self._leader = leader

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        if payload != self._schema or (self._refreshing is not None and not self._refreshing.done()):
            return
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh_catalog())

    async def _refresh_catalog(self) -> None:
        try:
            await self.catalog.load()
        except Exception as exc:  # the control loop re-reads it again shortly
            log.warning("cannot re-read the catalog version after a change: %s", exc)

    # -- health and duties ---------------------------------------------------------------------

    async def check(self) -> None:
        """One round trip to PostgreSQL (and Redis); StoreUnavailableError if either fails."""
        async with self.db.connection("ping PostgreSQL") as conn:
            await conn.fetchval("SELECT 1", timeout=self._timeout)
        if self._redis is not None:
            await self._redis.ping()

    async def cleanup(self) -> None:
        """Delete expired nonces from PostgreSQL (Redis keys expire by themselves)."""
        if self._redis is None:
            await self._pg_nonces.cleanup()

    async def close(self) -> None:
        """Wait for statements in flight, release the leader lock, close pool and Redis."""
        for task in (self._control_task, self._refreshing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._leader = False
        try:
            await self.ingest.drain()
        finally:
            if self._control is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._control.close(), self._timeout)
                self._control = None
            if self._redis is not None:
                await self._redis.close()
            try:
                await asyncio.wait_for(self.db.pool.close(), self._timeout)
            except (TimeoutError, OSError):
                self.db.pool.terminate()
