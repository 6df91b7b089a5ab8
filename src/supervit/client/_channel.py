"""The gRPC channel towards the supervisor: transport security, keepalive and reconnect policy."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

from supervit._exceptions import ConfigError
from supervit.config import SupervitConfig, endpoint_target

__all__ = ["channel_options", "open_channel"]

log = logging.getLogger("supervit.client")


def channel_options(config: SupervitConfig) -> list[tuple[str, str | int]]:
    """Channel arguments derived from ``config``.

    * Keepalive pings every ``keepalive_secs`` even between calls, each to be acknowledged within
      ``min(keepalive_secs, rpc_timeout_secs)``: a half-open connection (peer vanished without a
      FIN, NAT entry expired) fails fast with ``UNAVAILABLE`` instead of swallowing calls until
      their deadline. The supervisor must permit pings that often (grpc servers: set
      ``grpc.http2.min_ping_interval_without_data_ms`` <= keepalive and
      ``grpc.keepalive_permit_without_calls`` = 1, or they answer with GOAWAY "too_many_pings").
    * gRPC's own reconnect backoff follows ``backoff_base_secs``/``backoff_cap_secs``, so once
      the supervisor is back the channel is not still sitting out a longer internal backoff than
      the client's retry policy.
    * With TLS, ``tls_domain`` overrides the name the server certificate is checked against
      (``grpc.ssl_target_name_override``), so ``https://10.0.0.5:50051`` can present a certificate
      for ``supervisor.example``.
    """
    keepalive_ms = max(1, int(config.keepalive_secs * 1000))
    ack_ms = max(1, int(min(config.keepalive_secs, config.rpc_timeout_secs) * 1000))
    base_ms = max(1, int(config.backoff_base_secs * 1000))
    cap_ms = max(base_ms, int(config.backoff_cap_secs * 1000))
    options: list[tuple[str, str | int]] = [
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", ack_ms),
        # Current grpc-core times every ping ack with this (default 60 s), keepalive pings included.
        ("grpc.http2.ping_timeout_ms", ack_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # BDP probing pings tune flow-control windows for bulk transfers, useless for small
        # control messages, and while one is unanswered no keepalive ping is sent.
        ("grpc.http2.bdp_probe", 0),
        # Not grpc.min_reconnect_backoff_ms: grpc-core uses it as the minimum *connect timeout*,
        # and a short one would fail handshakes over slow links.
        ("grpc.initial_reconnect_backoff_ms", base_ms),
        ("grpc.max_reconnect_backoff_ms", cap_ms),
    ]
    if config.enable_tls and config.tls_domain:
        options.append(("grpc.ssl_target_name_override", config.tls_domain.strip()))
    return options


def _read_pem(path: Path, field: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(field, f"cannot read {path}: {exc.strerror or exc}") from None


def channel_credentials(config: SupervitConfig) -> grpc.ChannelCredentials:
    """TLS credentials: ``ca_cert`` as the trusted roots (system roots when unset), plus the
    client certificate and key for mTLS when both are set."""
    roots = _read_pem(config.ca_cert, "ca_cert") if config.ca_cert is not None else None
    key = cert = None
    if config.client_cert is not None and config.client_key is not None:
        cert = _read_pem(config.client_cert, "client_cert")
        key = _read_pem(config.client_key, "client_key")
    return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=cert)


def open_channel(
    config: SupervitConfig, endpoint: str | None = None, *, interceptors: Sequence[Any] = ()
) -> grpc.aio.Channel:
    """A new channel to ``endpoint`` (default ``config.endpoint``): TLS when ``enable_tls``,
    plaintext otherwise; ``interceptors`` are grpc.aio client interceptors (e.g. metrics).

    Opening does not connect; the first call (or ``channel_ready()``) does. Raises
    :class:`ConfigError` when a certificate file cannot be read.
    """
    endpoint = config.endpoint if endpoint is None else endpoint
    target = endpoint_target(endpoint)
    options = channel_options(config)
    if config.enable_tls:
        if urlsplit(endpoint).scheme == "http":
            # validate() allows it; say so, because the URL suggests plaintext.
            log.warning("endpoint %s uses http:// but enable_tls is true: connecting with TLS", endpoint)
        return grpc.aio.secure_channel(
            target, channel_credentials(config), options=options, interceptors=list(interceptors) or None
        )
    return grpc.aio.insecure_channel(target, options=options, interceptors=list(interceptors) or None)
