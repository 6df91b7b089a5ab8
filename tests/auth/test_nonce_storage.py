"""Nonce stores: atomic single use, durability across restarts, expiry, a free event loop."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from supervit import _exceptions as exc
from supervit.auth import CredentialVerifier, MemoryNonceStorage, SharedSecret, Signer, SqliteNonceStorage
from supervit.storage import BatchPolicy, Database
from tests.conftest import FakeClock


async def test_sqlite_store_creates_data_dir_with_wal(tmp_path: Path, clock: FakeClock) -> None:
    """nonce.db is created inside a missing data directory, in WAL mode."""
    data = tmp_path / "a" / "b"
    store = await SqliteNonceStorage.open(data, clock=clock)
    try:
        assert await store.consume("n1", clock.now + 600)
    finally:
        await store.close()
    assert (data / "nonce.db").exists()
    with sqlite3.connect(data / "nonce.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize(("before", "after"), [(False, False), (True, True), (True, False), (False, True)])
async def test_nonce_survives_restart(
    tmp_path: Path, secret: SharedSecret, clock: FakeClock, before: bool, after: bool
) -> None:
    """A nonce consumed before a restart is still refused after it, whichever mode wrote it."""
    store = await SqliteNonceStorage.open(tmp_path, clock=clock, shared_file=before)
    cred = Signer(secret, clock=clock).credential("x")
    await CredentialVerifier(secret, store, clock=clock).verify(cred, "x")
    await store.close()

    store2 = await SqliteNonceStorage.open(tmp_path, clock=clock, shared_file=after)
    try:
        with pytest.raises(exc.NonceReusedError):
            await CredentialVerifier(secret, store2, clock=clock).verify(cred, "x")
    finally:
        await store2.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite", "sqlite-shared"])
async def test_fifty_concurrent_verifications_accept_exactly_one(
    tmp_path: Path, secret: SharedSecret, clock: FakeClock, kind: str
) -> None:
    """50 concurrent verifications of one credential: exactly one accepted, 49 replays."""
    store = (
        MemoryNonceStorage(clock=clock)
        if kind == "memory"
        else await SqliteNonceStorage.open(tmp_path, clock=clock, shared_file=kind == "sqlite-shared")
    )
    try:
        verifier = CredentialVerifier(secret, store, clock=clock)
        cred = Signer(secret, clock=clock).credential("x")
        results = await asyncio.gather(*(verifier.verify(cred, "x") for _ in range(50)), return_exceptions=True)
        accepted = [r for r in results if not isinstance(r, BaseException)]
        replays = [r for r in results if isinstance(r, exc.NonceReusedError)]
        assert len(accepted) == 1
        assert len(replays) == 49
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite", "sqlite-shared"])
async def test_expired_nonces_are_forgotten(tmp_path: Path, clock: FakeClock, kind: str) -> None:
    """After its TTL a nonce may be consumed again, and cleanup removes it."""
    store = (
        MemoryNonceStorage(clock=clock)
        if kind == "memory"
        else await SqliteNonceStorage.open(tmp_path, clock=clock, shared_file=kind == "sqlite-shared")
    )
    try:
        assert await store.consume("n", clock.now + 10)
        assert not await store.consume("n", clock.now + 10)
        clock.now += 11
        assert await store.consume("n", clock.now + 10)
        if isinstance(store, SqliteNonceStorage):
            for i in range(5):
                await store.consume(f"old{i}", clock.now + 1)
            clock.now += 5
            # The log keeps the first, expired "n" in its own row; the shared table reused its row.
            assert await store.cleanup() == (5 if kind == "sqlite-shared" else 6)
            assert await store.count() == 1  # "n" is still within its TTL
    finally:
        await store.close()


async def test_verifier_sets_ttl_window_plus_300(secret: SharedSecret, clock: FakeClock) -> None:
    """A consumed nonce is remembered for window + 300 s."""
    store = MemoryNonceStorage(clock=clock)
    verifier = CredentialVerifier(secret, store, 60, clock=clock)
    await verifier.verify(Signer(secret, clock=clock).credential("x", nonce="fixed"), "x")
    clock.now += 359
    assert not await store.consume("fixed", clock.now + 1)
    clock.now += 2
    assert await store.consume("fixed", clock.now + 1)


async def test_consumed_nonce_is_durable_when_consume_returns(tmp_path: Path, clock: FakeClock) -> None:
    """Batched nonces are committed before consume returns: another connection sees every one."""
    store = await SqliteNonceStorage.open(tmp_path, clock=clock)
    try:
        assert all(await asyncio.gather(*(store.consume(f"n{i}", clock.now + 600) for i in range(40))))
        with sqlite3.connect(tmp_path / "nonce.db") as conn:
            rows = conn.execute("SELECT nonces FROM accepted_nonces").fetchall()
        logged = [n for (text,) in rows for n in json.loads(text)]
        assert sorted(logged) == sorted(f"n{i}" for i in range(40))
        assert len(rows) < 40  # shared rows: batched, not one write per nonce
    finally:
        await store.close()


async def test_storage_failure_is_an_error_not_an_accept(
    tmp_path: Path, secret: SharedSecret, clock: FakeClock
) -> None:
    """A broken nonce store raises NonceStorageError; the credential is not accepted."""
    store = await SqliteNonceStorage.open(tmp_path, clock=clock)
    await store.close()
    with pytest.raises(exc.NonceStorageError):
        await CredentialVerifier(secret, store, clock=clock).verify(Signer(secret, clock=clock).credential("x"), "x")


async def test_unwritable_data_dir_is_reported(tmp_path: Path) -> None:
    """A data dir that cannot be created gives a NonceStorageError naming the path."""
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(exc.NonceStorageError, match="file"):
        await SqliteNonceStorage.open(blocker / "sub")


async def test_event_loop_stays_free_under_sqlite_load(
    tmp_path: Path, secret: SharedSecret, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While 500 verifications hit SQLite, every commit runs off the loop and the loop keeps turning meanwhile."""
    loop_thread = threading.get_ident()
    commit_threads: list[int] = []
    ticks_at_commit: list[int] = []
    original_commit = Database._commit

    def recording_commit(self: Database, conn: sqlite3.Connection) -> sqlite3.Error | None:
        commit_threads.append(threading.get_ident())
        ticks_at_commit.append(ticks)
        return original_commit(self, conn)

    monkeypatch.setattr(Database, "_commit", recording_commit)
    store = await SqliteNonceStorage.open(tmp_path)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    try:
        verifier = CredentialVerifier(secret, store)
        signer = Signer(secret)
        task = asyncio.create_task(ticker())
        await asyncio.gather(*(verifier.verify(signer.credential("x"), "x") for _ in range(500)))
        stop.set()
        await task
        assert await store.count() == 500
        assert commit_threads, "no commit happened"
        assert loop_thread not in commit_threads
        # Other tasks ran while the verifications were being committed.
        assert ticks > ticks_at_commit[0] >= 0
    finally:
        await store.close()


async def test_close_commits_nonces_still_waiting_for_their_batch(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() while consumes wait for a spaced batch: they complete, and a reopened store refuses them."""
    store = await SqliteNonceStorage.open(tmp_path, clock=clock)
    # White-box: make the wait for the next batch certain.
    monkeypatch.setattr(store._log, "policy", BatchPolicy(max_delay_secs=0.3))
    for wave in range(3):  # several multi-item batches: the store is "under load" and spaces its writes
        assert all(await asyncio.gather(*(store.consume(f"w{wave}-{i}", clock.now + 600) for i in range(8))))
    waiting = [asyncio.ensure_future(store.consume(f"late{i}", clock.now + 600)) for i in range(5)]
    await asyncio.sleep(0)
    await store.close()
    assert all(await asyncio.gather(*waiting))
    reopened = await SqliteNonceStorage.open(tmp_path, clock=clock)
    try:
        assert not any([await reopened.consume(f"late{i}", clock.now + 600) for i in range(5)])
    finally:
        await reopened.close()


async def test_a_schema_2_nonce_file_is_upgraded_and_still_refuses_its_nonces(tmp_path: Path, clock: FakeClock) -> None:
    """Issue 13: schema 3 renames ``nonce_log`` to ``accepted_nonces``; nonces the previous version
    logged (and those in the per-row table) are kept and still refused after the upgrade."""
    from supervit.auth._nonce import _NONCE_MIGRATIONS

    old = await Database.open(tmp_path / "nonce.db", _NONCE_MIGRATIONS[:2])
    try:

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO nonce_log (expires_at, nonces) VALUES (?, ?)", (clock.now + 600, '["a", "b"]'))
            conn.execute("INSERT INTO nonces (nonce, expires_at) VALUES ('c', ?)", (clock.now + 600,))

        await old.write(write)
    finally:
        await old.close()
    store = await SqliteNonceStorage.open(tmp_path, clock=clock)
    try:
        assert not any([await store.consume(n, clock.now + 600) for n in ("a", "b", "c")])
        assert await store.consume("d", clock.now + 600)
        assert await store.count() == 4
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "nonce.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    assert "accepted_nonces" in tables and "nonce_log" not in tables and version == 3
