"""Consumed nonces shared by every replica: Redis (``SET NX EXAT``) or a PostgreSQL unique key.

Either way the store decides atomically: of several replicas offered the same nonce at the same
instant, exactly one is told it is fresh. Redis forgets a nonce by itself when it expires;
PostgreSQL rows are deleted by the leader's cleanup. An unreachable store raises
:class:`~supervit.StoreUnavailableError` (never an unchecked accept).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from supervit._exceptions import NonceStorageError, StorageError
from supervit.auth import NonceStorage
from supervit.supervisor._pg_errors import store_errors
from supervit.supervisor._pg_pool import PgPool

__all__ = ["PgNonceStorage", "RedisNonceStorage"]

_CLEANUP_CHUNK = 5000


def _storage_failure(exc: StorageError) -> StorageError:
    # Unreachable stays StoreUnavailableError (UNAVAILABLE); anything else is a nonce store failure.
    return exc if type(exc) is not StorageError else NonceStorageError(str(exc))


class PgNonceStorage(NonceStorage):
    """Nonces in the ``nonces`` table: the primary key makes the second insert a conflict."""

    def __init__(self, db: PgPool, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def consume(self, nonce: str, expires_at: float) -> bool:
        """True if ``nonce`` was fresh (now consumed, committed), False if already consumed."""
        try:
            async with self._db.connection("consume nonce") as conn:
                row = await conn.fetchval(
                    "INSERT INTO nonces (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING RETURNING 1",
                    nonce,
                    int(expires_at),
                )
        except StorageError as exc:
            raise _storage_failure(exc) from exc
        return row is not None

    async def cleanup(self) -> int:
        """Delete expired nonces in chunks; returns how many."""
        now = int(self._clock())
        removed = 0
        while True:
            async with self._db.connection("nonce cleanup") as conn:
                status = await conn.execute(
                    "DELETE FROM nonces WHERE nonce IN (SELECT nonce FROM nonces WHERE expires_at < $1 LIMIT $2)",
                    now,
                    _CLEANUP_CHUNK,
                )
            count = int(status.rsplit(" ", 1)[-1])
            removed += count
            if count < _CLEANUP_CHUNK:
                return removed


class RedisNonceStorage(NonceStorage):
    """Nonces as Redis keys ``<prefix><nonce>`` set with ``NX`` and expiring at their expiry.

    ``client`` is a ``redis.asyncio.Redis``; the keys expire by themselves (no cleanup).
    """

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def consume(self, nonce: str, expires_at: float) -> bool:
        """True if ``nonce`` was fresh (now consumed), False if already consumed."""
        return (await self.consume_many([(nonce, int(expires_at))]))[0]

    async def consume_many(self, items: Sequence[tuple[str, int]]) -> list[bool]:
        """Consume several nonces in one round trip (a pipeline); one freshness flag per item.

        Redis runs each ``SET NX`` atomically, so duplicates within ``items`` come out once fresh.
        """
        try:
            with store_errors("consume nonces in Redis"):
                pipe = self._client.pipeline(transaction=False)
                for nonce, expires_at in items:
                    pipe.set(self._prefix + nonce, b"1", nx=True, exat=int(expires_at))
                results = await pipe.execute()
        except StorageError as exc:
            raise _storage_failure(exc) from exc
        return [bool(result) for result in results]

    async def ping(self) -> None:
        """Raise StoreUnavailableError unless Redis answers."""
        with store_errors("ping Redis"):
            await self._client.ping()

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()
