"""PostgreSQL and Redis for tests: addresses from the environment, one schema / key prefix per test.

``SUPERVIT_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``) and
``SUPERVIT_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``). Missing services skip the test
on a laptop with a line saying how to enable it, and fail it in CI (``CI`` set).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

PG_URL = os.environ.get("SUPERVIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SUPERVIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(what: str, variable: str, error: BaseException) -> None:
    message = f"{what} not reachable ({type(error).__name__}: {error})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: CI must provide it (.ci/run starts it)")
    pytest.skip(f"{message}; start it or point {variable} at one to run this test")


@dataclass
class SharedStores:
    """A fresh PostgreSQL schema and Redis key prefix, removed after the test."""

    database_url: str
    schema: str
    redis_url: str
    prefix: str

    def server_table(self, *, redis: bool = True) -> dict[str, object]:
        """The ``[server]`` keys that put a supervisor on these stores."""
        table: dict[str, object] = {
            "database_url": self.database_url,
            "database_schema": self.schema,
            "database_timeout_secs": 2.0,
        }
        if redis:
            table |= {"nonce_store_url": self.redis_url, "nonce_key_prefix": self.prefix}
        return table


@contextlib.asynccontextmanager
async def shared_stores() -> AsyncIterator[SharedStores]:
    import asyncpg
    import redis.asyncio

    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        unavailable("PostgreSQL", "SUPERVIT_TEST_POSTGRES_URL", exc)
        raise AssertionError("unreachable") from exc
    await conn.close()
    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        await client.ping()
    except (OSError, redis.exceptions.RedisError) as exc:
        await client.aclose()
        unavailable("Redis", "SUPERVIT_TEST_REDIS_URL", exc)
    tag = uuid.uuid4().hex[:12]
    stores = SharedStores(PG_URL, f"t_{tag}", REDIS_URL, f"t:{tag}:")
    try:
        yield stores
    finally:
        conn = await asyncpg.connect(PG_URL, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{stores.schema}" CASCADE')
        finally:
            await conn.close()
        keys = [key async for key in client.scan_iter(match=f"{stores.prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
