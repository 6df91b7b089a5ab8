"""Client test fixtures: a running supervisor double, fast configs, services, static metrics."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from supervit.auth import SharedSecret
from supervit.client import SupervitClient
from supervit.config import SupervitConfig
from supervit.metrics import StaticMetricsProvider
from supervit.node import ServiceCollector, ServiceInfo, ServiceState
from supervit.protocol import common_pb2
from supervit.testing import SupervisorDouble
from tests.conftest import SECRET_HEX
from tests.tls_certs import TlsFiles, generate_tls_files

NODE_ID = "node-client-1"

METRICS = common_pb2.SystemMetrics(
    cpu_usage_percent=12.5,
    memory_used_bytes=1_000,
    memory_total_bytes=4_000,
    memory_usage_percent=25.0,
    network_rx_bytes=10,
    network_tx_bytes=20,
    disk_used_bytes=300,
    disk_total_bytes=900,
    load_average_1m=0.5,
)


class FixedRandom(random.Random):
    """``random()`` always returns ``value``: pins jitter and the first-report delay."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def fast_config(endpoint: str, **overrides: Any) -> SupervitConfig:
    """A config with sub-second timings suited to tests."""
    settings: dict[str, Any] = {
        "node_id": NODE_ID,
        "endpoint": endpoint,
        "shared_secret": SECRET_HEX,
        "name": "Client test node",
        "location_tag": "test-dc",
        "agent_addr": "127.0.0.1:50055",
        "connect_timeout_secs": 3,
        "status_report_interval_secs": 0.2,
        "health_check_interval_secs": 60,
        "min_report_interval_secs": 0.05,
        "max_report_interval_secs": 5,
        "backoff_base_secs": 0.05,
        "backoff_cap_secs": 0.4,
        "rpc_timeout_secs": 2,
        "keepalive_secs": 30,
    }
    settings.update(overrides)
    return SupervitConfig(**settings)


@pytest.fixture
async def double(secret: SharedSecret) -> AsyncIterator[SupervisorDouble]:
    async with SupervisorDouble(secret) as server:
        yield server


@pytest.fixture
def collector() -> ServiceCollector:
    return ServiceCollector(
        [
            ServiceInfo(name="turn-main", type=common_pb2.TURN, domain="turn.example", port=3478, tags=("b", "a")),
            ServiceInfo(
                name="stun-main",
                type=common_pb2.STUN,
                port=3479,
                url="stun:stun.example:3479",
                state=ServiceState.RUNNING,
                description="STUN",
            ),
        ]
    )


@pytest.fixture
def metrics() -> StaticMetricsProvider:
    return StaticMetricsProvider(METRICS, 4)


@pytest.fixture
async def make_client(
    collector: ServiceCollector, metrics: StaticMetricsProvider
) -> AsyncIterator[Callable[..., SupervitClient]]:
    """Factory ``make_client(config, **kwargs)``; every client made is stopped at teardown."""
    made: list[SupervitClient] = []

    def make(config: SupervitConfig, **kwargs: Any) -> SupervitClient:
        kwargs.setdefault("metrics", metrics)
        client = SupervitClient(config, kwargs.pop("service_collector", collector), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsFiles]:
    yield generate_tls_files(Path(tmp_path_factory.mktemp("tls")))
