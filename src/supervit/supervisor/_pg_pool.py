"""A small wrapper over an asyncpg pool: bounded waits, and driver errors as supervit errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from supervit.supervisor._pg_errors import store_errors

__all__ = ["PgPool"]


class PgPool:
    """``pool`` is an ``asyncpg.Pool`` whose connections have the fleet's schema as search path.

    Acquiring waits at most ``timeout`` seconds (a pool exhausted by a hung database fails closed
    instead of queueing forever); statements are bounded by the pool's ``command_timeout``. A
    connection broken by a database restart is dropped by the pool when released, and the next
    acquire opens a fresh one: that is the whole reconnect logic.
    """

    def __init__(self, pool: Any, *, timeout: float) -> None:
        self.pool = pool
        self.timeout = timeout

    @contextlib.asynccontextmanager
    async def connection(self, what: str) -> AsyncIterator[Any]:
        """A pooled connection; any failure inside becomes StoreUnavailableError / StorageError."""
        with store_errors(what):
            async with self.pool.acquire(timeout=self.timeout) as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def transaction(self, what: str) -> AsyncIterator[Any]:
        """A pooled connection inside a transaction (committed when the block ends)."""
        with store_errors(what):
            async with self.pool.acquire(timeout=self.timeout) as conn, conn.transaction():
                yield conn
