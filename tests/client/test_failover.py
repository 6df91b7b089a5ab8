"""Several supervisor endpoints: the client moves on UNAVAILABLE / deadline and stays on a healthy one."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest

from supervit import ConfigError, RpcError
from supervit.auth import SharedSecret
from supervit.client import SupervitClient
from supervit.config import load_node_config
from supervit.testing import SupervisorDouble
from tests.client.conftest import fast_config
from tests.conftest import SECRET_HEX

MakeClient = Callable[..., SupervitClient]


async def test_replica_down_moves_to_the_next_without_registering_again(
    secret: SharedSecret, make_client: MakeClient
) -> None:
    """A and B share one registry (as replicas on PostgreSQL do): A stops, reports go on at B."""
    async with SupervisorDouble(secret) as a, SupervisorDouble(secret) as b:
        b.nodes = a.nodes  # one shared registry
        client = make_client(fast_config(a.endpoint, endpoints=[a.endpoint, b.endpoint]))
        assert client.config.endpoint_list == [a.endpoint, b.endpoint]
        await client.start_status_reporting()
        await a.wait_for(lambda: len(a.reports()) >= 2, what="reports to A")
        assert client.endpoint == a.endpoint and not b.calls()
        await a.stop()
        await b.wait_for(lambda: len(b.reports()) >= 3, what="reports to B after A stopped")
        assert client.endpoint == b.endpoint
        assert b.calls("RegisterNode") == []  # the registry is shared: no re-registration
        restarted = time.monotonic()
        await a.start()
        await b.wait_for(lambda: len([r for r in b.received if r.at > restarted]) >= 3, what="more reports to B")
        assert [c for c in a.received if c.at > restarted] == []  # stays on the healthy one


async def test_unavailable_answer_moves_on_and_not_found_registers_there(
    secret: SharedSecret, make_client: MakeClient
) -> None:
    """A answers UNAVAILABLE (its store is down); B has its own registry, so it asks the node to register."""
    async with SupervisorDouble(secret) as a, SupervisorDouble(secret) as b:
        client = make_client(fast_config(a.endpoint, endpoints=[b.endpoint]))
        await client.start_status_reporting()
        await a.wait_for(lambda: len(a.reports()) >= 1, what="a report to A")
        a.fail_next("Report", grpc.StatusCode.UNAVAILABLE, "store unavailable: test", times=100)
        await b.wait_for(lambda: len(b.reports()) >= 2, what="reports to B")
        calls = [c.method for c in b.received]
        assert calls[0] == "Report" and not b.received[0].ok  # NOT_FOUND: B never saw the node
        assert "RegisterNode" in calls and client.endpoint == b.endpoint


async def test_deadline_moves_on(secret: SharedSecret, make_client: MakeClient) -> None:
    """A replica that hangs past the RPC deadline is left like one that is down."""
    async with SupervisorDouble(secret) as a, SupervisorDouble(secret) as b:
        b.nodes = a.nodes
        client = make_client(fast_config(a.endpoint, endpoints=[b.endpoint], rpc_timeout_secs=0.3))
        await client.start_status_reporting()
        await a.wait_for(lambda: len(a.reports()) >= 1, what="a report to A")
        a.delay_secs = 5
        await b.wait_for(lambda: len(b.reports()) >= 2, what="reports to B")
        assert client.endpoint == b.endpoint


def test_endpoints_are_validated_and_read_from_the_node_file(tmp_path: object) -> None:
    with pytest.raises(ConfigError) as info:
        fast_config("http://127.0.0.1:1", endpoints=["http://127.0.0.1:2", "ftp://x"]).validate()
    assert info.value.key == "endpoints[1]"
    config = load_node_config(
        data={
            "supervisor": {
                "client": {
                    "node_id": "n1",
                    "shared_secret": SECRET_HEX,
                    "endpoints": ["http://10.0.0.1:50051", "http://10.0.0.2:50051"],
                    "agent_addr": "10.0.0.9:50055",
                }
            }
        },
        environ={},
    )
    client_config = config.client_config()
    assert client_config is not None
    assert client_config.endpoint_list == ["http://10.0.0.1:50051", "http://10.0.0.2:50051"]
    assert client_config.targets == ["10.0.0.1:50051", "10.0.0.2:50051"]
    with pytest.raises(ConfigError) as info:
        load_node_config(
            data={
                "supervisor": {
                    "client": {"node_id": "n1", "shared_secret": SECRET_HEX, "endpoints": ["http://a:1", "b"]}
                }
            },
            environ={},
        )
    assert info.value.key == "supervisor.client.endpoints[0]"


async def test_connect_tries_each_endpoint_in_turn(secret: SharedSecret, make_client: MakeClient) -> None:
    async with SupervisorDouble(secret) as a, SupervisorDouble(secret) as b:
        await a.stop()  # the first endpoint is down
        client = make_client(fast_config(a.endpoint, endpoints=[b.endpoint], connect_timeout_secs=1))
        await client.connect()
        assert client.endpoint == b.endpoint
        await b.stop()
        lone = make_client(fast_config(a.endpoint, endpoints=[b.endpoint], connect_timeout_secs=0.4))
        with pytest.raises(RpcError) as info:
            await lone.connect()
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
