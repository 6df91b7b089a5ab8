"""AuthService: checks every SupervisedService request's credential before the real service sees it.

The credential travels inside the request message, so it is checked here, on the parsed
request, rather than in a metadata interceptor. Order per the contract: time window, signature,
nonce. Refusals are ``UNAUTHENTICATED`` with the contract's message ("timestamp out of range",
"invalid signature", "nonce already used"); a nonce store failure is ``INTERNAL`` (never a
silent accept). Requests missing required fields never get here: the bytes-parsing handler of
:func:`add_supervised_service` answers them ``INVALID_ARGUMENT`` naming the field.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from supervit._exceptions import AuthError, StorageError
from supervit.auth import (
    DEFAULT_WINDOW_SECS,
    CredentialVerifier,
    NonceStorage,
    SharedSecret,
    body_mac_hook,
    request_payload,
)
from supervit.protocol import supervised_pb2, supervised_pb2_grpc
from supervit.rpc import RefusalLog, RpcServer, ServiceLimits, abort_for, current_request_bytes, service_handler
from supervit.telemetry import refusal_reason_for

__all__ = ["SUPERVISED_SERVICE", "AuthService", "add_supervised_service"]

log = logging.getLogger(__name__)

SUPERVISED_SERVICE = supervised_pb2.DESCRIPTOR.services_by_name["SupervisedService"]
"""The ``supervisor.v1.SupervisedService`` descriptor."""

Ctx = grpc.aio.ServicerContext[Any, Any]
_Resp = TypeVar("_Resp", bound=Message)

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


async def _call(result: _Resp | Awaitable[_Resp]) -> _Resp:
    # The wrapped service may be synchronous or asynchronous (the generated base allows both).
    if inspect.isawaitable(result):
        return await result
    return result


class AuthService(supervised_pb2_grpc.SupervisedServiceServicer):
    """Wraps any SupervisedService implementation with credential verification.

    ``node_id`` is this node's id (part of every signed payload); ``shared_secret`` is hex text,
    the decoded key bytes (as the original's ``hex::decode(...)``), a :class:`SharedSecret`, or a
    list of them (all accepted, for key rotation); ``max_clock_skew_secs`` is the accepted clock
    difference (0 means 300). An ``x-supervit-body-mac`` header is verified when present; with
    ``require_body_mac`` a request without one is refused (see :mod:`supervit.auth._body_mac`).
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
        self._refusals = RefusalLog(log)
        self.require_body_mac = require_body_mac

    async def authenticate(self, request: Any, context: Ctx) -> None:
        """Verify ``request.credential`` (and the body MAC) or abort the RPC (UNAUTHENTICATED / INTERNAL)."""
        try:
            await self.verifier.verify(
                request.credential,
                request_payload(request, self.node_id),
                # The exact bytes received; re-encoding is the fallback outside supervit's handler.
                before_consume=body_mac_hook(
                    context.invocation_metadata(),
                    current_request_bytes() or request.SerializeToString(),
                    required=self.require_body_mac,
                ),
            )
        except (AuthError, StorageError) as exc:
            # Log the refusal without the credential itself: the nonce is harmless but the
            # peer and the reason are what an operator needs.
            peer = context.peer()
            rpc = type(request).__name__.removesuffix("Request")
            self._refusals.note(
                str(exc),
                "refused %s from %s: %s",
                type(request).__name__,
                peer,
                exc,
                extra={"node_id": self.node_id, "peer": peer, "rpc": rpc, "reason": refusal_reason_for(exc)},
            )
            await abort_for(context, exc)

    async def UpdateConfig(
        self, request: supervised_pb2.UpdateConfigRequest, context: Ctx
    ) -> supervised_pb2.UpdateConfigResponse:
        """Authenticate, then delegate."""
        await self.authenticate(request, context)
        return await _call(self.service.UpdateConfig(request, context))  # type: ignore[arg-type]

    async def GetConfig(
        self, request: supervised_pb2.GetConfigRequest, context: Ctx
    ) -> supervised_pb2.GetConfigResponse:
        """Authenticate, then delegate."""
        await self.authenticate(request, context)
        return await _call(self.service.GetConfig(request, context))  # type: ignore[arg-type]

    async def CreateRealm(
        self, request: supervised_pb2.CreateRealmRequest, context: Ctx
    ) -> supervised_pb2.CreateRealmResponse:
        """Authenticate, then delegate."""
        await self.authenticate(request, context)
        return await _call(self.service.CreateRealm(request, context))  # type: ignore[arg-type]

    async def GetRealm(self, request: supervised_pb2.GetRealmRequest, context: Ctx) -> supervised_pb2.GetRealmResponse:
        """Authenticate, then delegate."""
        await self.authenticate(request, context)
        return await _call(self.service.GetRealm(request, context))  # type: ignore[arg-type]

    async def UpdateRealm(
        self, request: supervised_pb2.UpdateRealmRequest, context: Ctx
    ) -> supervised_pb2.UpdateRealmResponse:
        """Authenticate, then delegate."""
        await self.authenticate(request, context)
        return await _call(self.service.UpdateRealm(request, context))  # type: ignore[arg-type]

    async def DeleteRealm(
        self, request: supervised_pb2.DeleteRealmRequest, context: Ctx
    ) -> supervised_pb2.DeleteRealmResponse:
        """Authenticate, then delegate."""
        await self.authenticate(request, context)
        return await _call(self.service.DeleteRealm(request, context))  # type: ignore[arg-type]

    async def ListRealms(
        self, request: supervised_pb2.ListRealmsRequest, context: Ctx
    ) -> supervised_pb2.ListRealmsResponse:
        """Authenticate, then delegate."""
        await self.authenticate(request, context)
        return await _call(self.service.ListRealms(request, context))  # type: ignore[arg-type]

    async def GetNodeInfo(
        self, request: supervised_pb2.GetNodeInfoRequest, context: Ctx
    ) -> supervised_pb2.GetNodeInfoResponse:
        """Authenticate, then delegate."""
        await self.authenticate(request, context)
        return await _call(self.service.GetNodeInfo(request, context))  # type: ignore[arg-type]

    async def Shutdown(self, request: supervised_pb2.ShutdownRequest, context: Ctx) -> supervised_pb2.ShutdownResponse:
        """Authenticate, then delegate."""
        await self.authenticate(request, context)
        return await _call(self.service.Shutdown(request, context))  # type: ignore[arg-type]


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
