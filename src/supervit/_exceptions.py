"""The exception hierarchy of supervit.

Every error supervit raises on purpose derives from :class:`SupervitError`::

    SupervitError
    ├── ConfigError                 invalid or missing configuration (names the key)
    ├── AuthError                   a credential was refused (maps to UNAUTHENTICATED)
    │   ├── TimestampOutOfRangeError    |now - timestamp| > window
    │   ├── InvalidSignatureError       HMAC mismatch
    │   └── NonceReusedError            nonce already consumed
    ├── StorageError                a store failed (maps to INTERNAL); never a silent accept
    │   ├── NonceStorageError           the nonce store could not record a nonce
    │   └── StoreUnavailableError       a shared store cannot be reached (maps to UNAVAILABLE)
    ├── InvalidRequestError         malformed or incomplete request (maps to INVALID_ARGUMENT)
    ├── NotFoundError               a lookup found nothing (also a LookupError; maps to NOT_FOUND)
    └── RpcError                    a remote call failed (carries the gRPC status code)
        └── NotRegisteredError          the supervisor does not know this node; register again

Messages never contain secrets.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthError",
    "ConfigError",
    "InvalidRequestError",
    "InvalidSignatureError",
    "NonceReusedError",
    "NonceStorageError",
    "NotFoundError",
    "NotRegisteredError",
    "RpcError",
    "StorageError",
    "StoreUnavailableError",
    "SupervitError",
    "TimestampOutOfRangeError",
]


class SupervitError(Exception):
    """Base class of every error raised by supervit."""


class ConfigError(SupervitError):
    """Invalid or missing configuration; ``key`` names the offending setting."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


class AuthError(SupervitError):
    """A credential was refused. ``str(error)`` is the contract's message."""

    message = "authentication failed"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)


class TimestampOutOfRangeError(AuthError):
    """The credential's timestamp is outside the accepted clock-skew window."""

    message = "timestamp out of range"


class InvalidSignatureError(AuthError):
    """The credential's signature does not match the request."""

    message = "invalid signature"


class NonceReusedError(AuthError):
    """The credential's nonce was already consumed (a replay)."""

    message = "nonce already used"


class StorageError(SupervitError):
    """A persistent store failed; the operation did not take effect."""


class NonceStorageError(StorageError):
    """The nonce store could not check or record a nonce."""


class StoreUnavailableError(StorageError):
    """A shared store (PostgreSQL, Redis) cannot be reached or did not answer in time.

    Nothing took effect; the request may be retried (on this replica once the store is back, or on
    another). Answered ``UNAVAILABLE``, so clients fail over instead of giving up.
    """


class InvalidRequestError(SupervitError):
    """A request was malformed or incomplete; the message names what is wrong."""


class NotFoundError(SupervitError, LookupError):
    """A lookup found nothing: ``kind`` names what was looked up (``node``, ``service``…), ``key`` which one."""

    def __init__(self, kind: str, key: object, detail: str = "") -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"unknown {kind} {key!r}{detail}")

    def __str__(self) -> str:
        # LookupError would otherwise show args[0] only; keep the readable message.
        return str(self.args[0])


class RpcError(SupervitError):
    """A remote procedure call failed.

    ``code`` is the :class:`grpc.StatusCode` (kept as ``Any`` so this module imports nothing heavy)
    and ``details`` the peer's message.
    """

    def __init__(self, method: str, code: Any, details: str) -> None:
        self.method = method
        self.code = code
        self.details = details
        name = getattr(code, "name", str(code))
        super().__init__(f"{method} failed: {name}: {details}")


class NotRegisteredError(RpcError):
    """The supervisor answered that it does not know this node: the node must register again."""
