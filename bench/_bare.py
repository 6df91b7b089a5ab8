"""The floor: a bare grpc.aio server answering the same RPCs with no auth and no storage.

Run as ``python bench/_bare.py --port 0``; prints ``bare server listening on 127.0.0.1:PORT``.
It uses grpcio's generated registration (the cheapest path grpcio offers) and returns prebuilt
responses, so the ratio supervit ÷ bare isolates what supervit adds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from typing import Any

import grpc

from supervit.protocol import (
    common_pb2,
    supervised_pb2,
    supervised_pb2_grpc,
    supervisor_pb2,
    supervisor_pb2_grpc,
)
from supervit.rpc import EVENT_LOOP_ENV, run_serving

_REALM = common_pb2.RealmInfo(
    realm_id=1, name="bare", enabled=True, created_at=1, updated_at=1, version=1, expires_at=0, status="Normal"
)


class BareSupervised(supervised_pb2_grpc.SupervisedServiceServicer):
    async def GetRealm(self, request: Any, context: Any) -> supervised_pb2.GetRealmResponse:
        realm = common_pb2.RealmInfo()
        realm.CopyFrom(_REALM)
        realm.realm_id = request.realm_id
        return supervised_pb2.GetRealmResponse(success=True, realm=realm)

    async def CreateRealm(self, request: Any, context: Any) -> supervised_pb2.CreateRealmResponse:
        realm = common_pb2.RealmInfo(
            realm_id=request.realm_id, name=request.name, enabled=request.enabled, created_at=int(time.time()),
            version=request.version, expires_at=request.expires_at, status="Normal",
        )  # fmt: skip
        realm.use_servers.extend(request.use_servers)
        return supervised_pb2.CreateRealmResponse(success=True, realm=realm)


class BareSupervisor(supervisor_pb2_grpc.SupervisorServiceServicer):
    async def Report(self, request: Any, context: Any) -> supervisor_pb2.ReportResponse:
        return supervisor_pb2.ReportResponse(
            received=True, server_timestamp=int(time.time()), next_report_interval_secs=60
        )

    async def HealthCheck(self, request: Any, context: Any) -> supervisor_pb2.HealthCheckResponse:
        return supervisor_pb2.HealthCheckResponse(healthy=True, server_timestamp=int(time.time()), latency_ms=0)


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server()
    supervised_pb2_grpc.add_SupervisedServiceServicer_to_server(BareSupervised(), server)
    supervisor_pb2_grpc.add_SupervisorServiceServicer_to_server(BareSupervisor(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"bare server listening on {host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    ns = parser.parse_args()
    # The same loop as the supervit daemons of the run (SUPERVIT_EVENT_LOOP, default auto).
    run_serving(serve(ns.host, ns.port), event_loop=os.environ.get(EVENT_LOOP_ENV, "auto"))


if __name__ == "__main__":
    main()
