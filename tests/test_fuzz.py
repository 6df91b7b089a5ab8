"""Seeded fuzzing of every RPC of SupervisedService, SupervisorService and SupervisorAdmin (issue 10).

Each service gets one real in-process server and at least 2,000 cases spread over its RPCs, sent
as raw bytes in concurrent batches. A case starts from a valid request and applies hostile
mutations, chosen by a seeded generator from the message descriptors:

* field values at the edges: empty and oversize strings, unusual Unicode, integer extremes of each
  type (2**63, 2**64 - 1, ...), NaN and infinities, out-of-place enum values, long repeated fields;
* bytes that Python cannot produce through the API: non-UTF-8 strings anywhere in the message
  (nested ones included), truncation, flipped bytes, garbage, invalid wire types, oversize bodies;
* most cases are then re-signed with the right secret, so they pass authentication and reach
  the storage and business logic; the others keep a stale or wrong credential;
* some carry a garbage ``x-supervit-body-mac`` header.

No answer may be UNKNOWN or INTERNAL, and the server must answer a valid request afterwards (and
its health must still be SERVING). ``SUPERVIT_FUZZ_SEED`` changes the seed (reproduce a failure
with the seed it reports), ``SUPERVIT_FUZZ_CASES`` the number of cases per service (deeper runs).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as _descriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from supervit.auth import BODY_MAC_METADATA_KEY, SharedSecret, Signer, SqliteNonceStorage, request_payload
from supervit.protocol import common_pb2, supervised_pb2, supervisor_pb2, supervit_admin_pb2
from supervit.rpc import StorageHealth
from supervit.supervisor import Supervisor, admin_payload
from tests.conftest import OTHER_SECRET_HEX, SECRET_HEX
from tests.node._helpers import NODE_ID, running_node
from tests.supervisor.conftest import ADMIN_HEX, make_config

SEED = int(os.environ.get("SUPERVIT_FUZZ_SEED", "20261129"))
CASES_PER_SERVICE = int(os.environ.get("SUPERVIT_FUZZ_CASES", "2000"))
CONCURRENCY = 32
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}

_FD = _descriptor.FieldDescriptor
_INT_EDGES = {
    _FD.TYPE_INT32: [0, 1, -1, 2**31 - 1, -(2**31)],
    _FD.TYPE_SINT32: [0, -1, 2**31 - 1, -(2**31)],
    _FD.TYPE_SFIXED32: [0, -1, 2**31 - 1, -(2**31)],
    _FD.TYPE_UINT32: [0, 1, 5, 6, 2**31, 2**32 - 1],
    _FD.TYPE_FIXED32: [0, 1, 2**32 - 1],
    _FD.TYPE_INT64: [0, -1, 2**63 - 1, -(2**63), 2**53 + 1],
    _FD.TYPE_SINT64: [0, -1, 2**63 - 1, -(2**63)],
    _FD.TYPE_SFIXED64: [0, -1, 2**63 - 1, -(2**63)],
    _FD.TYPE_UINT64: [0, 1, 2**63 - 1, 2**63, 2**64 - 1],
    _FD.TYPE_FIXED64: [0, 2**63, 2**64 - 1],
}
_STRINGS = [
    "",
    " ",
    "\x00",
    "é" * 130,
    "\U0001f600" * 70,
    "../../etc/passwd",
    "'; DROP TABLE nodes; --",
    "%s%n%x",
    "\u202e\ufeff",
    "host:port:extra",
    "[::1]:0",
]
_BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"ok\xfe", b"\x80" * 70]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    head = _varint((number << 3) | wire)
    return head + (_varint(len(payload)) + payload if wire == 2 else payload)


class Mutator:
    """Hostile variations of valid requests, driven by the descriptors and one seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def _string(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4:
            return rng.choice(_STRINGS)
        if roll < 0.8:
            return "x" * rng.choice([1, 36, 63, 64, 65, 127, 128, 129, 255, 256, 257, 300, 301, 1024, 1025, 5000])
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0xA0, 0xD7FF)])) for _ in range(20))

    def _scalar(self, fd: Any) -> Any:
        rng = self.rng
        if fd.type == _FD.TYPE_STRING:
            return self._string()
        if fd.type == _FD.TYPE_BYTES:
            return rng.randbytes(rng.choice([0, 1, 100]))
        if fd.type in _INT_EDGES:
            return rng.choice(_INT_EDGES[fd.type])
        if fd.type in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
            return rng.choice([0.0, -0.0, math.nan, math.inf, -math.inf, 1e308, -1.5])
        if fd.type == _FD.TYPE_BOOL:
            return rng.random() < 0.5
        if fd.type == _FD.TYPE_ENUM:
            return rng.choice([v.number for v in fd.enum_type.values])
        raise AssertionError(fd.type)

    def mutate(self, message: Message, depth: int = 0) -> None:
        """Change one random field of ``message`` (recursing into sub-messages)."""
        rng = self.rng
        fd = rng.choice(message.DESCRIPTOR.fields)
        if fd.type == _FD.TYPE_MESSAGE:
            if fd.is_repeated:
                container = getattr(message, fd.name)
                for _ in range(rng.choice([1, 1, 2, 65, 120]) if depth == 0 else 1):
                    item = container.add()
                    if rng.random() < 0.8:
                        _fill_required(item, self)
                if len(container) and depth < 2:
                    self.mutate(container[0], depth + 1)
            elif rng.random() < 0.15:
                message.ClearField(fd.name)  # a required sub-message goes missing
            elif depth < 3:
                self.mutate(getattr(message, fd.name), depth + 1)
            return
        if fd.is_repeated:
            count = rng.choice([0, 1, 2, 16, 17, 32, 33, 64, 65, 300])
            container = getattr(message, fd.name)
            del container[:]
            container.extend(self._scalar(fd) for _ in range(count))
            return
        if fd.is_required and rng.random() < 0.1:
            message.ClearField(fd.name)
            return
        setattr(message, fd.name, self._scalar(fd))

    def bad_utf8(self, descriptor: Any, message: Message | None, depth: int = 0) -> bytes:
        """Bytes that, appended to ``message``'s encoding, make one (maybe nested) string non-UTF-8."""
        rng = self.rng
        strings = [fd for fd in descriptor.fields if fd.type == _FD.TYPE_STRING]
        nested = [fd for fd in descriptor.fields if fd.type == _FD.TYPE_MESSAGE]
        if nested and depth < 3 and (not strings or rng.random() < 0.4):
            fd = rng.choice(nested)
            inner: Message
            if fd.is_repeated:
                items = getattr(message, fd.name) if message is not None else []
                inner = items[0] if len(items) else _filled(fd.message_type, self)
            elif message is not None and message.HasField(fd.name):
                inner = getattr(message, fd.name)
            else:
                inner = _filled(fd.message_type, self)
            body = inner.SerializePartialToString() + self.bad_utf8(fd.message_type, inner, depth + 1)
            return _field(fd.number, 2, body)
        if not strings:
            return b""
        fd = rng.choice(strings)
        return _field(fd.number, 2, rng.choice(_BAD_UTF8))

    def corrupt(self, raw: bytes) -> bytes:
        """Malformed bytes: truncated, flipped, invalid wire types, garbage, or oversize."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.25 and raw:
            return raw[: rng.randrange(len(raw))]
        if roll < 0.5 and raw:
            data = bytearray(raw)
            for _ in range(rng.choice([1, 2, 5])):
                data[rng.randrange(len(data))] = rng.randrange(256)
            return bytes(data)
        if roll < 0.65:
            return raw + _varint((rng.randrange(1, 30) << 3) | rng.choice([3, 4, 6, 7]))
        if roll < 0.8:
            return rng.randbytes(rng.choice([1, 7, 64, 1000]))
        if roll < 0.9:  # a length prefix claiming far more than follows
            return raw + _varint((1 << 3) | 2) + _varint(2**31)
        return raw + _field(rng.choice([2, 3, 5]), 2, b"x" * rng.choice([70_000, 300_000, 1_200_000]))


def _fill_required(message: Message, mutator: Mutator) -> None:
    for fd in message.DESCRIPTOR.fields:
        if fd.is_required and not message.HasField(fd.name):
            if fd.type == _FD.TYPE_MESSAGE:
                _fill_required(getattr(message, fd.name), mutator)
            elif fd.type == _FD.TYPE_STRING:
                setattr(message, fd.name, "v")
            elif fd.type == _FD.TYPE_ENUM:
                setattr(message, fd.name, fd.enum_type.values[-1].number)
            elif fd.type == _FD.TYPE_BOOL:
                setattr(message, fd.name, True)
            elif fd.type in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
                setattr(message, fd.name, 1.0)
            else:
                setattr(message, fd.name, 1)


def _filled(descriptor: Any, mutator: Mutator) -> Message:
    from google.protobuf import message_factory

    message: Message = message_factory.GetMessageClass(descriptor)()
    _fill_required(message, mutator)
    return message


@dataclass
class Target:
    """One service under test: its RPCs (name → valid request factory) and how to sign."""

    service: str
    channel: grpc.aio.Channel
    templates: dict[str, Callable[[], Message]]
    sign: Callable[[Message, bool], None]
    """sign(request, correctly): a fresh credential, with the right secret or a wrong one."""


async def _fuzz(target: Target, seed: int) -> Counter[tuple[str, str]]:
    rng = random.Random(seed)
    mutator = Mutator(rng)
    methods = sorted(target.templates)
    cases: list[tuple[str, bytes, tuple[tuple[str, str], ...]]] = []
    for i in range(CASES_PER_SERVICE):
        method = methods[i % len(methods)]
        request = target.templates[method]()
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            mutator.mutate(request)
        roll = rng.random()
        if roll < 0.75:
            target.sign(request, True)  # re-signed: reaches the servicer
        elif roll < 0.9:
            target.sign(request, False)
        raw = request.SerializePartialToString()
        roll = rng.random()
        if roll < 0.35:
            raw += mutator.bad_utf8(request.DESCRIPTOR, request)
        elif roll < 0.55:
            raw = mutator.corrupt(raw)
        roll = rng.random()
        metadata: tuple[tuple[str, str], ...] = ()
        if roll < 0.1:  # the body MAC extension: garbage, a wrong MAC, odd base64
            metadata = ((BODY_MAC_METADATA_KEY, rng.choice(["", "=", "!!!", "QUJD", "A" * 44, "x" * 5000])),)
        cases.append((method, raw, metadata))

    outcomes: Counter[tuple[str, str]] = Counter()
    calls = {m: target.channel.unary_unary(f"/{target.service}/{m}") for m in methods}
    queue = iter(enumerate(cases))

    async def worker() -> None:
        for index, (method, raw, metadata) in queue:
            try:
                await calls[method](raw, timeout=20, metadata=metadata)
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                assert code not in FORBIDDEN, (
                    f"{target.service}/{method} case {index} (seed {seed}): {code.name} {exc.details()!r}; "
                    f"request bytes {raw[:200].hex()}"
                )
            outcomes[(method, code.name)] += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return outcomes


async def _assert_alive(target: Target, valid_call: Callable[[], Awaitable[Any]]) -> None:
    answer = await health_pb2_grpc.HealthStub(target.channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    await valid_call()


def _report_counts(outcomes: Counter[tuple[str, str]], methods: list[str], *, ok_for: list[str] | None = None) -> None:
    total = sum(outcomes.values())
    assert total >= CASES_PER_SERVICE
    for method in methods:
        # Every RPC was exercised, and some cases got all the way through the servicer.
        assert sum(n for (m, _), n in outcomes.items() if m == method) >= CASES_PER_SERVICE // len(methods)
    for method in methods if ok_for is None else ok_for:
        assert outcomes[(method, "OK")] > 0, f"{method}: no case reached the servicer: {outcomes}"


# -- SupervisedService (a node) ------------------------------------------------------------------


def _node_templates() -> dict[str, Callable[[], Message]]:
    sd = supervised_pb2
    return {
        "UpdateConfig": lambda: sd.UpdateConfigRequest(
            config_type=common_pb2.CUSTOM, config_key="fuzz", config_value="v", apply_immediately=False
        ),
        "GetConfig": lambda: sd.GetConfigRequest(config_type=common_pb2.CUSTOM, config_key="fuzz"),
        "CreateRealm": lambda: sd.CreateRealmRequest(
            realm_id=random.randrange(1, 2**32), name="r", enabled=True, use_servers=[2], version=1, expires_at=0
        ),
        "GetRealm": lambda: sd.GetRealmRequest(realm_id=1),
        "UpdateRealm": lambda: sd.UpdateRealmRequest(realm_id=1, name="renamed"),
        "DeleteRealm": lambda: sd.DeleteRealmRequest(realm_id=2),
        "ListRealms": lambda: sd.ListRealmsRequest(page_size=3),
        "GetNodeInfo": sd.GetNodeInfoRequest,
        "Shutdown": lambda: sd.ShutdownRequest(graceful=True, timeout_secs=1, reason="fuzz"),
    }


@pytest.fixture
def restore_log_levels() -> Iterator[None]:
    """UpdateConfig may apply LOG_LEVEL live: put the levels back after the test."""
    loggers = [logging.getLogger(), logging.getLogger("supervit")]
    saved = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, saved, strict=True):
        logger.setLevel(level)


async def test_fuzz_supervised_service(tmp_path: Path, restore_log_levels: None) -> None:
    random.seed(SEED)  # the CreateRealm template's ids
    good = Signer(SharedSecret.from_hex(SECRET_HEX))
    bad = Signer(SharedSecret.from_hex(OTHER_SECRET_HEX))

    def sign(request: Message, correctly: bool) -> None:
        try:
            payload = request_payload(request, NODE_ID)
        except (TypeError, ValueError):
            payload = "unsignable"
        request.credential.CopyFrom((good if correctly else bad).credential(payload))  # type: ignore[attr-defined]

    nonces = await SqliteNonceStorage.open(tmp_path / "nonces")
    async with running_node(tmp_path / "node", max_message_bytes=4 * 1024 * 1024, nonces=nonces) as node:
        StorageHealth(lambda: node.nonces.consume("probe", 0)).attach(node.server)
        target = Target("supervisor.v1.SupervisedService", node.channel, _node_templates(), sign)
        outcomes = await _fuzz(target, SEED)
        _report_counts(outcomes, sorted(target.templates))
        await _assert_alive(target, lambda: node.client.call(supervised_pb2.ListRealmsRequest()))


# -- SupervisorService and SupervisorAdmin (the supervisor) --------------------------------------


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    sup = Supervisor(make_config(tmp_path))
    await sup.start()
    yield sup
    await sup.stop(0)


def _registration(node_id: str) -> supervisor_pb2.RegisterNodeRequest:
    return supervisor_pb2.RegisterNodeRequest(
        node_id=node_id,
        name="fuzz node",
        location_tag="lab",
        version="1.0",
        agent_addr="127.0.0.1:9",
        location="rack",
        service_tags=["a", "b"],
        power_reserve_level_init=3,
        services=[
            supervisor_pb2.ServiceAdvertisement(
                name="turn", type=2, domain_name="t.example", port_info="3478", status=1, tags=["udp"]
            )
        ],
    )


def _report(node_id: str) -> supervisor_pb2.ReportRequest:
    report = supervisor_pb2.ReportRequest(
        node_id=node_id, timestamp=0, location_tag="lab", version="1.0", name="fuzz node",
        power_reserve_level=3, realm_sync_version=0,
    )  # fmt: skip
    _fill_required(report.metrics, Mutator(random.Random(0)))
    report.services.add(
        name="turn", type=2, is_healthy=True, active_connections=1, total_requests=2, failed_requests=0,
        average_latency_ms=1.0,
    )  # fmt: skip
    return report


async def test_fuzz_supervisor_service(supervisor: Supervisor) -> None:
    good = Signer(SharedSecret.from_hex(SECRET_HEX))
    bad = Signer(SharedSecret.from_hex(OTHER_SECRET_HEX))

    def sign(request: Message, correctly: bool) -> None:
        signer = good if correctly else bad
        if isinstance(request, supervisor_pb2.ReportRequest):
            request.timestamp = signer.now() if request.timestamp == 0 else request.timestamp
        try:
            payload = request_payload(request)
        except (TypeError, ValueError):
            payload = "unsignable"
        request.credential.CopyFrom(signer.credential(payload))  # type: ignore[attr-defined]

    channel = grpc.aio.insecure_channel(supervisor.address or "")
    try:
        first = _registration("fuzz-node")
        sign(first, True)
        call = channel.unary_unary("/supervisor.v1.SupervisorService/RegisterNode")
        await call(first.SerializeToString())
        templates: dict[str, Callable[[], Message]] = {
            "RegisterNode": lambda: _registration("fuzz-node"),
            "Report": lambda: _report("fuzz-node"),
            "HealthCheck": lambda: supervisor_pb2.HealthCheckRequest(node_id="fuzz-node"),
        }
        target = Target("supervisor.v1.SupervisorService", channel, templates, sign)
        outcomes = await _fuzz(target, SEED + 1)
        _report_counts(outcomes, sorted(templates))

        async def valid() -> None:
            report = _report("fuzz-node")
            sign(report, True)
            await channel.unary_unary("/supervisor.v1.SupervisorService/Report")(report.SerializeToString())
            await supervisor.ingest.flush()
            assert await supervisor.registry.get("fuzz-node") is not None
            assert len(await supervisor.registry.nodes()) >= 1

        await _assert_alive(target, valid)
    finally:
        await channel.close(None)


async def test_fuzz_admin_service(supervisor: Supervisor) -> None:
    good = Signer(SharedSecret.from_hex(ADMIN_HEX))
    bad = Signer(SharedSecret.from_hex(SECRET_HEX))  # a node's secret is not the admin's

    def sign(request: Message, correctly: bool) -> None:
        request.credential.CopyFrom((good if correctly else bad).credential(admin_payload(request)))  # type: ignore[attr-defined]

    pb = supervit_admin_pb2
    templates: dict[str, Callable[[], Message]] = {
        "ListNodes": lambda: pb.ListNodesRequest(page_size=2),
        "EnqueueDirective": lambda: pb.EnqueueDirectiveRequest(node_id="nobody", type=2),
        "ListCatalog": pb.ListCatalogRequest,
        "PutCatalogRealm": lambda: pb.PutCatalogRealmRequest(
            realm_id=random.randrange(1, 2**32), mode=pb.PUT_MODE_CREATE, name="r", use_servers=[2]
        ),
        "RemoveCatalogRealm": lambda: pb.RemoveCatalogRealmRequest(realm_id=random.randrange(1, 50)),
    }
    random.seed(SEED + 2)
    channel = grpc.aio.insecure_channel(supervisor.admin_address or "")
    try:
        target = Target("supervit.admin.v1.SupervisorAdmin", channel, templates, sign)
        outcomes = await _fuzz(target, SEED + 2)
        # EnqueueDirective to an unknown node is NOT_FOUND at best: it reaches the servicer all the same.
        assert outcomes[("EnqueueDirective", "NOT_FOUND")] > 0
        _report_counts(outcomes, sorted(templates), ok_for=sorted(set(templates) - {"EnqueueDirective"}))
        listing = pb.ListNodesRequest()
        sign(listing, True)
        await _assert_alive(target, lambda: channel.unary_unary("/supervit.admin.v1.SupervisorAdmin/ListNodes")(
            listing.SerializeToString()
        ))  # fmt: skip
    finally:
        await channel.close(None)
