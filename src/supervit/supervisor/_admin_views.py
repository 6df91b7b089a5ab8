"""What the SupervisorAdmin service answers :class:`AdminClient`, as small frozen dataclasses.

Each keeps the protocol message it was made from in ``message`` (left out of ``==`` and
``repr``), e.g. for ``json_format.MessageToDict`` or a node's advertised services.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from supervit.client import NodeMetrics, ServiceHealth
from supervit.protocol import supervit_admin_pb2

__all__ = [
    "CatalogChange",
    "CatalogListing",
    "CatalogRealmInfo",
    "CatalogRemoval",
    "DirectiveQueued",
    "NodeListing",
    "NodeSummary",
]

_pb = supervit_admin_pb2


@dataclass(frozen=True, slots=True)
class NodeSummary:
    """One registered node as the supervisor sees it (times in Unix seconds)."""

    node_id: str
    name: str
    state: str
    """``online``, ``offline`` or ``stopped``."""
    agent_addr: str
    version: str
    location_tag: str
    location: str | None
    service_tags: tuple[str, ...]
    registered_at: int
    first_registered_at: int
    last_report_at: int | None
    offline_since: int | None
    power_reserve_level: int | None
    metrics: NodeMetrics | None
    services: tuple[ServiceHealth, ...]
    realm_sync_version: int
    pushed_catalog_version: int
    sync_lag: int
    """Catalog versions the node is behind (0 = in sync)."""
    last_push_at: int | None
    last_push_error: str | None
    report_interval_secs: int
    pending_directives: int
    message: _pb.NodeSummary = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: _pb.NodeSummary) -> NodeSummary:
        return cls(
            node_id=message.node_id,
            name=message.name,
            state=message.state,
            agent_addr=message.agent_addr,
            version=message.version,
            location_tag=message.location_tag,
            location=message.location if message.HasField("location") else None,
            service_tags=tuple(message.service_tags),
            registered_at=message.registered_at,
            first_registered_at=message.first_registered_at,
            last_report_at=message.last_report_at if message.HasField("last_report_at") else None,
            offline_since=message.offline_since if message.HasField("offline_since") else None,
            power_reserve_level=message.power_reserve_level if message.HasField("power_reserve_level") else None,
            metrics=NodeMetrics.from_message(message.metrics) if message.HasField("metrics") else None,
            services=tuple(ServiceHealth.from_message(s) for s in message.services),
            realm_sync_version=message.realm_sync_version,
            pushed_catalog_version=message.pushed_catalog_version,
            sync_lag=message.sync_lag,
            last_push_at=message.last_push_at if message.HasField("last_push_at") else None,
            last_push_error=message.last_push_error if message.HasField("last_push_error") else None,
            report_interval_secs=message.report_interval_secs,
            pending_directives=message.pending_directives,
            message=message,
        )


@dataclass(frozen=True, slots=True)
class NodeListing:
    """Registered nodes (one page, or all of them from :meth:`AdminClient.list_nodes`)."""

    nodes: tuple[NodeSummary, ...]
    server_timestamp: int
    catalog_version: int
    next_page_token: str | None
    """None on the last page (and for a whole listing)."""
    total_count: int | None
    message: _pb.ListNodesResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: _pb.ListNodesResponse) -> NodeListing:
        return cls(
            nodes=tuple(NodeSummary.from_message(n) for n in message.nodes),
            server_timestamp=message.server_timestamp,
            catalog_version=message.catalog_version,
            next_page_token=message.next_page_token or None,
            total_count=message.total_count if message.HasField("total_count") else None,
            message=message,
        )


@dataclass(frozen=True, slots=True)
class DirectiveQueued:
    """A directive waiting for its node's next report: its id and place in the node's queue."""

    directive_id: int
    position: int
    message: _pb.EnqueueDirectiveResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: _pb.EnqueueDirectiveResponse) -> DirectiveQueued:
        return cls(directive_id=message.directive_id, position=message.position, message=message)


@dataclass(frozen=True, slots=True)
class CatalogRealmInfo:
    """One realm of the supervisor's catalog (``expires_at`` 0 = never)."""

    realm_id: int
    name: str
    enabled: bool
    use_servers: tuple[int, ...]
    expires_at: int
    version: int
    created_at: int
    updated_at: int | None
    message: _pb.CatalogRealm = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: _pb.CatalogRealm) -> CatalogRealmInfo:
        return cls(
            realm_id=message.realm_id,
            name=message.name,
            enabled=message.enabled,
            use_servers=tuple(int(s) for s in message.use_servers),
            expires_at=message.expires_at,
            version=message.version,
            created_at=message.created_at,
            updated_at=message.updated_at if message.HasField("updated_at") else None,
            message=message,
        )


@dataclass(frozen=True, slots=True)
class CatalogListing:
    """The catalog's realms and version."""

    realms: tuple[CatalogRealmInfo, ...]
    catalog_version: int
    message: _pb.ListCatalogResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: _pb.ListCatalogResponse) -> CatalogListing:
        return cls(
            realms=tuple(CatalogRealmInfo.from_message(r) for r in message.realms),
            catalog_version=message.catalog_version,
            message=message,
        )


@dataclass(frozen=True, slots=True)
class CatalogChange:
    """A catalog realm added or updated: its new state and the catalog version it made."""

    realm: CatalogRealmInfo
    catalog_version: int
    message: _pb.PutCatalogRealmResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, message: _pb.PutCatalogRealmResponse) -> CatalogChange:
        realm = CatalogRealmInfo.from_message(message.realm)
        return cls(realm=realm, catalog_version=message.catalog_version, message=message)


@dataclass(frozen=True, slots=True)
class CatalogRemoval:
    """A catalog realm removed: the catalog version its removal made."""

    realm_id: int
    catalog_version: int
    message: _pb.RemoveCatalogRealmResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, realm_id: int, message: _pb.RemoveCatalogRealmResponse) -> CatalogRemoval:
        return cls(realm_id=realm_id, catalog_version=message.catalog_version, message=message)
