"""AdminClient: signed calls to a supervisor's SupervisorAdmin service (used by ``supervit ctl``)."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from supervit._exceptions import RpcError
from supervit.auth import SharedSecret, Signer, body_mac_metadata
from supervit.protocol import supervit_admin_pb2, supervit_admin_pb2_grpc
from supervit.supervisor._admin_payload import admin_payload
from supervit.supervisor._admin_views import CatalogChange, CatalogListing, CatalogRemoval, DirectiveQueued, NodeListing

__all__ = ["AdminClient"]

_pb = supervit_admin_pb2
_Resp = TypeVar("_Resp", bound=Message)


class AdminClient:
    """A plaintext channel to ``address`` (``host:port`` of ``[admin] listen``) signing with ``secret``.

    Failed calls raise :class:`~supervit.RpcError` (``code`` is the :class:`grpc.StatusCode`).
    Answers are frozen dataclasses (:class:`NodeListing`, :class:`CatalogChange` …) whose
    ``message`` is the protocol response.
    Use as ``async with AdminClient(addr, secret) as admin: ...``.
    """

    def __init__(self, address: str, secret: SharedSecret, *, timeout_secs: float = 10.0) -> None:
        self.address = address
        self._signer = Signer(secret)
        self._timeout = timeout_secs
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = supervit_admin_pb2_grpc.SupervisorAdminStub(self._channel)

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Close the channel (the one stop verb of every supervit client and daemon)."""
        await self._channel.close(None)

    async def close(self) -> None:
        """Alias of :meth:`stop`."""
        await self.stop()

    async def _call(self, method: str, request: Any) -> Any:
        request.credential.CopyFrom(self._signer.credential(admin_payload(request)))
        try:
            metadata = body_mac_metadata(self._signer.secret, request)
            return await getattr(self._stub, method)(request, timeout=self._timeout, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            raise RpcError(method, exc.code(), exc.details() or "") from None

    async def _nodes_page(self, page_size: int, page_token: str) -> supervit_admin_pb2.ListNodesResponse:
        request = _pb.ListNodesRequest(page_size=page_size, page_token=page_token)
        response: supervit_admin_pb2.ListNodesResponse = await self._call("ListNodes", request)
        return response

    async def list_nodes_page(self, page_size: int = 0, page_token: str = "") -> NodeListing:
        """One page of registered nodes (``page_size`` 0: as many as fit in one response)."""
        return NodeListing.from_message(await self._nodes_page(page_size, page_token))

    async def list_nodes(self, *, page_size: int = 0) -> NodeListing:
        """Every registered node: follows the pages and returns them as one listing."""
        listing = await self._nodes_page(page_size, "")
        token = listing.next_page_token
        while token:
            page = await self._nodes_page(page_size, token)
            listing.nodes.extend(page.nodes)
            listing.server_timestamp, listing.catalog_version = page.server_timestamp, page.catalog_version
            listing.total_count = page.total_count
            token = page.next_page_token
        listing.ClearField("next_page_token")
        return NodeListing.from_message(listing)

    async def enqueue_directive(self, node_id: str, directive_type: int, payload: str | None = None) -> DirectiveQueued:
        """Queue a directive for ``node_id``'s next report."""
        request = _pb.EnqueueDirectiveRequest(node_id=node_id, type=directive_type)  # type: ignore[arg-type]
        if payload is not None:
            request.payload = payload
        response: supervit_admin_pb2.EnqueueDirectiveResponse = await self._call("EnqueueDirective", request)
        return DirectiveQueued.from_message(response)

    async def list_catalog(self) -> CatalogListing:
        """The catalog's realms and version."""
        response: supervit_admin_pb2.ListCatalogResponse = await self._call("ListCatalog", _pb.ListCatalogRequest())
        return CatalogListing.from_message(response)

    async def add_realm(
        self,
        realm_id: int,
        name: str,
        *,
        enabled: bool = True,
        use_servers: Iterable[int] = (),
        expires_at: int = 0,
    ) -> CatalogChange:
        """Add a realm to the catalog (pushed to the nodes at once)."""
        request = _pb.PutCatalogRealmRequest(
            realm_id=realm_id,
            mode=_pb.PUT_MODE_CREATE,
            name=name,
            enabled=enabled,
            use_servers=list(use_servers),  # type: ignore[arg-type]
            expires_at=expires_at,
        )
        response: supervit_admin_pb2.PutCatalogRealmResponse = await self._call("PutCatalogRealm", request)
        return CatalogChange.from_message(response)

    async def update_realm(
        self,
        realm_id: int,
        *,
        name: str | None = None,
        enabled: bool | None = None,
        use_servers: Iterable[int] | None = None,
        expires_at: int | None = None,
    ) -> CatalogChange:
        """Change the given fields of a catalog realm (its version moves on; nodes get it again)."""
        request = _pb.PutCatalogRealmRequest(realm_id=realm_id, mode=_pb.PUT_MODE_UPDATE)
        if name is not None:
            request.name = name
        if enabled is not None:
            request.enabled = enabled
        if use_servers is not None:
            request.use_servers.extend(use_servers)  # type: ignore[arg-type]
            request.set_use_servers = True
        if expires_at is not None:
            request.expires_at = expires_at
        response: supervit_admin_pb2.PutCatalogRealmResponse = await self._call("PutCatalogRealm", request)
        return CatalogChange.from_message(response)

    async def remove_realm(self, realm_id: int) -> CatalogRemoval:
        """Remove a realm from the catalog (nodes delete it)."""
        request = _pb.RemoveCatalogRealmRequest(realm_id=realm_id)
        response: supervit_admin_pb2.RemoveCatalogRealmResponse = await self._call("RemoveCatalogRealm", request)
        return CatalogRemoval.from_message(realm_id, response)
