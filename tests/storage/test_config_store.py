"""validate_config_value and ConfigStore on a real node database file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from supervit._exceptions import InvalidRequestError
from supervit.protocol import common_pb2
from supervit.storage import ConfigStore, Database, open_node_database, validate_config_value

LOG_LEVEL = common_pb2.LOG_LEVEL
SERVICE_ENABLED = common_pb2.SERVICE_ENABLED
STUN_BIND_ADDRESS = common_pb2.STUN_BIND_ADDRESS


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_node_database(tmp_path)
    yield database
    await database.close()


@pytest.fixture
def store(db: Database) -> ConfigStore:
    return ConfigStore(db)


@pytest.mark.parametrize(
    ("config_type", "value", "expected"),
    [
        (LOG_LEVEL, "info", "info"),
        (LOG_LEVEL, "  WARNING ", "warning"),
        (LOG_LEVEL, "Warn", "warn"),
        (LOG_LEVEL, "TRACE", "trace"),
        (LOG_LEVEL, "critical", "critical"),
        (SERVICE_ENABLED, "TRUE", "true"),
        (SERVICE_ENABLED, "1", "true"),
        (SERVICE_ENABLED, "yes", "true"),
        (SERVICE_ENABLED, "On", "true"),
        (SERVICE_ENABLED, "false", "false"),
        (SERVICE_ENABLED, "0", "false"),
        (SERVICE_ENABLED, "NO", "false"),
        (SERVICE_ENABLED, "off", "false"),
        (STUN_BIND_ADDRESS, "0.0.0.0:3478", "0.0.0.0:3478"),
        (STUN_BIND_ADDRESS, "[::]:3478", "[::]:3478"),
        (STUN_BIND_ADDRESS, "[2001:DB8:0:0::1]:65535", "[2001:db8::1]:65535"),
        (STUN_BIND_ADDRESS, "Stun.Example.COM:1", "stun.example.com:1"),
        (STUN_BIND_ADDRESS, "localhost:03478", "localhost:3478"),
        (STUN_BIND_ADDRESS, "example.com.:80", "example.com:80"),
        (common_pb2.TURN_REALM, " Any Realm ", " Any Realm "),
        (common_pb2.CUSTOM, "", ""),
        (common_pb2.CUSTOM, "whatever: 42\n", "whatever: 42\n"),
    ],
)
def test_valid_values_are_normalised(config_type: int, value: str, expected: str) -> None:
    assert validate_config_value(config_type, value) == expected


@pytest.mark.parametrize(
    ("config_type", "value", "reason"),
    [
        (LOG_LEVEL, "verbose", "not one of"),
        (LOG_LEVEL, "", "not one of"),
        (SERVICE_ENABLED, "maybe", "not a boolean"),
        (SERVICE_ENABLED, "2", "not a boolean"),
        (STUN_BIND_ADDRESS, "0.0.0.0", "host:port"),
        (STUN_BIND_ADDRESS, ":3478", "host:port"),
        (STUN_BIND_ADDRESS, "0.0.0.0:0", "between 1 and 65535"),
        (STUN_BIND_ADDRESS, "0.0.0.0:65536", "between 1 and 65535"),
        (STUN_BIND_ADDRESS, "0.0.0.0:+80", "between 1 and 65535"),
        (STUN_BIND_ADDRESS, "0.0.0.0:http", "between 1 and 65535"),
        (STUN_BIND_ADDRESS, "10.0.0.256:80", "neither an IPv4 address nor a valid host name"),
        (STUN_BIND_ADDRESS, "bad_host:80", "neither an IPv4 address nor a valid host name"),
        (STUN_BIND_ADDRESS, "-bad.example:80", "neither an IPv4 address nor a valid host name"),
        (STUN_BIND_ADDRESS, "a..b:80", "neither an IPv4 address nor a valid host name"),
        (STUN_BIND_ADDRESS, "::1:3478", "brackets"),
        (STUN_BIND_ADDRESS, "[::1]", "IPv6"),
        (STUN_BIND_ADDRESS, "[not-ip]:80", "not an IPv6 address"),
        (STUN_BIND_ADDRESS, "[1.2.3.4]:80", "not an IPv6 address"),
        (common_pb2.CONFIG_TYPE_UNSPECIFIED, "x", "unspecified"),
        (42, "x", "unknown config type 42"),
        (-1, "x", "unknown config type"),
    ],
)
def test_invalid_values_are_rejected_with_reason(config_type: int, value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_config_value(config_type, value)


def test_wrong_python_types_rejected() -> None:
    with pytest.raises(ValueError, match="string"):
        validate_config_value(common_pb2.CUSTOM, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="integer"):
        validate_config_value("3", "info")  # type: ignore[arg-type]


async def test_get_set_returns_previous(store: ConfigStore) -> None:
    assert await store.get(LOG_LEVEL, "") is None
    assert await store.set(LOG_LEVEL, "", "INFO") is None
    assert await store.get(LOG_LEVEL, "") == "info"
    assert await store.set(LOG_LEVEL, "", "debug") == "info"
    assert await store.get(LOG_LEVEL, "") == "debug"


async def test_types_and_keys_are_independent(store: ConfigStore) -> None:
    await store.set(common_pb2.CUSTOM, "a", "1")
    await store.set(common_pb2.CUSTOM, "b", "2")
    await store.set(common_pb2.TURN_REALM, "a", "realm")
    assert await store.get(common_pb2.CUSTOM, "a") == "1"
    assert await store.get(common_pb2.CUSTOM, "b") == "2"
    assert await store.get(common_pb2.TURN_REALM, "a") == "realm"
    assert await store.get(common_pb2.TURN_REALM, "b") is None


async def test_invalid_set_raises_and_changes_nothing(store: ConfigStore) -> None:
    await store.set(SERVICE_ENABLED, "turn", "on")
    with pytest.raises(InvalidRequestError, match="SERVICE_ENABLED") as info:
        await store.set(SERVICE_ENABLED, "turn", "sometimes")
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(InvalidRequestError, match="unknown config type 77"):
        await store.set(77, "turn", "x")
    with pytest.raises(InvalidRequestError, match="key"):
        await store.set(SERVICE_ENABLED, None, "on")  # type: ignore[arg-type]
    assert await store.get(SERVICE_ENABLED, "turn") == "true"


async def test_values_persist_across_reopen(tmp_path: Path) -> None:
    db = await open_node_database(tmp_path)
    await ConfigStore(db).set(STUN_BIND_ADDRESS, "main", "[::1]:3478")
    await db.close()
    db = await open_node_database(tmp_path)
    try:
        assert await ConfigStore(db).get(STUN_BIND_ADDRESS, "main") == "[::1]:3478"
    finally:
        await db.close()


async def test_concurrent_sets_each_see_what_they_replaced(store: ConfigStore) -> None:
    values = [f"v{i}" for i in range(40)]
    previous = await asyncio.gather(*(store.set(common_pb2.CUSTOM, "k", v) for v in values))
    # A chain: every value but the final one was replaced exactly once, and one call saw nothing.
    assert previous.count(None) == 1
    replaced = [p for p in previous if p is not None]
    assert len(set(replaced)) == len(replaced) == 39
    final = await store.get(common_pb2.CUSTOM, "k")
    assert final is not None
    assert set(replaced) | {final} == set(values)
