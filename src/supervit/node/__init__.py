"""The node side: the SupervisedService callback server, its auth wrapper, appliers and the daemon."""

from supervit.inventory import ServiceCollector, ServiceInfo, ServiceState
from supervit.node._appliers import (
    ConfigApplier,
    ConfigAppliers,
    Undo,
    default_appliers,
    log_level_applier,
    service_enabled_applier,
)
from supervit.node._auth_service import SUPERVISED_SERVICE, AuthService, add_supervised_service
from supervit.node._daemon import (
    ClientWiring,
    NodeDaemon,
    ReportingClient,
    ReportingClientFactory,
    services_from_config,
)
from supervit.node._supervisord import ShutdownRequestHandler, Supervisord

__all__ = [
    "SUPERVISED_SERVICE",
    "AuthService",
    "ClientWiring",
    "ConfigApplier",
    "ConfigAppliers",
    "NodeDaemon",
    "ReportingClient",
    "ReportingClientFactory",
    "ServiceCollector",
    "ServiceInfo",
    "ServiceState",
    "ShutdownRequestHandler",
    "Supervisord",
    "Undo",
    "add_supervised_service",
    "default_appliers",
    "log_level_applier",
    "service_enabled_applier",
    "services_from_config",
]
