"""Serving protobuf services from bytes, so bad requests get precise status codes.

grpcio's generated registration deserializes requests itself: malformed bytes then surface as a
generic INTERNAL "Exception deserializing request!", and proto2 messages missing required fields
parse silently. :func:`service_handler` registers a servicer with a bytes-in handler instead and
checks both, answering ``INVALID_ARGUMENT`` with a message naming the problem; the server keeps
serving. Responses are checked too, so a servicer bug is an INTERNAL naming the missing field
rather than an opaque serialization failure.

Right after decoding, the request is checked against its service's limits table
(:mod:`supervit.rpc._limits`: size, string lengths and UTF-8, repeated counts, integer ranges), so
nothing hostile reaches the credential check, the stores or the fingerprint. Refusals are logged
rate-limited, and an unexpected servicer exception is an ``INTERNAL`` answer with one logged
traceback per kind of failure and period, never an ``UNKNOWN`` with a traceback per request.

The exact request bytes stay available to the servicer through :func:`current_request_bytes`
(for the body MAC, :mod:`supervit.auth._body_mac`).
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, Protocol

import grpc
from google.protobuf import descriptor as _descriptor
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, EncodeError, Message

from supervit._exceptions import AuthError, InvalidRequestError, NonceStorageError, StorageError, StoreUnavailableError
from supervit.rpc._limits import RequestValidator, ServiceLimits, default_limits
from supervit.rpc._refusals import RefusalLog
from supervit.telemetry import GrpcServerMetrics

__all__ = ["StorageObserver", "abort", "abort_for", "current_request_bytes", "service_handler"]

log = logging.getLogger(__name__)
_refusals = RefusalLog(log)

# The serialized request of the RPC running in this task (grpc.aio runs each RPC in its own task).
_REQUEST_BYTES: contextvars.ContextVar[bytes] = contextvars.ContextVar("supervit_request_bytes", default=b"")
# One traceback per failure kind and period; the rest are counted.
_UNEXPECTED_PERIOD_SECS = 60.0
_unexpected_seen: dict[str, float] = {}


class StorageObserver(Protocol):
    """Learns of requests that failed because storage could not write, and of requests that succeeded."""

    def failed(self, error: BaseException) -> None: ...

    def succeeded(self) -> None: ...


_OBSERVER: contextvars.ContextVar[StorageObserver | None] = contextvars.ContextVar("supervit_observer", default=None)


def current_request_bytes() -> bytes:
    """The exact bytes of the request being served (empty outside a supervit handler)."""
    return _REQUEST_BYTES.get()


Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Message]]


async def abort(context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, details: str) -> NoReturn:
    """End the RPC with ``code``; never returns."""
    await context.abort(code, details)
    raise AssertionError("unreachable: context.abort returned")  # pragma: no cover


async def abort_for(context: grpc.aio.ServicerContext[Any, Any], error: Exception) -> NoReturn:
    """Map a supervit error onto the contract's status codes and abort.

    AuthError → UNAUTHENTICATED with the contract message; an unreachable shared store →
    UNAVAILABLE; other storage failures → INTERNAL
    (details never include secrets; the cause is logged).
    """
    if isinstance(error, AuthError):
        await abort(context, grpc.StatusCode.UNAUTHENTICATED, str(error))
    if isinstance(error, StoreUnavailableError):
        # Not the client's fault and not permanent: UNAVAILABLE makes nodes retry or fail over.
        log.warning("store unavailable: %s", error)
        await abort(context, grpc.StatusCode.UNAVAILABLE, f"store unavailable: {error}")
    if isinstance(error, StorageError):
        observer = _OBSERVER.get()
        if observer is not None:
            observer.failed(error)
    if isinstance(error, NonceStorageError):
        log.error("nonce storage failure: %s", error)
        await abort(context, grpc.StatusCode.INTERNAL, "nonce storage failure")
    if isinstance(error, StorageError):
        log.error("storage failure: %s", error)
        await abort(context, grpc.StatusCode.INTERNAL, f"storage failure: {error}")
    raise error


def _missing_fields(message: Message) -> str:
    return ", ".join(message.FindInitializationErrors())  # type: ignore[attr-defined]


async def _refuse(context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, details: str) -> NoReturn:
    _refusals.note(code.name, "refused request from %s: %s: %s", context.peer(), code.name, details)
    await abort(context, code, details)


def _log_unexpected(method: str, exc: Exception) -> None:
    kind = f"{method}:{type(exc).__name__}"
    now = time.monotonic()
    if now - _unexpected_seen.get(kind, float("-inf")) >= _UNEXPECTED_PERIOD_SECS:
        _unexpected_seen[kind] = now
        log.error(
            "%s failed unexpectedly (further %s within %.0fs not logged in full)",
            method,
            kind,
            _UNEXPECTED_PERIOD_SECS,
            exc_info=exc,
        )
    else:
        _refusals.note(kind, "%s failed unexpectedly: %s", method, exc)


def _unary(
    method: _descriptor.MethodDescriptor,
    behavior: Behavior,
    limits: ServiceLimits | None,
    observer_of: Callable[[], StorageObserver | None] | None,
) -> grpc.RpcMethodHandler[bytes, bytes]:
    request_cls = message_factory.GetMessageClass(method.input_type)
    name = method.input_type.name
    validator = None if limits is None else RequestValidator(method.input_type, limits)
    max_bytes = None if limits is None else limits.max_request_bytes
    service = method.containing_service.name

    async def handle(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        if max_bytes is not None and len(raw) > max_bytes:
            await _refuse(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{name} of {len(raw)} bytes exceeds the {service} limit of {max_bytes} bytes",
            )
        try:
            request = request_cls.FromString(raw)
        except DecodeError as exc:
            await _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, f"malformed {name}: {exc}")
        if not request.IsInitialized():
            await _refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{name} is missing required field(s): {_missing_fields(request)}",
            )
        if validator is not None:
            try:
                validator.validate(request)
            except InvalidRequestError as exc:
                await _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        _REQUEST_BYTES.set(raw)
        observer = None if observer_of is None else observer_of()
        if observer is not None:
            _OBSERVER.set(observer)
        try:
            response = await behavior(request, context)
        except (grpc.aio.AbortError, InvalidRequestError, AuthError, StorageError) as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            if isinstance(exc, InvalidRequestError):
                await _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            await abort_for(context, exc)
        except Exception as exc:
            _log_unexpected(method.full_name, exc)
            await abort(context, grpc.StatusCode.INTERNAL, f"internal error in {method.name}")
        if observer is not None:
            observer.succeeded()
        try:
            return response.SerializeToString()  # checks the required fields itself
        except EncodeError:
            log.error(
                "%s produced an incomplete %s: %s", method.full_name, type(response).__name__, _missing_fields(response)
            )
            await abort(context, grpc.StatusCode.INTERNAL, f"server produced an incomplete {type(response).__name__}")

    return grpc.unary_unary_rpc_method_handler(handle)  # bytes in, bytes out


def service_handler(
    service: _descriptor.ServiceDescriptor,
    servicer: object,
    limits: ServiceLimits | None = None,
    *,
    observer: Callable[[], StorageObserver | None] | None = None,
    metrics: GrpcServerMetrics | None = None,
) -> grpc.GenericRpcHandler[Any, Any]:
    """A handler serving every method of ``service`` from ``servicer``'s same-named coroutines.

    Requests are checked against ``limits`` (default: supervit's table for the service, if it has
    one). ``observer()`` (if given) is told of storage failures and of successful requests.
    Register it with ``server.add_generic_rpc_handlers((handler,))``. With ``metrics`` every call
    is counted and timed (``grpc_server_*``) and refusals counted by reason, around all of the above.
    """
    if limits is None:
        limits = default_limits(service.full_name)
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        behavior = getattr(servicer, method.name, None)
        if behavior is None:
            raise TypeError(f"{type(servicer).__name__} does not implement {method.name}")
        handler = _unary(method, behavior, limits, observer)
        if metrics is not None:
            handler = metrics.instrument(handler, service.full_name, method.name, refusals=True)
        handlers[method.name] = handler
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
