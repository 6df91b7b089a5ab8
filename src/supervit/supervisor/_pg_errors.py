"""How PostgreSQL and Redis failures become supervit errors (fail closed, never a silent accept)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import asyncpg
import redis.exceptions

from supervit._exceptions import StorageError, StoreUnavailableError

__all__ = ["is_unavailable", "store_errors"]

# The server is gone, restarting, refusing connections or out of them: retryable, UNAVAILABLE.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # The driver's state machine on a connection broken mid-operation (seen when PostgreSQL went
    # away under load): the connection is unusable, the store may be fine again on the next one.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the store cannot be reached now (as opposed to a bad statement)."""
    return isinstance(exc, _UNAVAILABLE)


@contextlib.contextmanager
def store_errors(what: str) -> Iterator[None]:
    """Turn driver exceptions into :class:`StoreUnavailableError` / :class:`StorageError`.

    ``what`` names the operation; driver messages never contain the connection URL.
    """
    try:
        yield
    except StorageError:
        raise
    except _UNAVAILABLE as exc:
        raise StoreUnavailableError(f"{what}: {type(exc).__name__}: {exc}") from exc
    except (asyncpg.PostgresError, redis.exceptions.RedisError) as exc:
        raise StorageError(f"{what}: {type(exc).__name__}: {exc}") from exc
