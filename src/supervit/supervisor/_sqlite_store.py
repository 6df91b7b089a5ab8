"""The embedded backend: everything in one ``supervisor.db`` (one process, nothing to install)."""

from __future__ import annotations

import time
from collections.abc import Callable

from supervit.storage import Database, DataDirLock
from supervit.supervisor._catalog import RealmCatalog
from supervit.supervisor._config import SupervisorConfig
from supervit.supervisor._directives import DirectiveQueue
from supervit.supervisor._ingest import IngestNonceStorage, ReportIngest
from supervit.supervisor._registry import NodeRegistry
from supervit.supervisor._schema import open_supervisor_database

__all__ = ["SqliteStore"]


class SqliteStore:
    """The :class:`~supervit.supervisor.SupervisorStore` on SQLite: the process is always the leader.

    Open with :meth:`open`; :meth:`close` flushes the acknowledged reports and closes the file.
    """

    shared = False

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.database = db
        self._lock: DataDirLock | None = None
        self.registry = NodeRegistry(db, clock=clock)
        self.catalog = RealmCatalog(db, clock=clock)
        self.ingest = ReportIngest(self.registry, clock=clock)
        self.directives = DirectiveQueue(db, clock=clock, on_enqueued=self.ingest.directive_queued)
        # One nonce window for every RPC (nodes' and admin's): a nonce is single-use across all.
        self.nonces = IngestNonceStorage(self.ingest)

    @classmethod
    async def open(cls, config: SupervisorConfig, *, clock: Callable[[], float] = time.time) -> SqliteStore:
        """Open ``[server] data_dir``/supervisor.db, load the catalog and the ingest state."""
        lock = DataDirLock.acquire(config.server.data_dir, key="server.data_dir")  # one process per file
        try:
            db = await open_supervisor_database(config.server.data_dir, synchronous=config.server.sqlite_synchronous)
        except BaseException:
            lock.release()
            raise
        store = cls(db, clock=clock)
        store._lock = lock
        try:
            await store.catalog.load()
            await store.ingest.load()
        except BaseException:
            await store.close()
            raise
        return store

    def is_leader(self) -> bool:
        """Always: one process owns the file."""
        return True

    async def check(self) -> None:
        """A write transaction can start and commit on the file now (readiness, ``/readyz``)."""
        await self.database.check_writable()

    async def cleanup(self) -> None:
        """Forget expired nonces and folded report-log rows."""
        await self.ingest.cleanup()

    async def close(self) -> None:
        """Fold every acknowledged report into the registry, then close the database."""
        try:
            await self.ingest.flush()
        finally:
            try:
                await self.database.close()
            finally:
                if self._lock is not None:
                    self._lock.release()
                    self._lock = None
