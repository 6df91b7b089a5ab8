"""Reserved nonces (NonceTicket): recorded in a companion write or the nonce log, never lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from supervit import _exceptions as exc
from supervit.auth import SqliteNonceStorage
from supervit.storage import Database, RealmStore, open_node_database, riding
from tests.conftest import FakeClock
from tests.nonce_files import REFUSE_REALM_INSERTS, companion_nonces, logged_nonces


@pytest.fixture
async def actrix(tmp_path: Path) -> AsyncIterator[Database]:
    db = await open_node_database(tmp_path)
    yield db
    await db.close()


async def test_reserved_nonce_is_refused_at_once(tmp_path: Path, actrix: Database, clock: FakeClock) -> None:
    """A reserved nonce is remembered before anything is written: a second reserve or consume
    of it is a replay, even while the first is not durable yet."""
    store = await SqliteNonceStorage.open(tmp_path, clock=clock, companion=actrix)
    try:
        ticket = await store.reserve("n1", clock.now + 600)
        assert ticket is not None and not ticket.recorded
        assert await store.reserve("n1", clock.now + 600) is None
        assert not await store.consume("n1", clock.now + 600)
        await ticket.settle()
    finally:
        await store.close()


async def test_ticket_rides_the_realm_write_and_survives_restart(
    tmp_path: Path, actrix: Database, clock: FakeClock
) -> None:
    """The realm and its nonce commit in one transaction of actrix.db (nothing in nonce.db);
    settle() then returns at once, and a restarted store refuses the nonce."""
    store = await SqliteNonceStorage.open(tmp_path, clock=clock, companion=actrix)
    realms = RealmStore(actrix, clock=clock)
    try:
        ticket = await store.reserve("n2", clock.now + 600)
        assert ticket is not None
        with riding(ticket):
            assert await realms.create(1, "one", True, [], 1) is not None
        assert ticket.recorded
        await ticket.settle()
        assert companion_nonces(tmp_path) == ["n2"]
        assert logged_nonces(tmp_path) == []
        assert await store.count() == 1
    finally:
        await store.close()

    again = await SqliteNonceStorage.open(tmp_path, clock=clock, companion=actrix)
    try:
        assert await again.reserve("n2", clock.now + 600) is None
        assert not await again.consume("n2", clock.now + 600)
    finally:
        await again.close()


async def test_unwritten_ticket_is_logged_by_settle(tmp_path: Path, actrix: Database, clock: FakeClock) -> None:
    """No write carried the ticket (a business failure before the store): settle() appends it to
    the nonce log and returns once it is committed there; a restart still refuses it."""
    store = await SqliteNonceStorage.open(tmp_path, clock=clock, companion=actrix)
    try:
        ticket = await store.reserve("n3", clock.now + 600)
        assert ticket is not None
        await ticket.settle()
        assert ticket.recorded
        assert logged_nonces(tmp_path) == ["n3"] and companion_nonces(tmp_path) == []
        # A later write in the same context no longer takes it.
        with riding(ticket):
            await RealmStore(actrix, clock=clock).create(2, "two", True, [], 1)
        assert companion_nonces(tmp_path) == []
    finally:
        await store.close()
    again = await SqliteNonceStorage.open(tmp_path, clock=clock, companion=actrix)
    try:
        assert await again.reserve("n3", clock.now + 600) is None
    finally:
        await again.close()


async def test_settle_waits_for_the_write_in_flight(tmp_path: Path, actrix: Database, clock: FakeClock) -> None:
    """settle() called while the carrying write is still committing waits for it, and does not
    log the nonce a second time."""
    store = await SqliteNonceStorage.open(tmp_path, clock=clock, companion=actrix)
    try:
        ticket = await store.reserve("n4", clock.now + 600)
        assert ticket is not None
        with riding(ticket):
            write = asyncio.ensure_future(RealmStore(actrix, clock=clock).create(4, "four", True, [], 1))
        await asyncio.sleep(0)  # the write is queued and carries the ticket
        await ticket.settle()
        assert ticket.recorded and write.done()
        assert companion_nonces(tmp_path) == ["n4"] and logged_nonces(tmp_path) == []
    finally:
        await store.close()


async def test_failed_write_leaves_the_nonce_to_the_log(tmp_path: Path, actrix: Database, clock: FakeClock) -> None:
    """A realm write that fails (its statement aborts, rolled back alone) still commits its
    rider: the nonce is durable, the realm is not, and settle() has nothing left to log."""
    store = await SqliteNonceStorage.open(tmp_path, clock=clock, companion=actrix)
    realms = RealmStore(actrix, clock=clock)
    try:
        await actrix.write(lambda c: c.execute(REFUSE_REALM_INSERTS))
        ticket = await store.reserve("n5", clock.now + 600)
        assert ticket is not None
        with riding(ticket), pytest.raises(exc.StorageError, match="realm insert refused"):
            await realms.create(5, "five", True, [], 1)
        assert ticket.recorded
        await ticket.settle()
        assert companion_nonces(tmp_path) == ["n5"] and logged_nonces(tmp_path) == []
        assert await realms.get(5) is None
    finally:
        await store.close()


async def test_unstorable_ticket_is_an_error_and_stays_refused(
    tmp_path: Path, actrix: Database, clock: FakeClock
) -> None:
    """If neither a companion write nor the log can store the nonce, settle() raises
    NonceStorageError (the request is answered INTERNAL) and the nonce stays refused."""
    store = await SqliteNonceStorage.open(tmp_path, clock=clock, companion=actrix)
    ticket = await store.reserve("n6", clock.now + 600)
    assert ticket is not None
    await store.database.close()  # the nonce log cannot write any more
    with pytest.raises(exc.NonceStorageError):
        await ticket.settle()
    with pytest.raises(exc.NonceStorageError):
        await ticket.settle()  # asked again, the same answer
    assert await store.reserve("n6", clock.now + 600) is None
    await store.close()


async def test_companion_nonces_are_counted_and_cleaned_up(tmp_path: Path, actrix: Database, clock: FakeClock) -> None:
    """count() adds the companion's nonces; cleanup() deletes the expired ones there too."""
    store = await SqliteNonceStorage.open(tmp_path, clock=clock, companion=actrix)
    realms = RealmStore(actrix, clock=clock)
    try:
        for i, expiry in enumerate((clock.now + 10, clock.now + 10, clock.now + 1000)):
            ticket = await store.reserve(f"c{i}", expiry)
            assert ticket is not None
            with riding(ticket):
                await realms.create(10 + i, "r", True, [], 1)
            await ticket.settle()
        assert await store.consume("logged", clock.now + 10)
        assert await store.count() == 4
        clock.now += 100
        assert await store.cleanup() == 3
        assert companion_nonces(tmp_path) == ["c2"]
        assert await store.count() == 1
    finally:
        await store.close()


async def test_reserve_needs_a_companion_in_single_process_mode(tmp_path: Path, actrix: Database) -> None:
    """Without a companion there is nothing to ride on; shared-file mode cannot take one."""
    store = await SqliteNonceStorage.open(tmp_path / "plain")
    try:
        assert store.companion is None
        with pytest.raises(RuntimeError):
            await store.reserve("n", 1e12)
    finally:
        await store.close()
    with pytest.raises(ValueError, match="companion"):
        await SqliteNonceStorage.open(tmp_path / "shared", shared_file=True, companion=actrix)
