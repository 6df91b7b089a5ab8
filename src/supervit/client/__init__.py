"""The node's client of the supervisor: registration, status reports, health checks.

:class:`SupervitClient` registers the node, reports on the interval the supervisor steers, obeys
its directives, and recovers from outages, unknown-node answers and clock skew on its own. The
module docstring of :mod:`supervit.client._client` documents the two supervit conventions on top
of the wire contract: ``NOT_FOUND`` "node not registered" for re-registration and the
``x-server-time`` trailing metadata.
"""

from supervit.client._backoff import Backoff
from supervit.client._client import RealmVersionSource, ShutdownHandler, Sleep, SupervitClient
from supervit.client._errors import (
    LEAVING_METADATA_KEY,
    NOT_REGISTERED_DETAILS,
    SERVER_TIME_METADATA_KEY,
    RegistrationRejectedError,
)
from supervit.client._skew import ClockSkewEstimator
from supervit.client._state import ConnectionState, ConnectionStatus

__all__ = [
    "LEAVING_METADATA_KEY",
    "NOT_REGISTERED_DETAILS",
    "SERVER_TIME_METADATA_KEY",
    "Backoff",
    "ClockSkewEstimator",
    "ConnectionState",
    "ConnectionStatus",
    "RealmVersionSource",
    "RegistrationRejectedError",
    "ShutdownHandler",
    "Sleep",
    "SupervitClient",
]
