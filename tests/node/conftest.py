"""Fixtures for node tests: a running node server and a restorable logging level."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from tests.node._helpers import RunningNode, running_node


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    async with running_node(tmp_path / "data") as running:
        yield running


@pytest.fixture
async def clocked_node(tmp_path: Path, clock: FakeClock) -> AsyncIterator[RunningNode]:
    """A node whose stores, uptime and credential checks all use the fake clock."""
    async with running_node(tmp_path / "data", clock=clock) as running:
        yield running


@pytest.fixture
def restore_log_levels() -> Iterator[None]:
    """Put the root and supervit logger levels back after a test that changes them live."""
    loggers = [logging.getLogger(), logging.getLogger("supervit")]
    saved = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, saved, strict=True):
        logger.setLevel(level)
