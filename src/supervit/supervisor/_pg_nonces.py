"""Consumed nonces shared by every replica: Redis (``SET NX EXAT``, a group per script call) or a
PostgreSQL unique key.

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

# SET NX EXAT for each key (KEYS[i] expires at ARGV[i]); 1 where the key was absent (consumed now).
# Redis runs a script atomically, so duplicate keys in one call come out fresh once. All keys of a
# call are on one server (a Redis Cluster would need them in one hash slot).
_CONSUME_SCRIPT = """
local fresh = {}
for i, key in ipairs(KEYS) do
    fresh[i] = redis.call('SET', key, '1', 'NX', 'EXAT', ARGV[i]) and 1 or 0
end
return fresh
"""


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
        # One command per group instead of one per nonce: far less client CPU than a pipeline.
        self._consume = client.register_script(_CONSUME_SCRIPT)

    async def consume(self, nonce: str, expires_at: float) -> bool:
        """True if ``nonce`` was fresh (now consumed), False if already consumed."""
        return (await self.consume_many([(nonce, int(expires_at))]))[0]

    async def consume_many(self, items: Sequence[tuple[str, int]]) -> list[bool]:
        """Consume several nonces in one round trip (one script call); a freshness flag per item."""
        keys = [self._prefix + nonce for nonce, _ in items]
        expiries = [int(expires_at) for _, expires_at in items]
        try:
            with store_errors("consume nonces in Redis"):
                results = await self._consume(keys=keys, args=expiries)
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
