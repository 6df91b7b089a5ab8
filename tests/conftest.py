"""Shared fixtures: a secret, fixed clocks, vector data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from supervit.auth import SharedSecret
from supervit.testing import FakeClock

SECRET_HEX = "0123456789abcdef" * 4
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
