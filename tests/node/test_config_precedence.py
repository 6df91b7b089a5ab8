"""Values set through UpdateConfig across a restart: re-applied, unless the TOML file changed since
(then the file wins and the stored value is rewritten from it). Real daemon, real files."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from supervit.config import load_node_config
from supervit.metrics import StaticMetricsProvider
from supervit.node import NodeDaemon, ServiceState
from supervit.protocol import common_pb2, supervised_pb2
from tests.conftest import SECRET_HEX
from tests.node._helpers import METRICS, NodeClient

T0 = 1_800_000_000


@pytest.fixture(autouse=True)
def restore_log_levels() -> Iterator[None]:
    """The in-process daemon applies LOG_LEVEL to this process's loggers: put them back."""
    loggers = [logging.getLogger(), logging.getLogger("supervit")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write_toml(path: Path, *, log_level: str, mtime: int) -> Path:
    path.write_text(
        f"""[supervisor.metrics]
listen = ""

[supervisor.client]
node_id = "node-1"
shared_secret = "{SECRET_HEX}"

[supervisor.supervisord]
ip = "127.0.0.1"
port = 0
data_dir = "{path.parent / "data"}"
log_level = "{log_level}"
shutdown_grace_secs = 0

[[supervisor.supervisord.services]]
name = "turn-a"
type = "TURN"
port = 3478
"""
    )
    os.utime(path, (mtime, mtime))
    return path


async def start(path: Path, clock: Clock) -> NodeDaemon:
    daemon = NodeDaemon(load_node_config(path, environ={}), metrics=StaticMetricsProvider(METRICS, 3), clock=clock)
    await daemon.start()
    return daemon


async def update(daemon: NodeDaemon, clock: Clock, config_type: int, key: str, value: str) -> None:
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        request = supervised_pb2.UpdateConfigRequest(
            config_type=config_type,  # type: ignore[arg-type]
            config_key=key,
            config_value=value,
            apply_immediately=True,
        )
        response = await NodeClient(channel, node_id="node-1", clock=clock).call(request)
    assert response.success, response


async def stored(daemon: NodeDaemon, config_type: int, key: str) -> str | None:
    assert daemon.supervisord is not None
    return await daemon.supervisord.config_store.get(config_type, key)


def service_state(daemon: NodeDaemon) -> ServiceState:
    info = daemon.service_collector.get("turn-a")
    assert info is not None
    return info.state


async def test_stored_values_are_reapplied_after_a_restart(tmp_path: Path) -> None:
    toml = write_toml(tmp_path / "node.toml", log_level="info", mtime=T0)
    clock = Clock(T0 + 100)
    daemon = await start(toml, clock)
    await update(daemon, clock, common_pb2.LOG_LEVEL, "log_level", "debug")
    await update(daemon, clock, common_pb2.SERVICE_ENABLED, "turn-a", "false")
    await daemon.stop(0)
    logging.getLogger().setLevel(logging.INFO)  # as the CLI sets it from the file at start

    clock.now += 60
    again = await start(toml, clock)
    try:
        assert logging.getLogger().level == logging.DEBUG
        assert service_state(again) is ServiceState.DISABLED
        assert await stored(again, common_pb2.LOG_LEVEL, "log_level") == "debug"
        assert any("re-applied" in line for line in again.stored_config_decisions)
    finally:
        await again.stop(0)


async def test_a_toml_file_changed_since_wins_and_rewrites_the_stored_value(tmp_path: Path) -> None:
    toml = write_toml(tmp_path / "node.toml", log_level="info", mtime=T0)
    clock = Clock(T0 + 100)
    daemon = await start(toml, clock)
    await update(daemon, clock, common_pb2.LOG_LEVEL, "log_level", "debug")
    await update(daemon, clock, common_pb2.SERVICE_ENABLED, "turn-a", "false")
    await daemon.stop(0)
    logging.getLogger().setLevel(logging.INFO)

    # The operator edits the file after the UpdateConfig calls.
    write_toml(toml, log_level="warning", mtime=T0 + 200)
    logging.getLogger().setLevel(logging.WARNING)
    clock.now = T0 + 300
    again = await start(toml, clock)
    try:
        assert logging.getLogger().level == logging.WARNING
        assert service_state(again) is ServiceState.RUNNING
        # GetConfig now tells what is in force.
        assert await stored(again, common_pb2.LOG_LEVEL, "log_level") == "warning"
        assert await stored(again, common_pb2.SERVICE_ENABLED, "turn-a") == "true"
        assert sum("wins" in line for line in again.stored_config_decisions) == 2
    finally:
        await again.stop(0)

    # And on the next start (file unchanged) the rewritten values agree with the file.
    clock.now += 60
    third = await start(toml, clock)
    try:
        assert service_state(third) is ServiceState.RUNNING
        assert await stored(third, common_pb2.LOG_LEVEL, "log_level") == "warning"
    finally:
        await third.stop(0)
