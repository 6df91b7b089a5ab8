"""Choose the storage backend from the configuration (see :mod:`supervit.supervisor._store`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from supervit.supervisor._config import SupervisorConfig
from supervit.supervisor._sqlite_store import SqliteStore
from supervit.supervisor._store import SupervisorStore

__all__ = ["open_store"]


async def open_store(config: SupervisorConfig, *, clock: Callable[[], float] = time.time) -> SupervisorStore:
    """SQLite in ``[server] data_dir``."""
    return await SqliteStore.open(config, clock=clock)
