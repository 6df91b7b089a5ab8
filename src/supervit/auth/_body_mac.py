"""Whole-request integrity, beyond the contract: a MAC over the exact request bytes, in metadata.

The contract's credential signs a short payload (``report:{node_id}:{timestamp}``, …) and leaves
most of each body unsigned: Report's metrics and versions, RegisterNode's name and services (the
fingerprint covers some), CreateRealm/UpdateRealm fields, UpdateConfig's value. On a plaintext
link an on-path attacker can rewrite those and the credential still verifies.

supervit peers therefore also send ``x-supervit-body-mac``: base64 HMAC-SHA256 over the exact
serialized request (credential included, so the MAC binds nonce and timestamp too), keyed with a
sub-key of the shared secret, ``HMAC-SHA256(secret, "supervit body mac v1")`` (never the secret
itself, so the two MACs cannot be confused). ``supervisor.v1`` is unchanged: a receiver verifies
the header when present, and refuses requests without it only when configured to
(``require_body_mac``); an actrix peer that does not know the header keeps working otherwise.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from supervit._exceptions import AuthError
from supervit.auth._secret import SharedSecret

__all__ = [
    "BODY_MAC_METADATA_KEY",
    "BODY_MAC_MISSING",
    "INVALID_BODY_MAC",
    "body_mac",
    "body_mac_hook",
    "body_mac_metadata",
    "check_body_mac",
    "presented_body_mac",
]

BODY_MAC_METADATA_KEY = "x-supervit-body-mac"
"""The gRPC metadata key of the body MAC (lowercase, as gRPC requires)."""
BODY_MAC_MISSING = "body mac required"
"""``UNAUTHENTICATED`` details when a receiver requires the MAC and the request has none."""
INVALID_BODY_MAC = "invalid body mac"
"""``UNAUTHENTICATED`` details when the MAC does not match the request bytes."""

_LABEL = b"supervit body mac v1"


@functools.lru_cache(maxsize=64)
def _sub_secret(secret: SharedSecret) -> SharedSecret:
    # The body MAC's own key, derived from the shared secret (never the secret itself).
    return SharedSecret(secret.mac(_LABEL))


def body_mac(secret: SharedSecret, body: bytes) -> str:
    """The MAC of ``body`` (base64, standard alphabet, padded)."""
    return base64.b64encode(_sub_secret(secret).mac(body)).decode("ascii")


def body_mac_metadata(secret: SharedSecret, request: Message) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the MAC of ``request`` as it will be sent (sign the credential first)."""
    return ((BODY_MAC_METADATA_KEY, body_mac(secret, request.SerializeToString())),)


def presented_body_mac(metadata: Any) -> str | None:
    """The MAC a call's invocation metadata carries, if any."""
    for key, value in metadata or ():
        if key == BODY_MAC_METADATA_KEY:
            return value if isinstance(value, str) else None
    return None


def check_body_mac(secret: SharedSecret, presented: str | None, body: bytes, *, required: bool) -> None:
    """Accept the request bytes or raise :class:`AuthError` (missing when required, or wrong)."""
    if presented is None:
        if required:
            raise AuthError(BODY_MAC_MISSING)
        return
    try:
        mac = binascii.a2b_base64(presented, strict_mode=True)
    except ValueError:
        raise AuthError(INVALID_BODY_MAC) from None
    if not hmac.compare_digest(mac, _sub_secret(secret).mac(body)):
        raise AuthError(INVALID_BODY_MAC)


def body_mac_hook(metadata: Any, body: bytes, *, required: bool) -> Callable[[SharedSecret], None] | None:
    """The verifier's ``before_consume`` hook for one call (None when there is nothing to check).

    ``metadata`` is the call's invocation metadata, ``body`` the exact request bytes received.
    """
    presented = presented_body_mac(metadata)
    if presented is None and not required:
        return None

    def check(secret: SharedSecret) -> None:
        check_body_mac(secret, presented, body, required=required)

    return check
