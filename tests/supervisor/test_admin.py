"""SupervisorAdmin over real grpc.aio: admin credential, node listing, directives, catalog changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit._exceptions import RpcError
from supervit.auth import SharedSecret, Signer
from supervit.client import NodeMetrics
from supervit.protocol import common_pb2, supervisor_pb2, supervit_admin_pb2, supervit_admin_pb2_grpc
from supervit.supervisor import (
    AdminClient,
    CatalogChange,
    CatalogListing,
    CatalogRealmInfo,
    CatalogRemoval,
    DirectiveQueued,
    NodeListing,
    NodeSummary,
    admin_payload,
)
from tests.conftest import SECRET_HEX
from tests.supervisor.conftest import ADMIN_HEX, NodeSim, make_config

Started = Callable[..., Any]
Channels = Callable[[str], grpc.aio.Channel]
Admins = Callable[..., AdminClient]


async def test_admin_needs_the_admin_secret(
    tmp_path: Path, started: Started, admin_to: Admins, channel_to: Channels
) -> None:
    """The fleet secret (held by every node) cannot administer; a replayed admin call is refused."""
    sup = await started(make_config(tmp_path))
    with pytest.raises(RpcError) as info:
        await admin_to(sup.admin_address, SECRET_HEX).list_nodes()
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED and info.value.details == "invalid signature"
    stub = supervit_admin_pb2_grpc.SupervisorAdminStub(channel_to(sup.admin_address))
    request = supervit_admin_pb2.ListNodesRequest()
    request.credential.CopyFrom(Signer(SharedSecret.from_hex(ADMIN_HEX)).credential(admin_payload(request)))
    await stub.ListNodes(request)
    with pytest.raises(grpc.aio.AioRpcError) as replay:
        await stub.ListNodes(request)
    assert replay.value.details() == "nonce already used"
    # A credential for one action does not authorise another.
    other = supervit_admin_pb2.ListCatalogRequest(credential=request.credential)
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await stub.ListCatalog(other)
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_admin_disabled_without_secret(tmp_path: Path, started: Started) -> None:
    sup = await started(make_config(tmp_path, admin={"secret": None}))
    assert sup.admin_address is None


async def test_admin_secret_must_differ_from_node_secrets(tmp_path: Path) -> None:
    from supervit._exceptions import ConfigError

    with pytest.raises(ConfigError, match=r"admin\.secret"):
        make_config(tmp_path, admin={"secret": SECRET_HEX})


async def test_list_nodes_shows_state_power_and_sync(
    tmp_path: Path, started: Started, admin_to: Admins, channel_to: Channels
) -> None:
    sup = await started(make_config(tmp_path))
    admin = admin_to(sup.admin_address)
    channel = channel_to(sup.address)
    await NodeSim(channel, "b").register()
    a = NodeSim(channel, "a")
    await a.register()
    await a.report(power=5, realm_sync_version=0)
    await admin.add_realm(1, "one")
    listing = await admin.list_nodes()
    assert listing.catalog_version == 1
    assert [n.node_id for n in listing.nodes] == ["a", "b"]
    first, second = listing.nodes
    assert isinstance(listing, NodeListing) and isinstance(first, NodeSummary)
    assert listing.message.nodes[0].node_id == "a" and listing.next_page_token is None
    assert first.metrics == NodeMetrics.from_message(listing.message.nodes[0].metrics)
    assert first.state == "online" and first.power_reserve_level == 5 and first.last_report_at is not None
    assert first.metrics.cpu_usage_percent == 12.5 and first.services[0].name == "turn"
    assert first.sync_lag == 1 and first.location == "rack 4"
    assert first.message.advertised_services[0].port_info == "3478"
    assert second.last_report_at is None and second.power_reserve_level == 4  # the init level


async def test_enqueue_directive(tmp_path: Path, started: Started, admin_to: Admins, channel_to: Channels) -> None:
    sup = await started(make_config(tmp_path))
    admin = admin_to(sup.admin_address)
    node = NodeSim(channel_to(sup.address), "a")
    await node.register()
    queued = await admin.enqueue_directive("a", supervisor_pb2.GRACEFUL_SHUTDOWN, "bye")
    assert queued.position == 1
    assert isinstance(queued, DirectiveQueued) and queued.directive_id == queued.message.directive_id > 0
    assert (await admin.list_nodes()).nodes[0].pending_directives == 1
    assert (await node.report()).directive.payload == "bye"
    with pytest.raises(RpcError) as missing:
        await admin.enqueue_directive("nobody", supervisor_pb2.REQUEST_FULL_REPORT)
    assert missing.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(RpcError) as bad:
        await admin.enqueue_directive("a", supervisor_pb2.ADJUST_INTERVAL, "soon")
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT and "ADJUST_INTERVAL" in bad.value.details


async def test_catalog_add_update_remove(tmp_path: Path, started: Started, admin_to: Admins) -> None:
    sup = await started(make_config(tmp_path))
    admin = admin_to(sup.admin_address)
    added = await admin.add_realm(7, "seven", use_servers=[common_pb2.TURN], expires_at=10)
    assert isinstance(added, CatalogChange) and isinstance(added.realm, CatalogRealmInfo)
    realm = added.realm
    assert (realm.realm_id, realm.name, realm.enabled, realm.expires_at) == (7, "seven", True, 10)
    assert added.realm.updated_at is None and added.realm.created_at > 0 and added.message.realm.realm_id == 7
    assert (added.realm.version, added.catalog_version, list(added.realm.use_servers)) == (1, 1, [common_pb2.TURN])
    with pytest.raises(RpcError) as exists:
        await admin.add_realm(7, "again")
    assert exists.value.code == grpc.StatusCode.ALREADY_EXISTS
    updated = await admin.update_realm(7, enabled=False, use_servers=[])
    assert not updated.realm.enabled and list(updated.realm.use_servers) == [] and updated.realm.name == "seven"
    kept = await admin.update_realm(7, name="siete")
    assert kept.realm.expires_at == 10 and kept.realm.version == 3
    catalog = await admin.list_catalog()
    assert isinstance(catalog, CatalogListing) and catalog.catalog_version == 3
    assert [r.name for r in catalog.realms] == ["siete"] and catalog.realms[0].updated_at is not None
    removed = await admin.remove_realm(7)
    assert isinstance(removed, CatalogRemoval) and (removed.realm_id, removed.catalog_version) == (7, 4)
    assert list((await admin.list_catalog()).realms) == []
    for call in (admin.remove_realm(7), admin.update_realm(7, name="x")):
        with pytest.raises(RpcError) as missing:
            await call
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(RpcError) as invalid:
        await admin.add_realm(8, "")
    assert invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT
