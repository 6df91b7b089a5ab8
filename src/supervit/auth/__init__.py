"""Credentials: payload builders, registration fingerprint, signer, verifier and nonce stores."""

from typing import TYPE_CHECKING

from supervit._lazy import lazy_exports

if TYPE_CHECKING:
    from supervit.auth._body_mac import (
        BODY_MAC_METADATA_KEY,
        BODY_MAC_MISSING,
        INVALID_BODY_MAC,
        body_mac,
        body_mac_hook,
        body_mac_metadata,
        check_body_mac,
        presented_body_mac,
    )
    from supervit.auth._credential import Signer, new_nonce, sign
    from supervit.auth._nonce import (
        MemoryNonceStorage,
        NonceStorage,
        NonceTicket,
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
    from supervit.auth._secret import EXAMPLE_SECRETS_HEX, MAKE_SECRET_HINT, MIN_SECRET_HEX_CHARS, SharedSecret
    from supervit.auth._verifier import (
        DEFAULT_WINDOW_SECS,
        NONCE_TTL_EXTRA_SECS,
        CredentialVerifier,
        effective_window,
    )
else:
    # Imported on first use (supervit/_lazy.py); the block above, for type checkers, names the same.
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "supervit.auth._body_mac": (
                "BODY_MAC_METADATA_KEY",
                "BODY_MAC_MISSING",
                "INVALID_BODY_MAC",
                "body_mac",
                "body_mac_hook",
                "body_mac_metadata",
                "check_body_mac",
                "presented_body_mac",
            ),
            "supervit.auth._credential": (
                "Signer",
                "new_nonce",
                "sign",
            ),
            "supervit.auth._nonce": (
                "MemoryNonceStorage",
                "NonceStorage",
                "NonceTicket",
                "NonceWindow",
                "SqliteNonceStorage",
            ),
            "supervit.auth._payloads": (
                "Action",
                "ServiceEntry",
                "build_payload",
                "fingerprint_input",
                "registration_fingerprint",
                "request_payload",
            ),
            "supervit.auth._secret": (
                "EXAMPLE_SECRETS_HEX",
                "MAKE_SECRET_HINT",
                "MIN_SECRET_HEX_CHARS",
                "SharedSecret",
            ),
            "supervit.auth._verifier": (
                "DEFAULT_WINDOW_SECS",
                "NONCE_TTL_EXTRA_SECS",
                "CredentialVerifier",
                "effective_window",
            ),
        },
    )

__all__ = [
    "BODY_MAC_METADATA_KEY",
    "BODY_MAC_MISSING",
    "DEFAULT_WINDOW_SECS",
    "EXAMPLE_SECRETS_HEX",
    "INVALID_BODY_MAC",
    "MAKE_SECRET_HINT",
    "MIN_SECRET_HEX_CHARS",
    "NONCE_TTL_EXTRA_SECS",
    "Action",
    "CredentialVerifier",
    "MemoryNonceStorage",
    "NonceStorage",
    "NonceTicket",
    "NonceWindow",
    "ServiceEntry",
    "SharedSecret",
    "Signer",
    "SqliteNonceStorage",
    "body_mac",
    "body_mac_hook",
    "body_mac_metadata",
    "build_payload",
    "check_body_mac",
    "effective_window",
    "fingerprint_input",
    "new_nonce",
    "presented_body_mac",
    "registration_fingerprint",
    "request_payload",
    "sign",
]
