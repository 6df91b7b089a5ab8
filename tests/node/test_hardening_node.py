"""Issue 10 on the node: hostile input is refused at the boundary; health and listings tell the truth."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from supervit.node import NodeDaemon
from supervit.protocol import supervised_pb2
from tests.conftest import OTHER_SECRET_HEX
from tests.node._helpers import NodeClient, RunningNode, status_of
from tests.node.test_daemon import NODE, make_config

sd = supervised_pb2


async def test_listrealms_without_page_size_returns_the_chunk_that_fits(node: RunningNode) -> None:
    """Large realms used to make ListRealms without page_size RESOURCE_EXHAUSTED (one 64 KB response here)."""
    node.supervisord.max_response_bytes = 48 * 1024
    for realm_id in range(1, 6):  # stored directly: names beyond the RPC limit, as an older version allowed
        assert await node.supervisord.realm_store.create(realm_id, "r" * 20_000, True, [], realm_id) is not None
    first = await node.client.call(sd.ListRealmsRequest())
    assert first.total_count == 5 and 0 < len(first.realms) < 5 and first.next_page_token
    ids = [r.realm_id for r in first.realms]
    token = first.next_page_token
    while token:
        page = await node.client.call(sd.ListRealmsRequest(page_token=token))
        ids += [r.realm_id for r in page.realms]
        token = page.next_page_token
    assert ids == [1, 2, 3, 4, 5]
    small = await node.client.call(sd.ListRealmsRequest(page_size=2))
    assert [r.realm_id for r in small.realms] == [1, 2] and small.next_page_token


@pytest.mark.parametrize(
    ("request_", "field", "path"),
    [
        (
            sd.CreateRealmRequest(realm_id=1, name="x", enabled=True, version=1, expires_at=0),
            2,
            "CreateRealmRequest.name",
        ),
        (
            sd.UpdateConfigRequest(config_type=99, config_key="k", config_value="v", apply_immediately=False),
            3,
            "UpdateConfigRequest.config_value",
        ),
        (sd.GetConfigRequest(config_type=99, config_key="k"), 2, "GetConfigRequest.config_key"),
        (sd.ShutdownRequest(graceful=True), 3, "ShutdownRequest.reason"),
    ],
)
async def test_non_utf8_strings_are_invalid_argument_signed_or_not(
    node: RunningNode, request_: object, field: int, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    for client in (node.client, NodeClient(node.channel, secret=None)):
        client.sign(request_)
        body = request_.SerializeToString() + bytes([(field << 3) | 2, 2]) + b"\xc3\x28"  # type: ignore[attr-defined]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.raw(type(request_).__name__.removesuffix("Request"), body)
        assert status_of(info) == (grpc.StatusCode.INVALID_ARGUMENT, f"{path} is not valid UTF-8")
    assert not [r for r in caplog.records if r.exc_info]
    assert (await node.client.call(sd.ListRealmsRequest())).success


async def test_unauthenticated_floods_are_logged_rate_limited(
    node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    from supervit.auth import SharedSecret

    stranger = NodeClient(node.channel, secret=SharedSecret.from_hex(OTHER_SECRET_HEX))
    with caplog.at_level(logging.INFO):
        for _ in range(40):
            with pytest.raises(grpc.aio.AioRpcError):
                await stranger.call(sd.GetNodeInfoRequest())
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) <= 6


async def _health(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    answer = await stub.Check(health_pb2.HealthCheckRequest(service=""))
    return int(answer.status)


async def test_health_turns_not_serving_while_the_nonce_store_cannot_write(tmp_path: Path) -> None:
    """A full disk used to fail every call INTERNAL while health still said SERVING."""
    daemon = NodeDaemon(make_config(tmp_path / "data"))
    await daemon.start()
    try:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            client = NodeClient(channel, node_id=NODE)
            assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
            conn = daemon._nonces._db._conn  # type: ignore[union-attr]
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL, as on a full disk
            failed = None
            for _ in range(2000):
                try:
                    await client.call(sd.GetRealmRequest(realm_id=1), nonce=f"{time.time_ns()}".ljust(64, "n"))
                except grpc.aio.AioRpcError as exc:
                    failed = exc
                    break
            assert failed is not None and failed.code() == grpc.StatusCode.INTERNAL
            deadline = time.monotonic() + 10  # a probe confirms the failure first
            while await _health(channel) != health_pb2.HealthCheckResponse.NOT_SERVING:
                assert time.monotonic() < deadline, "health stayed SERVING"
                await asyncio.sleep(0.05)
            conn.execute("PRAGMA max_page_count = 1073741823")  # space again
            deadline = time.monotonic() + 10
            while await _health(channel) != health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() < deadline, "health did not recover"
                await asyncio.sleep(0.1)
            assert (await client.call(sd.GetRealmRequest(realm_id=1))).success is False  # answered again
    finally:
        await daemon.stop(0)


async def test_a_long_nonce_is_refused_before_it_is_stored(node: RunningNode) -> None:
    """40 x 3 MB nonces used to grow nonce.db by 133 MB; a nonce is at most 64 bytes now."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.client.call(sd.GetRealmRequest(realm_id=1), nonce="n" * 65)
    assert status_of(info) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "GetRealmRequest.credential.nonce is longer than 64 bytes",
    )
    assert (await node.client.call(sd.GetRealmRequest(realm_id=1), nonce="n" * 64)).success is False  # answered


async def test_calls_beyond_max_concurrent_rpcs_are_refused_before_their_body_is_read(tmp_path: Path) -> None:
    from tests.node.test_daemon import SlowMetrics

    config = make_config(tmp_path / "data")
    config.supervisor.security.max_concurrent_rpcs = 2
    daemon = NodeDaemon(config, metrics=SlowMetrics(1.0))
    await daemon.start()
    try:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            client = NodeClient(channel, node_id=NODE)
            answers = await asyncio.gather(
                *(client.call(sd.GetNodeInfoRequest()) for _ in range(6)), return_exceptions=True
            )
            refused = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
            assert {a.code() for a in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert sum(1 for a in answers if not isinstance(a, BaseException)) == 2
            assert (await client.call(sd.GetNodeInfoRequest())).success  # served again once they finished
    finally:
        await daemon.stop(0)
