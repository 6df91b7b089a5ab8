"""Issue 10 on the supervisor: hostile input never bricks, poisons or starves it.

Each test reproduces one defect of the issue; on the code before the fix each of them failed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit import ConfigError
from supervit.auth import Action, build_payload, registration_fingerprint
from supervit.protocol import supervisor_pb2
from supervit.supervisor import SUPERVISOR_DB_FILENAME, _ingest
from tests.conftest import OTHER_SECRET_HEX
from tests.supervisor.conftest import NodeSim, make_config

Started = Callable[..., Any]
Channels = Callable[[str], grpc.aio.Channel]
Admins = Callable[..., Any]


def _bad_utf8(message: Any, field_number: int, raw: bytes = b"\xff\xfe") -> bytes:
    """``message`` serialized with one more string field (appended, so it wins) holding ``raw``."""
    tag = bytes([(field_number << 3) | 2])
    return message.SerializeToString() + tag + bytes([len(raw)]) + raw


async def _call_raw(channel: grpc.aio.Channel, method: str, body: bytes) -> grpc.aio.AioRpcError | bytes:
    call = channel.unary_unary(f"/supervisor.v1.SupervisorService/{method}")
    try:
        return bytes(await call(body))
    except grpc.aio.AioRpcError as exc:
        return exc


async def test_signed_report_with_unstorable_version_is_refused_and_nothing_is_bricked(
    tmp_path: Path, started: Started, channel_to: Channels, admin_to: Admins
) -> None:
    """realm_sync_version = 2**63 used to be acknowledged, then fail every fold and every restart."""
    config = make_config(tmp_path)
    sup = await started(config)
    node = NodeSim(channel_to(sup.address), "n1")
    await node.register()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.report(realm_sync_version=2**63)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ReportRequest.realm_sync_version" in (info.value.details() or "")
    assert "9223372036854775807" in (info.value.details() or "")
    assert (await node.report(realm_sync_version=2**63 - 1)).received  # the largest storable value passes
    await sup.ingest.flush()
    listing = await admin_to(sup.admin_address).list_nodes()
    assert [(n.node_id, n.state, n.realm_sync_version) for n in listing.nodes] == [("n1", "online", 2**63 - 1)]
    await sup.stop(0)
    again = await started(make_config(tmp_path))
    assert (await NodeSim(channel_to(again.address), "n1").report()).received


async def test_one_nodes_non_utf8_report_fails_no_other_nodes_report(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    sup = await started(make_config(tmp_path))
    channel = channel_to(sup.address)
    nodes = [NodeSim(channel, f"n{i}") for i in range(8)]
    await asyncio.gather(*(n.register() for n in nodes))
    bad = NodeSim(channel, "bad")
    await bad.register()
    for _ in range(5):
        good_calls = [n.report() for n in nodes]
        bad_call = _call_raw(channel, "Report", _bad_utf8(bad.report_request(), 5))
        *answers, refused = await asyncio.gather(*good_calls, bad_call)
        assert all(a.received for a in answers)
        assert isinstance(refused, grpc.aio.AioRpcError)
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.details() == "ReportRequest.name is not valid UTF-8"


@pytest.mark.parametrize(
    ("field_number", "name"),
    [(2, "name"), (3, "location_tag"), (4, "version"), (5, "agent_addr"), (8, "location"), (9, "service_tags[0]")],
)
async def test_non_utf8_registration_fields_are_invalid_argument_and_listings_stay_healthy(
    tmp_path: Path, started: Started, channel_to: Channels, admin_to: Admins, field_number: int, name: str
) -> None:
    sup = await started(make_config(tmp_path))
    channel = channel_to(sup.address)
    node = NodeSim(channel, "n1")
    await node.register()
    request = node.register_request(service_tags=[]) if field_number == 9 else node.register_request()
    answer = await _call_raw(channel, "RegisterNode", _bad_utf8(request, field_number))
    assert isinstance(answer, grpc.aio.AioRpcError)
    assert answer.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert answer.details() == f"RegisterNodeRequest.{name} is not valid UTF-8"
    listing = await admin_to(sup.admin_address).list_nodes()
    assert [n.node_id for n in listing.nodes] == ["n1"]


async def test_unauthenticated_non_utf8_service_tag_is_invalid_argument_without_traceback(
    tmp_path: Path, started: Started, channel_to: Channels, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong secret plus a non-UTF-8 service tag used to be UNKNOWN (TypeError in the fingerprint)."""
    sup = await started(make_config(tmp_path))
    channel = channel_to(sup.address)
    stranger = NodeSim(channel, "n1", OTHER_SECRET_HEX)
    body = _bad_utf8(stranger.register_request(service_tags=[]), 9)
    with caplog.at_level(logging.INFO):
        answers = await asyncio.gather(*(_call_raw(channel, "RegisterNode", body) for _ in range(50)))
    assert {a.code() for a in answers if isinstance(a, grpc.aio.AioRpcError)} == {grpc.StatusCode.INVALID_ARGUMENT}
    assert not [r for r in caplog.records if r.exc_info]
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) <= 6  # rate-limited: a burst, then counts only


async def test_huge_tag_lists_are_refused_before_the_fingerprint(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    sup = await started(make_config(tmp_path))
    channel = channel_to(sup.address)
    stranger = NodeSim(channel, "n1", OTHER_SECRET_HEX)
    within_size = stranger.register_request(service_tags=[f"t{i}" for i in range(65)])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stranger.stub.RegisterNode(within_size)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "RegisterNodeRequest.service_tags has more than 64 items (got 65)"
    oversize = stranger.register_request(service_tags=[f"tag-{i}" for i in range(350_000)])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stranger.stub.RegisterNode(oversize)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_long_nonce_is_refused(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    request = node.register_request()
    nonce = "x" * 3000
    payload = build_payload(Action.REGISTER, "n1", registration_fingerprint(request))
    request.credential.CopyFrom(node.signer.credential(payload, nonce=nonce))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.RegisterNode(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "RegisterNodeRequest.credential.nonce is longer than 64 bytes"


async def test_a_nonce_is_single_use_across_every_rpc(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    registration = node.register_request()
    await node.stub.RegisterNode(registration)
    nonce = registration.credential.nonce
    report = node.report_request()
    report.credential.CopyFrom(
        node.signer.credential(f"report:n1:{report.timestamp}", timestamp=report.timestamp, nonce=nonce)
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.Report(report)
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, "nonce already used")

    health = supervisor_pb2.HealthCheckRequest(node_id="n1")
    health.credential.CopyFrom(node.signer.credential("health_check:n1"))
    await node.stub.HealthCheck(health)
    again = node.register_request()
    payload = build_payload(Action.REGISTER, "n1", registration_fingerprint(again))
    again.credential.CopyFrom(node.signer.credential(payload, nonce=health.credential.nonce))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.RegisterNode(again)
    assert info.value.details() == "nonce already used"


def _log_bad_report(db_path: Path, good_row: list[Any], node_id: str) -> None:
    """Append, as an older version did, an acknowledged but unfoldable report of ``node_id``."""
    bad = [*good_row]
    bad[6] = 2**63  # realm_sync_version: beyond SQLite INTEGER
    bad[-1] = node_id
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO report_log (expires_at, nonces, reports) VALUES (?, ?, ?)",
            (2**40, json.dumps(["legacy-nonce"]), json.dumps([bad, good_row])),
        )


async def test_an_unfoldable_logged_report_is_quarantined_and_the_supervisor_starts(
    tmp_path: Path, started: Started, channel_to: Channels, admin_to: Admins, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path)
    sup = await started(config)
    channel = channel_to(sup.address)
    good, bad = NodeSim(channel, "good"), NodeSim(channel, "bad")
    await good.register()
    await bad.register()
    await sup.stop(0)
    blob = base64.b64encode(b"").decode()
    good_row = ["good name", "lab", "1.2.3", blob, 1_700_000_000, 2, 77, 2, "good"]
    _log_bad_report(config.server.data_dir / SUPERVISOR_DB_FILENAME, good_row, "bad")

    with caplog.at_level(logging.ERROR):
        again = await started(make_config(tmp_path))
    assert any("quarantined" in r.getMessage() and "'bad'" in r.getMessage() for r in caplog.records)
    listing = await admin_to(again.admin_address).list_nodes()
    versions = {n.node_id: n.realm_sync_version for n in listing.nodes}
    assert versions == {"bad": 0, "good": 77}
    assert (await NodeSim(channel_to(again.address), "bad").report()).received  # the node itself keeps working


async def test_a_fold_that_cannot_apply_one_node_applies_the_others(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    sup = await started(make_config(tmp_path))
    channel = channel_to(sup.address)
    good, bad = NodeSim(channel, "good"), NodeSim(channel, "bad")
    await good.register()
    await bad.register()
    await good.report(realm_sync_version=5)
    # A row only an older version could have accepted, injected where the fold takes its rows.
    report, _ = sup.ingest._unfolded["good"]
    request = supervisor_pb2.ReportRequest()
    request.CopyFrom(report.request)
    request.node_id, request.realm_sync_version = "bad", 2**63  # beyond SQLite INTEGER
    _ingest._fold_into(sup.ingest._unfolded, report._replace(request=request))
    await sup.ingest.flush()
    rows = {n.node_id: n.realm_sync_version for n in await sup.registry.nodes()}
    assert rows == {"bad": 0, "good": 5}
    assert not sup.ingest._unfolded


async def test_poisoned_registry_rows_are_left_out_of_listings(
    tmp_path: Path, started: Started, channel_to: Channels, admin_to: Admins, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows an older version stored (non-UTF-8 text, an unparsable location) no longer break ListNodes."""
    config = make_config(tmp_path)
    sup = await started(config)
    channel = channel_to(sup.address)
    for node_id in ("a", "b", "c"):
        await NodeSim(channel, node_id).register()
    await sup.stop(0)
    reg = supervisor_pb2.RegisterNodeRequest(
        node_id="c", name="c", location_tag="lab", version="1", agent_addr="127.0.0.1:1"
    ).SerializePartialToString()
    with sqlite3.connect(config.server.data_dir / SUPERVISOR_DB_FILENAME) as conn:
        conn.execute("UPDATE nodes SET name = CAST(x'ff41' AS TEXT) WHERE node_id = 'a'")
        conn.execute("UPDATE nodes SET registration = ? WHERE node_id = 'c'", (reg + b"\x42\x01\xff",))
    with caplog.at_level(logging.ERROR):
        again = await started(make_config(tmp_path))
        listing = await admin_to(again.admin_address).list_nodes()
    assert [n.node_id for n in listing.nodes] == ["b"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("quarantined" in m and "'a'" in m for m in messages)
    assert any("quarantined" in m and "'c'" in m for m in messages)


async def test_stored_requests_drop_unknown_fields(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    sup = await started(make_config(tmp_path))
    channel = channel_to(sup.address)
    node = NodeSim(channel, "n1")
    request = node.register_request()
    body = request.SerializeToString() + b"\xfa\x3f\x05junk!"  # field 1007, unknown to everyone
    answer = await _call_raw(channel, "RegisterNode", body)
    assert isinstance(answer, bytes)
    record = await sup.registry.get("n1")
    assert record is not None
    assert b"junk!" not in record.registration.SerializePartialToString()


async def test_a_second_supervisor_on_the_same_data_dir_refuses_to_start(tmp_path: Path, started: Started) -> None:
    first = await started(make_config(tmp_path))
    with pytest.raises(ConfigError) as info:
        await started(make_config(tmp_path))
    assert info.value.key == "server.data_dir"
    assert "in use by another supervit process" in str(info.value)
    await first.stop(0)
    await started(make_config(tmp_path))  # released on stop


async def test_security_overrides_apply_and_unknown_keys_are_refused(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    config = make_config(tmp_path, security={"max_bytes": {"RegisterNodeRequest.name": 4}, "max_concurrent_rpcs": 8})
    assert config.service_limits.max_bytes["RegisterNodeRequest.name"] == 4
    sup = await started(config)
    node = NodeSim(channel_to(sup.address), "n1")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.register(name="too long")
    assert info.value.details() == "RegisterNodeRequest.name is longer than 4 bytes"
    assert (await node.register(name="ok")).success
    for key, table in (("Nope.name", "max_bytes"), ("RegisterNodeRequest.name", "max_count")):
        with pytest.raises(ConfigError) as refused:
            make_config(tmp_path, security={table: {key: 1}})
        assert refused.value.key == f"security.{table}.{key}"
    with pytest.raises(ConfigError) as refused:
        make_config(tmp_path, security={"max_concurrent_rpcs": 0})
    assert refused.value.key == "security.max_concurrent_rpcs"


async def test_health_turns_not_serving_while_the_database_cannot_write(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    sup = await started(make_config(tmp_path))
    channel = channel_to(sup.address)
    health = health_pb2_grpc.HealthStub(channel)

    async def status() -> int:
        return int((await health.Check(health_pb2.HealthCheckRequest(service=""))).status)

    node = NodeSim(channel, "n1")
    await node.register()
    conn = sup.store.database._conn
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL, as on a full disk
    failed = None
    for _ in range(3000):
        try:
            await node.health()
        except grpc.aio.AioRpcError as exc:
            failed = exc
            break
    assert failed is not None and failed.code() == grpc.StatusCode.INTERNAL
    deadline = asyncio.get_running_loop().time() + 10  # a probe confirms the failure first
    while await status() != health_pb2.HealthCheckResponse.NOT_SERVING:
        assert asyncio.get_running_loop().time() < deadline, "health stayed SERVING"
        await asyncio.sleep(0.05)
    conn.execute("PRAGMA max_page_count = 1073741823")
    deadline = asyncio.get_running_loop().time() + 10
    while await status() != health_pb2.HealthCheckResponse.SERVING:
        assert asyncio.get_running_loop().time() < deadline, "health did not recover"
        await asyncio.sleep(0.1)
    assert (await node.report()).received


async def test_one_refused_item_does_not_turn_health_not_serving() -> None:
    from supervit import StorageError
    from supervit.rpc import StorageHealth

    probes: list[int] = []

    async def probe() -> None:
        probes.append(1)  # the store writes fine

    health = StorageHealth(probe, interval_secs=0.01)
    health.failed(StorageError("report not stored: one bad item"))
    for _ in range(100):
        if probes:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert probes and health.serving
    await health.close()
