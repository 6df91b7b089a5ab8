"""Verification in the contract's order: time window, signature (constant time), nonce consume.

:meth:`CredentialVerifier.check` does the first two and :meth:`CredentialVerifier.consume` the
third, so a receiver can put its own checks (the body MAC) or its own nonce store (the
supervisor's report log) between or in place of them; :meth:`CredentialVerifier.verify` is both.
"""

from __future__ import annotations

import binascii
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

    Several secrets are accepted during a key rotation; ``check``/``verify`` may also be given the
    secrets to use for one call (per-node secrets on the supervisor).
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

    def now(self) -> int:
        """The verifier's notion of now (Unix seconds)."""
        return int(self._clock())

    def check(
        self,
        credential: common_pb2.NonceCredential,
        payload: str | Callable[[], str],
        *,
        secrets: Sequence[SharedSecret] | None = None,
        now: int | None = None,
    ) -> SharedSecret:
        """The first two checks, in the contract's order: time window, then signature.

        Consumes nothing: a credential that passes can still be refused by a later check (the
        body MAC) without burning the nonce of the genuine request. ``payload`` may be a callable,
        called only once the window check passed (so an expensive payload, the registration
        fingerprint, is never computed for a stale credential). ``secrets`` replaces the
        verifier's own for this call (per-node secrets); every one is tried, so a key rotation
        accepts any of them. ``now`` is the caller's Unix seconds (default: the verifier's clock).

        Returns the secret that matched; raises :class:`TimestampOutOfRangeError` or
        :class:`InvalidSignatureError`.
        """
        if now is None:
            now = int(self._clock())
        if abs(now - credential.timestamp) > self.window:
            raise TimestampOutOfRangeError()
        text = payload if isinstance(payload, str) else payload()
        return self.check_signature(credential, text, self._secrets if secrets is None else secrets)

    def nonce_expiry(self, credential: common_pb2.NonceCredential, now: int | None = None) -> int:
        """Until when a consumed nonce is remembered: as long as its timestamp can pass the window
        check, plus the contract's margin (Unix seconds)."""
        if now is None:
            now = int(self._clock())
        return max(now, int(credential.timestamp)) + self.window + NONCE_TTL_EXTRA_SECS

    async def consume(self, credential: common_pb2.NonceCredential, *, now: int | None = None) -> None:
        """The third check: consume the credential's nonce in :attr:`nonce_storage`.

        Call it only after :meth:`check` passed: only a verified credential may consume a nonce.
        Returns once the store has it (durably, for a durable store). Raises
        :class:`NonceReusedError` for a replay, :class:`NonceStorageError` if the store cannot tell.
        """
        if not await self.nonce_storage.consume(credential.nonce, self.nonce_expiry(credential, now)):
            raise NonceReusedError()

    async def verify(
        self,
        credential: common_pb2.NonceCredential,
        payload: str,
        *,
        secrets: Sequence[SharedSecret] | None = None,
        before_consume: Callable[[SharedSecret], None] | None = None,
    ) -> SharedSecret:
        """Accept the credential or raise: :meth:`check`, then :meth:`consume`.

        ``before_consume(matched_secret)`` runs after the signature check and before the nonce is
        consumed (the body MAC check: a tampered body must not burn the real request's nonce).

        Raises :class:`TimestampOutOfRangeError`, :class:`InvalidSignatureError`,
        :class:`NonceReusedError` (all :class:`AuthError`) or :class:`NonceStorageError`.
        Returns the secret that matched (useful to log which key a rotating node uses).
        """
        now = int(self._clock())
        matched = self.check(credential, payload, secrets=secrets, now=now)
        if before_consume is not None:
            before_consume(matched)
        await self.consume(credential, now=now)
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
            expected = secret.mac(message)
            if hmac.compare_digest(expected, presented) and matched is None:
                matched = secret
        if matched is None:
            raise InvalidSignatureError()
        return matched
