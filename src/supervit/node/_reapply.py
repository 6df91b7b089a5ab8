"""Stored configuration at start-up: values set through UpdateConfig survive a restart.

``UpdateConfig`` stores ``LOG_LEVEL`` and ``SERVICE_ENABLED`` values in the node database (and
applies them live). At start-up the daemon re-applies them, unless the TOML file changed since:

* a stored value **newer** than the TOML file (its modification time; a value set in the same
  second counts as newer) is applied, whatever the file says;
* a TOML file modified **after** the value was stored wins: its setting stays in force and the
  stored value is overwritten with it, so ``GetConfig`` tells what the node runs with.

The environment overrides count as part of the file (they carry no time of their own). Only the
newest ``LOG_LEVEL`` value matters (the daemon has one level); ``SERVICE_ENABLED`` values for
services no longer in the file are left alone. Other config types have no live effect here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from supervit.config import NodeConfig
from supervit.inventory import ServiceCollector, ServiceState
from supervit.node._appliers import ConfigAppliers
from supervit.protocol import common_pb2
from supervit.storage import ConfigStore

__all__ = ["reapply_stored_config", "toml_changed_at"]

log = logging.getLogger(__name__)


def toml_changed_at(config: NodeConfig) -> int:
    """The file's modification time in whole seconds (0 without a file: stored values win)."""
    if config.source is None:
        return 0
    try:
        return int(Path(config.source).stat().st_mtime)
    except OSError:
        return 0


async def reapply_stored_config(
    config: NodeConfig,
    store: ConfigStore,
    appliers: ConfigAppliers,
    services: ServiceCollector,
    *,
    file_time: int,
) -> list[str]:
    """Apply the stored values that are newer than the file; rewrite the older ones from it.

    Returns one line per decision (also logged) for tests and operators.
    """
    decisions: list[str] = []
    name = config.source.name if config.source is not None else "the configuration"

    levels = await store.entries(common_pb2.LOG_LEVEL)
    if levels:
        key, value, updated_at = levels[-1]  # the newest: the daemon has one level
        toml_level = config.supervisord.log_level.lower()
        if updated_at >= file_time:
            if value != toml_level:
                await appliers.apply(common_pb2.LOG_LEVEL, key, value)
            decisions.append(f"LOG_LEVEL {key}={value}: stored by UpdateConfig after {name} changed, re-applied")
        else:
            for old_key, old_value, _ in levels:
                if old_value != toml_level:
                    await store.set(common_pb2.LOG_LEVEL, old_key, toml_level)
            decisions.append(f"LOG_LEVEL {key}: {name} changed after UpdateConfig, its {toml_level!r} wins")

    for key, value, updated_at in await store.entries(common_pb2.SERVICE_ENABLED):
        current = services.get(key)
        if current is None:
            decisions.append(f"SERVICE_ENABLED {key}: no such service in {name}, left alone")
            continue
        toml_value = "false" if current.state is ServiceState.DISABLED else "true"
        if updated_at >= file_time:
            if value != toml_value:
                await appliers.apply(common_pb2.SERVICE_ENABLED, key, value)
            decisions.append(f"SERVICE_ENABLED {key}={value}: stored by UpdateConfig after {name} changed, re-applied")
        elif value != toml_value:
            await store.set(common_pb2.SERVICE_ENABLED, key, toml_value)
            decisions.append(f"SERVICE_ENABLED {key}: {name} changed after UpdateConfig, its {toml_value!r} wins")
    for line in decisions:
        log.info("stored config: %s", line)
    return decisions
