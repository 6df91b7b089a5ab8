"""The storage interface of the supervisor: what the services need from a backend.

Two backends implement it:

* **SQLite** (the default, :class:`SqliteStore`): one process, one ``supervisor.db``; nothing to
  install. Everything is in one file, so a report's nonce, registry update and directive
  hand-over commit together; the process is always the leader of its own fleet.
* **PostgreSQL (+ Redis)** (:class:`~supervit.supervisor.PgStore`, ``[server] database_url``):
  shared state for several replicas; consumed nonces in Redis (``[server] nonce_store_url``) or in
  PostgreSQL. Fleet-wide duties (the offline sweep, catalog pushes) run on the one elected leader.

The service layer (:mod:`supervit.supervisor._service`, ``_admin``, ``_push``, ``_server``) only
uses these Protocols; every method raises :class:`~supervit.StorageError` when the store failed
(:class:`~supervit.StoreUnavailableError` when it cannot be reached: answered ``UNAVAILABLE``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from supervit.auth import NonceStorage
from supervit.protocol import supervisor_pb2
from supervit.supervisor._catalog import CatalogChanges, CatalogRealm
from supervit.supervisor._directives import QueuedDirective
from supervit.supervisor._registry import FleetCounts, NodeRecord, Registration, ReportOutcome

__all__ = [
    "BehindNode",
    "CatalogStore",
    "DirectiveStore",
    "IngestStore",
    "RegistryStore",
    "SupervisorStore",
]

BehindNode = tuple[str, str, int, int]
"""(node_id, agent_addr, realm_sync_version, pushed_catalog_version) of an online node."""


class RegistryStore(Protocol):
    """Registered nodes (see :class:`~supervit.supervisor.NodeRegistry`)."""

    async def register(
        self, request: supervisor_pb2.RegisterNodeRequest, fingerprint: str, *, report_interval_secs: int
    ) -> Registration:
        """Record a (re-)registration durably; the node is online from now on."""
        ...

    async def get(self, node_id: str) -> NodeRecord | None:
        """The node, or None if it never registered."""
        ...

    async def nodes(self) -> list[NodeRecord]:
        """Every node ever registered, by node id."""
        ...

    async def nodes_page(self, after: str | None, limit: int) -> tuple[list[NodeRecord], str | None]:
        """The readable nodes among the next ``limit`` rows after id ``after`` (None: from the start),
        in the store's id order, and the id to continue after (None when no rows are left).

        Listings page through the store with this instead of loading the whole fleet per page; an
        unreadable (quarantined) row is skipped but still advances the cursor.
        """
        ...

    async def count_nodes(self) -> int:
        """How many nodes are registered."""
        ...

    async def mark_offline(self, missed: int = 3) -> list[str]:
        """Mark nodes silent for more than ``missed`` intervals offline; the ids that just went."""
        ...

    async def record_push(self, node_id: str, *, pushed_version: int | None, error: str | None) -> None:
        """Note a catalog push outcome."""
        ...

    async def nodes_behind(self, live_version: int, catalog_version: int) -> list[BehindNode]:
        """Online nodes whose reported or pushed catalog position is behind the catalog."""
        ...

    async def mark_stopped(self, node_id: str) -> bool:
        """Record that the node left on purpose (state ``stopped``); False for an unknown node."""
        ...

    async def fleet_counts(self, catalog_version: int, live_version: int) -> FleetCounts:
        """Nodes online/offline, nodes behind the catalog (any state), directives queued (metrics)."""
        ...


class DirectiveStore(Protocol):
    """Per-node directive queues (see :class:`~supervit.supervisor.DirectiveQueue`)."""

    async def enqueue(
        self, node_id: str, directive_type: int, payload: str | None = None
    ) -> tuple[QueuedDirective, int]:
        """Queue a directive for a registered node; the directive and its 1-based position.

        :class:`~supervit.NotFoundError` for an unknown node, :class:`~supervit.InvalidRequestError`
        for a bad one.
        """
        ...

    async def pending(self, node_id: str) -> list[QueuedDirective]:
        """The node's queued directives, next first."""
        ...


class CatalogStore(Protocol):
    """The realm catalog (see :class:`~supervit.supervisor.RealmCatalog`)."""

    @property
    def version(self) -> int:
        """The latest catalog change (0 = never changed)."""
        ...

    @property
    def live_version(self) -> int:
        """The highest version of an existing realm."""
        ...

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every change this process learns of."""
        ...

    async def load(self) -> None:
        """Read the current versions."""
        ...

    async def add(
        self, realm_id: int, name: str, *, enabled: bool = True, use_servers: Iterable[int] = (), expires_at: int = 0
    ) -> CatalogRealm:
        """Add a realm under the next catalog version."""
        ...

    async def update(
        self,
        realm_id: int,
        *,
        name: str | None = None,
        enabled: bool | None = None,
        use_servers: Iterable[int] | None = None,
        expires_at: int | None = None,
    ) -> CatalogRealm:
        """Change a realm under the next catalog version."""
        ...

    async def remove(self, realm_id: int) -> CatalogRealm:
        """Turn a realm into a tombstone under the next catalog version."""
        ...

    async def get(self, realm_id: int) -> CatalogRealm | None:
        """The realm (None if absent or removed)."""
        ...

    async def realms(self) -> list[CatalogRealm]:
        """Every live realm by id."""
        ...

    async def changes_since(self, version: int) -> CatalogChanges:
        """Entries changed after ``version``, oldest first, and the version they bring a node to."""
        ...


class IngestStore(Protocol):
    """The Report / HealthCheck hot path (see :class:`~supervit.supervisor.ReportIngest`).

    Every method that accepts a request returns only once what it changed is durable.
    """

    @property
    def registry(self) -> RegistryStore:
        """The registry the reports go to."""
        ...

    async def load(self) -> None:
        """Prepare before serving (read state, recover what a crash left)."""
        ...

    def node_registered(self, node_id: str, registration: Registration) -> None:
        """Hook: a registration committed."""
        ...

    def directive_queued(self, node_id: str) -> None:
        """Hook: a directive for the node committed."""
        ...

    async def before_registration(self, node_id: str) -> None:
        """Called before a registration is written (earlier reports must not overwrite it)."""
        ...

    async def consume_nonce(self, nonce: str, expires_at: int) -> None:
        """Consume a HealthCheck nonce durably; :class:`~supervit.NonceReusedError` for a replay."""
        ...

    async def report(
        self,
        request: supervisor_pb2.ReportRequest,
        *,
        nonce: str,
        nonce_expires_at: int,
        interval_secs: int,
        take_directive: bool = True,
        received: bytes = b"",
    ) -> ReportOutcome | None:
        """Consume the nonce, record the report, take the next directive (unless ``take_directive``
        is False: a leaving node's final report); None for an unknown node. ``received``: the
        request's bytes as they arrived, when the caller has them (a store may keep them as they
        are instead of encoding the request again)."""
        ...

    async def node_left(self, node_id: str) -> bool:
        """After a leaving node's final report: mark it ``stopped``; False for an unknown node."""
        ...

    async def flush(self) -> None:
        """Wait until every report acknowledged so far is visible to registry reads."""
        ...


class SupervisorStore(Protocol):
    """One backend: the four stores, health, and who runs the fleet-wide duties."""

    @property
    def registry(self) -> RegistryStore: ...

    @property
    def catalog(self) -> CatalogStore: ...

    @property
    def directives(self) -> DirectiveStore: ...

    @property
    def ingest(self) -> IngestStore: ...

    @property
    def nonces(self) -> NonceStorage:
        """Nonces of RegisterNode and admin credentials (single-use with the ingest's)."""
        ...

    @property
    def shared(self) -> bool:
        """True when other replicas may write the same store (caches must not be trusted)."""
        ...

    def is_leader(self) -> bool:
        """Whether this process runs the fleet-wide duties (sweep, pushes, cleanup) now."""
        ...

    async def check(self) -> None:
        """Probe the store; :class:`~supervit.StoreUnavailableError` when it cannot be reached."""
        ...

    async def cleanup(self) -> None:
        """Forget expired nonces (leader duty)."""
        ...

    async def close(self) -> None:
        """Release connections and background tasks (after the last request)."""
        ...
