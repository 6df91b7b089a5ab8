"""The realms this node serves, persisted in the node database (``realms`` table).

Every public operation is exactly one :meth:`Database.write` or :meth:`Database.read` call, i.e.
one transaction: a realm and the ``realm_count`` counter next to it change together or not at
all (the counter once per group commit, :meth:`Database.add_to_group`), and an update is a single
``UPDATE ... RETURNING`` so concurrent updates cannot lose each other's fields.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from supervit._exceptions import InvalidRequestError, StorageError
from supervit.protocol import common_pb2
from supervit.storage._db import Database

__all__ = ["Realm", "RealmPage", "RealmStatus", "RealmStore"]

_MAX_UINT32 = 2**32 - 1
_MAX_INT64 = 2**63 - 1  # SQLite INTEGER is signed 64-bit: larger uint64 values cannot be stored
_T = TypeVar("_T")
_RESOURCE_TYPES = frozenset(common_pb2.ResourceType.values())

_COLUMNS = "realm_id, name, enabled, status, expires_at, created_at, updated_at, use_servers, version"
# No RETURNING: SQLite collects returned rows in a temporary B-tree built for every execution,
# which costs more than the insert itself (bench/bench_node_rpc.py's CreateRealm: ~40,000 of
# ~900,000 instructions per request); the stored row is exactly what the caller gave.
_INSERT_SQL = """
INSERT INTO realms (realm_id, name, enabled, status, expires_at, created_at, updated_at, use_servers, version)
VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)
ON CONFLICT (realm_id) DO NOTHING
"""
# COALESCE keeps the stored value for every field the caller did not give.
_UPDATE_SQL = f"""
UPDATE realms SET name = COALESCE(?, name), enabled = COALESCE(?, enabled), updated_at = ?
WHERE realm_id = ?
RETURNING {_COLUMNS}
"""
_COUNT_KEY = "realm_count"
_READ_COUNT_SQL = "SELECT value FROM store_meta WHERE key = 'realm_count'"
_CHANGE_COUNT_SQL = "UPDATE store_meta SET value = value + ? WHERE key = 'realm_count'"

# Page tokens: urlsafe base64 (no padding) of tag + last realm_id + a short checksum. The tag
# versions the format; the checksum makes edited or made-up tokens fail loudly instead of
# silently starting somewhere else.
_TOKEN_TAG = b"RP1"
_TOKEN_LEN = len(_TOKEN_TAG) + 4 + 4
_TOKEN_PERSON = b"supervit-realms"


class RealmStatus(StrEnum):
    """Lifecycle state of a realm, as carried in ``RealmInfo.status``."""

    NORMAL = "Normal"
    SUSPENDED = "Suspended"
    TERMINATED = "Terminated"


@dataclass(frozen=True, slots=True)
class Realm:
    """One stored realm. Timestamps are Unix seconds; ``expires_at`` 0 means never."""

    realm_id: int
    name: str
    enabled: bool
    status: str
    expires_at: int
    created_at: int
    updated_at: int | None
    use_servers: tuple[int, ...]
    version: int

    def to_proto(self) -> common_pb2.RealmInfo:
        """This realm as the wire message ``RealmInfo`` (``updated_at`` unset if never updated)."""
        info = common_pb2.RealmInfo()
        self.copy_to(info)
        return info

    def copy_to(self, info: common_pb2.RealmInfo) -> None:
        """Set every field of ``info`` (an empty ``RealmInfo``, e.g. a response's ``realm``) to this
        realm; cheaper than assigning :meth:`to_proto`'s message, which protobuf copies again."""
        info.realm_id = self.realm_id
        info.name = self.name
        info.enabled = self.enabled
        info.created_at = self.created_at
        info.use_servers.extend(self.use_servers)  # type: ignore[arg-type]  # validated ResourceType values
        info.version = self.version
        info.expires_at = self.expires_at
        info.status = str(self.status)
        if self.updated_at is not None:
            info.updated_at = self.updated_at


@dataclass(frozen=True, slots=True)
class RealmPage:
    """One page of :meth:`RealmStore.list_page`; ``next_page_token`` is None on the last page."""

    realms: tuple[Realm, ...]
    next_page_token: str | None
    total_count: int


class RealmStore:
    """Create, read, update, delete and page through realms in the node database.

    :meth:`get` serves committed realms from a small cache. It is only filled and used while no
    write of this store is in flight and is emptied after every write settles (committed or not),
    so it never shows anything but the committed state. :meth:`max_realm_version` is kept in
    memory once read. Use one store per database: writes made through another store or
    connection would not reach either.
    """

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time, cache_size: int = 4096) -> None:
        """``db`` must be at the node schema (:func:`open_node_database`); ``clock`` gives Unix seconds."""
        self._db = db
        self._clock = clock
        self._cache: dict[int, Realm] = {}
        self._cache_size = cache_size
        self._writes_in_flight = 0
        # The highest stored version, None while unknown (read by the next max_realm_version): kept
        # in memory instead of an index on `version`, which cost every insert a second b-tree
        # insert and a dirty page in its group commit (docs/performance.md, step 16).
        self._max_version: int | None = None
        self._writes_started = 0  # a read of the highest version that raced a write is not kept

    @property
    def database(self) -> Database:
        """The database this store writes (each public write is one transaction in it)."""
        return self._db

    def _write(
        self, fn: Callable[[sqlite3.Connection], _T], *, single_statement: bool = False
    ) -> Coroutine[Any, Any, _T]:
        # Not a coroutine itself (one frame less per write); callers await what it returns at once.
        self._writes_started += 1
        self._writes_in_flight += 1
        self._cache.clear()
        return self._db.write(fn, single_statement=single_statement, on_settled=self._write_settled)

    def _write_settled(self) -> None:
        # Runs when the write is committed or failed, even if its caller was cancelled meanwhile.
        self._writes_in_flight -= 1
        self._cache.clear()

    async def create(
        self,
        realm_id: int,
        name: str,
        enabled: bool,
        use_servers: Iterable[int],
        version: int,
        expires_at: int = 0,
    ) -> Realm | None:
        """Store a new realm (status ``Normal``); None if ``realm_id`` exists (nothing changes).

        Raises :class:`InvalidRequestError` for out-of-range ids, versions or timestamps and for
        unknown ``ResourceType`` values in ``use_servers``.
        """
        if not (
            type(realm_id) is int
            and 0 <= realm_id <= _MAX_UINT32
            and type(name) is str
            and type(enabled) is bool
            and type(version) is int
            and 0 <= version <= _MAX_INT64
            and type(expires_at) is int
            and 0 <= expires_at <= _MAX_INT64
        ):
            # Off the common path (one expression above): the checks that name what is wrong.
            _check_realm_id(realm_id)
            _check_type("name", name, str)
            _check_type("enabled", enabled, bool)
            _check_uint("version", version, _MAX_INT64)
            _check_uint("expires_at", expires_at, _MAX_INT64)
        servers: list[int] = []
        for server in use_servers:
            if isinstance(server, bool) or not isinstance(server, int) or server not in _RESOURCE_TYPES:
                raise InvalidRequestError(f"use_servers: {server!r} is not a ResourceType value")
            servers.append(int(server))
        # Exactly what a read of the stored row gives back (plain ints, however they were passed).
        realm = Realm(
            realm_id=int(realm_id),
            name=name,
            enabled=enabled,
            status=RealmStatus.NORMAL,
            expires_at=int(expires_at),
            created_at=int(self._clock()),
            updated_at=None,
            use_servers=tuple(servers),
            version=int(version),
        )
        params = (
            realm.realm_id,
            name,
            int(enabled),
            RealmStatus.NORMAL.value,
            realm.expires_at,
            realm.created_at,
            _encode_servers(realm.use_servers),
            realm.version,
        )

        db = self._db

        def run(conn: sqlite3.Connection) -> Realm | None:
            if conn.execute(_INSERT_SQL, params).rowcount != 1:
                return None
            db.add_to_group(_change_count, 1)
            return realm

        created = await self._forgetting_max_on_failure(self._write(run, single_statement=True))
        if created is not None and self._max_version is not None and created.version > self._max_version:
            self._max_version = created.version
        return created

    async def _forgetting_max_on_failure(self, write: Coroutine[Any, Any, _T]) -> _T:
        try:
            return await write
        except BaseException:
            self._max_version = None  # failed, or cancelled while it may still commit: read again
            raise

    async def get(self, realm_id: int) -> Realm | None:
        """The realm with this id, or None."""
        _check_realm_id(realm_id)

        def run(conn: sqlite3.Connection) -> Realm | None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM realms WHERE realm_id = ?", (realm_id,)).fetchone()
            return None if row is None else _realm_from_row(row)

        if self._writes_in_flight:
            return self._db.lookup(run)
        cached = self._cache.get(realm_id)
        if cached is not None:
            return cached
        realm = self._db.lookup(run)  # primary-key lookup: cheaper in place than a thread hop
        if realm is not None:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[realm_id] = realm
        return realm

    async def update(self, realm_id: int, *, name: str | None = None, enabled: bool | None = None) -> Realm | None:
        """Change only the given fields and set ``updated_at`` to now; None if the realm is unknown.

        ``updated_at`` is bumped even when neither field is given.
        """
        _check_realm_id(realm_id)
        if name is not None:
            _check_type("name", name, str)
        if enabled is not None:
            _check_type("enabled", enabled, bool)
        params = (name, None if enabled is None else int(enabled), int(self._clock()), realm_id)

        def run(conn: sqlite3.Connection) -> Realm | None:
            rows = conn.execute(_UPDATE_SQL, params).fetchall()
            return _realm_from_row(rows[0]) if rows else None

        return await self._write(run)

    async def delete(self, realm_id: int) -> bool:
        """Remove the realm; False if it did not exist."""
        _check_realm_id(realm_id)

        db = self._db

        def run(conn: sqlite3.Connection) -> bool:
            if conn.execute("DELETE FROM realms WHERE realm_id = ?", (realm_id,)).rowcount != 1:
                return False
            db.add_to_group(_change_count, -1)
            return True

        deleted = await self._forgetting_max_on_failure(self._write(run, single_statement=True))
        if deleted:
            self._max_version = None  # it may have held the highest version: read again when asked
        return deleted

    async def list_page(self, page_size: int | None = None, page_token: str | None = None) -> RealmPage:
        """One page of realms in ``realm_id`` order, plus the total number of realms.

        ``page_size`` None or 0 returns every (remaining) realm. ``page_token`` is the previous
        page's ``next_page_token`` (None or "" for the first page); a token this store did not
        issue raises :class:`InvalidRequestError`. Cost depends on the page size only: keyset
        seek on the primary key plus the stored counter, no scan and no OFFSET.
        """
        if page_size is not None and (isinstance(page_size, bool) or not isinstance(page_size, int)):
            raise InvalidRequestError(f"page_size must be an integer, not {type(page_size).__name__}")
        if page_size is not None and page_size < 0:
            raise InvalidRequestError(f"page_size must not be negative (got {page_size})")
        after = _decode_token(page_token) if page_token else -1
        limit = page_size or None

        def run(conn: sqlite3.Connection) -> RealmPage:
            total = _read_count(conn)
            if limit is None:
                sql = f"SELECT {_COLUMNS} FROM realms WHERE realm_id > ? ORDER BY realm_id"
                rows = conn.execute(sql, (after,)).fetchall()
            else:
                # One extra row tells whether another page follows without a second query.
                sql = f"SELECT {_COLUMNS} FROM realms WHERE realm_id > ? ORDER BY realm_id LIMIT ?"
                rows = conn.execute(sql, (after, limit + 1)).fetchall()
            more = limit is not None and len(rows) > limit
            realms = tuple(_realm_from_row(row) for row in rows[:limit])
            token = _encode_token(realms[-1].realm_id) if more else None
            return RealmPage(realms, token, total)

        return await self._db.read(run)

    @staticmethod
    def page_token_after(realm_id: int) -> str:
        """The ``page_token`` of the page that starts after ``realm_id`` (for a page cut short)."""
        _check_realm_id(realm_id)
        return _encode_token(realm_id)

    async def count(self) -> int:
        """Number of stored realms (from the counter row: O(1))."""
        return await self._db.read(_read_count)

    async def max_realm_version(self) -> int:
        """Highest ``version`` of any stored realm, 0 if there are none.

        Kept in memory: read from the table (one scan, off the event loop) on the first call and
        after a realm was deleted, raised by every create in between.
        """
        if self._max_version is not None:
            return self._max_version
        writes = self._writes_started

        def run(conn: sqlite3.Connection) -> int:
            (value,) = conn.execute("SELECT MAX(version) FROM realms").fetchone()
            return 0 if value is None else int(value)

        value = await self._db.read(run)
        if writes == self._writes_started and not self._writes_in_flight:
            self._max_version = value  # no create or delete could have been missed by the read
        return value


# -- helpers --------------------------------------------------------------------------------


def _check_type(field: str, value: object, kind: type) -> None:
    # bool is an int subclass: refuse it where an int is meant, and ints where a bool is meant.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRequestError(f"{field} must be {kind.__name__}, not {type(value).__name__}")


def _check_uint(field: str, value: object, maximum: int) -> None:
    _check_type(field, value, int)
    assert isinstance(value, int)
    if not 0 <= value <= maximum:
        raise InvalidRequestError(f"{field} must be between 0 and {maximum} (got {value})")


def _check_realm_id(realm_id: object) -> None:
    _check_uint("realm_id", realm_id, _MAX_UINT32)


def _change_count(conn: sqlite3.Connection, changes: list[int]) -> None:
    # Once per group commit, for every realm its writes created (+1) or deleted (-1). Raising fails
    # the whole group: no realm changes without its counter.
    change = sum(changes)
    if change and conn.execute(_CHANGE_COUNT_SQL, (change,)).rowcount != 1:
        raise StorageError(f"node database is missing its {_COUNT_KEY} metadata row")


def _read_count(conn: sqlite3.Connection) -> int:
    row = conn.execute(_READ_COUNT_SQL).fetchone()
    if row is None:
        raise StorageError(f"node database is missing its {_COUNT_KEY} metadata row")
    return int(row[0])


def _encode_servers(servers: tuple[int, ...]) -> str:
    return ",".join(str(server) for server in servers)


def _realm_from_row(row: Any) -> Realm:
    realm_id, name, enabled, status, expires_at, created_at, updated_at, servers, version = row
    return Realm(
        realm_id=realm_id,
        name=name,
        enabled=bool(enabled),
        status=RealmStatus(status),
        expires_at=expires_at,
        created_at=created_at,
        updated_at=updated_at,
        use_servers=tuple(int(s) for s in servers.split(",")) if servers else (),
        version=version,
    )


def _token_checksum(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=4, person=_TOKEN_PERSON).digest()


def _encode_token(last_id: int) -> str:
    body = _TOKEN_TAG + last_id.to_bytes(4, "big")
    return base64.urlsafe_b64encode(body + _token_checksum(body)).decode("ascii").rstrip("=")


def _decode_token(token: object) -> int:
    """The last realm_id of the previous page; InvalidRequestError if ``token`` is not ours."""
    if not isinstance(token, str) or not token.isascii() or len(token) > 32:
        raise InvalidRequestError("invalid page_token")
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError("invalid page_token") from None
    if len(raw) != _TOKEN_LEN or not raw.startswith(_TOKEN_TAG):
        raise InvalidRequestError("invalid page_token")
    body, checksum = raw[:-4], raw[-4:]
    last_id = int.from_bytes(body[len(_TOKEN_TAG) :], "big")
    # Re-encoding must give the same text: rejects non-canonical base64 variants as well.
    if checksum != _token_checksum(body) or _encode_token(last_id) != token:
        raise InvalidRequestError("invalid page_token")
    return last_id
