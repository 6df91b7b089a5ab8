"""Shared fixtures: a secret, fixed clocks, vector data."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from supervit.auth import SharedSecret
from supervit.testing import FakeClock

# Not the seed's published example secret ("0123456789abcdef" * 4): the daemons refuse that one.
SECRET_HEX = "0f1e2d3c4b5a6978" * 4
EXAMPLE_SECRET_HEX = "0123456789abcdef" * 4
OTHER_SECRET_HEX = "fedcba9876543210" * 4
VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "auth" / "data" / "auth_vectors.json").read_text())


@pytest.fixture
def secret() -> SharedSecret:
    return SharedSecret.from_hex(SECRET_HEX)


@pytest.fixture
def other_secret() -> SharedSecret:
    return SharedSecret.from_hex(OTHER_SECRET_HEX)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def stores() -> Any:
    """A fresh PostgreSQL schema and Redis key prefix (tests/stores.py), dropped after the test."""
    from tests.stores import shared_stores

    async with shared_stores() as found:
        yield found


@pytest.fixture
def unused_tcp_port_addr() -> str:
    """``127.0.0.1:PORT`` where nothing listens (bound once by the OS, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"
