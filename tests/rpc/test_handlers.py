"""service_handler: a servicer's incomplete response is an INTERNAL naming the message, once per call."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest

from supervit.protocol import common_pb2, supervisor_pb2, supervisor_pb2_grpc
from supervit.rpc import service_handler


class _Careless(supervisor_pb2_grpc.SupervisorServiceServicer):
    def __init__(self) -> None:
        self.complete = False

    async def HealthCheck(self, request: Any, context: Any) -> supervisor_pb2.HealthCheckResponse:
        if self.complete:
            return supervisor_pb2.HealthCheckResponse(healthy=True, server_timestamp=1, latency_ms=0)
        return supervisor_pb2.HealthCheckResponse(healthy=True)  # server_timestamp, latency_ms missing


async def test_an_incomplete_response_is_internal_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    servicer = _Careless()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (service_handler(supervisor_pb2.DESCRIPTOR.services_by_name["SupervisorService"], servicer),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    request = supervisor_pb2.HealthCheckRequest(
        node_id="n-1", credential=common_pb2.NonceCredential(timestamp=1, nonce="n", signature="s")
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
            with (
                caplog.at_level(logging.ERROR, logger="supervit.rpc._handlers"),
                pytest.raises(grpc.aio.AioRpcError) as info,
            ):
                await stub.HealthCheck(request, timeout=10)
            assert info.value.code() == grpc.StatusCode.INTERNAL
            assert info.value.details() == "server produced an incomplete HealthCheckResponse"
            assert "server_timestamp" in caplog.text and "latency_ms" in caplog.text
            servicer.complete = True
            assert (await stub.HealthCheck(request, timeout=10)).server_timestamp == 1
    finally:
        await server.stop(None)
