"""Stable import aliases for the generated ``supervisor.v1`` protocol modules.

Everything else in supervit (and user code) imports messages and stubs from here, never from
``supervit._proto`` directly, so the generated layout can change without touching callers::

    from supervit.protocol import common_pb2, supervised_pb2, supervised_pb2_grpc

``supervit_admin_pb2`` / ``supervit_admin_pb2_grpc`` are supervit's own operator API
(package ``supervit.admin.v1``, the supervisor's admin port), not part of the wire contract.

The wire conventions both ends rely on beyond the messages (status details, metadata keys) live
here too, so the client and the supervisor each import them from the protocol layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervit._lazy import lazy_exports

if TYPE_CHECKING:
    from supervit._proto import (
        common_pb2,
        supervised_pb2,
        supervised_pb2_grpc,
        supervisor_pb2,
        supervisor_pb2_grpc,
        supervit_admin_pb2,
        supervit_admin_pb2_grpc,
    )
else:
    # Imported on first use (supervit/_lazy.py); the block above, for type checkers, names the same.
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "supervit._proto": (
                "common_pb2",
                "supervised_pb2",
                "supervised_pb2_grpc",
                "supervisor_pb2",
                "supervisor_pb2_grpc",
                "supervit_admin_pb2",
                "supervit_admin_pb2_grpc",
            ),
        },
    )

__all__ = [
    "LEAVING_METADATA_KEY",
    "LOG_LEVELS",
    "NOT_REGISTERED_DETAILS",
    "SERVER_TIME_METADATA_KEY",
    "common_pb2",
    "supervised_pb2",
    "supervised_pb2_grpc",
    "supervisor_pb2",
    "supervisor_pb2_grpc",
    "supervit_admin_pb2",
    "supervit_admin_pb2_grpc",
]

SERVER_TIME_METADATA_KEY = "x-server-time"
"""Trailing metadata key carrying the supervisor's Unix time on refusals (supervit extension)."""

LEAVING_METADATA_KEY = "supervit-leaving"
"""Request metadata of a node's final Report before it stops on purpose (value: the reason, or
``"stopping"``). A supervit supervisor records the node as ``stopped`` at once; an actrix
supervisor ignores unknown metadata, so the report is an ordinary one there (supervit extension)."""

LOG_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "critical")
"""Log level names supervit accepts, case-insensitively: in its config files, on the command line
and as the value of a ``LOG_LEVEL`` config update (the names the actrix nodes use, plus Python's)."""

NOT_REGISTERED_DETAILS = "node not registered"
"""Status details a supervisor sends with ``NOT_FOUND`` for a Report from an unknown node."""
