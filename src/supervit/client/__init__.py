"""Clients: the node's client of the supervisor (registration, status reports, health checks),
and :class:`SupervisedClient`, signed calls to a node's SupervisedService.

:class:`SupervitClient` registers the node, reports on the interval the supervisor steers, obeys
its directives, and recovers from outages, unknown-node answers and clock skew on its own. The
module docstring of :mod:`supervit.client._client` documents the two supervit conventions on top
of the wire contract: ``NOT_FOUND`` "node not registered" for re-registration and the
``x-server-time`` trailing metadata.
"""

from typing import TYPE_CHECKING

from supervit._lazy import lazy_exports

if TYPE_CHECKING:
    from supervit.client._backoff import Backoff
    from supervit.client._client import RealmVersionSource, ShutdownDirectiveHandler, Sleep, SupervitClient
    from supervit.client._errors import (
        LEAVING_METADATA_KEY,
        NOT_REGISTERED_DETAILS,
        SERVER_TIME_METADATA_KEY,
        CredentialRejectedError,
        DeadlineExceededError,
        InvalidArgumentError,
        PeerUnavailableError,
        RefusedNotFoundError,
        RegistrationRejectedError,
        RemoteNotFoundError,
        RequestRefusedError,
        status_error,
    )
    from supervit.client._node_views import (
        ConfigUpdate,
        ConfigValue,
        NodeInfo,
        NodeMetrics,
        RealmInfo,
        RealmPage,
        ServiceHealth,
        ShutdownAck,
    )
    from supervit.client._skew import ClockSkewEstimator
    from supervit.client._state import ConnectionState, ConnectionStatus
    from supervit.client._supervised import SupervisedClient
    from supervit.client._supervisor_views import Directive, HealthStatus, RegistrationResult, ReportResult
else:
    # Imported on first use (supervit/_lazy.py); the block above, for type checkers, names the same.
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "supervit.client._backoff": ("Backoff",),
            "supervit.client._client": (
                "RealmVersionSource",
                "ShutdownDirectiveHandler",
                "Sleep",
                "SupervitClient",
            ),
            "supervit.client._errors": (
                "LEAVING_METADATA_KEY",
                "NOT_REGISTERED_DETAILS",
                "SERVER_TIME_METADATA_KEY",
                "CredentialRejectedError",
                "DeadlineExceededError",
                "InvalidArgumentError",
                "PeerUnavailableError",
                "RefusedNotFoundError",
                "RegistrationRejectedError",
                "RemoteNotFoundError",
                "RequestRefusedError",
                "status_error",
            ),
            "supervit.client._node_views": (
                "ConfigUpdate",
                "ConfigValue",
                "NodeInfo",
                "NodeMetrics",
                "RealmInfo",
                "RealmPage",
                "ServiceHealth",
                "ShutdownAck",
            ),
            "supervit.client._skew": ("ClockSkewEstimator",),
            "supervit.client._state": (
                "ConnectionState",
                "ConnectionStatus",
            ),
            "supervit.client._supervised": ("SupervisedClient",),
            "supervit.client._supervisor_views": (
                "Directive",
                "HealthStatus",
                "RegistrationResult",
                "ReportResult",
            ),
        },
    )

__all__ = [
    "LEAVING_METADATA_KEY",
    "NOT_REGISTERED_DETAILS",
    "SERVER_TIME_METADATA_KEY",
    "Backoff",
    "ClockSkewEstimator",
    "ConfigUpdate",
    "ConfigValue",
    "ConnectionState",
    "ConnectionStatus",
    "CredentialRejectedError",
    "DeadlineExceededError",
    "Directive",
    "HealthStatus",
    "InvalidArgumentError",
    "NodeInfo",
    "NodeMetrics",
    "PeerUnavailableError",
    "RealmInfo",
    "RealmPage",
    "RealmVersionSource",
    "RefusedNotFoundError",
    "RegistrationRejectedError",
    "RegistrationResult",
    "RemoteNotFoundError",
    "ReportResult",
    "RequestRefusedError",
    "ServiceHealth",
    "ShutdownAck",
    "ShutdownDirectiveHandler",
    "Sleep",
    "SupervisedClient",
    "SupervitClient",
    "status_error",
]
