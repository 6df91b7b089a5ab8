"""Daemons apply their process tuning themselves, so an embedded daemon behaves like the CLI's."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervit.node import NodeDaemon
from supervit.rpc._tuning import SERVER_GC_GEN0_THRESHOLD
from tests.node.test_daemon import make_config


@pytest.fixture
def default_collector() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("default_collector")
async def test_node_daemon_start_applies_the_serving_tuning(tmp_path: Path) -> None:
    """NodeDaemon.start() applies tune_for_serving (the young-collection threshold)."""
    daemon = NodeDaemon(make_config(tmp_path), metrics=None)
    await daemon.start()
    try:
        assert gc.get_threshold() == (SERVER_GC_GEN0_THRESHOLD, 10, 10)
    finally:
        await daemon.stop()


@pytest.mark.usefixtures("default_collector")
async def test_tuning_can_be_declined(tmp_path: Path) -> None:
    """tune_process=False leaves the host program's interpreter settings alone."""
    daemon = NodeDaemon(make_config(tmp_path), tune_process=False)
    await daemon.start()
    try:
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        await daemon.stop()


async def test_daemon_is_an_async_context_manager(tmp_path: Path) -> None:
    """`async with NodeDaemon(...)` starts serving and stops on exit (idempotent with stop())."""
    async with NodeDaemon(make_config(tmp_path), tune_process=False) as daemon:
        assert daemon.port
        port = daemon.port
    await daemon.stop()
    # Stopped for good: the data dir is free again for a new daemon.
    async with NodeDaemon(make_config(tmp_path), tune_process=False) as again:
        assert again.port and port


def test_tuning_raises_the_young_collection_threshold_only() -> None:
    """tune_for_serving raises the collector's young threshold, never lowers it, and leaves a
    disabled collector disabled."""
    from supervit.rpc import tune_for_serving

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        tune_for_serving()
        assert gc.get_threshold() == (SERVER_GC_GEN0_THRESHOLD, 10, 10)
        gc.set_threshold(SERVER_GC_GEN0_THRESHOLD * 2, 5, 5)
        tune_for_serving()
        assert gc.get_threshold() == (SERVER_GC_GEN0_THRESHOLD * 2, 5, 5)
        gc.set_threshold(0, 10, 10)
        tune_for_serving()
        assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)


def test_the_daemon_commands_freeze_their_startup_heap() -> None:
    """freeze_startup_heap (called by `supervit node`/`supervisor` once serving) exempts the
    objects alive then from later collections."""
    from supervit.cli._runtime import freeze_startup_heap

    marker = [object()]
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(marker)
        assert all(o is not marker for o in gc.get_objects(generation=2))  # frozen, not in the oldest
    finally:
        gc.unfreeze()
