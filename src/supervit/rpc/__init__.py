"""gRPC plumbing shared by the node and the supervisor: precise request checking, server set-up."""

from supervit.rpc._handlers import abort, abort_for, service_handler
from supervit.rpc._server import DEFAULT_MAX_MESSAGE_BYTES, RpcServer, ServerTLS

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "RpcServer", "ServerTLS", "abort", "abort_for", "service_handler"]
