"""RealmStore on a real node database file."""

from __future__ import annotations

import asyncio
import base64
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from supervit._exceptions import InvalidRequestError, StorageError
from supervit.protocol import common_pb2
from supervit.storage import (
    NODE_DB_FILENAME,
    NODE_MIGRATIONS,
    Database,
    Realm,
    RealmStatus,
    RealmStore,
    open_node_database,
)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_node_database(tmp_path)
    yield database
    await database.close()


@pytest.fixture
def store(db: Database) -> RealmStore:
    return RealmStore(db, clock=FakeClock())


async def stored_count(db: Database) -> int:
    return int(await db.read(lambda c: c.execute("SELECT COUNT(*) FROM realms").fetchone()[0]))


async def test_create_get_roundtrip(store: RealmStore) -> None:
    realm = await store.create(7, "alpha", True, [common_pb2.STUN, common_pb2.TURN], 3, expires_at=99)
    assert realm == Realm(
        realm_id=7,
        name="alpha",
        enabled=True,
        status=RealmStatus.NORMAL,
        expires_at=99,
        created_at=1_700_000_001,
        updated_at=None,
        use_servers=(common_pb2.STUN, common_pb2.TURN),
        version=3,
    )
    assert await store.get(7) == realm
    assert await store.get(8) is None


async def test_to_proto(store: RealmStore) -> None:
    realm = await store.create(1, "r", False, [common_pb2.SIGNALING], 5)
    assert realm is not None
    info = realm.to_proto()
    assert not info.HasField("updated_at")
    assert (info.realm_id, info.name, info.enabled, info.version, info.expires_at) == (1, "r", False, 5, 0)
    assert list(info.use_servers) == [common_pb2.SIGNALING]
    assert info.status == "Normal"
    assert info.created_at == realm.created_at
    updated = await store.update(1, enabled=True)
    assert updated is not None
    parsed = common_pb2.RealmInfo.FromString(updated.to_proto().SerializeToString())  # required set
    assert parsed.updated_at == updated.updated_at
    assert parsed.enabled


async def test_duplicate_create_changes_nothing(store: RealmStore) -> None:
    first = await store.create(1, "one", True, [], 1)
    assert await store.create(1, "other", False, [common_pb2.KS], 9) is None
    assert await store.get(1) == first
    assert (await store.list_page(None, None)).total_count == 1


async def test_partial_update(store: RealmStore) -> None:
    created = await store.create(1, "old", True, [common_pb2.AIS], 4, expires_at=10)
    assert created is not None
    renamed = await store.update(1, name="new")
    assert renamed is not None
    assert (renamed.name, renamed.enabled) == ("new", True)
    assert renamed.updated_at is not None and renamed.updated_at > created.created_at
    disabled = await store.update(1, enabled=False)
    assert disabled is not None
    assert (disabled.name, disabled.enabled) == ("new", False)
    assert disabled.updated_at is not None and disabled.updated_at > renamed.updated_at
    unchanged = {"realm_id", "status", "expires_at", "created_at", "use_servers", "version"}
    assert {f: getattr(disabled, f) for f in unchanged} == {f: getattr(created, f) for f in unchanged}
    assert await store.get(1) == disabled


async def test_unknown_realm(store: RealmStore) -> None:
    assert await store.update(5, name="x") is None
    assert await store.delete(5) is False
    assert await store.get(5) is None


async def test_delete(store: RealmStore) -> None:
    await store.create(1, "a", True, [], 1)
    await store.create(2, "b", True, [], 2)
    assert await store.delete(1) is True
    assert await store.delete(1) is False
    assert await store.get(1) is None
    page = await store.list_page(None, None)
    assert [r.realm_id for r in page.realms] == [2]
    assert page.total_count == 1 == await store.count()


async def test_persists_across_reopen(tmp_path: Path) -> None:
    db = await open_node_database(tmp_path)
    realm = await RealmStore(db).create(42, "kept", True, [common_pb2.TURN], 8)
    await db.close()
    assert (tmp_path / NODE_DB_FILENAME).exists()
    db = await open_node_database(tmp_path)
    try:
        store = RealmStore(db)
        assert await store.get(42) == realm
        assert (await store.list_page(10, None)).total_count == 1
        assert await store.max_realm_version() == 8
    finally:
        await db.close()


async def test_schema_version_recorded_and_newer_refused(tmp_path: Path) -> None:
    db = await open_node_database(tmp_path / "node")
    latest = NODE_MIGRATIONS[-1].version
    assert await db.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0]) == latest
    await db.close()
    conn = sqlite3.connect(tmp_path / "node" / NODE_DB_FILENAME)
    conn.execute(f"PRAGMA user_version = {latest + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer"):
        await open_node_database(tmp_path / "node")


@pytest.mark.parametrize("page_size", [1, 7, 100, 250, 0, None])
async def test_paging_yields_every_realm_once_in_order(store: RealmStore, page_size: int | None) -> None:
    ids = random.Random(1).sample(range(2**32), 250)
    results = await asyncio.gather(*(store.create(i, f"r{i}", True, [], i % 1000) for i in ids))
    assert all(results)
    seen: list[int] = []
    token: str | None = None
    pages = 0
    while True:
        page = await store.list_page(page_size, token)
        pages += 1
        assert page.total_count == 250
        seen += [r.realm_id for r in page.realms]
        token = page.next_page_token
        if token is None:
            break
        assert page.realms  # never a token after an empty page
    assert seen == sorted(ids)
    expected_pages = 1 if not page_size else -(-250 // page_size)
    assert pages == expected_pages


async def test_tokens_are_stateless_and_reusable(store: RealmStore) -> None:
    for i in range(10):
        await store.create(i, f"r{i}", True, [], 1)
    first = await store.list_page(3, None)
    assert first.next_page_token is not None
    again = await store.list_page(3, first.next_page_token)
    assert [r.realm_id for r in again.realms] == [3, 4, 5]
    assert (await store.list_page(3, first.next_page_token)) == again
    assert [r.realm_id for r in (await store.list_page(None, first.next_page_token)).realms] == list(range(3, 10))
    assert (await store.list_page(3, "")).realms == first.realms  # "" = unset (proto2 default)


async def test_garbage_tokens_rejected(store: RealmStore) -> None:
    for i in range(5):
        await store.create(i, f"r{i}", True, [], 1)
    good = (await store.list_page(2, None)).next_page_token
    assert good is not None
    flipped = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
    raw = base64.urlsafe_b64decode(good + "=" * (-len(good) % 4))
    forged_id = raw[:3] + (4).to_bytes(4, "big") + raw[7:]  # same checksum, different id
    forged = base64.urlsafe_b64encode(forged_id).decode().rstrip("=")
    bad_tag = base64.urlsafe_b64encode(b"XX9" + raw[3:]).decode().rstrip("=")
    for token in [
        "garbage",
        "!!!!",
        "====",
        flipped,
        forged,
        bad_tag,
        good + "A",
        good + "=",
        good[:-1],
        "é" * 15,
        "A" * 10_000,
        base64.urlsafe_b64encode(b"2").decode(),
    ]:
        with pytest.raises(InvalidRequestError, match="invalid page_token"):
            await store.list_page(2, token)


async def test_bad_page_size_rejected(store: RealmStore) -> None:
    with pytest.raises(InvalidRequestError, match="page_size"):
        await store.list_page(-1, None)


async def test_concurrent_updates_of_one_realm_all_land(store: RealmStore) -> None:
    await store.create(1, "start", False, [common_pb2.STUN], 1)
    # Even calls rename, odd calls toggle enabled: a read-modify-write race would lose fields.
    calls = [
        store.update(1, name=f"name-{i}") if i % 2 == 0 else store.update(1, enabled=(i % 4 == 1)) for i in range(50)
    ]
    results = await asyncio.gather(*calls)
    assert all(r is not None for r in results)
    for i, realm in enumerate(results):
        assert realm is not None
        if i % 2 == 0:
            assert realm.name == f"name-{i}"
        else:
            assert realm.enabled is (i % 4 == 1)
    stamps = [r.updated_at for r in results if r is not None]
    assert len(set(stamps)) == 50  # every update was applied (each took its own clock tick)
    final = await store.get(1)
    assert final is not None
    assert final.name == "name-48"
    assert final.enabled is (49 % 4 == 1)
    assert final.updated_at == max(s for s in stamps if s is not None)
    assert final.use_servers == (common_pb2.STUN,)


async def test_concurrent_creates_of_one_id_exactly_one_wins(store: RealmStore, db: Database) -> None:
    results = await asyncio.gather(*(store.create(9, f"n{i}", True, [], i) for i in range(30)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert await store.get(9) == winners[0]
    assert await store.count() == 1 == await stored_count(db)


async def test_counter_stays_consistent(store: RealmStore, db: Database) -> None:
    rng = random.Random(7)
    ops = []
    for _ in range(300):
        realm_id = rng.randrange(40)
        ops.append(store.create(realm_id, "x", True, [], 1) if rng.random() < 0.6 else store.delete(realm_id))
    await asyncio.gather(*ops)
    assert await store.count() == await stored_count(db)
    assert (await store.list_page(5, None)).total_count == await stored_count(db)


async def test_realm_and_counter_written_together(store: RealmStore, db: Database) -> None:
    await store.create(1, "a", True, [], 1)
    conn = sqlite3.connect(db.path)
    conn.execute("DELETE FROM store_meta")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="realm_count"):
        await store.create(2, "b", True, [], 1)
    with pytest.raises(StorageError, match="realm_count"):
        await store.delete(1)
    assert await stored_count(db) == 1
    assert await store.get(2) is None
    assert await store.get(1) is not None


async def test_max_realm_version(store: RealmStore, db: Database) -> None:
    assert await store.max_realm_version() == 0
    for realm_id, version in [(1, 5), (2, 2**63 - 1), (3, 7)]:
        await store.create(realm_id, "r", True, [], version)
    assert await store.max_realm_version() == 2**63 - 1
    await store.delete(2)
    assert await store.max_realm_version() == 7
    await store.delete(1)
    assert await store.max_realm_version() == 7
    await store.delete(3)
    assert await store.max_realm_version() == 0
    # Kept per store: a fresh store over the same file reads it from the table.
    await store.create(4, "r", True, [], 3)
    assert await RealmStore(db).max_realm_version() == 3 == await store.max_realm_version()


async def test_max_realm_version_is_read_once_and_kept_in_memory(store: RealmStore, db: Database) -> None:
    """One read of the table; creates raise the kept value, a delete makes the next call read again."""
    reads = 0
    real_read = db.read

    async def counting_read(fn: Any) -> Any:
        nonlocal reads
        reads += 1
        return await real_read(fn)

    db.read = counting_read  # type: ignore[method-assign]
    await store.create(1, "r", True, [], 5)
    assert await store.max_realm_version() == 5 and reads == 1
    await store.create(2, "r", True, [], 9)
    await store.create(3, "r", True, [], 6)
    assert await store.max_realm_version() == 9 and reads == 1
    await store.delete(3)
    assert await store.max_realm_version() == 9 and reads == 2
    assert await store.max_realm_version() == 9 and reads == 2


async def test_max_realm_version_read_racing_a_create_is_not_kept(store: RealmStore, db: Database) -> None:
    """A create that starts while the table is being read may be missed by that read: the value
    read is returned but not kept, and the next call reads again and sees the create."""
    real_read = db.read

    async def read_while_creating(fn: Any) -> Any:
        value = await real_read(fn)  # the read is done: the create below comes too late for it
        assert await store.create(2, "r", True, [], 99) is not None
        return value

    await store.create(1, "r", True, [], 5)
    db.read = read_while_creating  # type: ignore[method-assign]
    assert await store.max_realm_version() == 5
    db.read = real_read  # type: ignore[method-assign]
    assert await store.max_realm_version() == 99


async def test_page_query_is_a_keyset_seek(db: Database) -> None:
    sql = "EXPLAIN QUERY PLAN SELECT * FROM realms WHERE realm_id > ? ORDER BY realm_id LIMIT ?"
    plan = await db.read(lambda c: c.execute(sql, (5, 10)).fetchall())
    details = " ".join(row[-1] for row in plan)
    assert "SEARCH realms USING INTEGER PRIMARY KEY" in details
    assert "TEMP B-TREE" not in details


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"realm_id": -1}, "realm_id"),
        ({"realm_id": 2**32}, "realm_id"),
        ({"realm_id": True}, "realm_id"),
        ({"name": 5}, "name"),
        ({"enabled": 1}, "enabled"),
        ({"use_servers": [42]}, "use_servers"),
        ({"use_servers": [True]}, "use_servers"),
        ({"version": 2**63}, "version"),
        ({"version": -1}, "version"),
        ({"expires_at": -5}, "expires_at"),
    ],
)
async def test_create_validates_input(store: RealmStore, kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"realm_id": 1, "name": "n", "enabled": True, "use_servers": [], "version": 1}
    args.update(kwargs)
    with pytest.raises(InvalidRequestError, match=field):
        await store.create(**args)  # type: ignore[arg-type]
    assert await store.count() == 0


async def test_boundary_ids_and_versions(store: RealmStore) -> None:
    assert await store.create(0, "zero", True, [], 0) is not None
    assert await store.create(2**32 - 1, "max", True, [], 2**63 - 1, expires_at=2**63 - 1) is not None
    page = await store.list_page(1, None)
    assert [r.realm_id for r in page.realms] == [0]
    page = await store.list_page(1, page.next_page_token)
    assert [r.realm_id for r in page.realms] == [2**32 - 1]
    assert page.next_page_token is None
    with pytest.raises(InvalidRequestError, match="realm_id"):
        await store.get(2**32)


async def test_get_cache_never_shows_stale_realms(store: RealmStore) -> None:
    """Cached gets follow every committed update and delete, including one whose caller was cancelled."""
    await store.create(1, "one", True, [], 1)
    assert (await store.get(1)).name == "one"  # type: ignore[union-attr]
    assert (await store.get(1)).name == "one"  # type: ignore[union-attr]  # served from the cache
    await store.update(1, name="uno")
    assert (await store.get(1)).name == "uno"  # type: ignore[union-attr]

    cancelled = asyncio.ensure_future(store.update(1, name="eins"))
    await asyncio.sleep(0)
    cancelled.cancel()
    during = await store.get(1)  # a write is in flight: read through, committed state only
    assert during is not None and during.name in {"uno", "eins"}
    for _ in range(50):  # let the cancelled caller's write settle
        await asyncio.sleep(0.01)
        if (await store.get(1)).name == "eins":  # type: ignore[union-attr]
            break
    assert (await store.get(1)).name == "eins"  # type: ignore[union-attr]
    assert await store.delete(1)
    assert await store.get(1) is None


async def test_concurrent_gets_and_updates_agree_with_the_database(store: RealmStore, db: Database) -> None:
    """Interleaved updates and gets: once everything settles, get() equals what is stored."""
    await store.create(5, "v0", True, [], 1)
    ops = [store.update(5, name=f"v{i}") for i in range(1, 30)] + [store.get(5) for _ in range(30)]
    await asyncio.gather(*ops)
    stored = await db.read(lambda c: c.execute("SELECT name FROM realms WHERE realm_id = 5").fetchone()[0])
    assert (await store.get(5)).name == stored  # type: ignore[union-attr]
