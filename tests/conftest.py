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


# Where the tests that take seconds live (real processes: benchmark scripts, daemons, the CLI), as
# paths under tests/, roughly longest first; every other test follows. test_replicas (three
# supervisors under load, ~25 s) and the demo tests run longest on their own. The fuzz tests (~10 s
# each, in process) and the paging test's large registrations would otherwise come last of all.
_SLOW_FIRST = (
    "e2e/test_replicas.py",
    "e2e/test_fleet.py::test_demo_runs_and_exits_zero",
    "e2e/test_demo_keep.py",
    "test_bench_smoke.py",
    "e2e",
    "test_fuzz.py",
    "cli",
    "supervisor/test_paging.py",
)


def _slowness(item: pytest.Item) -> int:
    """The rank of the first _SLOW_FIRST entry the test's id starts with; other e2e-marked tests next, then the rest."""
    here = Path(__file__).parent
    where = item.path.relative_to(here).as_posix() if item.path.is_relative_to(here) else ""
    test_id = f"{where}::{item.name}"
    for rank, prefix in enumerate(_SLOW_FIRST):
        if test_id == prefix or test_id.startswith((f"{prefix}/", f"{prefix}::")):
            return rank
    return len(_SLOW_FIRST) + (item.get_closest_marker("e2e") is None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, otherwise in collection order (a stable sort keeps each module together).

    Under xdist, with one test handed out at a time (``--maxschedchunk=1`` in pyproject.toml's
    addopts), the workers take the long tests while there is still short work to balance them with
    instead of one worker finishing a long test after the others ran out of work (longest first).
    xdist's default chunks (a quarter of each worker's share, consecutive) would instead give the
    first worker most of the slow tests.
    """
    items.sort(key=_slowness)


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
