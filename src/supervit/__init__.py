"""supervit: node agent and reference supervisor for the actrix ``supervisor.v1`` gRPC protocol.

The public surface is what ``__all__`` lists; everything lives in private modules and is
re-exported here, loaded on first access (PEP 562) so that ``import supervit`` (and with it every
``python -m supervit`` command) pays only for what it uses: ``supervit gen-credential`` needs no
gRPC. Subpackages (``supervit.auth``, ``supervit.storage``, ``supervit.metrics``, ``supervit.supervisor``
…) expose their finer-grained building blocks.
"""

import os as _os
from typing import TYPE_CHECKING

# gRPC's C core prints some transport events on stderr at INFO by default (e.g. "Got goaway"):
# noise in the daemons' logs, and not JSON in log_format = "json". ERROR is its documented
# default; an explicit GRPC_VERBOSITY wins. Read once, when grpc is imported: hence first here.
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from supervit._exceptions import (
    AuthError,
    ConfigError,
    InvalidRequestError,
    InvalidSignatureError,
    NonceReusedError,
    NonceStorageError,
    NotFoundError,
    NotRegisteredError,
    RpcError,
    StorageError,
    StoreUnavailableError,
    SupervitError,
    TimestampOutOfRangeError,
)
from supervit._lazy import lazy_exports

if TYPE_CHECKING:
    from supervit._version import __version__
    from supervit.auth import (
        CredentialVerifier,
        MemoryNonceStorage,
        NonceStorage,
        SharedSecret,
        Signer,
        SqliteNonceStorage,
    )
    from supervit.client import ConnectionState, ConnectionStatus, SupervitClient
    from supervit.config import NodeConfig, SupervitConfig, load_node_config
    from supervit.metrics import (
        MetricsProvider,
        Snapshot,
        StaticMetricsProvider,
        SystemMetricsCollector,
        power_reserve_level,
    )
    from supervit.node import (
        AuthService,
        NodeDaemon,
        ServiceCollector,
        ServiceInfo,
        ServiceState,
        Supervisord,
        add_supervised_service,
    )
    from supervit.supervisor import Supervisor, SupervisorConfig, load_supervisor_config
else:
    # Imported on first use (supervit/_lazy.py); the block above, for type checkers, names the same.
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "supervit._version": ("__version__",),
            "supervit.auth": (
                "CredentialVerifier",
                "MemoryNonceStorage",
                "NonceStorage",
                "SharedSecret",
                "Signer",
                "SqliteNonceStorage",
            ),
            "supervit.client": (
                "ConnectionState",
                "ConnectionStatus",
                "SupervitClient",
            ),
            "supervit.config": (
                "NodeConfig",
                "SupervitConfig",
                "load_node_config",
            ),
            "supervit.metrics": (
                "MetricsProvider",
                "Snapshot",
                "StaticMetricsProvider",
                "SystemMetricsCollector",
                "power_reserve_level",
            ),
            "supervit.node": (
                "AuthService",
                "NodeDaemon",
                "ServiceCollector",
                "ServiceInfo",
                "ServiceState",
                "Supervisord",
                "add_supervised_service",
            ),
            "supervit.supervisor": (
                "Supervisor",
                "SupervisorConfig",
                "load_supervisor_config",
            ),
        },
    )
del TYPE_CHECKING, lazy_exports  # not part of the public surface (test_public_api)

__all__ = [
    "AuthError",
    "AuthService",
    "ConfigError",
    "ConnectionState",
    "ConnectionStatus",
    "CredentialVerifier",
    "InvalidRequestError",
    "InvalidSignatureError",
    "MemoryNonceStorage",
    "MetricsProvider",
    "NodeConfig",
    "NodeDaemon",
    "NonceReusedError",
    "NonceStorage",
    "NonceStorageError",
    "NotFoundError",
    "NotRegisteredError",
    "RpcError",
    "ServiceCollector",
    "ServiceInfo",
    "ServiceState",
    "SharedSecret",
    "Signer",
    "Snapshot",
    "SqliteNonceStorage",
    "StaticMetricsProvider",
    "StorageError",
    "StoreUnavailableError",
    "Supervisor",
    "SupervisorConfig",
    "Supervisord",
    "SupervitClient",
    "SupervitConfig",
    "SupervitError",
    "SystemMetricsCollector",
    "TimestampOutOfRangeError",
    "__version__",
    "add_supervised_service",
    "load_node_config",
    "load_supervisor_config",
    "power_reserve_level",
]
