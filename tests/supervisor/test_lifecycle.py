"""Supervisor and AdminClient share the daemons' lifecycle verbs: async with, and stop()."""

from __future__ import annotations

from pathlib import Path

from supervit.auth import SharedSecret
from supervit.supervisor import AdminClient, Supervisor
from tests.supervisor.conftest import ADMIN_HEX, make_config


async def test_supervisor_is_an_async_context_manager(tmp_path: Path) -> None:
    """`async with Supervisor(...)` serves (admin answers) and stops on exit; stop() stays idempotent."""
    async with Supervisor(make_config(tmp_path), tune_process=False) as supervisor:
        assert supervisor.address and supervisor.admin_address
        async with AdminClient(supervisor.admin_address, SharedSecret.from_hex(ADMIN_HEX)) as admin:
            assert (await admin.list_nodes()).nodes is not None
    await supervisor.stop()
    # The data dir is free again once stopped.
    async with Supervisor(make_config(tmp_path), tune_process=False) as again:
        assert again.address
