"""TLS and mTLS channels against the real test supervisor, with certificates made for this run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from supervit._exceptions import RpcError
from supervit.auth import SharedSecret
from supervit.client import SupervitClient
from supervit.testing import SupervisorDouble
from tests.client.conftest import fast_config
from tests.tls_certs import TlsFiles

MakeClient = Callable[..., SupervitClient]


def _server_credentials(files: TlsFiles, *, mtls: bool) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(files.server_key.read_bytes(), files.server_cert.read_bytes())],
        root_certificates=files.ca_cert.read_bytes() if mtls else None,
        require_client_auth=mtls,
    )


@pytest.fixture
async def tls_double(secret: SharedSecret, tls_files: TlsFiles) -> AsyncIterator[SupervisorDouble]:
    async with SupervisorDouble(secret, server_credentials=_server_credentials(tls_files, mtls=False)) as server:
        yield server


@pytest.fixture
async def mtls_double(secret: SharedSecret, tls_files: TlsFiles) -> AsyncIterator[SupervisorDouble]:
    async with SupervisorDouble(secret, server_credentials=_server_credentials(tls_files, mtls=True)) as server:
        yield server


async def test_tls_with_ca_and_domain_override(
    tls_double: SupervisorDouble, tls_files: TlsFiles, make_client: MakeClient
) -> None:
    # The endpoint is an IP; the certificate is checked against tls_domain ("localhost").
    config = fast_config(tls_double.endpoint, enable_tls=True, tls_domain="localhost", ca_cert=tls_files.ca_cert)
    client = make_client(config)
    await client.connect()
    assert (await client.register_node()).message.success
    assert (await client.report()).message.received


async def test_tls_refuses_a_certificate_for_another_name(
    tls_double: SupervisorDouble, tls_files: TlsFiles, make_client: MakeClient
) -> None:
    config = fast_config(
        tls_double.endpoint, enable_tls=True, tls_domain="supervisor.example", ca_cert=tls_files.ca_cert
    )
    client = make_client(config)
    with pytest.raises(RpcError) as info:
        await _register(client)
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert tls_double.calls() == []


async def test_mtls_with_client_certificate(
    mtls_double: SupervisorDouble, tls_files: TlsFiles, make_client: MakeClient
) -> None:
    config = fast_config(
        mtls_double.endpoint,
        enable_tls=True,
        tls_domain="localhost",
        ca_cert=tls_files.ca_cert,
        client_cert=tls_files.client_cert,
        client_key=tls_files.client_key,
    )
    client = make_client(config)
    await client.connect()
    assert (await client.register_node()).message.success
    assert (await client.health_check()).healthy


async def test_mtls_server_refuses_a_client_without_certificate(
    mtls_double: SupervisorDouble, tls_files: TlsFiles, make_client: MakeClient
) -> None:
    config = fast_config(
        mtls_double.endpoint, enable_tls=True, tls_domain="localhost", ca_cert=tls_files.ca_cert, connect_timeout_secs=1
    )
    client = make_client(config)
    with pytest.raises(RpcError) as info:
        await _register(client)
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert mtls_double.calls() == []


async def _register(client: SupervitClient) -> None:
    """Register on a fresh channel (the handshake happens on the first call)."""
    async with client:
        await client.register_node()
