"""Supervisord over a real grpc.aio server and real SQLite: every RPC, business failures, concurrency."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from supervit.metrics import Snapshot
from supervit.protocol import common_pb2, supervised_pb2
from tests.conftest import FakeClock
from tests.node._helpers import METRICS, NODE_ID, RunningNode, status_of

sd = supervised_pb2


def create_request(realm_id: int, name: str = "realm", **fields: object) -> sd.CreateRealmRequest:
    defaults: dict[str, object] = {"enabled": True, "version": 1, "expires_at": 0, "use_servers": []}
    defaults.update(fields)
    return sd.CreateRealmRequest(realm_id=realm_id, name=name, **defaults)  # type: ignore[arg-type]


# -- realms ---------------------------------------------------------------------------------------


async def test_create_then_get_realm(clocked_node: RunningNode, clock: FakeClock) -> None:
    """CreateRealm stores every field, starts Normal, has no updated_at; GetRealm returns the same."""
    req = create_request(42, "acme", enabled=True, version=7, expires_at=1_900_000_000, use_servers=[1, 2])
    created = await clocked_node.client.call(req)
    assert created.success and not created.HasField("error_message")
    realm = created.realm
    assert (realm.realm_id, realm.name, realm.enabled, realm.version) == (42, "acme", True, 7)
    assert list(realm.use_servers) == [common_pb2.STUN, common_pb2.TURN]
    assert realm.expires_at == 1_900_000_000 and realm.status == "Normal"
    assert realm.created_at == int(clock.now) and not realm.HasField("updated_at")
    got = await clocked_node.client.call(sd.GetRealmRequest(realm_id=42))
    assert got.success and got.realm == realm


async def test_duplicate_realm_id_is_a_business_failure(node: RunningNode) -> None:
    """A second CreateRealm with the same id: success=false naming it, status OK, original kept."""
    await node.client.call(create_request(1, "first"))
    dup = await node.client.call(create_request(1, "second"))
    assert not dup.success and dup.error_message == "Realm 1 already exists" and not dup.HasField("realm")
    got = await node.client.call(sd.GetRealmRequest(realm_id=1))
    assert got.realm.name == "first"


@pytest.mark.parametrize(
    "request_factory",
    [
        lambda: sd.GetRealmRequest(realm_id=9),
        lambda: sd.UpdateRealmRequest(realm_id=9, name="x"),
        lambda: sd.DeleteRealmRequest(realm_id=9),
    ],
    ids=["get", "update", "delete"],
)
async def test_unknown_realm_is_a_business_failure(node: RunningNode, request_factory: object) -> None:
    """Get/Update/Delete of a missing realm: success=false "Realm 9 not found", status OK."""
    response = await node.client.call(request_factory())  # type: ignore[operator]
    assert not response.success and response.error_message == "Realm 9 not found"


async def test_update_changes_only_present_fields(clocked_node: RunningNode, clock: FakeClock) -> None:
    """UpdateRealm with only name keeps enabled, with only enabled keeps name; updated_at moves."""
    await clocked_node.client.call(create_request(5, "old", enabled=True, version=3, use_servers=[2]))
    clock.now += 10
    renamed = await clocked_node.client.call(sd.UpdateRealmRequest(realm_id=5, name="new"))
    assert renamed.success and renamed.realm.name == "new" and renamed.realm.enabled is True
    assert renamed.realm.updated_at == int(clock.now)
    clock.now += 10
    disabled = await clocked_node.client.call(sd.UpdateRealmRequest(realm_id=5, enabled=False))
    assert disabled.realm.name == "new" and disabled.realm.enabled is False
    assert disabled.realm.updated_at == int(clock.now)
    assert disabled.realm.version == 3 and list(disabled.realm.use_servers) == [2]
    clock.now += 10
    touched = await clocked_node.client.call(sd.UpdateRealmRequest(realm_id=5))
    assert touched.realm.updated_at == int(clock.now) and touched.realm.name == "new"


async def test_delete_realm(node: RunningNode) -> None:
    """DeleteRealm removes the realm and the count; a second delete is a business failure."""
    await node.client.call(create_request(3))
    deleted = await node.client.call(sd.DeleteRealmRequest(realm_id=3))
    assert deleted.success and not deleted.HasField("error_message")
    assert not (await node.client.call(sd.GetRealmRequest(realm_id=3))).success
    assert (await node.client.call(sd.ListRealmsRequest())).total_count == 0
    assert not (await node.client.call(sd.DeleteRealmRequest(realm_id=3))).success


async def test_list_realms_without_page_size_returns_everything(node: RunningNode) -> None:
    """No page_size (and page_size=0) → every realm in id order, total_count, no next token."""
    for realm_id in (30, 10, 20):
        await node.client.call(create_request(realm_id, f"r{realm_id}"))
    for request in (sd.ListRealmsRequest(), sd.ListRealmsRequest(page_size=0)):
        listed = await node.client.call(request)
        assert listed.success and listed.total_count == 3
        assert [r.realm_id for r in listed.realms] == [10, 20, 30]
        assert not listed.HasField("next_page_token")


async def test_list_realms_pages(node: RunningNode) -> None:
    """page_size/page_token walk all realms exactly once; the last page has no token."""
    for realm_id in range(1, 8):
        await node.client.call(create_request(realm_id))
    seen: list[int] = []
    token: str | None = None
    pages = 0
    while True:
        request = sd.ListRealmsRequest(page_size=3)
        if token is not None:
            request.page_token = token
        page = await node.client.call(request)
        pages += 1
        assert page.total_count == 7 and len(page.realms) <= 3
        seen += [r.realm_id for r in page.realms]
        if not page.HasField("next_page_token"):
            break
        token = page.next_page_token
    assert seen == list(range(1, 8)) and pages == 3


async def test_list_realms_garbage_token_is_invalid_argument(node: RunningNode) -> None:
    """A page_token the node did not issue → INVALID_ARGUMENT, the server keeps serving."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.client.call(sd.ListRealmsRequest(page_size=2, page_token="not-a-token"))
    assert status_of(info) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid page_token")
    assert (await node.client.call(sd.ListRealmsRequest())).success


async def test_out_of_range_version_is_invalid_argument(node: RunningNode) -> None:
    """A uint64 version SQLite cannot hold → INVALID_ARGUMENT naming the field, nothing stored."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.client.call(create_request(8, version=2**64 - 1))
    code, details = status_of(info)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "version" in details
    assert (await node.client.call(sd.ListRealmsRequest())).total_count == 0


async def test_storage_failure_is_internal(node: RunningNode) -> None:
    """A store that fails (here: closed database) → INTERNAL, never a silent success."""
    await node.db.close()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.client.call(create_request(1))
    code, details = status_of(info)
    assert code == grpc.StatusCode.INTERNAL and "storage failure" in details
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.client.call(sd.GetConfigRequest(config_type=common_pb2.CUSTOM, config_key="k"))
    assert status_of(info)[0] == grpc.StatusCode.INTERNAL


async def test_concurrent_updates_of_one_realm_stay_consistent(node: RunningNode) -> None:
    """50 concurrent UpdateRealm calls all succeed; the final realm is the last committed update."""
    await node.client.call(create_request(1, "start", enabled=True, version=4, use_servers=[2]))
    requests = [
        sd.UpdateRealmRequest(realm_id=1, name=f"name-{i}")
        if i % 2
        else sd.UpdateRealmRequest(realm_id=1, enabled=bool(i % 4))
        for i in range(50)
    ]
    responses = await asyncio.gather(*(node.client.call(r) for r in requests))
    assert all(r.success for r in responses)
    final = (await node.client.call(sd.GetRealmRequest(realm_id=1))).realm
    assert final in [r.realm for r in responses]
    assert final.name.startswith("name-") and final.version == 4 and list(final.use_servers) == [2]
    # Every response is a state some serial order produced: unchanged fields never flicker.
    assert all(r.realm.version == 4 and r.realm.created_at == final.created_at for r in responses)
    assert (await node.client.call(sd.ListRealmsRequest())).total_count == 1


# -- configuration ---------------------------------------------------------------------------------


async def test_config_update_then_get(node: RunningNode) -> None:
    """UpdateConfig stores per (type, key); the next update returns the old value; GetConfig reads it."""
    first = await node.client.call(
        sd.UpdateConfigRequest(
            config_type=common_pb2.CUSTOM, config_key="k", config_value="v1", apply_immediately=False
        )
    )
    assert first.success and not first.HasField("old_value")
    second = await node.client.call(
        sd.UpdateConfigRequest(
            config_type=common_pb2.CUSTOM, config_key="k", config_value="v2", apply_immediately=False
        )
    )
    assert second.success and second.old_value == "v1"
    got = await node.client.call(sd.GetConfigRequest(config_type=common_pb2.CUSTOM, config_key="k"))
    assert got.success and got.config_value == "v2"
    other_type = await node.client.call(sd.GetConfigRequest(config_type=common_pb2.TURN_REALM, config_key="k"))
    assert not other_type.success and other_type.error_message == "Config not found"


async def test_missing_config_is_config_not_found(node: RunningNode) -> None:
    """GetConfig of a key never set → success=false, "Config not found", status OK."""
    got = await node.client.call(sd.GetConfigRequest(config_type=common_pb2.LOG_LEVEL, config_key="nope"))
    assert not got.success and got.error_message == "Config not found" and not got.HasField("config_value")


@pytest.mark.parametrize(
    ("config_type", "value", "reason"),
    [
        (common_pb2.LOG_LEVEL, "loud", "not one of"),
        (common_pb2.SERVICE_ENABLED, "maybe", "not a boolean"),
        (common_pb2.STUN_BIND_ADDRESS, "10.0.0.1:99999", "port"),
        (common_pb2.CONFIG_TYPE_UNSPECIFIED, "x", "unspecified"),
    ],
)
async def test_invalid_config_value_is_refused_and_not_stored(
    node: RunningNode, config_type: int, value: str, reason: str
) -> None:
    """An invalid value → success=false with the reason; nothing is stored."""
    response = await node.client.call(
        sd.UpdateConfigRequest(config_type=config_type, config_key="k", config_value=value, apply_immediately=False)  # type: ignore[arg-type]
    )
    assert not response.success and reason in response.error_message
    got = await node.client.call(sd.GetConfigRequest(config_type=config_type, config_key="k"))  # type: ignore[arg-type]
    assert not got.success


async def test_config_values_are_normalised(node: RunningNode) -> None:
    """Stored values are the normalised form (e.g. SERVICE_ENABLED "YES" → "true")."""
    await node.client.call(
        sd.UpdateConfigRequest(
            config_type=common_pb2.SERVICE_ENABLED, config_key="turn-main", config_value="YES", apply_immediately=False
        )
    )
    got = await node.client.call(sd.GetConfigRequest(config_type=common_pb2.SERVICE_ENABLED, config_key="turn-main"))
    assert got.config_value == "true"


# -- node info and shutdown ------------------------------------------------------------------------


async def test_get_node_info(clocked_node: RunningNode, clock: FakeClock) -> None:
    """Identity, uptime from the clock, the provider's metrics and the collector's services."""
    clock.now += 125
    info = await clocked_node.client.call(sd.GetNodeInfoRequest())
    assert info.success
    assert (info.node_id, info.name, info.version, info.location_tag) == (NODE_ID, "Test Node", "9.9.9", "lab-1")
    assert info.uptime_secs == 125
    assert info.current_metrics == METRICS
    by_name = {s.name: s for s in info.services}
    assert set(by_name) == {"turn-main", "stun-main"}
    assert by_name["turn-main"].type == common_pb2.TURN and by_name["turn-main"].port == 3478
    assert by_name["turn-main"].domain == "turn.example.org" and by_name["turn-main"].is_healthy


async def test_node_info_without_metrics_when_provider_fails(node: RunningNode) -> None:
    """A failing metrics provider leaves current_metrics out; the rest of the answer stands."""

    class Broken:
        async def snapshot(self) -> Snapshot:
            raise OSError("no /proc")

    node.supervisord.with_metrics_provider(Broken())
    info = await node.client.call(sd.GetNodeInfoRequest())
    assert info.success and not info.HasField("current_metrics") and len(info.services) == 2


async def test_node_info_default_metrics_are_real(node: RunningNode) -> None:
    """Without a provider Supervisord reads real system metrics (off the event loop)."""
    node.supervisord._metrics = None
    info = await node.client.call(sd.GetNodeInfoRequest())
    assert info.current_metrics.memory_total_bytes > 0 and info.current_metrics.disk_total_bytes > 0


async def test_graceful_shutdown(clocked_node: RunningNode, clock: FakeClock) -> None:
    """Graceful Shutdown calls the handler with the timeout; estimated time = now + timeout."""
    response = await clocked_node.client.call(sd.ShutdownRequest(graceful=True, timeout_secs=5, reason="maintenance"))
    assert response.accepted and response.estimated_shutdown_time == int(clock.now) + 5
    assert clocked_node.shutdowns == [(True, 5, "maintenance")]


async def test_graceful_shutdown_default_timeout(clocked_node: RunningNode, clock: FakeClock) -> None:
    """Without timeout_secs the configured default grace period is used."""
    response = await clocked_node.client.call(sd.ShutdownRequest(graceful=True))
    assert response.estimated_shutdown_time == int(clock.now) + 7
    assert clocked_node.shutdowns == [(True, 7, None)]


async def test_immediate_shutdown(clocked_node: RunningNode, clock: FakeClock) -> None:
    """An immediate Shutdown ignores timeout_secs: grace 0, estimated time = now."""
    response = await clocked_node.client.call(sd.ShutdownRequest(graceful=False, timeout_secs=30))
    assert response.accepted and response.estimated_shutdown_time == int(clock.now)
    assert clocked_node.shutdowns == [(False, 0, None)]


async def test_shutdown_handler_error_refuses(node: RunningNode) -> None:
    """A handler that raises → accepted=false with its message, status OK."""

    async def refuse(graceful: bool, grace_secs: int, reason: str | None) -> None:
        raise RuntimeError("busy migrating")

    node.supervisord.with_shutdown_handler(refuse)
    response = await node.client.call(sd.ShutdownRequest(graceful=True))
    assert not response.accepted and "busy migrating" in response.error_message
    assert not response.HasField("estimated_shutdown_time")


async def test_shutdown_without_handler_is_refused(node: RunningNode) -> None:
    """No shutdown handler configured → accepted=false."""
    node.supervisord._shutdown_handler = None
    response = await node.client.call(sd.ShutdownRequest(graceful=False))
    assert not response.accepted and "not supported" in response.error_message


async def test_negative_shutdown_timeout_is_invalid_argument(node: RunningNode) -> None:
    """timeout_secs < 0 → INVALID_ARGUMENT; the handler is not called."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.client.call(sd.ShutdownRequest(graceful=True, timeout_secs=-1))
    assert status_of(info)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert node.shutdowns == []
