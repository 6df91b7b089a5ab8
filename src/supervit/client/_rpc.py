"""The signed-call core under :class:`~supervit.client.SupervitClient`.

:class:`SupervisorConnection` owns the channel, the signer and the clock-skew estimate, and turns
each SupervisorService call into: sign with a fresh credential on the corrected clock, call with
the per-RPC deadline, learn the supervisor's time from the answer (``server_timestamp`` on success,
the ``x-server-time`` trailing metadata on errors), and map failures onto supervit errors.

With several endpoints (``SupervitConfig.endpoints``, supervisor replicas on a shared store) a call
failing ``UNAVAILABLE`` or ``DEADLINE_EXCEEDED`` moves the connection to the next endpoint (round
robin); the failed call is still raised, so the caller's backoff paces the retry. The client
stays on an endpoint as long as it answers, and keeps its registration across a move (the
replicas share the registry; a replica that does not know the node answers ``NOT_FOUND`` and the
node registers again).

On an ``UNAUTHENTICATED`` "timestamp out of range" refusal the call is retried once, immediately:
right away when the error carried ``x-server-time`` (the skew estimate already moved), otherwise
after a HealthCheck whose ``server_timestamp`` refreshed the estimate. When neither yields a
server time (a supervisor without the extension and a skew beyond its window) the error is raised
and the caller's backoff applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from supervit._exceptions import NotRegisteredError, RpcError
from supervit.auth import Signer, body_mac_metadata, request_payload
from supervit.client._channel import open_channel
from supervit.client._errors import is_outage, is_timestamp_rejection, server_time_from_metadata, to_rpc_error
from supervit.client._skew import ClockSkewEstimator
from supervit.client._state import ConnectionState, StateTracker
from supervit.config import SupervitConfig, endpoint_target
from supervit.protocol import supervisor_pb2, supervisor_pb2_grpc

__all__ = ["SupervisorConnection", "health_rpc", "register_rpc", "report_rpc"]

log = logging.getLogger("supervit.client")

# A replica that is down or too slow: try the next one (with the caller's usual backoff).
_FAILOVER_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class _Timestamped(Protocol):
    @property
    def server_timestamp(self) -> int: ...


_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp", bound=_Timestamped)
if TYPE_CHECKING:  # the async stub type exists only in the generated .pyi
    _Rpc = Callable[
        [supervisor_pb2_grpc.SupervisorServiceAsyncStub],
        grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp],
    ]


class SupervisorConnection:
    """Channel, signer, skew estimate and connection state of one node towards its supervisor.

    ``config`` must already be validated. ``clock`` is the node's wall clock (Unix seconds): the
    signer and the skew measurement both use it, so a test can shift it to simulate a wrong clock.
    """

    def __init__(
        self, config: SupervitConfig, *, clock: Callable[[], float] = time.time, interceptors: Sequence[Any] = ()
    ) -> None:
        self._config = config
        self._interceptors = tuple(interceptors)
        self._clock = clock
        self._signer = Signer(config.secret, clock=clock)
        self._skew = ClockSkewEstimator()
        self._state = StateTracker(self._clamp_interval(config.status_report_interval_secs))
        self._channel: grpc.aio.Channel | None = None
        self._stub: supervisor_pb2_grpc.SupervisorServiceAsyncStub | None = None
        self._endpoints = config.endpoint_list
        self._current = 0  # index into _endpoints of the replica in use
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def config(self) -> SupervitConfig:
        """The (validated) configuration."""
        return self._config

    @property
    def state(self) -> ConnectionState:
        """A snapshot of the connection state."""
        return self._state.snapshot()

    @property
    def clock_skew_secs(self) -> float:
        """The node's clock minus the supervisor's, as estimated (positive: node ahead; 0.0 until
        measured or when below the 1 s resolution of the supervisor's timestamps)."""
        return self._state.clock_skew_secs

    @property
    def registered(self) -> bool:
        """Whether the node is registered as far as the client knows."""
        return self._state.registered

    @property
    def current_interval_secs(self) -> float:
        """The reporting interval in force."""
        return self._state.current_interval_secs

    @property
    def signer(self) -> Signer:
        """The signer of this client's credentials (its ``clock_offset`` tracks the skew)."""
        return self._signer

    def _clamp_interval(self, secs: float) -> float:
        return min(self._config.max_report_interval_secs, max(self._config.min_report_interval_secs, secs))

    @property
    def endpoint(self) -> str:
        """The supervisor endpoint in use (one of ``endpoint`` / ``endpoints``)."""
        return self._endpoints[self._current]

    @property
    def _target(self) -> str:
        return endpoint_target(self.endpoint)

    def _ensure_channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = open_channel(self._config, self.endpoint, interceptors=self._interceptors)
            self._stub = supervisor_pb2_grpc.SupervisorServiceStub(self._channel)
            self._state.channel_open = True
        return self._channel

    def _fail_over(self, failed: grpc.aio.Channel | None, error: RpcError) -> bool:
        """Move to the next endpoint after an outage of the one ``failed`` was open to.

        Returns False (nothing to do) with a single endpoint. A call failing on a channel that
        was already replaced (the other loop moved first) does not move again.
        """
        if len(self._endpoints) < 2 or error.code not in _FAILOVER_CODES:
            return False
        if failed is not None and failed is self._channel:
            before = self.endpoint
            self._current = (self._current + 1) % len(self._endpoints)
            log.warning("supervisor at %s failed (%s); switching to %s", before, error.code.name, self.endpoint)
            self._channel = self._stub = None
            task = asyncio.get_running_loop().create_task(failed.close(None))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            self._ensure_channel()
        return True

    async def _close_channel(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
        if channel is not None:
            await channel.close(None)
            log.info("disconnected from supervisor at %s", self._target)
        self._state.channel_open = False
        self._state.registered_at = None

    def _lose_registration(self, reason: RpcError) -> None:
        if self._state.registered:
            log.warning(
                "registration of node %s considered lost (%s); will register again", self._config.node_id, reason
            )
        self._state.registered_at = None

    def _health_request(self) -> supervisor_pb2.HealthCheckRequest:
        return supervisor_pb2.HealthCheckRequest(node_id=self._config.node_id)

    async def _invoke(
        self,
        method: str,
        request: _Req,
        rpc: _Rpc[_Req, _Resp],
        *,
        refresh: bool = True,
        metadata: tuple[tuple[str, str], ...] | None = None,
        deadline_secs: float | None = None,
    ) -> _Resp:
        """Sign and send ``request``; learn the server time from the answer either way.

        Every attempt gets a fresh credential (new nonce, corrected timestamp). Raises
        :class:`RpcError` (:class:`NotRegisteredError` for ``NOT_FOUND``).
        """
        retried = False
        while True:
            stub = self._stub
            if stub is None:
                raise RpcError(method, grpc.StatusCode.FAILED_PRECONDITION, "client is not connected (call connect())")
            self._sign(request)
            channel = self._channel
            sent = self._clock()
            server_time: float | None = None
            try:
                # The body MAC extension: supervit supervisors verify it (docs/security.md).
                call_metadata = (*body_mac_metadata(self._signer.secret, request), *(metadata or ()))
                response = await rpc(stub)(
                    request,
                    timeout=self._config.rpc_timeout_secs if deadline_secs is None else deadline_secs,
                    metadata=call_metadata,
                )
            except grpc.aio.AioRpcError as exc:
                received = self._clock()
                server_time = server_time_from_metadata(exc.trailing_metadata(), exc.initial_metadata())
                if server_time is not None:
                    self._observe_server_time(server_time, sent, received)
                error = to_rpc_error(method, exc.code(), exc.details())
            except grpc.aio.UsageError as exc:  # the channel was closed under the call (stop())
                error = RpcError(method, grpc.StatusCode.CANCELLED, str(exc))
            else:
                received = self._clock()
                self._observe_server_time(response.server_timestamp, sent, received)
                self._state.success(received)
                return response
            if not retried and is_timestamp_rejection(error):
                retried = True
                if server_time is not None or (refresh and await self._refresh_skew()):
                    log.warning(
                        "%s refused: timestamp out of range; clock skew now estimated at %+.1fs, retrying",
                        method,
                        self._state.clock_skew_secs,
                    )
                    continue
            self._state.failure()
            if self._fail_over(channel, error):
                # Replicas share the registry: the next one knows this node (NOT_FOUND if not).
                raise error
            if isinstance(error, NotRegisteredError) or is_outage(error):
                self._lose_registration(error)
            raise error

    async def _refresh_skew(self) -> bool:
        """Get a server time from a HealthCheck; True if one was observed."""
        before = self._skew.samples
        with contextlib.suppress(RpcError):
            await self._invoke("HealthCheck", self._health_request(), health_rpc, refresh=False)
        return self._skew.samples > before

    def _sign(self, request: Message) -> None:
        if isinstance(request, supervisor_pb2.ReportRequest):
            # The report timestamp is part of the signed payload and must be the credential's.
            now = self._signer.now()
            request.timestamp = now
            credential = self._signer.credential(request_payload(request), timestamp=now)
        else:
            credential = self._signer.credential(request_payload(request))
        request.credential.CopyFrom(credential)  # type: ignore[attr-defined]

    def _observe_server_time(self, server_time: float, sent: float, received: float) -> None:
        if not server_time > 0:  # an unset or bogus timestamp must not swing the signing clock
            return
        skew = self._skew.observe(server_time, sent, received)
        if abs(skew - self._state.clock_skew_secs) >= self._skew.resolution_secs:
            log.info("clock skew against the supervisor now estimated at %+.1fs", skew)
        self._signer.clock_offset = -skew
        self._state.clock_skew_secs = skew


def health_rpc(
    stub: supervisor_pb2_grpc.SupervisorServiceAsyncStub,
) -> grpc.aio.UnaryUnaryMultiCallable[supervisor_pb2.HealthCheckRequest, supervisor_pb2.HealthCheckResponse]:
    return stub.HealthCheck


def register_rpc(
    stub: supervisor_pb2_grpc.SupervisorServiceAsyncStub,
) -> grpc.aio.UnaryUnaryMultiCallable[supervisor_pb2.RegisterNodeRequest, supervisor_pb2.RegisterNodeResponse]:
    return stub.RegisterNode


def report_rpc(
    stub: supervisor_pb2_grpc.SupervisorServiceAsyncStub,
) -> grpc.aio.UnaryUnaryMultiCallable[supervisor_pb2.ReportRequest, supervisor_pb2.ReportResponse]:
    return stub.Report
