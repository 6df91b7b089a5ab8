"""The reference supervisor: SupervisorService, node registry, directives, realm catalog, admin API.

Run it with ``supervit supervisor --config supervisor.toml`` (see ``docs/supervisor.md``), or
embed it::

    config = load_supervisor_config("supervisor.toml")
    supervisor = Supervisor(config)
    await supervisor.start()          # supervisor.address, supervisor.admin_address
    ...
    await supervisor.stop()
"""

from typing import TYPE_CHECKING

from supervit._lazy import lazy_exports

if TYPE_CHECKING:
    from supervit.config import split_host_port  # re-exported: the address parser ctl and tools use
    from supervit.supervisor._admin import ADMIN_SERVICE, AdminService, node_summary
    from supervit.supervisor._admin_client import AdminClient
    from supervit.supervisor._admin_payload import admin_payload
    from supervit.supervisor._admin_views import (
        CatalogChange,
        CatalogListing,
        CatalogRealmInfo,
        CatalogRemoval,
        DirectiveQueued,
        NodeListing,
        NodeSummary,
    )
    from supervit.supervisor._backends import open_store
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
        SupervisorSecuritySection,
        load_supervisor_config,
    )
    from supervit.supervisor._directives import DirectiveQueue, QueuedDirective, validate_directive
    from supervit.supervisor._ingest import IngestNonceStorage, RecentNonces, ReportIngest
    from supervit.supervisor._pg_schema import PG_MIGRATIONS, PendingMigrations
    from supervit.supervisor._push import CatalogPusher, PushError, PushResult
    from supervit.supervisor._registry import NodeRecord, NodeRegistry, Registration, ReportOutcome
    from supervit.supervisor._schema import SUPERVISOR_DB_FILENAME, SUPERVISOR_MIGRATIONS, open_supervisor_database
    from supervit.supervisor._server import Supervisor
    from supervit.supervisor._service import (
        NOT_REGISTERED_DETAILS,
        SERVER_TIME_METADATA_KEY,
        SUPERVISOR_SERVICE,
        SupervisorService,
    )
    from supervit.supervisor._sqlite_store import SqliteStore
    from supervit.supervisor._store import (
        CatalogStore,
        DirectiveStore,
        IngestStore,
        RegistryStore,
        SupervisorStore,
    )
    from supervit.supervisor._transfer import check_sqlite_schema, export_sqlite, import_postgres, migrate_postgres
else:
    # Imported on first use (supervit/_lazy.py); the block above, for type checkers, names the same.
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "supervit.config": ("split_host_port",),
            "supervit.supervisor._admin": (
                "ADMIN_SERVICE",
                "AdminService",
                "node_summary",
            ),
            "supervit.supervisor._admin_payload": ("admin_payload",),
            "supervit.supervisor._admin_client": ("AdminClient",),
            "supervit.supervisor._admin_views": (
                "CatalogChange",
                "CatalogListing",
                "CatalogRealmInfo",
                "CatalogRemoval",
                "DirectiveQueued",
                "NodeListing",
                "NodeSummary",
            ),
            "supervit.supervisor._backends": ("open_store",),
            "supervit.supervisor._catalog": (
                "CatalogChanges",
                "CatalogError",
                "CatalogRealm",
                "RealmCatalog",
                "RealmExistsError",
                "RealmNotFoundError",
            ),
            "supervit.supervisor._config": (
                "AdminSection",
                "FleetSection",
                "NodeOverride",
                "PushSection",
                "ServerSection",
                "SupervisorConfig",
                "SupervisorSecuritySection",
                "load_supervisor_config",
            ),
            "supervit.supervisor._directives": (
                "DirectiveQueue",
                "QueuedDirective",
                "validate_directive",
            ),
            "supervit.supervisor._ingest": (
                "IngestNonceStorage",
                "RecentNonces",
                "ReportIngest",
            ),
            "supervit.supervisor._pg_schema": (
                "PG_MIGRATIONS",
                "PendingMigrations",
            ),
            "supervit.supervisor._push": (
                "CatalogPusher",
                "PushError",
                "PushResult",
            ),
            "supervit.supervisor._registry": (
                "NodeRecord",
                "NodeRegistry",
                "Registration",
                "ReportOutcome",
            ),
            "supervit.supervisor._schema": (
                "SUPERVISOR_DB_FILENAME",
                "SUPERVISOR_MIGRATIONS",
                "open_supervisor_database",
            ),
            "supervit.supervisor._server": ("Supervisor",),
            "supervit.supervisor._service": (
                "NOT_REGISTERED_DETAILS",
                "SERVER_TIME_METADATA_KEY",
                "SUPERVISOR_SERVICE",
                "SupervisorService",
            ),
            "supervit.supervisor._sqlite_store": ("SqliteStore",),
            "supervit.supervisor._store": (
                "CatalogStore",
                "DirectiveStore",
                "IngestStore",
                "RegistryStore",
                "SupervisorStore",
            ),
            "supervit.supervisor._transfer": (
                "check_sqlite_schema",
                "export_sqlite",
                "import_postgres",
                "migrate_postgres",
            ),
        },
    )

__all__ = [
    "ADMIN_SERVICE",
    "NOT_REGISTERED_DETAILS",
    "PG_MIGRATIONS",
    "SERVER_TIME_METADATA_KEY",
    "SUPERVISOR_DB_FILENAME",
    "SUPERVISOR_MIGRATIONS",
    "SUPERVISOR_SERVICE",
    "AdminClient",
    "AdminSection",
    "AdminService",
    "CatalogChange",
    "CatalogChanges",
    "CatalogError",
    "CatalogListing",
    "CatalogPusher",
    "CatalogRealm",
    "CatalogRealmInfo",
    "CatalogRemoval",
    "CatalogStore",
    "DirectiveQueue",
    "DirectiveQueued",
    "DirectiveStore",
    "FleetSection",
    "IngestNonceStorage",
    "IngestStore",
    "NodeListing",
    "NodeOverride",
    "NodeRecord",
    "NodeRegistry",
    "NodeSummary",
    "PendingMigrations",
    "PushError",
    "PushResult",
    "PushSection",
    "QueuedDirective",
    "RealmCatalog",
    "RealmExistsError",
    "RealmNotFoundError",
    "RecentNonces",
    "Registration",
    "RegistryStore",
    "ReportIngest",
    "ReportOutcome",
    "ServerSection",
    "SqliteStore",
    "Supervisor",
    "SupervisorConfig",
    "SupervisorSecuritySection",
    "SupervisorService",
    "SupervisorStore",
    "admin_payload",
    "check_sqlite_schema",
    "export_sqlite",
    "import_postgres",
    "load_supervisor_config",
    "migrate_postgres",
    "node_summary",
    "open_store",
    "open_supervisor_database",
    "split_host_port",
    "validate_directive",
]
