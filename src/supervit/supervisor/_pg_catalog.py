"""The realm catalog on PostgreSQL: same rules as :class:`~supervit.supervisor.RealmCatalog`.

Every change first takes the next version from the ``meta`` counter (``UPDATE … RETURNING``): its
row lock orders all catalog changes of all replicas, so a change sees every earlier one. Each
change ends with ``pg_notify('supervit_catalog', <schema>)`` in its transaction; every replica
listens (:class:`~supervit.supervisor.PgStore`) and re-reads the versions, and also re-reads them
every few seconds in case a notification was lost with a connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from supervit._exceptions import StorageError
from supervit.supervisor._catalog import (
    CatalogChanges,
    CatalogRealm,
    CatalogVersions,
    RealmExistsError,
    RealmNotFoundError,
    _check_expires,
    _check_name,
    _check_realm_id,
    _check_servers,
    _realm,
)
from supervit.supervisor._pg_pool import PgPool

__all__ = ["CATALOG_CHANNEL", "PgCatalog"]

CATALOG_CHANNEL = "supervit_catalog"
"""NOTIFY channel of catalog changes; the payload is the schema that changed."""

_COLUMNS = "realm_id, name, enabled, use_servers, expires_at, version, deleted, created_at, updated_at"
_VERSIONS_SQL = (
    "SELECT (SELECT value FROM meta WHERE key = 'catalog_version'), "
    "(SELECT COALESCE(MAX(version), 0) FROM catalog WHERE NOT deleted)"
)


class PgCatalog(CatalogVersions):
    """:class:`~supervit.supervisor.CatalogStore` on PostgreSQL (call :meth:`load` first).

    Listeners are called after every change this replica makes or learns of (NOTIFY, re-reads).
    """

    def __init__(self, db: PgPool, schema: str, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._db = db
        self._schema = schema
        self._clock = clock

    async def load(self) -> None:
        """Read the current versions (listeners are called if they moved)."""
        async with self._db.connection("read catalog version") as conn:
            row = await conn.fetchrow(_VERSIONS_SQL)
        if row is None or row[0] is None:
            raise StorageError("supervisor database is missing its catalog_version row")
        self._learn(int(row[0]), int(row[1]))

    def _learn(self, version: int, live: int) -> None:
        if version < self._version:
            return  # an older read finishing late
        changed = (version, live) != (self._version, self._live_version)
        self._version, self._live_version = version, live
        if changed:
            self._notify()

    async def _change(self, what: str, fn: Callable[[Any, int, int], Any]) -> CatalogRealm:
        now = int(self._clock())
        async with self._db.transaction(what) as conn:
            version = await conn.fetchval(
                "UPDATE meta SET value = value + 1 WHERE key = 'catalog_version' RETURNING value"
            )
            if version is None:
                raise StorageError("supervisor database is missing its catalog_version row")
            realm = _realm(tuple(await fn(conn, int(version), now)))
            live = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM catalog WHERE NOT deleted")
            await conn.execute("SELECT pg_notify($1, $2)", CATALOG_CHANNEL, self._schema)
        self._learn(realm.version, int(live))
        return realm

    @staticmethod
    async def _state(conn: Any, realm_id: int) -> bool | None:
        # None: never in the catalog; True: a tombstone; False: live.
        deleted = await conn.fetchval("SELECT deleted FROM catalog WHERE realm_id = $1", realm_id)
        return None if deleted is None else bool(deleted)

    async def add(
        self, realm_id: int, name: str, *, enabled: bool = True, use_servers: Iterable[int] = (), expires_at: int = 0
    ) -> CatalogRealm:
        """Add a realm (a removed id may be added again); :class:`RealmExistsError` if it is live."""
        _check_realm_id(realm_id)
        _check_name(name)
        _check_expires(expires_at)
        encoded = ",".join(str(s) for s in _check_servers(use_servers))

        async def run(conn: Any, version: int, now: int) -> Any:
            if await self._state(conn, realm_id) is False:
                raise RealmExistsError(f"realm {realm_id} is already in the catalog")
            return await conn.fetchrow(
                f"INSERT INTO catalog ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, FALSE, $7, NULL) "
                "ON CONFLICT (realm_id) DO UPDATE SET name = excluded.name, enabled = excluded.enabled, "
                "use_servers = excluded.use_servers, expires_at = excluded.expires_at, version = excluded.version, "
                f"deleted = FALSE, created_at = excluded.created_at, updated_at = NULL RETURNING {_COLUMNS}",
                realm_id,
                name,
                enabled,
                encoded,
                expires_at,
                version,
                now,
            )

        return await self._change("add realm", run)

    async def update(
        self,
        realm_id: int,
        *,
        name: str | None = None,
        enabled: bool | None = None,
        use_servers: Iterable[int] | None = None,
        expires_at: int | None = None,
    ) -> CatalogRealm:
        """Change the given fields under the next version; :class:`RealmNotFoundError` if absent."""
        _check_realm_id(realm_id)
        if name is not None:
            _check_name(name)
        if expires_at is not None:
            _check_expires(expires_at)
        encoded = None if use_servers is None else ",".join(str(s) for s in _check_servers(use_servers))

        async def run(conn: Any, version: int, now: int) -> Any:
            if await self._state(conn, realm_id) is not False:
                raise RealmNotFoundError(f"realm {realm_id} is not in the catalog")
            return await conn.fetchrow(
                "UPDATE catalog SET name = COALESCE($1, name), enabled = COALESCE($2, enabled), "
                "use_servers = COALESCE($3, use_servers), expires_at = COALESCE($4, expires_at), version = $5, "
                f"updated_at = $6 WHERE realm_id = $7 RETURNING {_COLUMNS}",
                name,
                enabled,
                encoded,
                expires_at,
                version,
                now,
                realm_id,
            )

        return await self._change("update realm", run)

    async def remove(self, realm_id: int) -> CatalogRealm:
        """Make the realm a tombstone under the next version; :class:`RealmNotFoundError` if absent."""
        _check_realm_id(realm_id)

        async def run(conn: Any, version: int, now: int) -> Any:
            if await self._state(conn, realm_id) is not False:
                raise RealmNotFoundError(f"realm {realm_id} is not in the catalog")
            return await conn.fetchrow(
                f"UPDATE catalog SET deleted = TRUE, version = $1, updated_at = $2 WHERE realm_id = $3 "
                f"RETURNING {_COLUMNS}",
                version,
                now,
                realm_id,
            )

        return await self._change("remove realm", run)

    async def get(self, realm_id: int) -> CatalogRealm | None:
        """The realm (None if it is not in the catalog)."""
        _check_realm_id(realm_id)
        async with self._db.connection("read realm") as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM catalog WHERE realm_id = $1 AND NOT deleted", realm_id)
        return None if row is None else _realm(tuple(row))

    async def realms(self) -> list[CatalogRealm]:
        """Every realm in the catalog by id (tombstones excluded)."""
        async with self._db.connection("list realms") as conn:
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM catalog WHERE NOT deleted ORDER BY realm_id")
        return [_realm(tuple(row)) for row in rows]

    async def changes_since(self, version: int) -> CatalogChanges:
        """Entries changed after ``version``, oldest first, and the catalog version (one snapshot)."""
        async with self._db.transaction("read catalog changes") as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM catalog WHERE version > $1 ORDER BY version", version)
            current = await conn.fetchval("SELECT value FROM meta WHERE key = 'catalog_version'")
        return CatalogChanges(tuple(_realm(tuple(row)) for row in rows), int(current))
