"""One authenticated-request path for every supervit service: node, supervisor and admin.

The credential travels inside each request message, so it is checked on the parsed request (after
:func:`~supervit.rpc.service_handler` has refused undecodable, incomplete or oversized requests
with ``INVALID_ARGUMENT`` naming the field), never in a metadata interceptor. The order is the
contract's: time window, signature (every secret tried: key rotation), then, beyond the contract,
the ``x-supervit-body-mac`` header, and last the nonce, so nothing that fails a check burns the
genuine request's nonce.

A service describes only what differs (:class:`RequestAuthenticator`'s arguments): the signed
payload of a request, the secret(s) for it, the nonce store (the verifier's; or its own, consumed
after :meth:`RequestAuthenticator.check`), how a refusal is stamped and where it is logged.
Refusals are ``UNAUTHENTICATED`` with the contract's message ("timestamp out of range", "invalid
signature", "nonce already used", "authentication failed" when there is no secret for the
caller), a nonce store failure is ``INTERNAL`` (never an accept), an unreachable shared store
``UNAVAILABLE``; :func:`authenticated` puts the check in front of a servicer method.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, NoReturn, Protocol, TypeVar

import grpc

from supervit._exceptions import AuthError, InvalidRequestError, StorageError
from supervit.auth import CredentialVerifier, SharedSecret, check_body_mac, presented_body_mac
from supervit.rpc._handlers import abort, abort_for, current_request_bytes
from supervit.rpc._refusals import RefusalLog
from supervit.telemetry import refusal_reason_for

__all__ = ["RequestAuthenticator", "authenticated"]

Ctx = grpc.aio.ServicerContext[Any, Any]
Payload = str | Callable[[], str]


class RequestAuthenticator:
    """Checks the ``credential`` field of one service's requests; refuses the RPC when it fails.

    ``payload(request)`` is the text the credential signs. ``secrets(request)`` chooses the
    secrets for a request (per-node secrets; an empty answer is refused "authentication failed");
    without it the verifier's own secrets are used. The nonce goes to ``verifier.nonce_storage``
    in :meth:`authenticate`; a service with its own nonce path calls :meth:`check`, consumes, and
    hands any error to :meth:`refuse`. ``stamp(context)`` runs before every refusal (the
    supervisor's ``x-server-time`` trailer). Refusals are logged on ``refusals`` (rate-limited),
    naming the RPC, the peer, the reason and ``node_id(request)`` when given; never the credential.
    With ``require_body_mac`` a request without the body MAC is refused; one that carries it is
    always checked.
    """

    __slots__ = ("_node_id", "_payload", "_refusals", "_secrets", "_stamp", "require_body_mac", "verifier")

    def __init__(
        self,
        verifier: CredentialVerifier,
        payload: Callable[[Any], str],
        *,
        refusals: RefusalLog,
        secrets: Callable[[Any], Sequence[SharedSecret]] | None = None,
        require_body_mac: bool = False,
        node_id: Callable[[Any], str] | None = None,
        stamp: Callable[[Ctx], None] | None = None,
    ) -> None:
        self.verifier = verifier
        self.require_body_mac = require_body_mac
        self._payload = payload
        self._secrets = secrets
        self._refusals = refusals
        self._node_id = node_id
        self._stamp = stamp

    def check(
        self, request: Any, context: Ctx, *, now: int | None = None, payload: Payload | None = None
    ) -> SharedSecret:
        """Window, signature and body MAC of ``request``'s credential; the nonce is left unconsumed.

        ``payload`` overrides the service's rule for this call (a callable is called only once the
        window check passed). Returns the secret that matched; raises :class:`AuthError`.
        """
        secrets = None
        if self._secrets is not None:
            secrets = self._secrets(request)
            if not secrets:
                raise AuthError()  # no key for this caller: say nothing more
        credential = request.credential
        if payload is None:
            payload = functools.partial(self._payload, request)
        secret = self.verifier.check(credential, payload, secrets=secrets, now=now)
        presented = presented_body_mac(context.invocation_metadata())
        if presented is not None or self.require_body_mac:
            # The exact bytes received; re-encoding is the fallback outside supervit's handler.
            body = current_request_bytes() or request.SerializeToString()
            check_body_mac(secret, presented, body, required=self.require_body_mac)
        return secret

    async def authenticate(
        self, request: Any, context: Ctx, *, now: int | None = None, payload: Payload | None = None
    ) -> SharedSecret:
        """:meth:`check`, then consume the nonce in the verifier's store (durable before this
        returns, for a durable store); on any failure the RPC is refused (never returns)."""
        try:
            if now is None:
                now = self.verifier.now()
            secret = self.check(request, context, now=now, payload=payload)
            await self.verifier.consume(request.credential, now=now)
        except (AuthError, StorageError) as exc:
            await self.refuse(request, context, exc)
        return secret

    async def refuse(self, request: Any, context: Ctx, error: Exception) -> NoReturn:
        """End the RPC for ``error``: an :class:`AuthError` is logged and ``UNAUTHENTICATED``, an
        :class:`InvalidRequestError` ``INVALID_ARGUMENT``, a storage failure ``INTERNAL`` or
        ``UNAVAILABLE`` (logged by :func:`abort_for`); stamped first. Anything else is re-raised."""
        if isinstance(error, AuthError):
            self._log(request, context, error)
        if self._stamp is not None:
            # Before aborting: grpc captures the trailers together with the status.
            self._stamp(context)
        if isinstance(error, InvalidRequestError):
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        await abort_for(context, error)

    def _log(self, request: Any, context: Ctx, error: Exception) -> None:
        peer = context.peer()
        rpc = type(request).__name__.removesuffix("Request")
        reason = refusal_reason_for(error)
        if self._node_id is None:
            self._refusals.note(
                str(error),
                "refused %s from %s: %s",
                rpc,
                peer,
                error,
                extra={"peer": peer, "rpc": rpc, "reason": reason},
            )
            return
        node_id = self._node_id(request)
        self._refusals.note(
            str(error),
            "refused %s for node %r from %s: %s",
            rpc,
            node_id,
            peer,
            error,
            extra={"node_id": node_id, "peer": peer, "rpc": rpc, "reason": reason},
        )


class Authenticated(Protocol):
    """A servicer whose requests :attr:`authenticator` checks."""

    @property
    def authenticator(self) -> RequestAuthenticator: ...


_S = TypeVar("_S", bound=Authenticated)
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


def authenticated(
    method: Callable[[_S, _Req, Ctx], Awaitable[_Resp]],
) -> Callable[[_S, _Req, Ctx], Coroutine[Any, Any, _Resp]]:
    """Decorate a servicer method: ``self.authenticator`` authenticates the request (refusing the
    RPC if it fails) before the method runs."""

    @functools.wraps(method)
    async def guarded(self: _S, request: _Req, context: Ctx) -> _Resp:
        await self.authenticator.authenticate(request, context)
        return await method(self, request, context)

    return guarded
