"""Serving protobuf services from bytes, so bad requests get precise status codes.

grpcio's generated registration deserializes requests itself: malformed bytes then surface as a
generic INTERNAL "Exception deserializing request!", and proto2 messages missing required fields
parse silently. :func:`service_handler` registers a servicer with a bytes-in handler instead and
checks both, answering ``INVALID_ARGUMENT`` with a message naming the problem; the server keeps
serving. Responses are checked too, so a servicer bug is an INTERNAL naming the missing field
rather than an opaque serialization failure.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf import descriptor as _descriptor
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message

from supervit._exceptions import AuthError, NonceStorageError, StorageError, StoreUnavailableError

__all__ = ["abort", "abort_for", "service_handler"]

log = logging.getLogger(__name__)

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
    if isinstance(error, NonceStorageError):
        log.error("nonce storage failure: %s", error)
        await abort(context, grpc.StatusCode.INTERNAL, "nonce storage failure")
    if isinstance(error, StorageError):
        log.error("storage failure: %s", error)
        await abort(context, grpc.StatusCode.INTERNAL, f"storage failure: {error}")
    raise error


def _missing_fields(message: Message) -> str:
    return ", ".join(message.FindInitializationErrors())  # type: ignore[attr-defined]


def _unary(method: _descriptor.MethodDescriptor, behavior: Behavior) -> grpc.RpcMethodHandler[bytes, bytes]:
    request_cls = message_factory.GetMessageClass(method.input_type)
    name = method.input_type.name

    async def handle(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        try:
            request = request_cls.FromString(raw)
        except DecodeError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"malformed {name}: {exc}")
        if not request.IsInitialized():
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{name} is missing required field(s): {_missing_fields(request)}",
            )
        response = await behavior(request, context)
        if not response.IsInitialized():
            log.error(
                "%s produced an incomplete %s: %s", method.full_name, type(response).__name__, _missing_fields(response)
            )
            await abort(context, grpc.StatusCode.INTERNAL, f"server produced an incomplete {type(response).__name__}")
        return response.SerializeToString()

    return grpc.unary_unary_rpc_method_handler(handle)  # bytes in, bytes out


def service_handler(service: _descriptor.ServiceDescriptor, servicer: object) -> grpc.GenericRpcHandler[Any, Any]:
    """A handler serving every method of ``service`` from ``servicer``'s same-named coroutines.

    Register it with ``server.add_generic_rpc_handlers((handler,))``.
    """
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        behavior = getattr(servicer, method.name, None)
        if behavior is None:
            raise TypeError(f"{type(servicer).__name__} does not implement {method.name}")
        handlers[method.name] = _unary(method, behavior)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
