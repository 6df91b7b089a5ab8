"""Mapping gRPC failures onto supervit errors, and the supervit metadata conventions.

Two conventions beyond the protobuf contract (metadata only, so the wire messages are unchanged):

* **Re-registration**: a supervisor that does not know a reporting node answers the Report with
  gRPC status ``NOT_FOUND`` and details ``"node not registered"``. Any ``NOT_FOUND`` from the
  SupervisorService becomes :class:`~supervit.NotRegisteredError`.
* **Server time on errors**: a supervit supervisor adds the trailing metadata entry
  ``x-server-time`` (Unix seconds as decimal text, normally an integer) to every error
  response, so a node refused with "timestamp out of range" learns the supervisor's clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import grpc

from supervit._exceptions import (
    AuthError,
    InvalidRequestError,
    NotFoundError,
    NotRegisteredError,
    RpcError,
    TimestampOutOfRangeError,
)
from supervit.protocol import LEAVING_METADATA_KEY, NOT_REGISTERED_DETAILS, SERVER_TIME_METADATA_KEY

__all__ = [
    "LEAVING_METADATA_KEY",
    "NOT_REGISTERED_DETAILS",
    "OUTAGE_CODES",
    "SERVER_TIME_METADATA_KEY",
    "CredentialRejectedError",
    "DeadlineExceededError",
    "InvalidArgumentError",
    "PeerUnavailableError",
    "RefusedNotFoundError",
    "RegistrationRejectedError",
    "RemoteNotFoundError",
    "RequestRefusedError",
    "is_auth_failure",
    "is_outage",
    "is_timestamp_rejection",
    "server_time_from_metadata",
    "status_error",
    "to_rpc_error",
]

OUTAGE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.ABORTED,
    }
)
"""Codes after which the supervisor may have lost (or never stored) this node's registration."""


class RegistrationRejectedError(RpcError):
    """RegisterNode completed but the supervisor answered ``success = false``.

    ``code`` is ``FAILED_PRECONDITION`` (the call itself succeeded; the supervisor refused the
    node) and ``details`` the supervisor's ``error_message``.
    """

    def __init__(self, message: str) -> None:
        super().__init__("RegisterNode", grpc.StatusCode.FAILED_PRECONDITION, message or "registration rejected")


class CredentialRejectedError(RpcError, AuthError):
    """The peer refused the call's credential (``UNAUTHENTICATED`` or ``PERMISSION_DENIED``).

    Both an :class:`RpcError` (``code``, ``details``, ``method``) and an :class:`AuthError`.
    """


class InvalidArgumentError(RpcError, InvalidRequestError):
    """The peer answered ``INVALID_ARGUMENT``: ``details`` names the offending field."""


class PeerUnavailableError(RpcError):
    """The peer could not be reached or is not serving (``UNAVAILABLE``); the call may be retried."""


class DeadlineExceededError(RpcError):
    """The peer did not answer within the call's deadline (``DEADLINE_EXCEEDED``)."""


class RemoteNotFoundError(RpcError, NotFoundError):
    """The peer does not have what was asked for: a ``NOT_FOUND`` status, or (as
    :class:`RefusedNotFoundError`) an answer ``success = false`` saying so.

    An :class:`RpcError` (``method``, ``code`` = ``NOT_FOUND``, ``details``) and a
    :class:`~supervit.NotFoundError` (``kind`` such as ``"realm"``, ``key`` such as its id).
    """

    def __init__(self, method: str, code: Any, details: str, kind: str = "object", key: object = None) -> None:
        self.method = method
        self.code = code
        self.details = details
        self.kind = kind
        self.key = key
        name = getattr(code, "name", str(code))
        # Neither parent's __init__ fits both signatures; Exception's keeps args[0] the message.
        Exception.__init__(self, f"{method} failed: {name}: {details}")


class RequestRefusedError(RpcError):
    """The call went through but the peer refused it: ``success = false`` (``accepted = false``
    for Shutdown). ``details`` is the peer's ``error_message`` ("no reason given" without one) and
    ``code`` is ``FAILED_PRECONDITION``.
    """

    def __init__(self, method: str, code: Any, details: str) -> None:
        super().__init__(method, code, details)


class RefusedNotFoundError(RemoteNotFoundError, RequestRefusedError):
    """A refusal (``success = false``) whose reason is that the realm or config key does not exist."""


_STATUS_ERRORS: dict[grpc.StatusCode, type[RpcError]] = {
    grpc.StatusCode.UNAUTHENTICATED: CredentialRejectedError,
    grpc.StatusCode.PERMISSION_DENIED: CredentialRejectedError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.UNAVAILABLE: PeerUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def status_error(
    method: str, code: grpc.StatusCode, details: str | None, *, kind: str = "object", key: object = None
) -> RpcError:
    """The supervit error for a failed SupervisedService (or admin) call, by status code.

    ``NOT_FOUND`` is a :class:`RemoteNotFoundError` about ``kind`` ``key``; codes without a class
    of their own are a plain :class:`RpcError`.
    """
    text = details or ""
    if code == grpc.StatusCode.NOT_FOUND:
        return RemoteNotFoundError(method, code, text, kind, key)
    return _STATUS_ERRORS.get(code, RpcError)(method, code, text)


def to_rpc_error(method: str, code: grpc.StatusCode, details: str | None) -> RpcError:
    """The supervit error for a failed call: ``NOT_FOUND`` is :class:`NotRegisteredError`."""
    text = details or ""
    if code == grpc.StatusCode.NOT_FOUND:
        return NotRegisteredError(method, code, text)
    return RpcError(method, code, text)


def is_timestamp_rejection(error: RpcError) -> bool:
    """True for an UNAUTHENTICATED refusal of the credential's timestamp.

    Matches the contract's "timestamp out of range" and, leniently, the actrix reference server's
    "timestamp outside allowed window".
    """
    if error.code != grpc.StatusCode.UNAUTHENTICATED:
        return False
    text = error.details.lower()
    return TimestampOutOfRangeError.message in text or ("timestamp" in text and "window" in text)


def is_auth_failure(error: RpcError) -> bool:
    """True when the supervisor refused the credential or the node itself."""
    return error.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def is_outage(error: RpcError) -> bool:
    """True for failures that mean "the supervisor was unreachable or broken", not a refusal."""
    return error.code in OUTAGE_CODES


def server_time_from_metadata(*metadata: Iterable[Any] | None) -> float | None:
    """The ``x-server-time`` value found in any of the metadata collections, else ``None``.

    Malformed values are ignored: the entry is advisory and must never break error handling.
    """
    for md in metadata:
        if md is None:
            continue
        for item in md:
            try:
                key, value = item
            except (TypeError, ValueError):
                continue
            if str(key).lower() != SERVER_TIME_METADATA_KEY:
                continue
            if isinstance(value, bytes):
                value = value.decode("ascii", "replace")
            try:
                parsed = float(str(value).strip())
            except ValueError:
                continue
            if math.isfinite(parsed) and parsed > 0:
                return parsed
    return None
