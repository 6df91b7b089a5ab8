"""AuthService: checks every SupervisedService request's credential before the real service sees it.

The credential travels inside the request message, so it is checked here, on the parsed
request, rather than in a metadata interceptor, by the layer every supervit service shares
(:class:`~supervit.rpc.RequestAuthenticator`). Order per the contract: time window, signature,
nonce. Refusals are ``UNAUTHENTICATED`` with the contract's message ("timestamp out of range",
"invalid signature", "nonce already used"); a nonce store failure is ``INTERNAL`` (never a
silent accept). Requests missing required fields never get here: the bytes-parsing handler of
:func:`add_supervised_service` answers them ``INVALID_ARGUMENT`` naming the field.

**One commit per write request.** A read RPC consumes its nonce (durably) before the service
runs. A write RPC of :class:`~supervit.node.Supervisord` whose every effect is one transaction in
the nonce store's companion database (:meth:`Supervisord.write_database`, e.g. CreateRealm on
``actrix.db``) instead *reserves* the nonce (remembered in memory, atomically: a concurrent replay
is refused) and runs the service with the nonce riding on its write
(:func:`~supervit.storage.riding`): the realm and its nonce commit together or not at all. Before
any answer leaves (a response, an abort, an error) the ticket is settled: at once if that write
committed it, else it is appended to the nonce log first (a business failure, invalid input, a
failed write); if even that fails the answer is ``INTERNAL``. Everything else (other stores,
user-supplied services, appliers acting outside the database) keeps consume-then-run.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from types import CoroutineType
from typing import Any, cast

import grpc

from supervit._exceptions import AuthError, NonceReusedError, NonceStorageError, StorageError
from supervit.auth import (
    DEFAULT_WINDOW_SECS,
    CredentialVerifier,
    NonceStorage,
    NonceTicket,
    SharedSecret,
    SqliteNonceStorage,
    request_payload,
)
from supervit.node._supervisord import Supervisord
from supervit.protocol import supervised_pb2, supervised_pb2_grpc
from supervit.rpc import RefusalLog, RequestAuthenticator, RpcServer, ServiceLimits, authenticated, service_handler
from supervit.storage import riding

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


def _delegate(name: str) -> Callable[..., Any]:
    """The servicer method ``name``: authenticate, then call the wrapped service's ``name``."""

    async def delegate(self: Any, request: Any, context: Ctx) -> Any:
        result = getattr(self.service, name)(request, context)
        # The wrapped service may be synchronous or asynchronous (the generated base allows both).
        # A coroutine is told by its exact type first: inspect.isawaitable goes through an ABC
        # check, a measurable cost per request, and is left for anything else.
        if type(result) is CoroutineType or inspect.isawaitable(result):
            return await result
        return result

    delegate.__name__ = delegate.__qualname__ = name
    delegate.__doc__ = f"Authenticate, then delegate to the wrapped service's {name}."
    return authenticated(delegate)


def _delegate_write(name: str) -> Callable[..., Any]:
    """The servicer method ``name`` of a write RPC: one commit when the service allows it."""
    plain = _delegate(name)

    async def delegate(self: AuthService, request: Any, context: Ctx) -> Any:
        ticket = await self._reserve(name, request, context)
        if ticket is None:
            return await plain(self, request, context)
        return await self._run_riding(name, ticket, request, context)

    functools.update_wrapper(delegate, plain)  # __wrapped__: the consume-first path it falls back to
    delegate.__doc__ = (
        f"Authenticate, then delegate to the wrapped service's {name} (its nonce committed with its write)."
    )
    return delegate


class _SettleFirst:
    """The context a riding handler sees: an abort settles the nonce before the status is sent
    (grpc sends it from inside ``abort``), and becomes INTERNAL if the nonce cannot be stored."""

    __slots__ = ("_context", "_ticket")

    def __init__(self, context: Ctx, ticket: NonceTicket) -> None:
        self._context = context
        self._ticket = ticket

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: grpc.StatusCode, details: str = "", *args: Any, **kwargs: Any) -> Any:
        try:
            await self._ticket.settle()
        except NonceStorageError as exc:
            log.error("nonce storage failure: %s", exc)
            await self._context.abort(grpc.StatusCode.INTERNAL, "nonce storage failure")
        return await self._context.abort(code, details, *args, **kwargs)


class AuthService(supervised_pb2_grpc.SupervisedServiceServicer):
    """Wraps any SupervisedService implementation with credential verification.

    ``node_id`` is this node's id (part of every signed payload); ``shared_secret`` is hex text,
    the decoded key bytes (as the original's ``hex::decode(...)``), a :class:`SharedSecret`, or a
    list of them (all accepted, for key rotation); ``max_clock_skew_secs`` is the accepted clock
    difference (0 means 300). An ``x-supervit-body-mac`` header is verified when present; with
    ``require_body_mac`` a request without one is refused (see :mod:`supervit.auth._body_mac`).

    Every method of ``supervisor.v1.SupervisedService`` is the same step: :meth:`authenticate`,
    then call ``service``'s method of that name (synchronous or asynchronous). The nonce is
    consumed (durably, with a durable store) before ``service`` runs, except for a write that a
    :class:`Supervisord` commits in the nonce store's companion database: then the nonce commits
    in the same transaction and is durable before the answer (module docstring).
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
        self._kinds: tuple[object, object, bool] = (None, None, False)
        self.verifier = CredentialVerifier(_secrets(shared_secret), nonce_storage, max_clock_skew_secs, clock=clock)
        self.authenticator = RequestAuthenticator(
            self.verifier,
            lambda request: request_payload(request, node_id),
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

    async def _reserve(self, name: str, request: Any, context: Ctx) -> NonceTicket | None:
        # The credential checked and its nonce reserved, when RPC `name` commits in the nonce
        # store's companion database; None: take the consume-first path.
        storage, service = self.verifier.nonce_storage, self.service
        kinds = self._kinds
        if kinds[0] is not storage or kinds[1] is not service:
            # Once per (store, service) pair: isinstance on an ABC costs a microsecond per call.
            fits = isinstance(storage, SqliteNonceStorage) and isinstance(service, Supervisord)
            self._kinds = kinds = (storage, service, fits)
        if not kinds[2]:
            return None
        storage, service = cast(SqliteNonceStorage, storage), cast(Supervisord, service)  # checked above
        companion = storage.companion
        if companion is None or service.write_database(name, request) is not companion:
            return None
        authenticator, verifier = self.authenticator, self.verifier
        try:
            now = verifier.now()
            authenticator.check(request, context, now=now)
            credential = request.credential
            ticket = await storage.reserve(credential.nonce, verifier.nonce_expiry(credential, now))
            if ticket is None:
                raise NonceReusedError()
        except (AuthError, StorageError) as exc:
            await authenticator.refuse(request, context, exc)
        return ticket

    async def _run_riding(self, name: str, ticket: NonceTicket, request: Any, context: Ctx) -> Any:
        try:
            with riding(ticket):
                response = await getattr(self.service, name)(request, _SettleFirst(context, ticket))
        except grpc.aio.AbortError:
            raise  # sent by _SettleFirst.abort, which settled the nonce first
        except BaseException:
            # Whatever went wrong, its answer (grpc's, after this) waits for the nonce too.
            await self._settle(ticket, request, context)
            raise
        if not ticket.recorded:  # else its write already committed it (the usual case)
            await self._settle(ticket, request, context)
        return response

    async def _settle(self, ticket: NonceTicket, request: Any, context: Ctx) -> None:
        try:
            await ticket.settle()
        except NonceStorageError as exc:
            await self.authenticator.refuse(request, context, exc)

    # The same step for every RPC of SUPERVISED_SERVICE (a test checks the table is complete).
    UpdateConfig = _delegate_write("UpdateConfig")
    GetConfig = _delegate("GetConfig")
    CreateRealm = _delegate_write("CreateRealm")
    GetRealm = _delegate("GetRealm")
    UpdateRealm = _delegate_write("UpdateRealm")
    DeleteRealm = _delegate_write("DeleteRealm")
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
