"""Write RPCs commit their nonce in the same actrix.db transaction as their write (one commit).

Against a real server with the daemon's wiring: nonce.db with actrix.db as its companion.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit.node import Supervisord
from supervit.protocol import common_pb2, supervised_pb2
from tests.node._helpers import NodeClient, RunningNode, running_node, status_of
from tests.nonce_files import REFUSE_REALM_INSERTS, companion_nonces, logged_nonces

sd = supervised_pb2


def count_commits(node: RunningNode) -> dict[str, int]:
    """Group commits per file from now on (the databases' commit observers)."""
    commits = {"actrix.db": 0, "nonce.db": 0}
    nonces = node.nonces.database  # type: ignore[attr-defined]
    for db in (node.db, nonces):

        def observe(_secs: float, _ops: int, name: str = db.path.name) -> None:
            commits[name] += 1

        db.commit_observer = observe
    return commits


async def expect_status(client: NodeClient, request: Any, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.call(request, sign=False)
    got, details = status_of(info)
    assert got == code, details
    return details


WRITES = {
    "CreateRealm": sd.CreateRealmRequest(realm_id=7, name="new", enabled=True, version=2, expires_at=0),
    "UpdateRealm": sd.UpdateRealmRequest(realm_id=1, name="renamed"),
    "DeleteRealm": sd.DeleteRealmRequest(realm_id=1),
    "UpdateConfig": sd.UpdateConfigRequest(
        config_type=common_pb2.CUSTOM, config_key="k", config_value="v", apply_immediately=False
    ),
}


@pytest.mark.parametrize("rpc", sorted(WRITES))
async def test_write_rpc_commits_once_with_its_nonce(tmp_path: Path, rpc: str) -> None:
    """Each write RPC is one commit of actrix.db holding both the change and the nonce; nonce.db
    is not written at all."""
    data = tmp_path / "data"
    async with running_node(data, sqlite_nonces=True) as node:
        await node.client.call(sd.CreateRealmRequest(realm_id=1, name="one", enabled=True, version=1, expires_at=0))
        commits = count_commits(node)
        request = node.client.sign(WRITES[rpc])
        response = await node.client.call(request, sign=False)
        assert response.success, response.error_message
        assert commits == {"actrix.db": 1, "nonce.db": 0}
        assert companion_nonces(data)[-1] == request.credential.nonce
        assert logged_nonces(data) == []


async def test_concurrent_replays_are_refused_and_after_restart_too(tmp_path: Path) -> None:
    """Twenty copies of one signed CreateRealm at once: one succeeds, nineteen are replays; after
    a restart (the nonce loaded back from actrix.db) the copy is still refused."""
    data = tmp_path / "data"
    async with running_node(data, sqlite_nonces=True) as node:
        request = node.client.sign(sd.CreateRealmRequest(realm_id=3, name="x", enabled=True, version=1, expires_at=0))
        calls = (node.client.call(request, sign=False) for _ in range(20))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        accepted = [o for o in outcomes if isinstance(o, sd.CreateRealmResponse)]
        refused = [(o.code(), o.details()) for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert len(accepted) == 1 and accepted[0].success
        assert refused == [(grpc.StatusCode.UNAUTHENTICATED, "nonce already used")] * 19
    async with running_node(data, sqlite_nonces=True) as node:
        assert await expect_status(node.client, request, grpc.StatusCode.UNAUTHENTICATED) == "nonce already used"
        assert (await node.client.call(sd.ListRealmsRequest())).total_count == 1


async def test_business_failures_are_answered_once_the_nonce_is_durable(tmp_path: Path) -> None:
    """A duplicate realm, an unknown realm (the write ran: the nonce rides it) and an invalid
    config value (no write: the nonce goes to the log) are success=false, each answered only once
    its nonce is committed, and refused as replays after a restart."""
    data = tmp_path / "data"
    async with running_node(data, sqlite_nonces=True) as node:
        client = node.client
        await client.call(sd.CreateRealmRequest(realm_id=1, name="one", enabled=True, version=1, expires_at=0))
        duplicate = client.sign(sd.CreateRealmRequest(realm_id=1, name="dup", enabled=True, version=1, expires_at=0))
        unknown = client.sign(sd.UpdateRealmRequest(realm_id=99, name="nobody"))
        invalid = client.sign(
            sd.UpdateConfigRequest(
                config_type=common_pb2.LOG_LEVEL, config_key="k", config_value="loud", apply_immediately=False
            )
        )
        for request in (duplicate, unknown):
            response = await client.call(request, sign=False)
            assert not response.success
            assert companion_nonces(data)[-1] == request.credential.nonce
        response = await client.call(invalid, sign=False)
        assert not response.success and "invalid LOG_LEVEL value" in response.error_message
        assert logged_nonces(data) == [invalid.credential.nonce]
    async with running_node(data, sqlite_nonces=True) as node:
        for request in (duplicate, unknown, invalid):
            assert await expect_status(node.client, request, grpc.StatusCode.UNAUTHENTICATED) == "nonce already used"


async def test_an_abort_inside_the_service_is_sent_only_after_the_nonce_is_durable(tmp_path: Path) -> None:
    """actrix.db is closed: the realm write fails before any transaction, so nothing carries the
    nonce; the service aborts INTERNAL from inside (grpc sends the status from its abort), and by
    then the nonce is committed in nonce.db's log."""
    data = tmp_path / "data"
    async with running_node(data, sqlite_nonces=True) as node:
        await node.db.close()
        request = node.client.sign(sd.CreateRealmRequest(realm_id=4, name="x", enabled=True, version=1, expires_at=0))
        assert "closed" in await expect_status(node.client, request, grpc.StatusCode.INTERNAL)
        assert logged_nonces(data) == [request.credential.nonce]
        assert await expect_status(node.client, request, grpc.StatusCode.UNAUTHENTICATED) == "nonce already used"


async def test_failed_realm_write_is_internal_and_keeps_its_nonce(tmp_path: Path) -> None:
    """The realm write fails (its statement aborts): INTERNAL, no realm, and the nonce, written
    outside the failed statement, committed in the same transaction: the copy is a replay."""
    data = tmp_path / "data"
    async with running_node(data, sqlite_nonces=True) as node:
        await node.db.write(lambda c: c.execute(REFUSE_REALM_INSERTS))
        request = node.client.sign(sd.CreateRealmRequest(realm_id=5, name="x", enabled=True, version=1, expires_at=0))
        assert "storage failure" in await expect_status(node.client, request, grpc.StatusCode.INTERNAL)
        assert companion_nonces(data) == [request.credential.nonce]
        assert await expect_status(node.client, request, grpc.StatusCode.UNAUTHENTICATED) == "nonce already used"


async def test_a_group_that_cannot_count_its_realms_fails_whole_and_keeps_the_nonce(tmp_path: Path) -> None:
    """The realm counter row is gone: the group's counter update fails, so the whole group rolls
    back (no realm without its count) and is INTERNAL; the nonce, not committed with it, goes to
    the nonce log before the answer: the copy is a replay."""
    data = tmp_path / "data"
    async with running_node(data, sqlite_nonces=True) as node:
        await node.db.write(lambda c: c.execute("DELETE FROM store_meta WHERE key = 'realm_count'"))
        request = node.client.sign(sd.CreateRealmRequest(realm_id=7, name="x", enabled=True, version=1, expires_at=0))
        assert "realm_count" in await expect_status(node.client, request, grpc.StatusCode.INTERNAL)
        assert companion_nonces(data) == [] and logged_nonces(data) == [request.credential.nonce]
        assert await node.supervisord.realm_store.get(7) is None
        assert await expect_status(node.client, request, grpc.StatusCode.UNAUTHENTICATED) == "nonce already used"


async def test_nonce_that_cannot_be_stored_is_internal_never_an_accept(tmp_path: Path) -> None:
    """Neither actrix.db (its nonce table is gone) nor nonce.db (closed) can store the nonce:
    INTERNAL "nonce storage failure", and the realm is not created without its nonce."""
    data = tmp_path / "data"
    async with running_node(data, sqlite_nonces=True) as node:
        await node.db.write(lambda c: c.execute("DROP TABLE accepted_nonces"))
        await node.nonces.database.close()  # type: ignore[attr-defined]
        request = sd.CreateRealmRequest(realm_id=6, name="x", enabled=True, version=1, expires_at=0)
        details = await expect_status(node.client, node.client.sign(request), grpc.StatusCode.INTERNAL)
        assert details == "nonce storage failure"
        assert await node.supervisord.realm_store.get(6) is None


async def test_apply_immediately_consumes_the_nonce_first(tmp_path: Path) -> None:
    """UpdateConfig that applies the value live acts outside the database: its nonce is committed
    in nonce.db before the service runs (two commits, as for any other service)."""
    data = tmp_path / "data"
    async with running_node(data, sqlite_nonces=True) as node:
        request = node.client.sign(
            sd.UpdateConfigRequest(
                config_type=common_pb2.CUSTOM, config_key="k", config_value="v", apply_immediately=True
            )
        )
        assert (await node.client.call(request, sign=False)).success
        assert logged_nonces(data) == [request.credential.nonce]
        assert companion_nonces(data) == []


class AuditingSupervisord(Supervisord):
    """A user's subclass with its own CreateRealm: records whether the nonce was durable first."""

    data_dir: Path
    seen: list[list[str]]

    async def CreateRealm(self, request: Any, context: Any) -> Any:
        self.seen.append(logged_nonces(self.data_dir))
        return await super().CreateRealm(request, context)


async def test_overridden_write_rpc_keeps_consume_first(tmp_path: Path) -> None:
    """A subclass overriding a write RPC may act outside the store: write_database says None and
    the nonce is durable in nonce.db before the override runs."""
    data = tmp_path / "data"
    async with running_node(data, sqlite_nonces=True) as node:
        node.supervisord.__class__ = AuditingSupervisord
        auditing: Any = node.supervisord
        auditing.data_dir, auditing.seen = data, []
        request = node.client.sign(sd.CreateRealmRequest(realm_id=8, name="x", enabled=True, version=1, expires_at=0))
        assert auditing.write_database("CreateRealm", request) is None
        assert (await node.client.call(request, sign=False)).success
        assert auditing.seen == [[request.credential.nonce]]
