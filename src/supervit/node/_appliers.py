"""Config appliers: what ``UpdateConfig(apply_immediately=true)`` does to the running node.

An applier takes the config key and the already validated, normalised value, changes the live
node and returns an *undo* callable that puts the previous state back. Supervisord applies first
and stores second; if storing fails it calls the undo, so the live state and the stored value
never disagree (see :meth:`Supervisord.UpdateConfig`).

Built-in appliers (:func:`default_appliers`):

* ``LOG_LEVEL``: sets the daemon's log level at once (the root logger and the ``supervit``
  logger). The key is free-form (``log_level`` is suggested): the daemon has one level.
* ``SERVICE_ENABLED``: the key is the name of a service in the :class:`ServiceCollector`;
  ``"false"`` marks it ``disabled``, ``"true"`` marks a disabled service ``running`` again
  (an enabled service keeps its state). An unknown service name is refused.

``TURN_REALM``, ``STUN_BIND_ADDRESS`` and ``CUSTOM`` have no built-in applier: their values are
stored for whatever component reads them; embedders can :meth:`ConfigAppliers.register` one.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from supervit._exceptions import NotFoundError
from supervit.config import python_log_level
from supervit.inventory import ServiceCollector, ServiceState
from supervit.protocol import common_pb2

__all__ = [
    "ConfigApplier",
    "ConfigAppliers",
    "Undo",
    "default_appliers",
    "log_level_applier",
    "service_enabled_applier",
]

log = logging.getLogger(__name__)

Undo = Callable[[], None]
"""Restores the live state an applier changed; must not fail."""

ConfigApplier = Callable[[str, str], Undo | Awaitable[Undo]]
"""``applier(key, normalised_value) -> undo``: change the live node or raise (nothing changed)."""

DAEMON_LOGGERS: tuple[str, ...] = ("", "supervit")
"""Loggers whose level is "the daemon's log level" ("" is the root logger)."""

_TRACE = 5


class ConfigAppliers:
    """The registry ``ConfigType`` → :data:`ConfigApplier` that Supervisord consults."""

    def __init__(self, appliers: Mapping[int, ConfigApplier] | None = None) -> None:
        self._appliers: dict[int, ConfigApplier] = dict(appliers or {})

    def register(self, config_type: int, applier: ConfigApplier) -> ConfigAppliers:
        """Use ``applier`` for ``config_type`` (replacing any previous one); returns self."""
        self._appliers[int(config_type)] = applier
        return self

    def get(self, config_type: int) -> ConfigApplier | None:
        """The applier of ``config_type``, or None if values of that type are only stored."""
        return self._appliers.get(int(config_type))

    def __contains__(self, config_type: object) -> bool:
        return config_type in self._appliers

    async def apply(self, config_type: int, key: str, value: str) -> Undo | None:
        """Run the applier of ``config_type``; its undo, or None if the type has no applier.

        Whatever the applier raises propagates: the live node is unchanged in that case.
        """
        applier = self.get(config_type)
        if applier is None:
            return None
        result = applier(key, value)
        if inspect.isawaitable(result):
            return await result
        return result


def log_level_applier(loggers: Iterable[str] = DAEMON_LOGGERS) -> ConfigApplier:
    """An applier that sets ``loggers`` (default: root and ``supervit``) to the given level."""
    names = tuple(loggers)
    if _TRACE not in logging.getLevelNamesMapping().values():
        logging.addLevelName(_TRACE, "TRACE")

    def apply(key: str, value: str) -> Undo:
        level = python_log_level(value)
        targets = [logging.getLogger(name) for name in names]
        previous = [(logger, logger.level) for logger in targets]
        for logger in targets:
            logger.setLevel(level)
        # Logged at WARNING so the change is visible whatever the new level is.
        log.warning("log level set to %s (config key %r)", logging.getLevelName(level), key)

        def undo() -> None:
            for logger, old in previous:
                logger.setLevel(old)

        return undo

    return apply


def service_enabled_applier(collector: ServiceCollector) -> ConfigApplier:
    """An applier that enables/disables the collector's service named by the key."""

    def apply(key: str, value: str) -> Undo:
        current = collector.get(key)
        if current is None:
            known = ", ".join(s.name for s in collector.services()) or "none"
            raise NotFoundError("service", key, f" (known: {known})")
        previous = current.state
        if value == "false":
            new_state = ServiceState.DISABLED
        elif previous is ServiceState.DISABLED:
            new_state = ServiceState.RUNNING
        else:
            new_state = previous  # already enabled: keep healthy/running/error as it is
        collector.set_state(key, new_state)
        log.info("service %r %s (state %s)", key, "enabled" if value == "true" else "disabled", new_state.value)

        def undo() -> None:
            # The service may have been removed meanwhile; then there is nothing to restore.
            if collector.get(key) is not None:
                collector.set_state(key, previous)

        return undo

    return apply


def default_appliers(collector: ServiceCollector) -> ConfigAppliers:
    """The built-in appliers: ``LOG_LEVEL`` and ``SERVICE_ENABLED`` (see the module docstring)."""
    return ConfigAppliers(
        {
            common_pb2.LOG_LEVEL: log_level_applier(),
            common_pb2.SERVICE_ENABLED: service_enabled_applier(collector),
        }
    )
