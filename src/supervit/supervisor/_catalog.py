"""The realm catalog: the realms every node should hold, with increasing versions.

Each change (add, update, remove) takes the next **catalog version** from a persisted counter
and stamps it on the realm it changed, so realm versions are unique and increase with every
change. A removed realm stays as a *tombstone* carrying the version of its removal, so a node
that was away learns to delete it. Two figures describe the catalog:

* :attr:`RealmCatalog.version` — the latest change (tombstones included);
* :attr:`RealmCatalog.live_version` — the highest version of a realm that exists, which is what
  a node in sync reports as its ``realm_sync_version`` (the highest version it stores).

How nodes are brought up to date is described in :mod:`supervit.supervisor._push`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from supervit._exceptions import InvalidRequestError, StorageError, SupervitError
from supervit.protocol import common_pb2, supervised_pb2, supervit_admin_pb2
from supervit.storage import Database

__all__ = ["CatalogChanges", "CatalogError", "CatalogRealm", "RealmCatalog", "RealmExistsError", "RealmNotFoundError"]

_MAX_UINT32 = 2**32 - 1
_MAX_INT64 = 2**63 - 1
_RESOURCE_TYPES = frozenset(v for v in common_pb2.ResourceType.values() if v != common_pb2.RESOURCE_TYPE_UNSPECIFIED)
_COLUMNS = "realm_id, name, enabled, use_servers, expires_at, version, deleted, created_at, updated_at"
_NEXT_VERSION_SQL = "UPDATE meta SET value = value + 1 WHERE key = 'catalog_version' RETURNING value"
_LIVE_VERSION_SQL = "SELECT COALESCE(MAX(version), 0) FROM catalog WHERE deleted = 0"


class CatalogError(SupervitError):
    """A catalog change was refused."""


class RealmExistsError(CatalogError):
    """The realm is already in the catalog (use update)."""


class RealmNotFoundError(CatalogError):
    """The realm is not in the catalog (or was removed)."""


@dataclass(frozen=True, slots=True)
class CatalogRealm:
    """One catalog realm (or tombstone). Times are Unix seconds; ``expires_at`` 0 = never."""

    realm_id: int
    name: str
    enabled: bool
    use_servers: tuple[int, ...]
    expires_at: int
    version: int
    deleted: bool
    created_at: int
    updated_at: int | None

    def to_admin_proto(self) -> supervit_admin_pb2.CatalogRealm:
        """This realm as the admin API's ``CatalogRealm``."""
        realm = supervit_admin_pb2.CatalogRealm(
            realm_id=self.realm_id,
            name=self.name,
            enabled=self.enabled,
            use_servers=self.use_servers,  # type: ignore[arg-type]  # validated ResourceType values
            expires_at=self.expires_at,
            version=self.version,
            created_at=self.created_at,
        )
        if self.updated_at is not None:
            realm.updated_at = self.updated_at
        return realm

    def create_request(self) -> supervised_pb2.CreateRealmRequest:
        """The CreateRealmRequest that puts this realm on a node (credential still to be added)."""
        return supervised_pb2.CreateRealmRequest(
            realm_id=self.realm_id,
            name=self.name,
            enabled=self.enabled,
            use_servers=self.use_servers,  # type: ignore[arg-type]
            version=self.version,
            expires_at=self.expires_at,
        )


@dataclass(frozen=True, slots=True)
class CatalogChanges:
    """Realms (and tombstones) changed after some version, oldest change first, and the catalog
    version they bring a node up to (read in one snapshot)."""

    entries: tuple[CatalogRealm, ...]
    catalog_version: int


def _realm(row: Any) -> CatalogRealm:
    realm_id, name, enabled, servers, expires_at, version, deleted, created_at, updated_at = row
    return CatalogRealm(
        realm_id=int(realm_id),
        name=str(name),
        enabled=bool(enabled),
        use_servers=tuple(int(s) for s in servers.split(",")) if servers else (),
        expires_at=int(expires_at),
        version=int(version),
        deleted=bool(deleted),
        created_at=int(created_at),
        updated_at=None if updated_at is None else int(updated_at),
    )


def _check_servers(use_servers: Iterable[int]) -> tuple[int, ...]:
    servers = tuple(use_servers)
    for server in servers:
        if isinstance(server, bool) or not isinstance(server, int) or server not in _RESOURCE_TYPES:
            raise InvalidRequestError(f"use_servers: {server!r} is not a ResourceType (STUN, TURN, SIGNALING, AIS, KS)")
    return servers


def _check_realm_id(realm_id: int) -> None:
    if isinstance(realm_id, bool) or not isinstance(realm_id, int) or not 0 <= realm_id <= _MAX_UINT32:
        raise InvalidRequestError(f"realm_id must be 0..{_MAX_UINT32}, got {realm_id!r}")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequestError("realm name must not be empty")


def _check_expires(expires_at: int) -> None:
    if isinstance(expires_at, bool) or not isinstance(expires_at, int) or not 0 <= expires_at <= _MAX_INT64:
        raise InvalidRequestError(f"expires_at must be 0..{_MAX_INT64} Unix seconds, got {expires_at!r}")


def _next_version(conn: sqlite3.Connection) -> int:
    row = conn.execute(_NEXT_VERSION_SQL).fetchone()
    if row is None:
        raise StorageError("supervisor database is missing its catalog_version row")
    return int(row[0])


class CatalogVersions:
    """The catalog's two versions and its change listeners, shared by every catalog backend."""

    def __init__(self) -> None:
        self._version = 0
        self._live_version = 0
        self._listeners: list[Callable[[], None]] = []

    @property
    def version(self) -> int:
        """The catalog version: the latest change, removals included (0 = never changed)."""
        return self._version

    @property
    def live_version(self) -> int:
        """The highest version of an existing realm (0 = none): what an in-sync node reports."""
        return self._live_version

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every change."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()


class RealmCatalog(CatalogVersions):
    """The desired realms, persisted in the supervisor database.

    Call :meth:`load` once after construction. Listeners added with :meth:`subscribe` are called
    (synchronously, on the event loop) after every committed change.
    """

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._db = db
        self._clock = clock

    async def load(self) -> None:
        """Read the current versions from the database."""

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            row = conn.execute("SELECT value FROM meta WHERE key = 'catalog_version'").fetchone()
            if row is None:
                raise StorageError("supervisor database is missing its catalog_version row")
            return int(row[0]), int(conn.execute(_LIVE_VERSION_SQL).fetchone()[0])

        self._version, self._live_version = await self._db.read(run)

    async def _change(self, fn: Callable[[sqlite3.Connection, int], CatalogRealm]) -> CatalogRealm:
        now = int(self._clock())

        def run(conn: sqlite3.Connection) -> tuple[CatalogRealm, int]:
            realm = fn(conn, now)
            return realm, int(conn.execute(_LIVE_VERSION_SQL).fetchone()[0])

        realm, live = await self._db.write(run)
        # Changes commit one after another, so the newest version seen is the catalog's.
        self._version = max(self._version, realm.version)
        self._live_version = live if realm.version >= self._version else self._live_version
        self._notify()
        return realm

    async def add(
        self, realm_id: int, name: str, *, enabled: bool = True, use_servers: Iterable[int] = (), expires_at: int = 0
    ) -> CatalogRealm:
        """Add a realm under the next catalog version (a removed realm id may be added again).

        Raises :class:`RealmExistsError` if it is in the catalog, :class:`InvalidRequestError`
        for invalid fields.
        """
        _check_realm_id(realm_id)
        _check_name(name)
        _check_expires(expires_at)
        servers = _check_servers(use_servers)
        encoded = ",".join(str(s) for s in servers)

        def run(conn: sqlite3.Connection, now: int) -> CatalogRealm:
            row = conn.execute("SELECT deleted FROM catalog WHERE realm_id = ?", (realm_id,)).fetchone()
            if row is not None and not row[0]:
                raise RealmExistsError(f"realm {realm_id} is already in the catalog")
            version = _next_version(conn)
            sql = (
                f"INSERT OR REPLACE INTO catalog ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0, ?, NULL) "
                f"RETURNING {_COLUMNS}"
            )
            return _realm(
                conn.execute(sql, (realm_id, name, int(enabled), encoded, expires_at, version, now)).fetchone()
            )

        return await self._change(run)

    async def update(
        self,
        realm_id: int,
        *,
        name: str | None = None,
        enabled: bool | None = None,
        use_servers: Iterable[int] | None = None,
        expires_at: int | None = None,
    ) -> CatalogRealm:
        """Change the given fields; the realm gets the next catalog version (even if nothing changed).

        Raises :class:`RealmNotFoundError` if the realm is not in the catalog.
        """
        _check_realm_id(realm_id)
        if name is not None:
            _check_name(name)
        if expires_at is not None:
            _check_expires(expires_at)
        encoded = None if use_servers is None else ",".join(str(s) for s in _check_servers(use_servers))
        flag = None if enabled is None else int(enabled)

        def run(conn: sqlite3.Connection, now: int) -> CatalogRealm:
            row = conn.execute("SELECT deleted FROM catalog WHERE realm_id = ?", (realm_id,)).fetchone()
            if row is None or row[0]:
                raise RealmNotFoundError(f"realm {realm_id} is not in the catalog")
            version = _next_version(conn)
            sql = (
                "UPDATE catalog SET name = COALESCE(?, name), enabled = COALESCE(?, enabled), "
                "use_servers = COALESCE(?, use_servers), expires_at = COALESCE(?, expires_at), version = ?, "
                f"updated_at = ? WHERE realm_id = ? RETURNING {_COLUMNS}"
            )
            params = (name, flag, encoded, expires_at, version, now, realm_id)
            return _realm(conn.execute(sql, params).fetchone())

        return await self._change(run)

    async def remove(self, realm_id: int) -> CatalogRealm:
        """Remove a realm: it becomes a tombstone under the next catalog version (returned).

        Raises :class:`RealmNotFoundError` if the realm is not in the catalog.
        """
        _check_realm_id(realm_id)

        def run(conn: sqlite3.Connection, now: int) -> CatalogRealm:
            row = conn.execute("SELECT deleted FROM catalog WHERE realm_id = ?", (realm_id,)).fetchone()
            if row is None or row[0]:
                raise RealmNotFoundError(f"realm {realm_id} is not in the catalog")
            version = _next_version(conn)
            sql = f"UPDATE catalog SET deleted = 1, version = ?, updated_at = ? WHERE realm_id = ? RETURNING {_COLUMNS}"
            return _realm(conn.execute(sql, (version, now, realm_id)).fetchone())

        return await self._change(run)

    async def get(self, realm_id: int) -> CatalogRealm | None:
        """The realm (None if it is not in the catalog; tombstones are not returned)."""
        _check_realm_id(realm_id)

        def run(conn: sqlite3.Connection) -> CatalogRealm | None:
            sql = f"SELECT {_COLUMNS} FROM catalog WHERE realm_id = ? AND deleted = 0"
            row = conn.execute(sql, (realm_id,)).fetchone()
            return None if row is None else _realm(row)

        return await self._db.read(run)

    async def realms(self) -> list[CatalogRealm]:
        """Every realm in the catalog by id (tombstones excluded)."""

        def run(conn: sqlite3.Connection) -> list[CatalogRealm]:
            sql = f"SELECT {_COLUMNS} FROM catalog WHERE deleted = 0 ORDER BY realm_id"
            return [_realm(row) for row in conn.execute(sql)]

        return await self._db.read(run)

    async def changes_since(self, version: int) -> CatalogChanges:
        """Realms and tombstones whose latest change is newer than ``version``, oldest first."""

        def run(conn: sqlite3.Connection) -> CatalogChanges:
            sql = f"SELECT {_COLUMNS} FROM catalog WHERE version > ? ORDER BY version"
            entries = tuple(_realm(row) for row in conn.execute(sql, (version,)))
            (current,) = conn.execute("SELECT value FROM meta WHERE key = 'catalog_version'").fetchone()
            return CatalogChanges(entries, int(current))

        return await self._db.read(run)
