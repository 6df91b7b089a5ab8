"""TLS and mTLS on the node server, with certificates generated for the test run."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from supervit.protocol import supervised_pb2
from supervit.rpc import ServerTLS
from tests.node._helpers import NodeClient, running_node, status_of
from tests.tls_certs import TlsFiles, generate_tls_files

_OPTIONS = [("grpc.ssl_target_name_override", "localhost")]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return generate_tls_files(tmp_path_factory.mktemp("pki"))


def secure_channel(port: int, pki: TlsFiles, *, client_cert: bool) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca_cert.read_bytes(),
        private_key=pki.client_key.read_bytes() if client_cert else None,
        certificate_chain=pki.client_cert.read_bytes() if client_cert else None,
    )
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=_OPTIONS)


async def test_tls(tmp_path: Path, pki: TlsFiles) -> None:
    """A TLS server answers a client that trusts its CA; a plaintext client gets nowhere."""
    async with running_node(tmp_path, tls=ServerTLS(pki.server_cert, pki.server_key)) as node:
        async with secure_channel(node.port, pki, client_cert=False) as channel:
            info = await NodeClient(channel).call(supervised_pb2.GetNodeInfoRequest())
            assert info.success
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await node.client.call(supervised_pb2.GetNodeInfoRequest(), deadline=2)
        assert status_of(exc)[0] == grpc.StatusCode.UNAVAILABLE


async def test_mtls_requires_a_client_certificate(tmp_path: Path, pki: TlsFiles) -> None:
    """With client_ca set, a client certificate signed by it is required; without one: refused."""
    tls = ServerTLS(pki.server_cert, pki.server_key, client_ca=pki.ca_cert)
    async with running_node(tmp_path, tls=tls) as node:
        async with secure_channel(node.port, pki, client_cert=True) as channel:
            assert (await NodeClient(channel).call(supervised_pb2.GetNodeInfoRequest())).success
        async with secure_channel(node.port, pki, client_cert=False) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await NodeClient(channel).call(supervised_pb2.GetNodeInfoRequest(), deadline=2)
            assert status_of(exc)[0] == grpc.StatusCode.UNAVAILABLE
