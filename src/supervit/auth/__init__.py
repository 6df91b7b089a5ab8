"""Credentials: payload builders, registration fingerprint, signer, verifier and nonce stores."""

from supervit.auth._credential import Signer, new_nonce, sign
from supervit.auth._nonce import (
    CONSUME_NONCE_SQL,
    NONCE_CLEANUP_SQL,
    MemoryNonceStorage,
    NonceStorage,
    NonceWindow,
    SqliteNonceStorage,
)
from supervit.auth._payloads import (
    Action,
    ServiceEntry,
    build_payload,
    fingerprint_input,
    registration_fingerprint,
    request_payload,
)
from supervit.auth._secret import MIN_SECRET_HEX_CHARS, SharedSecret
from supervit.auth._verifier import (
    DEFAULT_WINDOW_SECS,
    NONCE_TTL_EXTRA_SECS,
    CredentialVerifier,
    effective_window,
)

__all__ = [
    "CONSUME_NONCE_SQL",
    "DEFAULT_WINDOW_SECS",
    "MIN_SECRET_HEX_CHARS",
    "NONCE_CLEANUP_SQL",
    "NONCE_TTL_EXTRA_SECS",
    "Action",
    "CredentialVerifier",
    "MemoryNonceStorage",
    "NonceStorage",
    "NonceWindow",
    "ServiceEntry",
    "SharedSecret",
    "Signer",
    "SqliteNonceStorage",
    "build_payload",
    "effective_window",
    "fingerprint_input",
    "new_nonce",
    "registration_fingerprint",
    "request_payload",
    "sign",
]
