"""ServiceCollector: the node's registry of its own services and their counters."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from supervit._exceptions import NotFoundError
from supervit.protocol import common_pb2, supervisor_pb2

__all__ = ["ServiceCollector", "ServiceInfo", "ServiceState"]

_ADV = supervisor_pb2.ServiceAdvertisementStatus


class ServiceState(StrEnum):
    """Lifecycle state of one service on this node."""

    HEALTHY = "healthy"
    RUNNING = "running"
    ERROR = "error"
    DISABLED = "disabled"

    @property
    def is_healthy(self) -> bool:
        return self in (ServiceState.HEALTHY, ServiceState.RUNNING)

    @property
    def advertisement_status(self) -> int:
        """healthy/running → RUNNING, error → ERROR, disabled → DISABLED."""
        if self is ServiceState.DISABLED:
            return _ADV.SERVICE_ADVERTISEMENT_STATUS_DISABLED
        if self is ServiceState.ERROR:
            return _ADV.SERVICE_ADVERTISEMENT_STATUS_ERROR
        return _ADV.SERVICE_ADVERTISEMENT_STATUS_RUNNING


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """One service the node runs (a snapshot: counters are as of when it was taken).

    ``type`` is a ``ResourceType`` number (``common_pb2.TURN`` …).
    """

    name: str
    type: int
    domain: str = ""
    port: int | None = None
    url: str | None = None
    state: ServiceState = ServiceState.HEALTHY
    description: str | None = None
    tags: tuple[str, ...] = ()
    active_connections: int = 0
    total_requests: int = 0
    failed_requests: int = 0
    total_latency_ms: float = field(default=0.0, repr=False)

    @property
    def average_latency_ms(self) -> float:
        return self.total_latency_ms / self.total_requests if self.total_requests else 0.0

    def to_status(self) -> common_pb2.ServiceStatus:
        """The ServiceStatus reported to the supervisor."""
        status = common_pb2.ServiceStatus(
            name=self.name,
            type=self.type,  # type: ignore[arg-type]
            is_healthy=self.state.is_healthy,
            active_connections=self.active_connections,
            total_requests=self.total_requests,
            failed_requests=self.failed_requests,
            average_latency_ms=self.average_latency_ms,
        )
        if self.url is not None:
            status.url = self.url
        if self.port is not None:
            status.port = self.port
        if self.domain:
            status.domain = self.domain
        return status

    def to_advertisement(self) -> supervisor_pb2.ServiceAdvertisement:
        """The ServiceAdvertisement sent in RegisterNode."""
        adv = supervisor_pb2.ServiceAdvertisement(
            name=self.name,
            type=self.type,  # type: ignore[arg-type]
            domain_name=self.domain,
            port_info="" if self.port is None else str(self.port),
            status=self.state.advertisement_status,  # type: ignore[arg-type]
            tags=list(self.tags),
        )
        if self.description is not None:
            adv.description = self.description
        if self.url is not None:
            adv.url = self.url
        return adv


class ServiceCollector:
    """Thread- and task-safe registry of the node's services.

    Every method is synchronous and non-blocking (a short lock), so it can be called from the
    event loop and from service threads alike.
    """

    def __init__(self, services: Iterable[ServiceInfo] = ()) -> None:
        self._lock = threading.Lock()
        self._services: dict[str, ServiceInfo] = {}
        for service in services:
            self.add(service)

    def add(self, service: ServiceInfo) -> None:
        """Register (or replace) a service by name."""
        if not service.name:
            raise ValueError("service name must not be empty")
        with self._lock:
            self._services[service.name] = service

    def remove(self, name: str) -> bool:
        """Forget a service; False if it was unknown."""
        with self._lock:
            return self._services.pop(name, None) is not None

    def _update(self, name: str, **changes: object) -> ServiceInfo:
        with self._lock:
            current = self._services.get(name)
            if current is None:
                raise NotFoundError("service", name)
            updated = dataclasses.replace(current, **changes)  # type: ignore[arg-type]
            self._services[name] = updated
            return updated

    def set_state(self, name: str, state: ServiceState | str) -> ServiceInfo:
        """Change a service's state (healthy/running/error/disabled)."""
        return self._update(name, state=ServiceState(state))

    def set_active_connections(self, name: str, count: int) -> ServiceInfo:
        """Set the current number of open connections."""
        if count < 0:
            raise ValueError("active connections cannot be negative")
        return self._update(name, active_connections=count)

    def record_request(self, name: str, latency_ms: float, *, failed: bool = False) -> None:
        """Count one handled request and its latency."""
        with self._lock:
            current = self._services.get(name)
            if current is None:
                raise NotFoundError("service", name)
            self._services[name] = dataclasses.replace(
                current,
                total_requests=current.total_requests + 1,
                failed_requests=current.failed_requests + (1 if failed else 0),
                total_latency_ms=current.total_latency_ms + max(0.0, latency_ms),
            )

    def get(self, name: str) -> ServiceInfo | None:
        with self._lock:
            return self._services.get(name)

    def services(self) -> list[ServiceInfo]:
        """A consistent snapshot of every service, sorted by name."""
        with self._lock:
            return sorted(self._services.values(), key=lambda s: s.name)

    def statuses(self) -> list[common_pb2.ServiceStatus]:
        return [s.to_status() for s in self.services()]

    def advertisements(self) -> list[supervisor_pb2.ServiceAdvertisement]:
        return [s.to_advertisement() for s in self.services()]

    def __len__(self) -> int:
        with self._lock:
            return len(self._services)
