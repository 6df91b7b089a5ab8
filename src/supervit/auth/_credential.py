"""Signing: HMAC-SHA256 over ``decimal(timestamp) ‖ nonce ‖ payload``, base64 standard alphabet."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable

from supervit.auth._secret import SharedSecret
from supervit.protocol import common_pb2

__all__ = ["Signer", "new_nonce", "sign"]


def sign(secret: SharedSecret, timestamp: int, nonce: str, payload: str) -> str:
    """The base64 signature of one credential."""
    message = f"{int(timestamp)}{nonce}{payload}".encode()
    return base64.b64encode(secret.mac(message)).decode("ascii")


def new_nonce() -> str:
    """A fresh random UUID v4 in its canonical text form."""
    return str(uuid.uuid4())


class Signer:
    """Makes credentials with one secret, optionally on a corrected clock.

    ``clock_offset`` (seconds, may be negative) is added to the local clock, so a node whose
    clock is known to be off still signs with the receiver's notion of now.
    """

    __slots__ = ("_clock", "clock_offset", "secret")

    def __init__(self, secret: SharedSecret, *, clock: Callable[[], float] = time.time) -> None:
        self.secret = secret
        self._clock = clock
        self.clock_offset = 0.0

    def now(self) -> int:
        """Unix seconds on the corrected clock."""
        return int(self._clock() + self.clock_offset)

    def credential(
        self, payload: str, *, timestamp: int | None = None, nonce: str | None = None
    ) -> common_pb2.NonceCredential:
        """A signed credential for ``payload`` (fresh nonce and current time unless given)."""
        ts = self.now() if timestamp is None else timestamp
        n = new_nonce() if nonce is None else nonce
        return common_pb2.NonceCredential(timestamp=ts, nonce=n, signature=sign(self.secret, ts, n, payload))
