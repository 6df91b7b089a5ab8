"""TLS file checks at configuration time: a bad certificate or key is a configuration error (exit 2).

grpc only says "Failed to bind" (server) or fails the first call (client) when handed an invalid
PEM file, so each file is loaded once with :mod:`ssl` while the configuration is validated, and
the error names the key that points at the bad file.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from supervit._exceptions import ConfigError

__all__ = ["check_cert_and_key", "check_certificates"]


def _readable(path: Path, key: str) -> None:
    if not Path(path).is_file():
        raise ConfigError(key, f"file not found: {path}")
    try:
        with Path(path).open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from None


def _no_password() -> bytes:
    # Never prompt on the terminal: grpc cannot use an encrypted key anyway.
    return b""


def check_certificates(path: Path, key: str) -> None:
    """``path`` must hold at least one PEM certificate (a CA bundle or a certificate chain)."""
    _readable(path, key)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except (ssl.SSLError, ValueError):
        raise ConfigError(key, f"{path} holds no valid PEM certificate") from None


def check_cert_and_key(cert: Path, cert_key: str, private_key: Path, key_key: str) -> None:
    """``cert`` must be a PEM certificate and ``private_key`` its matching PEM private key."""
    check_certificates(cert, cert_key)
    _readable(private_key, key_key)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(private_key), password=_no_password)
    except (ssl.SSLError, ValueError):
        raise ConfigError(key_key, f"{private_key} is not a valid PEM private key for the certificate {cert}") from None
