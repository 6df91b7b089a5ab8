"""A real, scriptable SupervisorService on loopback for client tests (grpc.aio, no mocks).

Every credential is verified with the project's :class:`CredentialVerifier` over
:func:`request_payload`, on the double's own clock (``time.time() + clock_offset``), so a skewed
supervisor is one attribute away. Every call is recorded with its arrival time and outcome.

Conventions it implements (as the reference supervisor does):

* a Report from a node that has not registered is answered ``NOT_FOUND`` "node not registered"
  (``require_registration``; HealthCheck answers any node with a valid credential);
* every response, errors included, carries the trailing metadata ``x-server-time`` (integer Unix
  seconds on the double's clock), unless ``send_server_time`` is False.

Scripting: ``next_report_interval_secs``, :meth:`queue_directive` / :meth:`queue_raw_directive`
(one per Report response, in order), :meth:`fail_next` (answer the next calls of a method with a
given status), ``register_error`` (``success=false``), :meth:`forget_nodes`, and
:meth:`stop`/:meth:`start` to take the server down and bring it back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from supervit._exceptions import AuthError
from supervit.auth import CredentialVerifier, MemoryNonceStorage, SharedSecret, request_payload
from supervit.protocol import NOT_REGISTERED_DETAILS, SERVER_TIME_METADATA_KEY, supervisor_pb2, supervisor_pb2_grpc

__all__ = ["Received", "SupervisorDouble"]

_SERVICE = "supervisor.v1.SupervisorService"
_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp", bound=Message)
_SERVER_OPTIONS = [
    # Let the client's keepalive pings through (grpc servers refuse frequent pings by default).
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ("grpc.http2.max_ping_strikes", 0),
]


@dataclass
class Received:
    """One call as the double saw it."""

    method: str
    request: Any
    at: float
    """``time.monotonic()`` on arrival."""
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""

    @property
    def ok(self) -> bool:
        return self.code == grpc.StatusCode.OK


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def _serialize(message: Message) -> bytes:
    # Strict unless a test deliberately scripted a malformed (partial) directive.
    return message.SerializeToString() if message.IsInitialized() else message.SerializePartialToString()


class SupervisorDouble(supervisor_pb2_grpc.SupervisorServiceServicer):
    """An in-process SupervisorService listening on ``127.0.0.1`` (port chosen at first start)."""

    def __init__(
        self,
        secrets: SharedSecret | Sequence[SharedSecret],
        *,
        window_secs: int = 300,
        clock_offset: float = 0.0,
        server_credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.clock_offset = clock_offset
        self.nonces = MemoryNonceStorage(clock=self.now)
        self.verifier = CredentialVerifier(secrets, self.nonces, window_secs, clock=self.now)
        self.server_credentials = server_credentials
        self.next_report_interval_secs = 0
        self.heartbeat_interval_secs = 15
        self.send_server_time = True
        self.require_registration = True
        self.register_error: str | None = None
        self.report_received = True
        """``received`` of Report responses."""
        self.delay_secs = 0.0
        """Seconds every answer is held back (to exercise client deadlines)."""
        self.nodes: dict[str, supervisor_pb2.RegisterNodeRequest] = {}
        self.received: list[Received] = []
        self.port = 0
        self._directives: deque[bytes] = deque()
        self._failures: dict[str, deque[tuple[grpc.StatusCode, str]]] = {}
        self._server: grpc.aio.Server | None = None
        self._arrival = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    def now(self) -> float:
        """The double's clock: real time plus ``clock_offset``."""
        return time.time() + self.clock_offset

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def endpoint(self) -> str:
        """``http(s)://127.0.0.1:port`` for SupervitConfig."""
        scheme = "https" if self.server_credentials is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (on the same port as before after a :meth:`stop`)."""
        if self._server is not None:
            return
        server = grpc.aio.server(options=_SERVER_OPTIONS)
        handlers = {
            "RegisterNode": grpc.unary_unary_rpc_method_handler(
                self.RegisterNode,
                request_deserializer=supervisor_pb2.RegisterNodeRequest.FromString,
                response_serializer=_serialize,
            ),
            "Report": grpc.unary_unary_rpc_method_handler(
                self.Report,
                request_deserializer=supervisor_pb2.ReportRequest.FromString,
                response_serializer=_serialize,
            ),
            "HealthCheck": grpc.unary_unary_rpc_method_handler(
                self.HealthCheck,
                request_deserializer=supervisor_pb2.HealthCheckRequest.FromString,
                response_serializer=_serialize,
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
        address = f"127.0.0.1:{self.port}"
        if self.server_credentials is not None:
            port = server.add_secure_port(address, self.server_credentials)
        else:
            port = server.add_insecure_port(address)
        if self.port and port != self.port:
            raise RuntimeError(f"could not rebind port {self.port}")
        self.port = port
        await server.start()
        self._server = server

    async def stop(self, grace: float | None = None) -> None:
        """Stop listening and drop open connections; the recorded state is kept."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    async def __aenter__(self) -> SupervisorDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting -------------------------------------------------------------------------

    def queue_directive(self, kind: int, payload: str | None = None) -> None:
        """Send ``Directive(type=kind, payload=payload)`` with the next Report response without one."""
        directive = supervisor_pb2.Directive(type=kind)  # type: ignore[arg-type]
        if payload is not None:
            directive.payload = payload
        self._directives.append(directive.SerializeToString())

    def queue_raw_directive(self, raw: bytes) -> None:
        """Send these bytes as the ``directive`` field (e.g. an enum value no build knows)."""
        self._directives.append(raw)

    def fail_next(self, method: str, code: grpc.StatusCode, details: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with ``code``/``details`` (no verification)."""
        queue = self._failures.setdefault(method, deque())
        queue.extend([(code, details)] * times)

    def forget_nodes(self) -> None:
        """Lose every registration, as a supervisor restarted without persistence would."""
        self.nodes.clear()

    # -- inspection ------------------------------------------------------------------------

    def calls(self, method: str | None = None, *, ok: bool | None = None) -> list[Received]:
        """Recorded calls, optionally of one method and/or only (un)successful ones."""
        return [r for r in self.received if (method is None or r.method == method) and (ok is None or r.ok == ok)]

    def reports(self) -> list[supervisor_pb2.ReportRequest]:
        """Accepted Report requests, in arrival order."""
        return [r.request for r in self.calls("Report", ok=True)]

    def registrations(self) -> list[supervisor_pb2.RegisterNodeRequest]:
        """Accepted RegisterNode requests, in arrival order."""
        return [r.request for r in self.calls("RegisterNode", ok=True)]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0, what: str = "condition") -> None:
        """Wait until ``predicate()`` holds (checked on every arrival and every 50 ms); fail after ``within`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {within}s waiting for {what}")
            self._arrival.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrival.wait(), min(remaining, 0.05))

    # -- the service -----------------------------------------------------------------------

    async def RegisterNode(
        self, request: supervisor_pb2.RegisterNodeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> supervisor_pb2.RegisterNodeResponse:
        return await self._serve("RegisterNode", request, context, self._register)

    async def Report(
        self, request: supervisor_pb2.ReportRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> supervisor_pb2.ReportResponse:
        return await self._serve("Report", request, context, self._report)

    async def HealthCheck(
        self, request: supervisor_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> supervisor_pb2.HealthCheckResponse:
        return await self._serve("HealthCheck", request, context, self._health)

    async def _serve(self, method: str, request: _Req, context: Any, body: Callable[[_Req], _Resp]) -> _Resp:
        copy = type(request)()
        copy.CopyFrom(request)  # the client may reuse its message object
        record = Received(method, copy, time.monotonic())
        self.received.append(record)
        self._arrival.set()
        try:
            response = await self._answer(method, request, body)
        except _Abort as abort:
            record.code, record.details = abort.code, abort.details
            await context.abort(abort.code, abort.details, trailing_metadata=self._metadata())
        context.set_trailing_metadata(self._metadata())
        return response

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        if not self.send_server_time:
            return ()
        return ((SERVER_TIME_METADATA_KEY, str(int(self.now()))),)

    async def _answer(self, method: str, request: Any, body: Callable[[_Req], _Resp]) -> _Resp:
        if self.delay_secs:
            await asyncio.sleep(self.delay_secs)
        scripted = self._failures.get(method)
        if scripted:
            raise _Abort(*scripted.popleft())
        if not request.IsInitialized():
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "missing required fields")
        try:
            await self.verifier.verify(request.credential, request_payload(request))
        except AuthError as exc:
            raise _Abort(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from None
        return body(request)

    def _register(self, request: supervisor_pb2.RegisterNodeRequest) -> supervisor_pb2.RegisterNodeResponse:
        now = self.now()
        if self.register_error is not None:
            return supervisor_pb2.RegisterNodeResponse(
                success=False,
                error_message=self.register_error,
                server_timestamp=int(now),
                heartbeat_interval_secs=self.heartbeat_interval_secs,
            )
        self.nodes[request.node_id] = request
        return supervisor_pb2.RegisterNodeResponse(
            success=True,
            server_timestamp=int(now),
            heartbeat_interval_secs=self.heartbeat_interval_secs,
            resource_version=1,
            registered_at_iso=datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat(),
        )

    def _report(self, request: supervisor_pb2.ReportRequest) -> supervisor_pb2.ReportResponse:
        if self.require_registration and request.node_id not in self.nodes:
            raise _Abort(grpc.StatusCode.NOT_FOUND, NOT_REGISTERED_DETAILS)
        response = supervisor_pb2.ReportResponse(
            received=self.report_received,
            server_timestamp=int(self.now()),
            next_report_interval_secs=self.next_report_interval_secs,
        )
        if self._directives:
            response.directive.MergeFromString(self._directives.popleft())
        return response

    def _health(self, request: supervisor_pb2.HealthCheckRequest) -> supervisor_pb2.HealthCheckResponse:
        return supervisor_pb2.HealthCheckResponse(healthy=True, server_timestamp=int(self.now()), latency_ms=1)
