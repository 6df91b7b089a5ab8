"""SupervisorAdmin (``supervit.admin.v1``): the operator API behind ``supervit ctl``.

Served on its own port, ``[admin] listen`` (``127.0.0.1:50052`` by default: loopback only), and
only when ``[admin] secret`` is set. Every request carries a ``supervisor.v1.NonceCredential``
made exactly like the protocol's, ``HMAC-SHA256(admin secret, decimal(timestamp) || nonce ||
payload)``, with the payloads of :func:`admin_payload`; the time window and single-use nonces are
those of the node credentials. The admin secret must differ from every node secret, so a node
can never administer the fleet, and the ``admin:`` prefix keeps admin and node signatures apart.

Status codes: ``UNAUTHENTICATED`` (credential refused), ``NOT_FOUND`` (unknown node or realm),
``ALREADY_EXISTS`` (realm already in the catalog), ``INVALID_ARGUMENT`` (bad field), ``INTERNAL``
(storage failure).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from supervit._exceptions import InvalidRequestError, StorageError
from supervit.auth import CredentialVerifier
from supervit.protocol import supervit_admin_pb2, supervit_admin_pb2_grpc
from supervit.rpc import RefusalLog, RequestAuthenticator, abort, abort_for, authenticated
from supervit.supervisor._admin_payload import admin_payload
from supervit.supervisor._catalog import RealmExistsError, RealmNotFoundError
from supervit.supervisor._paging import RESPONSE_BUDGET_BYTES, decode_node_token, encode_node_token
from supervit.supervisor._push import CatalogPusher
from supervit.supervisor._registry import NodeRecord
from supervit.supervisor._store import CatalogStore, DirectiveStore, RegistryStore

__all__ = ["ADMIN_SERVICE", "AdminService", "node_summary"]

log = logging.getLogger("supervit.supervisor.admin")

# Rows read from the store per step while a ListNodes page is filled.
_CHUNK = 500

ADMIN_SERVICE = supervit_admin_pb2.DESCRIPTOR.services_by_name["SupervisorAdmin"]
"""The ``supervit.admin.v1.SupervisorAdmin`` descriptor."""

Ctx = grpc.aio.ServicerContext[Any, Any]
_pb = supervit_admin_pb2


def node_summary(node: NodeRecord, pusher: CatalogPusher) -> supervit_admin_pb2.NodeSummary:
    """The admin API's view of one registry record."""
    reg = node.registration
    summary = _pb.NodeSummary(
        node_id=node.node_id,
        name=node.name,
        state=node.state,
        agent_addr=node.agent_addr,
        version=node.version,
        location_tag=node.location_tag,
        service_tags=list(reg.service_tags),
        advertised_services=list(reg.services),
        registered_at=node.registered_at,
        first_registered_at=node.first_registered_at,
        realm_sync_version=node.realm_sync_version,
        pushed_catalog_version=node.pushed_catalog_version,
        sync_lag=pusher.sync_lag(node.realm_sync_version, node.pushed_catalog_version),
        report_interval_secs=node.report_interval_secs,
        pending_directives=node.pending_directives,
        services=list(node.services),
    )
    if reg.HasField("location"):
        summary.location = reg.location
    if node.last_report_at is not None:
        summary.last_report_at = node.last_report_at
    if node.offline_since is not None:
        summary.offline_since = node.offline_since
    if node.power_reserve_level is not None:
        summary.power_reserve_level = node.power_reserve_level
    elif reg.HasField("power_reserve_level_init"):
        summary.power_reserve_level = reg.power_reserve_level_init
    if node.metrics is not None:
        summary.metrics.CopyFrom(node.metrics)
    if node.last_push_at is not None:
        summary.last_push_at = node.last_push_at
    if node.last_push_error is not None:
        summary.last_push_error = node.last_push_error
    return summary


class AdminService(supervit_admin_pb2_grpc.SupervisorAdminServicer):
    """Registry listing, directive queueing and catalog changes for operators.

    ``verifier`` holds the admin secret and the store's nonces (on SQLite the ingest's one replay
    window, :class:`~supervit.supervisor.IngestNonceStorage`). Listings see every
    report acknowledged so far: the registry's reads fold them first (its ``read_barrier``).
    """

    def __init__(
        self,
        registry: RegistryStore,
        catalog: CatalogStore,
        pusher: CatalogPusher,
        directives: DirectiveStore,
        verifier: CredentialVerifier,
        *,
        clock: Callable[[], float] = time.time,
        require_body_mac: bool = False,
    ) -> None:
        self.authenticator = RequestAuthenticator(
            verifier, admin_payload, refusals=RefusalLog(log, level=logging.WARNING), require_body_mac=require_body_mac
        )
        self.registry = registry
        self.catalog = catalog
        self.pusher = pusher
        self.directives = directives
        self.verifier = verifier
        self._clock = clock

    @authenticated
    async def ListNodes(self, request: _pb.ListNodesRequest, context: Ctx) -> _pb.ListNodesResponse:
        """Registered nodes by node id with state, last report and sync position, one page at a time.

        ``page_size`` unset (or 0) returns every node that fits in one response; either way a
        page stops before it would outgrow :data:`RESPONSE_BUDGET_BYTES`, and ``next_page_token``
        says where the next one starts. A token this service did not issue is INVALID_ARGUMENT.
        """
        try:
            after = decode_node_token(request.page_token) if request.page_token else None
        except InvalidRequestError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        limit = request.page_size or None  # unset: everything that fits in one response
        summaries: list[_pb.NodeSummary] = []
        size, last, more = 0, None, False
        cursor = after
        try:
            total = await self.registry.count_nodes()  # the registry folds acknowledged reports first
            # Read the store a chunk at a time (keyset paging): a page never loads the whole fleet.
            while not more:
                want = _CHUNK if limit is None else min(_CHUNK, limit - len(summaries) + 1)
                chunk, cursor = await self.registry.nodes_page(cursor, want)
                for node in chunk:
                    if limit is not None and len(summaries) >= limit:
                        more = True
                        break
                    try:
                        summary = node_summary(node, self.pusher)
                        entry = summary.ByteSize() + 8  # tag and length prefix
                    except Exception as exc:  # stored by an older version; one node must not hide the others
                        log.error(
                            "quarantined node %r in the listing: its stored record cannot be shown (%s)",
                            node.node_id,
                            exc,
                        )
                        continue
                    if summaries and size + entry > RESPONSE_BUDGET_BYTES:
                        more = True
                        break
                    summaries.append(summary)
                    size += entry
                    last = node.node_id
                if cursor is None:
                    break
                # A full chunk that ends exactly at the page's size: more rows may follow.
                if limit is not None and len(summaries) >= limit:
                    more = True
        except StorageError as exc:
            await abort_for(context, exc)
        response = _pb.ListNodesResponse(
            nodes=summaries,
            server_timestamp=int(self._clock()),
            catalog_version=self.catalog.version,
            total_count=total,
        )
        if more and last is not None:
            response.next_page_token = encode_node_token(last)
        return response

    @authenticated
    async def EnqueueDirective(
        self, request: _pb.EnqueueDirectiveRequest, context: Ctx
    ) -> _pb.EnqueueDirectiveResponse:
        """Queue a directive for the node's next report."""
        payload = request.payload if request.HasField("payload") else None
        try:
            directive, position = await self.directives.enqueue(request.node_id, int(request.type), payload)
        except InvalidRequestError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except LookupError:  # NotFoundError (any store)
            await abort(context, grpc.StatusCode.NOT_FOUND, f"node {request.node_id!r} is not registered")
        except StorageError as exc:
            await abort_for(context, exc)
        log.info("queued directive #%d (type %d) for %s", directive.directive_id, directive.type, request.node_id)
        return _pb.EnqueueDirectiveResponse(position=position, directive_id=directive.directive_id)

    @authenticated
    async def ListCatalog(self, request: _pb.ListCatalogRequest, context: Ctx) -> _pb.ListCatalogResponse:
        """The realms in the catalog (removed ones excluded)."""
        try:
            realms = await self.catalog.realms()
        except StorageError as exc:
            await abort_for(context, exc)
        return _pb.ListCatalogResponse(
            realms=[r.to_admin_proto() for r in realms], catalog_version=self.catalog.version
        )

    @authenticated
    async def PutCatalogRealm(self, request: _pb.PutCatalogRealmRequest, context: Ctx) -> _pb.PutCatalogRealmResponse:
        """Add (PUT_MODE_CREATE) or change (PUT_MODE_UPDATE) a catalog realm, then push it."""
        rid = request.realm_id
        try:
            if request.mode == _pb.PUT_MODE_CREATE:
                if not request.HasField("name"):
                    raise InvalidRequestError("name is required to add a realm")
                realm = await self.catalog.add(
                    rid,
                    request.name,
                    enabled=request.enabled if request.HasField("enabled") else True,
                    use_servers=[int(s) for s in request.use_servers],
                    expires_at=request.expires_at if request.HasField("expires_at") else 0,
                )
            elif request.mode == _pb.PUT_MODE_UPDATE:
                replace_servers = request.set_use_servers or bool(request.use_servers)
                realm = await self.catalog.update(
                    rid,
                    name=request.name if request.HasField("name") else None,
                    enabled=request.enabled if request.HasField("enabled") else None,
                    use_servers=[int(s) for s in request.use_servers] if replace_servers else None,
                    expires_at=request.expires_at if request.HasField("expires_at") else None,
                )
            else:
                raise InvalidRequestError("mode must be PUT_MODE_CREATE or PUT_MODE_UPDATE")
        except InvalidRequestError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except RealmExistsError as exc:
            await abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except RealmNotFoundError as exc:
            await abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except StorageError as exc:
            await abort_for(context, exc)
        log.info("catalog v%d: realm %d %s", realm.version, rid, "added" if realm.updated_at is None else "updated")
        await self._push()
        return _pb.PutCatalogRealmResponse(realm=realm.to_admin_proto(), catalog_version=self.catalog.version)

    @authenticated
    async def RemoveCatalogRealm(
        self, request: _pb.RemoveCatalogRealmRequest, context: Ctx
    ) -> _pb.RemoveCatalogRealmResponse:
        """Remove a catalog realm (nodes delete it with their next push)."""
        try:
            tombstone = await self.catalog.remove(request.realm_id)
        except InvalidRequestError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except RealmNotFoundError as exc:
            await abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except StorageError as exc:
            await abort_for(context, exc)
        log.info("catalog v%d: realm %d removed", tombstone.version, request.realm_id)
        await self._push()
        return _pb.RemoveCatalogRealmResponse(catalog_version=self.catalog.version)

    async def _push(self) -> None:
        try:
            # The registry folds acknowledged reports first: each node is judged by its latest
            # realm_sync_version.
            await self.pusher.on_catalog_change()
        except StorageError:
            # The change is committed; nodes still catch up with their next report.
            log.exception("cannot schedule catalog pushes now")
