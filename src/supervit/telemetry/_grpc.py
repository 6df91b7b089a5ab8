"""gRPC metrics with the go-grpc-prometheus names, which existing dashboards and alerts know.

Server side: ``grpc_server_started_total``, ``grpc_server_handled_total`` and the histogram
``grpc_server_handling_seconds``; client side the same with ``client``. Labels ``grpc_type``
(unary, client_stream, server_stream, bidi_stream), ``grpc_service``, ``grpc_method`` and, on the
handled counters, ``grpc_code`` spelled as Go spells it (``OK``, ``Unauthenticated``, ``Canceled``…).

The server side wraps each method's handler once, at registration (:meth:`GrpcServerMetrics.
instrument`), with the label children bound then: a call costs two counter increments, one
histogram observation and two clock reads (about 2 µs, ``bench/bench_metrics_overhead.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from supervit._exceptions import (
    AuthError,
    InvalidSignatureError,
    NonceReusedError,
    StorageError,
    TimestampOutOfRangeError,
)

__all__ = [
    "GRPC_CODE_NAMES",
    "LATENCY_BUCKETS",
    "REFUSAL_REASONS",
    "GrpcClientMetrics",
    "GrpcServerMetrics",
    "MethodMetrics",
    "refusal_reason",
    "refusal_reason_for",
]

GRPC_CODE_NAMES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}
"""gRPC status codes as Go's ``codes.Code.String()`` spells them (the go-grpc-prometheus label values)."""

# Sub-millisecond buckets too: most supervit RPCs take well under 5 ms (Prometheus' default floor).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REFUSAL_REASONS = ("timestamp", "signature", "replay", "malformed")
"""The ``reason`` values of ``supervit_auth_refusals_total``."""

_BY_MESSAGE = {
    TimestampOutOfRangeError.message: "timestamp",
    InvalidSignatureError.message: "signature",
    NonceReusedError.message: "replay",
}


def refusal_reason(code: grpc.StatusCode, details: str | None) -> str | None:
    """The refusal reason of a supervit service's answer, None if it is not a refusal.

    ``UNAUTHENTICATED`` carries the contract's message; any other credential refusal (a node with
    no secret configured: "authentication failed") counts as ``signature``, since no key can
    verify it. ``INVALID_ARGUMENT`` (undecodable, incomplete or out-of-range requests) and
    ``RESOURCE_EXHAUSTED`` (over the service's size limits) are ``malformed``.
    """
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return _BY_MESSAGE.get(details or "", "signature")
    if code is grpc.StatusCode.INVALID_ARGUMENT or code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "malformed"
    return None


def refusal_reason_for(error: BaseException) -> str:
    """The ``reason`` of a refused credential, for logs: timestamp, signature, replay or storage."""
    if isinstance(error, AuthError):
        return _BY_MESSAGE.get(str(error), "signature")
    return "storage" if isinstance(error, StorageError) else type(error).__name__


def _split(full_method: str) -> tuple[str, str]:
    # "/package.Service/Method" -> ("package.Service", "Method")
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or "unknown", method or "unknown"


def _kind(handler: grpc.RpcMethodHandler[Any, Any]) -> tuple[str, Callable[..., Any] | None]:
    if handler.unary_unary is not None:
        return "unary", handler.unary_unary
    if handler.unary_stream is not None:
        return "server_stream", handler.unary_stream
    if handler.stream_unary is not None:
        return "client_stream", handler.stream_unary
    return "bidi_stream", handler.stream_stream


_FACTORIES: dict[str, Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
    "unary": grpc.unary_unary_rpc_method_handler,
    "server_stream": grpc.unary_stream_rpc_method_handler,
    "client_stream": grpc.stream_unary_rpc_method_handler,
    "bidi_stream": grpc.stream_stream_rpc_method_handler,
}


class MethodMetrics:
    """The label children of one method, bound once; the per-call calls are attribute lookups."""

    __slots__ = ("_codes", "_handled", "_labels", "_observe", "_on_refusal", "ok", "started")

    def __init__(
        self,
        started: Counter,
        handled: Counter,
        handling: Histogram,
        labels: tuple[str, str, str],
        on_refusal: Callable[[str], None] | None,
    ) -> None:
        self._handled = handled
        self._labels = labels
        self._on_refusal = on_refusal
        self._codes: dict[str, Callable[[], None]] = {}
        self.started: Callable[[], None] = started.labels(*labels).inc
        ok = handled.labels(*labels, "OK").inc
        observe = handling.labels(*labels).observe
        self._codes["OK"] = ok
        self._observe: Callable[[float], None] = observe

        def done_ok(seconds: float) -> None:
            ok()
            observe(seconds)

        self.ok: Callable[[float], None] = done_ok

    def done(self, code: grpc.StatusCode, seconds: float, details: str | None = None) -> None:
        """Count a call that ended with ``code`` after ``seconds``."""
        name = GRPC_CODE_NAMES.get(code, "Unknown")
        inc = self._codes.get(name)
        if inc is None:
            inc = self._codes[name] = self._handled.labels(*self._labels, name).inc
        inc()
        self._observe(seconds)
        if self._on_refusal is not None:
            reason = refusal_reason(code, details)
            if reason is not None:
                self._on_refusal(reason)

    def failed(self, context: grpc.aio.ServicerContext[Any, Any], error: BaseException, seconds: float) -> None:
        """Count a call whose behaviour raised ``error`` (an abort carries its status in ``context``)."""
        if isinstance(error, asyncio.CancelledError):
            code = grpc.StatusCode.CANCELLED
        else:
            code = context.code() or grpc.StatusCode.UNKNOWN
        details = context.details() if code in _WITH_DETAILS else None
        self.done(code, seconds, details)


_WITH_DETAILS = frozenset({grpc.StatusCode.UNAUTHENTICATED})


class GrpcServerMetrics:
    """``grpc_server_*`` in ``registry``; :meth:`instrument` wraps a method handler.

    ``on_refusal(reason)`` is called for every refusal (see :func:`refusal_reason`) of methods
    instrumented with ``refusals=True``.
    """

    def __init__(self, registry: CollectorRegistry, *, on_refusal: Callable[[str], None] | None = None) -> None:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter("grpc_server_started_total", "RPCs started on the server.", labels, registry=registry)
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, regardless of success or failure.",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Response latency (seconds) of gRPC that had been application-level handled by the server.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._on_refusal = on_refusal

    def method(self, kind: str, service: str, method: str, *, refusals: bool = False) -> MethodMetrics:
        """The bound children of one method (its OK series exist from now on, at 0)."""
        return MethodMetrics(
            self.started,
            self.handled,
            self.handling,
            (kind, service, method),
            self._on_refusal if refusals else None,
        )

    def instrument(
        self,
        handler: grpc.RpcMethodHandler[Any, Any],
        service: str,
        method: str,
        *,
        refusals: bool = False,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """``handler`` counted and timed; returned unchanged if its behaviour is not a coroutine
        or async generator function (grpc runs those in a thread pool; supervit has none)."""
        kind, behavior = _kind(handler)
        if behavior is None:
            return handler
        metrics = self.method(kind, service, method, refusals=refusals)
        wrapped: Callable[..., Any]
        if inspect.isasyncgenfunction(behavior):
            wrapped = _streaming(behavior, metrics)
        elif inspect.iscoroutinefunction(behavior):
            wrapped = _unary(behavior, metrics)
        else:
            return handler
        return _FACTORIES[kind](
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def generic(self, inner: grpc.GenericRpcHandler[Any, Any]) -> grpc.GenericRpcHandler[Any, Any]:
        """A generic handler serving what ``inner`` serves, instrumented (each method wrapped once)."""
        return _InstrumentedGeneric(inner, self)


def _unary(behavior: Callable[..., Any], metrics: MethodMetrics) -> Callable[..., Any]:
    started, ok, failed, clock = metrics.started, metrics.ok, metrics.failed, time.perf_counter

    async def observed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started()
        begin = clock()
        try:
            response = await behavior(request, context)
        except BaseException as exc:
            failed(context, exc, clock() - begin)
            raise
        code = context.code()
        if code is None or code is grpc.StatusCode.OK:
            ok(clock() - begin)
        else:  # a behaviour may set a code and return instead of aborting
            metrics.done(code, clock() - begin, context.details())
        return response

    return observed


def _streaming(behavior: Callable[..., AsyncIterator[Any]], metrics: MethodMetrics) -> Callable[..., Any]:
    clock = time.perf_counter

    async def observed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        metrics.started()
        begin = clock()
        try:
            async for response in behavior(request, context):
                yield response
        except BaseException as exc:
            metrics.failed(context, exc, clock() - begin)
            raise
        code = context.code()
        metrics.done(code or grpc.StatusCode.OK, clock() - begin, context.details())

    return observed


class _InstrumentedGeneric(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    def __init__(self, inner: grpc.GenericRpcHandler[Any, Any], metrics: GrpcServerMetrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        name = handler_call_details.method
        cached = self._wrapped.get(name)
        if cached is None or cached[0] is not handler:
            cached = (handler, self._metrics.instrument(handler, *_split(name)))
            self._wrapped[name] = cached
        return cached[1]


class GrpcClientMetrics:
    """``grpc_client_*`` in ``registry``; :meth:`interceptor` instruments a grpc.aio channel."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter("grpc_client_started_total", "RPCs started on the client.", labels, registry=registry)
        self.handled = Counter(
            "grpc_client_handled_total",
            "RPCs completed by the client, regardless of success or failure.",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.handling = Histogram(
            "grpc_client_handling_seconds",
            "Histogram of response latency (seconds) of the gRPC until it is finished by the application.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._methods: dict[str, MethodMetrics] = {}

    def method(self, full_method: str) -> MethodMetrics:
        found = self._methods.get(full_method)
        if found is None:
            service, method = _split(full_method)
            found = MethodMetrics(self.started, self.handled, self.handling, ("unary", service, method), None)
            self._methods[full_method] = found
        return found

    def interceptor(self) -> grpc.aio.UnaryUnaryClientInterceptor[Any, Any]:
        """A unary-unary client interceptor counting and timing every call of its channel."""
        return _ClientInterceptor(self)


class _ClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, metrics: GrpcClientMetrics) -> None:
        self._metrics = metrics

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        method = client_call_details.method
        name = method.decode() if isinstance(method, bytes) else str(method)
        metrics = self._metrics.method(name)
        metrics.started()
        begin = time.perf_counter()
        call = await continuation(client_call_details, request)
        code = await call.code()  # waits for the call to finish; the caller then reads it as usual
        metrics.done(code, time.perf_counter() - begin)
        return call
