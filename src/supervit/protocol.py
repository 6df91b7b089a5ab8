"""Stable import aliases for the generated ``supervisor.v1`` protocol modules.

Everything else in supervit (and user code) imports messages and stubs from here, never from
``supervit._proto`` directly, so the generated layout can change without touching callers::

    from supervit.protocol import common_pb2, supervised_pb2, supervised_pb2_grpc

``supervit_admin_pb2`` / ``supervit_admin_pb2_grpc`` are supervit's own operator API
(package ``supervit.admin.v1``, the supervisor's admin port), not part of the wire contract.
"""

from __future__ import annotations

from supervit._proto import (
    common_pb2,
    supervised_pb2,
    supervised_pb2_grpc,
    supervisor_pb2,
    supervisor_pb2_grpc,
    supervit_admin_pb2,
    supervit_admin_pb2_grpc,
)

__all__ = [
    "common_pb2",
    "supervised_pb2",
    "supervised_pb2_grpc",
    "supervisor_pb2",
    "supervisor_pb2_grpc",
    "supervit_admin_pb2",
    "supervit_admin_pb2_grpc",
]
