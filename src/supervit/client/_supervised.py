"""SupervisedClient: signed calls to one node's SupervisedService.

Every request carries a fresh credential (new nonce, current time) over the contract's payload
for its action (:func:`supervit.auth.request_payload` with the node's id) and supervit's body MAC
in metadata. The client holds the node's secrets in order of preference: it signs with the first,
and when the node answers ``UNAUTHENTICATED`` it signs the same request anew with the next one,
so a node in the middle of a key rotation (holding either the old or the new key) is still
reached. The secret that worked is tried first from then on (and reported to ``on_rotate``).

Failures become supervit errors: gRPC statuses through
:func:`~supervit.client.status_error` (``UNAUTHENTICATED`` → :class:`CredentialRejectedError`,
``INVALID_ARGUMENT`` → :class:`InvalidArgumentError`, ``UNAVAILABLE`` →
:class:`PeerUnavailableError`, ``DEADLINE_EXCEEDED`` → :class:`DeadlineExceededError`,
``NOT_FOUND`` → :class:`RemoteNotFoundError`, other codes :class:`~supervit.RpcError`), and an
answer ``success = false`` → :class:`RequestRefusedError` (:class:`RefusedNotFoundError`, also a
:class:`~supervit.NotFoundError`, when the reason is a missing realm or config key).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.message import Message

from supervit._exceptions import RpcError
from supervit.auth import SharedSecret, Signer, body_mac_metadata, request_payload
from supervit.client._errors import RefusedNotFoundError, RequestRefusedError, status_error
from supervit.client._node_views import ConfigUpdate, ConfigValue, NodeInfo, RealmInfo, RealmPage, ShutdownAck
from supervit.protocol import supervised_pb2, supervised_pb2_grpc

__all__ = ["SupervisedClient"]

_sd = supervised_pb2
NO_REASON = "no reason given"


class SupervisedClient:
    """Calls the SupervisedService of the node ``node_id`` at ``target`` (``host:port``).

    ``secrets`` is the node's shared secret, or several (a rotation): tried in order, see the
    module docstring. ``timeout`` is each call's deadline in seconds (every method also takes a
    ``deadline`` of its own). The channel is TLS when ``credentials`` is given (e.g. ``grpc.ssl_channel_credentials``),
    plaintext otherwise; ``options`` are channel arguments (``grpc.ssl_target_name_override`` …)
    and ``interceptors`` grpc.aio client interceptors. Pass ``channel`` to use one you own instead
    (then :meth:`stop` leaves it open). ``clock`` is what credentials are timestamped with.

    Use as ``async with SupervisedClient(addr, node_id, secret) as node: await node.get_realm(1)``;
    :meth:`stop` closes the channel.
    """

    def __init__(
        self,
        target: str,
        node_id: str,
        secrets: SharedSecret | Sequence[SharedSecret],
        *,
        timeout: float = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        channel: grpc.aio.Channel | None = None,
        clock: Callable[[], float] = time.time,
        on_rotate: Callable[[SharedSecret], None] | None = None,
    ) -> None:
        keys = [secrets] if isinstance(secrets, SharedSecret) else list(secrets)
        if not keys:
            raise ValueError("SupervisedClient needs at least one secret")
        self.target = target
        self.node_id = node_id
        self.timeout = timeout
        self._signers = [Signer(key, clock=clock) for key in keys]
        self._on_rotate = on_rotate
        self._owns_channel = channel is None
        if channel is not None:
            self._channel = channel
        elif credentials is not None:
            self._channel = grpc.aio.secure_channel(
                target, credentials, options=list(options), interceptors=list(interceptors) or None
            )
        else:
            self._channel = grpc.aio.insecure_channel(
                target, options=list(options), interceptors=list(interceptors) or None
            )
        self._stub = supervised_pb2_grpc.SupervisedServiceStub(self._channel)

    @property
    def secret(self) -> SharedSecret:
        """The secret the next call is signed with first (the last one the node accepted)."""
        return self._signers[0].secret

    async def __aenter__(self) -> SupervisedClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Close the channel (unless it was passed in); calls in flight are cancelled."""
        if self._owns_channel:
            await self._channel.close(None)

    # -- the RPCs --------------------------------------------------------------------------------

    async def update_config(
        self, config_type: int, key: str, value: str, *, apply_immediately: bool = True, deadline: float | None = None
    ) -> ConfigUpdate:
        """Set a config value (applied to the running node unless ``apply_immediately`` is false)."""
        request = _sd.UpdateConfigRequest(
            config_type=config_type,  # type: ignore[arg-type]
            config_key=key,
            config_value=value,
            apply_immediately=apply_immediately,
        )
        response: _sd.UpdateConfigResponse = await self._call("UpdateConfig", request, deadline)
        return ConfigUpdate.from_message(response)

    async def get_config(self, config_type: int, key: str, *, deadline: float | None = None) -> ConfigValue:
        """A stored config value; :class:`RefusedNotFoundError` when the key is unset."""
        request = _sd.GetConfigRequest(config_type=config_type, config_key=key)  # type: ignore[arg-type]
        response: _sd.GetConfigResponse = await self._call(
            "GetConfig", request, deadline, kind="config", key=(int(config_type), key)
        )
        return ConfigValue.from_message(config_type, key, response)

    async def create_realm(
        self,
        realm_id: int,
        name: str,
        *,
        enabled: bool = True,
        use_servers: Sequence[int] = (),
        version: int = 0,
        expires_at: int = 0,
        deadline: float | None = None,
    ) -> RealmInfo:
        """Create a realm (``version`` 0 leaves the node's realm_sync_version alone; ``expires_at`` 0 = never)."""
        request = _sd.CreateRealmRequest(
            realm_id=realm_id,
            name=name,
            enabled=enabled,
            use_servers=list(use_servers),  # type: ignore[arg-type]
            version=version,
            expires_at=expires_at,
        )
        response: _sd.CreateRealmResponse = await self._call("CreateRealm", request, deadline)
        return RealmInfo.from_message(response.realm)

    async def get_realm(self, realm_id: int, *, deadline: float | None = None) -> RealmInfo:
        """One realm; :class:`RefusedNotFoundError` when the node does not have it."""
        request = _sd.GetRealmRequest(realm_id=realm_id)
        response: _sd.GetRealmResponse = await self._call("GetRealm", request, deadline, kind="realm", key=realm_id)
        return RealmInfo.from_message(response.realm)

    async def update_realm(
        self, realm_id: int, *, name: str | None = None, enabled: bool | None = None, deadline: float | None = None
    ) -> RealmInfo:
        """Change a realm's name and/or enabled flag (None leaves it as it is)."""
        request = _sd.UpdateRealmRequest(realm_id=realm_id)
        if name is not None:
            request.name = name
        if enabled is not None:
            request.enabled = enabled
        response: _sd.UpdateRealmResponse = await self._call(
            "UpdateRealm", request, deadline, kind="realm", key=realm_id
        )
        return RealmInfo.from_message(response.realm)

    async def delete_realm(self, realm_id: int, *, deadline: float | None = None) -> None:
        """Delete a realm; :class:`RefusedNotFoundError` when the node does not have it."""
        request = _sd.DeleteRealmRequest(realm_id=realm_id)
        await self._call("DeleteRealm", request, deadline, kind="realm", key=realm_id)

    async def list_realms(
        self, *, page_size: int | None = None, page_token: str | None = None, deadline: float | None = None
    ) -> RealmPage:
        """One page of the node's realms (pass ``next_page_token`` back for the next one)."""
        request = _sd.ListRealmsRequest()
        if page_size is not None:
            request.page_size = page_size
        if page_token:
            request.page_token = page_token
        response: _sd.ListRealmsResponse = await self._call("ListRealms", request, deadline)
        return RealmPage.from_message(response)

    async def node_info(self, *, deadline: float | None = None) -> NodeInfo:
        """The node's identity, uptime, current metrics and services."""
        response: _sd.GetNodeInfoResponse = await self._call("GetNodeInfo", _sd.GetNodeInfoRequest(), deadline)
        return NodeInfo.from_message(response)

    async def shutdown(
        self,
        *,
        graceful: bool = True,
        timeout_secs: int | None = None,
        reason: str | None = None,
        deadline: float | None = None,
    ) -> ShutdownAck:
        """Ask the node to shut down; ``timeout_secs`` is its grace period (the node's default when None)."""
        request = _sd.ShutdownRequest(graceful=graceful)
        if timeout_secs is not None:
            request.timeout_secs = timeout_secs
        if reason is not None:
            request.reason = reason
        response: _sd.ShutdownResponse = await self._call("Shutdown", request, deadline)
        return ShutdownAck.from_message(response)

    # -- signing, rotation, errors ---------------------------------------------------------------

    async def _call(
        self, method: str, request: Message, deadline: float | None, *, kind: str = "object", key: object = None
    ) -> Any:
        rpc = getattr(self._stub, method)
        payload = request_payload(request, self.node_id)
        seconds = self.timeout if deadline is None else deadline
        for i, signer in enumerate(self._signers):
            request.credential.CopyFrom(signer.credential(payload))  # type: ignore[attr-defined]
            try:
                response = await rpc(request, timeout=seconds, metadata=body_mac_metadata(signer.secret, request))
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED and i + 1 < len(self._signers):
                    continue  # a rotating node may already (or still) hold the other key
                raise status_error(method, exc.code(), exc.details(), kind=kind, key=key) from None
            if i:
                self._signers.insert(0, self._signers.pop(i))
                if self._on_rotate is not None:
                    self._on_rotate(signer.secret)
            ok = response.accepted if method == "Shutdown" else response.success
            if not ok:
                raise _refusal(method, response, kind, key)
            return response
        raise AssertionError("unreachable")  # pragma: no cover


def _refusal(method: str, response: Any, kind: str, key: object) -> RpcError:
    reason = str(response.error_message) if response.HasField("error_message") else NO_REASON
    if key is not None and "not found" in reason.lower():
        return RefusedNotFoundError(method, grpc.StatusCode.NOT_FOUND, reason, kind, key)
    return RequestRefusedError(method, grpc.StatusCode.FAILED_PRECONDITION, reason)
