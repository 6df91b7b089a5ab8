"""The realm catalog on real SQLite: versions, tombstones, refusals, persistence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from supervit._exceptions import InvalidRequestError
from supervit.protocol import common_pb2
from supervit.storage import Database
from supervit.supervisor import RealmCatalog, RealmExistsError, RealmNotFoundError, open_supervisor_database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_supervisor_database(tmp_path)
    yield database
    await database.close()


async def test_every_change_takes_the_next_version(db: Database) -> None:
    catalog = RealmCatalog(db)
    await catalog.load()
    assert (catalog.version, catalog.live_version) == (0, 0)
    one = await catalog.add(1, "one", use_servers=[common_pb2.TURN, common_pb2.STUN])
    two = await catalog.add(2, "two", enabled=False, expires_at=123)
    assert (one.version, two.version) == (1, 2) and one.use_servers == (common_pb2.TURN, common_pb2.STUN)
    updated = await catalog.update(1, name="uno")
    assert updated.version == 3 and updated.name == "uno" and updated.updated_at is not None
    assert updated.use_servers == (common_pb2.TURN, common_pb2.STUN) and updated.enabled
    assert (catalog.version, catalog.live_version) == (3, 3)
    gone = await catalog.remove(1)
    assert gone.deleted and gone.version == 4
    # The removal is a change, but the newest existing realm is still "two" at version 2.
    assert (catalog.version, catalog.live_version) == (4, 2)
    assert [r.realm_id for r in await catalog.realms()] == [2]
    assert await catalog.get(1) is None


async def test_changes_since_includes_tombstones_in_version_order(db: Database) -> None:
    catalog = RealmCatalog(db)
    await catalog.load()
    await catalog.add(5, "five")
    await catalog.add(6, "six")
    await catalog.remove(5)
    await catalog.update(6, enabled=False)
    changes = await catalog.changes_since(0)
    assert [(e.realm_id, e.version, e.deleted) for e in changes.entries] == [(5, 3, True), (6, 4, False)]
    assert changes.catalog_version == 4
    assert (await catalog.changes_since(3)).entries[0].realm_id == 6
    assert (await catalog.changes_since(4)).entries == ()


async def test_refusals(db: Database) -> None:
    catalog = RealmCatalog(db)
    await catalog.load()
    await catalog.add(1, "one")
    with pytest.raises(RealmExistsError):
        await catalog.add(1, "again")
    with pytest.raises(RealmNotFoundError):
        await catalog.update(2, name="x")
    with pytest.raises(RealmNotFoundError):
        await catalog.remove(2)
    with pytest.raises(InvalidRequestError, match="name"):
        await catalog.add(3, "  ")
    with pytest.raises(InvalidRequestError, match="ResourceType"):
        await catalog.add(3, "three", use_servers=[0])
    with pytest.raises(InvalidRequestError, match="realm_id"):
        await catalog.add(2**32, "big")
    with pytest.raises(InvalidRequestError, match="expires_at"):
        await catalog.add(3, "three", expires_at=-1)
    assert catalog.version == 1  # nothing refused moved the version


async def test_removed_realm_can_be_added_again(db: Database) -> None:
    catalog = RealmCatalog(db)
    await catalog.load()
    await catalog.add(1, "one")
    await catalog.remove(1)
    with pytest.raises(RealmNotFoundError):
        await catalog.remove(1)
    again = await catalog.add(1, "one again")
    assert again.version == 3 and not again.deleted and catalog.live_version == 3


async def test_catalog_persists(tmp_path: Path) -> None:
    db = await open_supervisor_database(tmp_path)
    catalog = RealmCatalog(db)
    await catalog.load()
    await catalog.add(1, "one")
    await catalog.add(2, "two")
    await catalog.remove(2)
    await db.close()
    db = await open_supervisor_database(tmp_path)
    try:
        reloaded = RealmCatalog(db)
        await reloaded.load()
        assert (reloaded.version, reloaded.live_version) == (3, 1)
        assert (await reloaded.add(3, "three")).version == 4
    finally:
        await db.close()


async def test_listeners_hear_every_change(db: Database) -> None:
    catalog = RealmCatalog(db)
    await catalog.load()
    heard: list[int] = []
    catalog.subscribe(lambda: heard.append(catalog.version))
    await catalog.add(1, "one")
    await catalog.update(1, enabled=False)
    await catalog.remove(1)
    assert heard == [1, 2, 3]
