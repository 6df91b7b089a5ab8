"""What a node's SupervisedService answers, as small frozen dataclasses.

:class:`~supervit.client.SupervisedClient` returns these instead of the ``*_pb2`` responses.
Each keeps the protocol message it was made from in ``message`` (left out of ``==`` and
``repr``) for callers that need a field the view does not carry, or the wire form itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from supervit.protocol import common_pb2, supervised_pb2

__all__ = [
    "ConfigUpdate",
    "ConfigValue",
    "NodeInfo",
    "NodeMetrics",
    "RealmInfo",
    "RealmPage",
    "ServiceHealth",
    "ShutdownAck",
]


@dataclass(frozen=True, slots=True)
class RealmInfo:
    """One realm as a node stores it (times in Unix seconds; ``expires_at`` 0 = never)."""

    realm_id: int
    name: str
    enabled: bool
    status: str
    """``"Normal"``, ``"Suspended"`` or ``"Terminated"``."""
    version: int
    use_servers: tuple[int, ...]
    """:class:`~supervit.protocol.common_pb2.ResourceType` values."""
    created_at: int
    updated_at: int | None
    expires_at: int
    message: common_pb2.RealmInfo = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: common_pb2.RealmInfo) -> RealmInfo:
        return cls(
            realm_id=message.realm_id,
            name=message.name,
            enabled=message.enabled,
            status=message.status,
            version=message.version,
            use_servers=tuple(int(s) for s in message.use_servers),
            created_at=message.created_at,
            updated_at=message.updated_at if message.HasField("updated_at") else None,
            expires_at=message.expires_at,
            message=message,
        )


@dataclass(frozen=True, slots=True)
class RealmPage:
    """One page of ListRealms; ``next_page_token`` is None on the last page."""

    realms: tuple[RealmInfo, ...]
    next_page_token: str | None
    total_count: int
    message: supervised_pb2.ListRealmsResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: supervised_pb2.ListRealmsResponse) -> RealmPage:
        token = message.next_page_token if message.HasField("next_page_token") else None
        return cls(
            realms=tuple(RealmInfo.from_message(r) for r in message.realms),
            next_page_token=token or None,
            total_count=message.total_count,
            message=message,
        )


@dataclass(frozen=True, slots=True)
class ConfigValue:
    """The stored value of one config key (as the node normalised it)."""

    config_type: int
    """A :class:`~supervit.protocol.common_pb2.ConfigType` value."""
    key: str
    value: str
    message: supervised_pb2.GetConfigResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, config_type: int, key: str, message: supervised_pb2.GetConfigResponse) -> ConfigValue:
        return cls(config_type=int(config_type), key=key, value=message.config_value, message=message)


@dataclass(frozen=True, slots=True)
class ConfigUpdate:
    """The outcome of UpdateConfig: the value before (None when the key was unset)."""

    old_value: str | None
    message: supervised_pb2.UpdateConfigResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: supervised_pb2.UpdateConfigResponse) -> ConfigUpdate:
        return cls(old_value=message.old_value if message.HasField("old_value") else None, message=message)


@dataclass(frozen=True, slots=True)
class NodeMetrics:
    """The node's current system metrics (percentages 0-100, sizes in bytes)."""

    cpu_usage_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    memory_usage_percent: float
    network_rx_bytes: int
    network_tx_bytes: int
    disk_used_bytes: int
    disk_total_bytes: int
    load_average_1m: float
    load_average_5m: float | None
    load_average_15m: float | None
    message: common_pb2.SystemMetrics = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: common_pb2.SystemMetrics) -> NodeMetrics:
        return cls(
            cpu_usage_percent=message.cpu_usage_percent,
            memory_used_bytes=message.memory_used_bytes,
            memory_total_bytes=message.memory_total_bytes,
            memory_usage_percent=message.memory_usage_percent,
            network_rx_bytes=message.network_rx_bytes,
            network_tx_bytes=message.network_tx_bytes,
            disk_used_bytes=message.disk_used_bytes,
            disk_total_bytes=message.disk_total_bytes,
            load_average_1m=message.load_average_1m,
            load_average_5m=message.load_average_5m if message.HasField("load_average_5m") else None,
            load_average_15m=message.load_average_15m if message.HasField("load_average_15m") else None,
            message=message,
        )


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """One service the node runs, as GetNodeInfo reports it."""

    name: str
    type: int
    """A :class:`~supervit.protocol.common_pb2.ResourceType` value."""
    is_healthy: bool
    active_connections: int
    total_requests: int
    failed_requests: int
    average_latency_ms: float
    url: str | None
    port: int | None
    domain: str | None
    message: common_pb2.ServiceStatus = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: common_pb2.ServiceStatus) -> ServiceHealth:
        return cls(
            name=message.name,
            type=int(message.type),
            is_healthy=message.is_healthy,
            active_connections=message.active_connections,
            total_requests=message.total_requests,
            failed_requests=message.failed_requests,
            average_latency_ms=message.average_latency_ms,
            url=message.url if message.HasField("url") else None,
            port=message.port if message.HasField("port") else None,
            domain=message.domain if message.HasField("domain") else None,
            message=message,
        )


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """GetNodeInfo: the node's identity, uptime, current metrics (if it has them) and services."""

    node_id: str
    name: str
    version: str
    location_tag: str
    uptime_secs: int
    metrics: NodeMetrics | None
    services: tuple[ServiceHealth, ...]
    message: supervised_pb2.GetNodeInfoResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: supervised_pb2.GetNodeInfoResponse) -> NodeInfo:
        metrics = NodeMetrics.from_message(message.current_metrics) if message.HasField("current_metrics") else None
        return cls(
            node_id=message.node_id,
            name=message.name,
            version=message.version,
            location_tag=message.location_tag,
            uptime_secs=message.uptime_secs,
            metrics=metrics,
            services=tuple(ServiceHealth.from_message(s) for s in message.services),
            message=message,
        )


@dataclass(frozen=True, slots=True)
class ShutdownAck:
    """The node accepted a Shutdown; ``estimated_shutdown_time`` is Unix seconds when it gave one."""

    estimated_shutdown_time: int | None
    message: supervised_pb2.ShutdownResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: supervised_pb2.ShutdownResponse) -> ShutdownAck:
        eta = message.estimated_shutdown_time if message.HasField("estimated_shutdown_time") else None
        return cls(estimated_shutdown_time=eta, message=message)
