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

from supervit._exceptions import NotRegisteredError, RpcError, TimestampOutOfRangeError
from supervit.protocol import LEAVING_METADATA_KEY, NOT_REGISTERED_DETAILS, SERVER_TIME_METADATA_KEY

__all__ = [
    "LEAVING_METADATA_KEY",
    "NOT_REGISTERED_DETAILS",
    "OUTAGE_CODES",
    "SERVER_TIME_METADATA_KEY",
    "RegistrationRejectedError",
    "is_auth_failure",
    "is_outage",
    "is_timestamp_rejection",
    "server_time_from_metadata",
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
