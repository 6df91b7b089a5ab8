"""Config appliers: apply_immediately changes the live node; failures leave value and state unchanged."""

from __future__ import annotations

import asyncio
import logging
import random

import grpc
import pytest

from supervit.node import ConfigAppliers, ServiceCollector, ServiceInfo, ServiceState, log_level_applier
from supervit.protocol import common_pb2, supervised_pb2
from tests.node._helpers import RunningNode, status_of

sd = supervised_pb2
pytestmark = pytest.mark.usefixtures("restore_log_levels")


def update(config_type: int, key: str, value: str, apply: bool = True) -> sd.UpdateConfigRequest:
    return sd.UpdateConfigRequest(
        config_type=config_type,  # type: ignore[arg-type]
        config_key=key,
        config_value=value,
        apply_immediately=apply,
    )


async def stored(node: RunningNode, config_type: int, key: str) -> str | None:
    got = await node.client.call(sd.GetConfigRequest(config_type=config_type, config_key=key))  # type: ignore[arg-type]
    return got.config_value if got.success else None


async def test_log_level_applies_live(node: RunningNode, caplog: pytest.LogCaptureFixture) -> None:
    """LOG_LEVEL with apply_immediately changes the root and supervit levels at once."""
    for name in ("", "supervit"):  # a known starting point whatever earlier tests left behind
        logging.getLogger(name).setLevel(logging.INFO)
    probe = logging.getLogger("supervit.probe")
    caplog.set_level(logging.NOTSET, logger="supervit.probe")  # capture whatever the loggers let through
    probe.debug("before")
    response = await node.client.call(update(common_pb2.LOG_LEVEL, "log_level", "DEBUG"))
    assert response.success
    assert logging.getLogger().level == logging.DEBUG and logging.getLogger("supervit").level == logging.DEBUG
    probe.debug("after")
    messages = [r.getMessage() for r in caplog.records if r.name == "supervit.probe"]
    assert messages == ["after"]
    assert await stored(node, common_pb2.LOG_LEVEL, "log_level") == "debug"
    await node.client.call(update(common_pb2.LOG_LEVEL, "log_level", "trace"))
    assert logging.getLogger("supervit").level == 5


async def test_log_level_without_apply_is_stored_only(node: RunningNode) -> None:
    """apply_immediately=false stores the value but leaves the running level alone."""
    for name in ("", "supervit"):
        logging.getLogger(name).setLevel(logging.WARNING)
    response = await node.client.call(update(common_pb2.LOG_LEVEL, "log_level", "debug", apply=False))
    assert response.success and logging.getLogger().level == logging.WARNING
    assert logging.getLogger("supervit").level == logging.WARNING
    assert await stored(node, common_pb2.LOG_LEVEL, "log_level") == "debug"


async def test_service_enabled_flips_collector_state(node: RunningNode) -> None:
    """SERVICE_ENABLED false disables the named service (unhealthy in GetNodeInfo); true re-enables it."""
    off = await node.client.call(update(common_pb2.SERVICE_ENABLED, "turn-main", "off"))
    assert off.success and node.collector.get("turn-main").state is ServiceState.DISABLED  # type: ignore[union-attr]
    info = await node.client.call(sd.GetNodeInfoRequest())
    assert {s.name: s.is_healthy for s in info.services}["turn-main"] is False
    on = await node.client.call(update(common_pb2.SERVICE_ENABLED, "turn-main", "true"))
    assert on.success and on.old_value == "false"
    assert node.collector.get("turn-main").state is ServiceState.RUNNING  # type: ignore[union-attr]


async def test_enabling_an_enabled_service_keeps_its_state(node: RunningNode) -> None:
    """true on a service that is not disabled leaves its state (healthy stays healthy)."""
    assert (await node.client.call(update(common_pb2.SERVICE_ENABLED, "stun-main", "1"))).success
    assert node.collector.get("stun-main").state is ServiceState.HEALTHY  # type: ignore[union-attr]


async def test_unknown_service_is_refused_and_not_stored(node: RunningNode) -> None:
    """SERVICE_ENABLED for a service the node does not run → success=false, nothing stored."""
    response = await node.client.call(update(common_pb2.SERVICE_ENABLED, "ghost", "false"))
    assert not response.success and "unknown service 'ghost'" in response.error_message
    assert await stored(node, common_pb2.SERVICE_ENABLED, "ghost") is None


async def test_failing_applier_stores_nothing(node: RunningNode) -> None:
    """An applier error → success=false with the reason; the stored value stays the old one."""
    await node.client.call(update(common_pb2.TURN_REALM, "realm", "old.example", apply=False))

    def explode(key: str, value: str) -> None:
        raise ValueError("TURN server refused the realm")

    node.supervisord.appliers.register(common_pb2.TURN_REALM, explode)  # type: ignore[arg-type]
    response = await node.client.call(update(common_pb2.TURN_REALM, "realm", "new.example"))
    assert not response.success and "TURN server refused the realm" in response.error_message
    assert await stored(node, common_pb2.TURN_REALM, "realm") == "old.example"


async def test_type_without_applier_is_stored(node: RunningNode) -> None:
    """apply_immediately for a type with no live applier still stores the value."""
    response = await node.client.call(update(common_pb2.STUN_BIND_ADDRESS, "bind", "0.0.0.0:3478"))
    assert response.success
    assert await stored(node, common_pb2.STUN_BIND_ADDRESS, "bind") == "0.0.0.0:3478"


async def test_store_failure_undoes_the_applied_change(node: RunningNode) -> None:
    """Applied but not stored (store fails) → INTERNAL and the live level is put back."""
    logging.getLogger().setLevel(logging.ERROR)
    await node.db.close()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.client.call(update(common_pb2.LOG_LEVEL, "log_level", "debug"))
    assert status_of(info)[0] == grpc.StatusCode.INTERNAL
    assert logging.getLogger().level == logging.ERROR


async def test_concurrent_updates_keep_live_and_stored_in_step(node: RunningNode) -> None:
    """Many concurrent applied LOG_LEVEL updates of one key: the live level equals the stored one."""
    levels = ["debug", "info", "warning", "error", "critical"]
    rng = random.Random(7)
    chosen = [rng.choice(levels) for _ in range(40)]
    responses = await asyncio.gather(*(node.client.call(update(common_pb2.LOG_LEVEL, "lvl", v)) for v in chosen))
    assert all(r.success for r in responses)
    final = await stored(node, common_pb2.LOG_LEVEL, "lvl")
    assert logging.getLevelName(logging.getLogger().level).lower() == final
    # Old values chain: every value but the first replaced exactly one other update's value.
    assert sum(1 for r in responses if not r.HasField("old_value")) == 1


async def test_registry_and_undo() -> None:
    """ConfigAppliers runs sync and async appliers and returns their undo; unknown types give None."""
    appliers = ConfigAppliers()
    assert await appliers.apply(common_pb2.CUSTOM, "k", "v") is None
    calls: list[str] = []

    async def async_applier(key: str, value: str) -> object:
        calls.append(f"{key}={value}")
        return lambda: calls.append("undone")

    appliers.register(common_pb2.CUSTOM, async_applier)  # type: ignore[arg-type]
    assert common_pb2.CUSTOM in appliers
    undo = await appliers.apply(common_pb2.CUSTOM, "k", "v")
    assert undo is not None
    undo()
    assert calls == ["k=v", "undone"]


def test_log_level_undo_restores_previous_levels() -> None:
    """The log level applier's undo puts back the exact previous levels."""
    logging.getLogger("supervit.undo-test").setLevel(logging.CRITICAL)
    apply = log_level_applier(["supervit.undo-test"])
    undo = apply("k", "debug")
    assert logging.getLogger("supervit.undo-test").level == logging.DEBUG
    undo()  # type: ignore[operator]
    assert logging.getLogger("supervit.undo-test").level == logging.CRITICAL


def test_service_undo_after_removal_is_harmless() -> None:
    """Undoing a service change after the service was removed does nothing (and does not raise)."""
    from supervit.node import service_enabled_applier

    collector = ServiceCollector([ServiceInfo("svc", common_pb2.TURN)])
    undo = service_enabled_applier(collector)("svc", "false")
    collector.remove("svc")
    undo()  # type: ignore[operator]
    assert collector.get("svc") is None


async def test_cancelled_caller_does_not_split_apply_and_store(node: RunningNode) -> None:
    """A caller whose deadline expires mid-update: the update still completes, applied and stored."""
    applied: list[str] = []

    async def slow(key: str, value: str) -> object:
        await asyncio.sleep(0.3)
        applied.append(value)
        return lambda: applied.append("undone")

    node.supervisord.appliers.register(common_pb2.CUSTOM, slow)  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.client.call(update(common_pb2.CUSTOM, "k", "v"), deadline=0.1)
    assert status_of(info)[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    for _ in range(50):
        if await stored(node, common_pb2.CUSTOM, "k") is not None:
            break
        await asyncio.sleep(0.05)
    assert applied == ["v"] and await stored(node, common_pb2.CUSTOM, "k") == "v"
