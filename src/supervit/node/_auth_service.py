"""AuthService: checks every SupervisedService request's credential before the real service sees it.

The credential travels inside the request message, so it is checked here, on the parsed
request, rather than in a metadata interceptor, by the layer every supervit service shares
(:class:`~supervit.rpc.RequestAuthenticator`). Order per the contract: time window, signature,
nonce. Refusals are ``UNAUTHENTICATED`` with the contract's message ("timestamp out of range",
"invalid signature", "nonce already used"); a nonce store failure is ``INTERNAL`` (never a
silent accept). Requests missing required fields never get here: the bytes-parsing handler of
:func:`add_supervised_service` answers them ``INVALID_ARGUMENT`` naming the field.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message

from supervit.auth import DEFAULT_WINDOW_SECS, CredentialVerifier, NonceStorage, SharedSecret, request_payload
from supervit.protocol import supervised_pb2, supervised_pb2_grpc
from supervit.rpc import RefusalLog, RequestAuthenticator, RpcServer, ServiceLimits, authenticated, service_handler

__all__ = ["SUPERVISED_SERVICE", "AuthService", "add_supervised_service"]

log = logging.getLogger(__name__)

SUPERVISED_SERVICE = supervised_pb2.DESCRIPTOR.services_by_name["SupervisedService"]
"""The ``supervisor.v1.SupervisedService`` descriptor."""

Ctx = grpc.aio.ServicerContext[Any, Any]

SecretSpec = str | bytes | SharedSecret | Sequence[str | bytes | SharedSecret]
"""One secret (hex text, the decoded key bytes, or a :class:`SharedSecret`) or several during a key rotation."""


def _secret(item: str | bytes | SharedSecret) -> SharedSecret:
    if isinstance(item, SharedSecret):
        return item
    if isinstance(item, bytes):
        # The original passes hex::decode(...) output: the key itself.
        return SharedSecret.from_bytes(item)
    return SharedSecret.from_hex(item)


def _secrets(spec: SecretSpec) -> list[SharedSecret]:
    items: Sequence[str | bytes | SharedSecret] = [spec] if isinstance(spec, (str, bytes, SharedSecret)) else spec
    secrets = [_secret(s) for s in items]
    if not secrets:
        raise ValueError("at least one shared secret is required")
    return secrets


def _payload_for(request: Message, *, node_id: str) -> str:
    return request_payload(request, node_id)


def _delegate(name: str) -> Callable[..., Any]:
    """The servicer method ``name``: authenticate, then call the wrapped service's ``name``."""

    async def delegate(self: Any, request: Any, context: Ctx) -> Any:
        result = getattr(self.service, name)(request, context)
        # The wrapped service may be synchronous or asynchronous (the generated base allows both).
        return await result if inspect.isawaitable(result) else result

    delegate.__name__ = delegate.__qualname__ = name
    delegate.__doc__ = f"Authenticate, then delegate to the wrapped service's {name}."
    return authenticated(delegate)


class AuthService(supervised_pb2_grpc.SupervisedServiceServicer):
    """Wraps any SupervisedService implementation with credential verification.

    ``node_id`` is this node's id (part of every signed payload); ``shared_secret`` is hex text,
    the decoded key bytes (as the original's ``hex::decode(...)``), a :class:`SharedSecret`, or a
    list of them (all accepted, for key rotation); ``max_clock_skew_secs`` is the accepted clock
    difference (0 means 300). An ``x-supervit-body-mac`` header is verified when present; with
    ``require_body_mac`` a request without one is refused (see :mod:`supervit.auth._body_mac`).

    Every method of ``supervisor.v1.SupervisedService`` is the same step: :meth:`authenticate`,
    then call ``service``'s method of that name (synchronous or asynchronous). The nonce is
    consumed (durably, with a durable store) before ``service`` runs.
    """

    def __init__(
        self,
        service: supervised_pb2_grpc.SupervisedServiceServicer,
        node_id: str,
        shared_secret: SecretSpec,
        nonce_storage: NonceStorage,
        max_clock_skew_secs: int = DEFAULT_WINDOW_SECS,
        *,
        clock: Callable[[], float] = time.time,
        require_body_mac: bool = False,
    ) -> None:
        if not node_id:
            raise ValueError("node_id must not be empty")
        self.service = service
        self.node_id = node_id
        self.verifier = CredentialVerifier(_secrets(shared_secret), nonce_storage, max_clock_skew_secs, clock=clock)
        self.authenticator = RequestAuthenticator(
            self.verifier,
            functools.partial(_payload_for, node_id=node_id),
            refusals=RefusalLog(log),
            require_body_mac=require_body_mac,
            node_id=lambda _request: node_id,
        )

    @property
    def require_body_mac(self) -> bool:
        """Whether requests without an ``x-supervit-body-mac`` header are refused."""
        return self.authenticator.require_body_mac

    @require_body_mac.setter
    def require_body_mac(self, value: bool) -> None:
        self.authenticator.require_body_mac = value

    async def authenticate(self, request: Any, context: Ctx) -> None:
        """Verify ``request.credential`` (and the body MAC) or abort the RPC (UNAUTHENTICATED / INTERNAL)."""
        await self.authenticator.authenticate(request, context)

    # The same step for every RPC of SUPERVISED_SERVICE (a test checks the table is complete).
    UpdateConfig = _delegate("UpdateConfig")
    GetConfig = _delegate("GetConfig")
    CreateRealm = _delegate("CreateRealm")
    GetRealm = _delegate("GetRealm")
    UpdateRealm = _delegate("UpdateRealm")
    DeleteRealm = _delegate("DeleteRealm")
    ListRealms = _delegate("ListRealms")
    GetNodeInfo = _delegate("GetNodeInfo")
    Shutdown = _delegate("Shutdown")


def add_supervised_service(
    server: RpcServer | grpc.aio.Server,
    service: supervised_pb2_grpc.SupervisedServiceServicer,
    limits: ServiceLimits | None = None,
) -> None:
    """Serve ``service`` as ``supervisor.v1.SupervisedService`` on ``server``.

    Uses the bytes-parsing handler, so malformed or incomplete requests get ``INVALID_ARGUMENT``
    naming the problem, and every request is checked against ``limits`` (default: supervit's
    table, :data:`~supervit.rpc.SUPERVISED_LIMITS`). On an :class:`RpcServer` the service is also listed in health and
    reflection. Pass an :class:`AuthService` unless the caller checks credentials itself.
    """
    if isinstance(server, RpcServer):
        server.add_service(SUPERVISED_SERVICE, service, limits)
    else:
        server.add_generic_rpc_handlers((service_handler(SUPERVISED_SERVICE, service, limits),))
