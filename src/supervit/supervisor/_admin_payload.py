"""What an admin request's credential signs: shared by the admin service and ``AdminClient``.

Its own module so that ``supervit ctl`` (through ``AdminClient``) does not import the admin
service and with it the supervisor's stores, push and RPC server layers.
"""

from __future__ import annotations

from google.protobuf.message import Message

from supervit.protocol import supervit_admin_pb2

__all__ = ["admin_payload"]

_pb = supervit_admin_pb2


def admin_payload(request: Message) -> str:
    """The payload an admin request's credential signs.

    ``admin:list_nodes``, ``admin:enqueue_directive:<node_id>:<type number>``,
    ``admin:list_catalog``, ``admin:put_realm:<realm_id>``, ``admin:remove_realm:<realm_id>``.
    """
    if isinstance(request, _pb.ListNodesRequest):
        return "admin:list_nodes"
    if isinstance(request, _pb.EnqueueDirectiveRequest):
        return f"admin:enqueue_directive:{request.node_id}:{int(request.type)}"
    if isinstance(request, _pb.ListCatalogRequest):
        return "admin:list_catalog"
    if isinstance(request, _pb.PutCatalogRealmRequest):
        return f"admin:put_realm:{request.realm_id}"
    if isinstance(request, _pb.RemoveCatalogRealmRequest):
        return f"admin:remove_realm:{request.realm_id}"
    raise TypeError(f"no admin payload rule for {type(request).__name__}")
