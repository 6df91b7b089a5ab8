"""Choose the storage backend from the configuration (see :mod:`supervit.supervisor._store`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from supervit._exceptions import ConfigError
from supervit.supervisor._config import SupervisorConfig
from supervit.supervisor._sqlite_store import SqliteStore
from supervit.supervisor._store import SupervisorStore

__all__ = ["open_store"]


async def open_store(config: SupervisorConfig, *, clock: Callable[[], float] = time.time) -> SupervisorStore:
    """SQLite in ``[server] data_dir`` by default; PostgreSQL (+ Redis) when ``database_url`` is set.

    The PostgreSQL backend needs the ``supervit[ha]`` extra (asyncpg, redis); without it this
    raises :class:`ConfigError` naming ``server.database_url``.
    """
    if config.server.database_url is None:
        return await SqliteStore.open(config, clock=clock)
    try:
        from supervit.supervisor._pg_store import PgStore
    except ImportError as exc:
        raise ConfigError(
            "server.database_url", f"needs the PostgreSQL backend: pip install 'supervit[ha]' ({exc.name} missing)"
        ) from None
    return await PgStore.open(config, clock=clock)
