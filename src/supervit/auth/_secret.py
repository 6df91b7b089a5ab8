"""The shared secret: hex text in configuration, raw bytes as the HMAC key, never shown."""

from __future__ import annotations

import hashlib
import string

from supervit._exceptions import ConfigError

__all__ = ["EXAMPLE_SECRETS_HEX", "MAKE_SECRET_HINT", "MIN_SECRET_HEX_CHARS", "SharedSecret"]

MIN_SECRET_HEX_CHARS = 64
EXAMPLE_SECRETS_HEX: frozenset[str] = frozenset({"0123456789abcdef" * 4})
"""Secrets published in the original's documentation and examples: anyone can sign with them."""
MAKE_SECRET_HINT = "make one with: python3 -c 'import secrets; print(secrets.token_hex(32))'"
_HEX = frozenset(string.hexdigits)
_SHA256_BLOCK_BYTES = 64
_INNER_PAD = bytes(b ^ 0x36 for b in range(256))
_OUTER_PAD = bytes(b ^ 0x5C for b in range(256))


class SharedSecret:
    """An HMAC-SHA256 key decoded from hex text (at least 64 hex characters = 32 bytes).

    ``repr``/``str`` never show the key; :attr:`key_id` (a short hash) tells secrets apart in logs.
    """

    __slots__ = ("_inner", "_key", "_outer", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) * 2 < MIN_SECRET_HEX_CHARS:
            raise ValueError(f"shared secret must be at least {MIN_SECRET_HEX_CHARS // 2} bytes")
        self._key = key
        self.key_id = hashlib.sha256(b"supervit-key-id:" + key).hexdigest()[:8]
        # HMAC's keyed pads (RFC 2104) hashed once: every MAC then starts from copies of these
        # two states, which spares OpenSSL 3's per-call algorithm lookup and key set-up
        # (docs/performance.md, step 14).
        block = (hashlib.sha256(key).digest() if len(key) > _SHA256_BLOCK_BYTES else key).ljust(
            _SHA256_BLOCK_BYTES, b"\0"
        )
        self._inner = hashlib.sha256(block.translate(_INNER_PAD))
        self._outer = hashlib.sha256(block.translate(_OUTER_PAD))

    @classmethod
    def from_hex(cls, text: str, *, field: str = "shared_secret") -> SharedSecret:
        """Parse hex text; a :class:`ConfigError` naming ``field`` says why it is refused."""
        if not isinstance(text, str):
            raise ConfigError(field, "must be a string of hex characters")
        cleaned = text.strip()
        if not cleaned:
            raise ConfigError(field, f"is empty; expected at least {MIN_SECRET_HEX_CHARS} hex characters")
        bad = sorted({c for c in cleaned if c not in _HEX})
        if bad:
            # Name the kind of problem, not the characters: they are part of a secret.
            raise ConfigError(field, f"must be hex text (0-9, a-f); found {len(bad)} non-hex character kind(s)")
        if len(cleaned) % 2:
            raise ConfigError(field, f"has an odd number of hex characters ({len(cleaned)})")
        if len(cleaned) < MIN_SECRET_HEX_CHARS:
            raise ConfigError(
                field, f"is too short: {len(cleaned)} hex characters, at least {MIN_SECRET_HEX_CHARS} required"
            )
        return cls(bytes.fromhex(cleaned))

    @classmethod
    def from_bytes(cls, key: bytes | bytearray | memoryview, *, field: str = "shared_secret") -> SharedSecret:
        """Use decoded key bytes (as the original's ``hex::decode(...)``); at least 32 bytes."""
        raw = bytes(key)
        if len(raw) * 2 < MIN_SECRET_HEX_CHARS:
            raise ConfigError(field, f"is too short: {len(raw)} bytes, at least {MIN_SECRET_HEX_CHARS // 2} required")
        return cls(raw)

    @property
    def is_published_example(self) -> bool:
        """Whether this is a secret printed in public examples (a daemon refuses those)."""
        return any(self == SharedSecret(bytes.fromhex(text)) for text in EXAMPLE_SECRETS_HEX)

    @property
    def key(self) -> bytes:
        """The raw HMAC key."""
        return self._key

    def mac(self, message: bytes) -> bytes:
        """HMAC-SHA256 of ``message`` under this key (the same bytes as ``hmac.digest``)."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def __repr__(self) -> str:
        return f"SharedSecret(key_id={self.key_id!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SharedSecret):
            return NotImplemented
        import hmac

        return hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SharedSecret cannot be pickled")
