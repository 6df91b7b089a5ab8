"""The reference supervisor: SupervisorService, node registry, directives, realm catalog, admin API.

Run it with ``supervit supervisor --config supervisor.toml`` (see ``docs/supervisor.md``), or
embed it::

    config = load_supervisor_config("supervisor.toml")
    supervisor = Supervisor(config)
    await supervisor.start()          # supervisor.address, supervisor.admin_address
    ...
    await supervisor.stop()
"""

from supervit.supervisor._admin import ADMIN_SERVICE, AdminService, admin_payload, node_summary
from supervit.supervisor._admin_client import AdminClient
from supervit.supervisor._catalog import (
    CatalogChanges,
    CatalogError,
    CatalogRealm,
    RealmCatalog,
    RealmExistsError,
    RealmNotFoundError,
)
from supervit.supervisor._config import (
    AdminSection,
    FleetSection,
    NodeOverride,
    PushSection,
    ServerSection,
    SupervisorConfig,
    load_supervisor_config,
    split_host_port,
)
from supervit.supervisor._directives import DirectiveQueue, QueuedDirective, validate_directive
from supervit.supervisor._ingest import IngestNonceStorage, RecentNonces, ReportIngest
from supervit.supervisor._push import CatalogPusher, PushError, PushResult
from supervit.supervisor._registry import NodeRecord, NodeRegistry, Registration, RegistryNonceStorage, ReportOutcome
from supervit.supervisor._schema import SUPERVISOR_DB_FILENAME, SUPERVISOR_MIGRATIONS, open_supervisor_database
from supervit.supervisor._server import Supervisor
from supervit.supervisor._service import (
    NOT_REGISTERED_DETAILS,
    SERVER_TIME_METADATA_KEY,
    SUPERVISOR_SERVICE,
    SupervisorService,
)

__all__ = [
    "ADMIN_SERVICE",
    "NOT_REGISTERED_DETAILS",
    "SERVER_TIME_METADATA_KEY",
    "SUPERVISOR_DB_FILENAME",
    "SUPERVISOR_MIGRATIONS",
    "SUPERVISOR_SERVICE",
    "AdminClient",
    "AdminSection",
    "AdminService",
    "CatalogChanges",
    "CatalogError",
    "CatalogPusher",
    "CatalogRealm",
    "DirectiveQueue",
    "FleetSection",
    "IngestNonceStorage",
    "NodeOverride",
    "NodeRecord",
    "NodeRegistry",
    "PushError",
    "PushResult",
    "PushSection",
    "QueuedDirective",
    "RealmCatalog",
    "RealmExistsError",
    "RealmNotFoundError",
    "RecentNonces",
    "Registration",
    "RegistryNonceStorage",
    "ReportIngest",
    "ReportOutcome",
    "ServerSection",
    "Supervisor",
    "SupervisorConfig",
    "SupervisorService",
    "admin_payload",
    "load_supervisor_config",
    "node_summary",
    "open_supervisor_database",
    "split_host_port",
    "validate_directive",
]
