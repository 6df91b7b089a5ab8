"""What the supervisor answers :class:`~supervit.client.SupervitClient`, as small frozen dataclasses.

Each keeps the protocol message it was made from in ``message`` (left out of ``==`` and
``repr``) for callers that need the wire form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from supervit.protocol import supervisor_pb2

__all__ = ["Directive", "HealthStatus", "RegistrationResult", "ReportResult"]


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    """An accepted RegisterNode (a refusal raises :class:`~supervit.client.RegistrationRejectedError`)."""

    server_timestamp: int
    """The supervisor's clock, Unix seconds."""
    heartbeat_interval_secs: int
    resource_version: int | None
    registered_at_iso: str | None
    message: supervisor_pb2.RegisterNodeResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: supervisor_pb2.RegisterNodeResponse) -> RegistrationResult:
        return cls(
            server_timestamp=message.server_timestamp,
            heartbeat_interval_secs=message.heartbeat_interval_secs,
            resource_version=message.resource_version if message.HasField("resource_version") else None,
            registered_at_iso=message.registered_at_iso if message.HasField("registered_at_iso") else None,
            message=message,
        )


@dataclass(frozen=True, slots=True)
class Directive:
    """An instruction riding on a ReportResponse.

    ``type`` is a :class:`~supervit.protocol.supervisor_pb2.DirectiveType` value, or None for a
    type this build does not know (protobuf parses it as unset).
    """

    type: int | None
    payload: str | None
    message: supervisor_pb2.Directive = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: supervisor_pb2.Directive) -> Directive:
        return cls(
            type=int(message.type) if message.HasField("type") else None,
            payload=message.payload if message.HasField("payload") else None,
            message=message,
        )


@dataclass(frozen=True, slots=True)
class ReportResult:
    """A received Report (``received = false`` raises :class:`~supervit.RpcError`)."""

    server_timestamp: int
    next_report_interval_secs: int
    """The interval the supervisor asks for (0: no change)."""
    directive: Directive | None
    message: supervisor_pb2.ReportResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: supervisor_pb2.ReportResponse) -> ReportResult:
        directive = Directive.from_message(message.directive) if message.HasField("directive") else None
        return cls(
            server_timestamp=message.server_timestamp,
            next_report_interval_secs=message.next_report_interval_secs,
            directive=directive,
            message=message,
        )


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """A HealthCheck answer: whether the supervisor says it is healthy, its clock and latency."""

    healthy: bool
    server_timestamp: int
    latency_ms: int
    message: supervisor_pb2.HealthCheckResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: supervisor_pb2.HealthCheckResponse) -> HealthStatus:
        return cls(
            healthy=message.healthy,
            server_timestamp=message.server_timestamp,
            latency_ms=message.latency_ms,
            message=message,
        )
