"""Verification in the contract's order: time window, signature (constant time), nonce consume."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence

from supervit._exceptions import InvalidSignatureError, NonceReusedError, TimestampOutOfRangeError
from supervit.auth._nonce import NonceStorage
from supervit.auth._secret import SharedSecret
from supervit.protocol import common_pb2

__all__ = ["DEFAULT_WINDOW_SECS", "NONCE_TTL_EXTRA_SECS", "CredentialVerifier", "effective_window"]

DEFAULT_WINDOW_SECS = 300
NONCE_TTL_EXTRA_SECS = 300


def effective_window(max_clock_skew_secs: int | None) -> int:
    """The accepted skew in seconds: the configured value, with 0 (or unset) meaning 300."""
    if not max_clock_skew_secs or max_clock_skew_secs <= 0:
        return DEFAULT_WINDOW_SECS
    return int(max_clock_skew_secs)


class CredentialVerifier:
    """Checks credentials against one or more secrets and consumes nonces exactly once.

    Several secrets are accepted during a key rotation; ``verify`` may also be given the secrets
    to use for one call (per-node secrets on the supervisor).
    """

    def __init__(
        self,
        secrets: SharedSecret | Sequence[SharedSecret],
        nonce_storage: NonceStorage,
        max_clock_skew_secs: int = DEFAULT_WINDOW_SECS,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secrets: tuple[SharedSecret, ...] = (secrets,) if isinstance(secrets, SharedSecret) else tuple(secrets)
        self.nonce_storage = nonce_storage
        self.window = effective_window(max_clock_skew_secs)
        self._clock = clock

    async def verify(
        self,
        credential: common_pb2.NonceCredential,
        payload: str,
        *,
        secrets: Sequence[SharedSecret] | None = None,
        before_consume: Callable[[SharedSecret], None] | None = None,
    ) -> SharedSecret:
        """Accept the credential or raise.

        ``before_consume(matched_secret)`` runs after the signature check and before the nonce is
        consumed (the body MAC check: a tampered body must not burn the real request's nonce).

        Raises :class:`TimestampOutOfRangeError`, :class:`InvalidSignatureError`,
        :class:`NonceReusedError` (all :class:`AuthError`) or :class:`NonceStorageError`.
        Returns the secret that matched (useful to log which key a rotating node uses).
        """
        now = int(self._clock())
        timestamp = credential.timestamp
        if abs(now - timestamp) > self.window:
            raise TimestampOutOfRangeError()
        matched = self.check_signature(credential, payload, self._secrets if secrets is None else secrets)
        if before_consume is not None:
            before_consume(matched)
        # Only a verified credential may consume a nonce; it is remembered until the timestamp
        # can no longer pass the window check, plus the contract's margin.
        expires_at = max(now, timestamp) + self.window + NONCE_TTL_EXTRA_SECS
        if not await self.nonce_storage.consume(credential.nonce, expires_at):
            raise NonceReusedError()
        return matched

    @staticmethod
    def check_signature(
        credential: common_pb2.NonceCredential, payload: str, secrets: Sequence[SharedSecret]
    ) -> SharedSecret:
        """Return the secret whose HMAC matches, comparing in constant time; else raise."""
        try:
            # Strict: only the alphabet and correct padding (as b64decode(validate=True), cheaper).
            presented = binascii.a2b_base64(credential.signature, strict_mode=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            raise InvalidSignatureError() from None
        message = f"{credential.timestamp}{credential.nonce}{payload}".encode()
        matched: SharedSecret | None = None
        for secret in secrets:  # check every key so timing does not reveal which one matched
            expected = hmac.digest(secret.key, message, hashlib.sha256)
            if hmac.compare_digest(expected, presented) and matched is None:
                matched = secret
        if matched is None:
            raise InvalidSignatureError()
        return matched
