"""TLS and mTLS: nodes reaching the supervisor, the supervisor pushing to a TLS node."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit.config import load_node_config
from supervit.metrics import StaticMetricsProvider
from supervit.node import NodeDaemon
from tests.conftest import SECRET_HEX
from tests.supervisor.conftest import NodeSim, make_config
from tests.supervisor.test_push import METRICS
from tests.tls_certs import generate_tls_files

Started = Callable[..., Any]


def secure(address: str, files: Any, *, client: bool) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(
        files.ca_cert.read_bytes(),
        files.client_key.read_bytes() if client else None,
        files.client_cert.read_bytes() if client else None,
    )
    return grpc.aio.secure_channel(address, creds)


async def test_supervisor_over_mtls(tmp_path: Path, started: Started) -> None:
    """With tls_client_ca, a node with a client certificate registers; one without is refused."""
    files = generate_tls_files(tmp_path / "tls")
    server = {"tls_cert": str(files.server_cert), "tls_key": str(files.server_key), "tls_client_ca": str(files.ca_cert)}
    sup = await started(make_config(tmp_path, server=server))
    async with secure(sup.address, files, client=True) as channel:
        assert (await NodeSim(channel, "n1").register()).success
    async with secure(sup.address, files, client=False) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await NodeSim(channel, "n2").register()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    async with grpc.aio.insecure_channel(sup.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await NodeSim(channel, "n3").register()


async def test_push_to_a_tls_node(tmp_path: Path, started: Started) -> None:
    """[push] enable_tls + ca_cert (+ client cert for mTLS) reaches a node serving mTLS."""
    files = generate_tls_files(tmp_path / "tls")
    push = {
        "enable_tls": True,
        "ca_cert": str(files.ca_cert),
        "client_cert": str(files.client_cert),
        "client_key": str(files.client_key),
    }
    sup = await started(make_config(tmp_path, push=push))
    node_data = {
        "supervisor": {
            "metrics": {"listen": "127.0.0.1:0"},
            "client": {"node_id": "a", "shared_secret": SECRET_HEX},
            "supervisord": {
                "ip": "127.0.0.1",
                "port": 0,
                "data_dir": str(tmp_path / "node"),
                "tls_cert": str(files.server_cert),
                "tls_key": str(files.server_key),
                "tls_client_ca": str(files.ca_cert),
            },
        }
    }
    daemon = NodeDaemon(load_node_config(data=node_data, environ={}), metrics=StaticMetricsProvider(METRICS, 3))
    await daemon.start()
    try:
        async with grpc.aio.insecure_channel(sup.address) as channel:
            node = NodeSim(channel, "a", agent_addr=daemon.address)
            await node.register()
            await sup.catalog.add(1, "one")
            await node.report()
            await sup.pusher.wait_idle()
        assert sup.pusher.last_results("a")[-1].ok
        assert daemon.supervisord is not None
        assert await daemon.supervisord.realm_store.max_realm_version() == 1
    finally:
        await daemon.stop(0)
