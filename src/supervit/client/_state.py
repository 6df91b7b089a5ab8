"""The client's connection state: what ``SupervitClient.state`` reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["ConnectionState", "ConnectionStatus", "StateTracker"]


class ConnectionStatus(StrEnum):
    """Where the client stands with its supervisor."""

    DISCONNECTED = "disconnected"
    """No channel: before :meth:`~supervit.client.SupervitClient.connect` or after ``stop()``."""
    CONNECTED = "connected"
    """A channel is open but the node is not (or no longer) registered."""
    REGISTERED = "registered"
    """Registered, and the last call to the supervisor succeeded."""
    DEGRADED = "degraded"
    """The last call(s) failed; the client is backing off and will re-register."""


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """A snapshot of the client's connection state. Times are Unix seconds on the node's clock."""

    status: ConnectionStatus
    last_success: float | None
    """When a call to the supervisor last succeeded."""
    consecutive_failures: int
    """Failed calls since the last success."""
    clock_skew_secs: float
    """The node's clock minus the supervisor's (positive: the node is ahead); 0.0 until measured."""
    last_report_at: float | None
    """When a Report was last acknowledged."""
    current_interval_secs: float
    """The reporting interval in force (configured, then steered by the supervisor)."""
    registered_at: float | None
    """When the current registration succeeded; ``None`` while not registered."""
    reports_succeeded: int = 0
    """Reports the supervisor acknowledged since the client was created."""
    report_failures: Mapping[str, int] = field(default_factory=dict)
    """Failed reports since the client was created, by gRPC status code name (e.g. ``UNAVAILABLE``)."""


class StateTracker:
    """Mutable bookkeeping behind :class:`ConnectionState` (event-loop confined, no locking)."""

    __slots__ = (
        "channel_open",
        "clock_skew_secs",
        "consecutive_failures",
        "current_interval_secs",
        "last_report_at",
        "last_success",
        "registered_at",
        "report_failures",
        "reports_succeeded",
    )

    def __init__(self, interval_secs: float) -> None:
        self.channel_open = False
        self.last_success: float | None = None
        self.consecutive_failures = 0
        self.clock_skew_secs = 0.0
        self.last_report_at: float | None = None
        self.current_interval_secs = interval_secs
        self.registered_at: float | None = None
        self.reports_succeeded = 0
        self.report_failures: dict[str, int] = {}

    @property
    def registered(self) -> bool:
        return self.registered_at is not None

    @property
    def status(self) -> ConnectionStatus:
        if not self.channel_open:
            return ConnectionStatus.DISCONNECTED
        if self.consecutive_failures:
            return ConnectionStatus.DEGRADED
        if self.registered:
            return ConnectionStatus.REGISTERED
        return ConnectionStatus.CONNECTED

    def success(self, now: float) -> None:
        self.last_success = now
        self.consecutive_failures = 0

    def failure(self) -> None:
        self.consecutive_failures += 1

    def snapshot(self) -> ConnectionState:
        return ConnectionState(
            status=self.status,
            last_success=self.last_success,
            consecutive_failures=self.consecutive_failures,
            clock_skew_secs=self.clock_skew_secs,
            last_report_at=self.last_report_at,
            current_interval_secs=self.current_interval_secs,
            registered_at=self.registered_at,
            reports_succeeded=self.reports_succeeded,
            report_failures=dict(self.report_failures),
        )

    def report_failed(self, code_name: str) -> None:
        self.report_failures[code_name] = self.report_failures.get(code_name, 0) + 1
