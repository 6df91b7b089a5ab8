"""SupervitConfig: how a node reaches and talks to its supervisor."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from supervit._exceptions import ConfigError
from supervit._version import __version__
from supervit.auth import SharedSecret
from supervit.config._tls import check_cert_and_key, check_certificates

__all__ = ["DEFAULT_AGENT_ADDR", "SupervitConfig"]

DEFAULT_AGENT_ADDR = "0.0.0.0:50055"
"""The original's default: the node's callback server on every interface, port 50055."""
_LOOPBACK = {4: "127.0.0.1", 6: "::1"}


@dataclass
class SupervitConfig:
    """Settings of :class:`~supervit.SupervitClient` (all durations in seconds).

    ``endpoint`` is ``http://host:port`` (plaintext) or ``https://host:port`` (TLS; needs
    ``enable_tls`` and ``tls_domain``). ``endpoints`` lists further supervisor replicas: the
    client starts on ``endpoint``, moves to the next one when a call fails ``UNAVAILABLE`` or
    times out, and stays on whichever answers (:attr:`endpoint_list`). ``shared_secret`` is hex
    text (≥ 64 hex characters); it never appears in ``repr``. Call :meth:`validate` (the client does) to get a
    :class:`~supervit.ConfigError` naming the first offending field.
    """

    node_id: str
    endpoint: str
    shared_secret: str = field(repr=False)
    name: str = ""
    location_tag: str = ""
    agent_addr: str = DEFAULT_AGENT_ADDR
    version: str = __version__
    connect_timeout_secs: float = 30
    status_report_interval_secs: float = 60
    health_check_interval_secs: float = 30
    enable_tls: bool = False
    tls_domain: str | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_cert: Path | None = None
    max_clock_skew_secs: int = 300
    location: str | None = None
    service_tags: list[str] = field(default_factory=list)
    # Beyond the original: steering bounds, retry policy and per-RPC deadline.
    min_report_interval_secs: float = 1
    max_report_interval_secs: float = 3600
    backoff_base_secs: float = 1
    backoff_cap_secs: float = 60
    rpc_timeout_secs: float = 10
    keepalive_secs: float = 30
    endpoints: list[str] = field(default_factory=list)

    @property
    def endpoint_list(self) -> list[str]:
        """``endpoint`` then the other ``endpoints``, each once: the replicas in failover order."""
        found = [self.endpoint]
        found += [e for e in self.endpoints if e not in found]
        return found

    def validate(self) -> None:
        """Raise :class:`ConfigError` (its ``key`` is the field name) on the first invalid field."""
        if not self.node_id.strip():
            raise ConfigError("node_id", "must not be empty")
        if not self.agent_addr.strip():
            raise ConfigError("agent_addr", "must not be empty (host:port the supervisor calls back)")
        _check_endpoint(self.endpoint, "endpoint", self.enable_tls)
        for i, other in enumerate(self.endpoints):
            _check_endpoint(other, f"endpoints[{i}]", self.enable_tls)
        if self.enable_tls and not (self.tls_domain or "").strip():
            raise ConfigError("tls_domain", "is required when enable_tls is true")
        if (self.client_cert is None) != (self.client_key is None):
            missing = "client_key" if self.client_key is None else "client_cert"
            raise ConfigError(missing, "client_cert and client_key must be set together (mTLS)")
        if self.client_cert is not None and not self.enable_tls:
            raise ConfigError("enable_tls", "must be true when client_cert/client_key are set (mTLS needs TLS)")
        if self.client_cert is not None and self.client_key is not None:
            check_cert_and_key(Path(self.client_cert), "client_cert", Path(self.client_key), "client_key")
        if self.ca_cert is not None:
            check_certificates(Path(self.ca_cert), "ca_cert")
        SharedSecret.from_hex(self.shared_secret, field="shared_secret")
        positive = (
            "connect_timeout_secs",
            "status_report_interval_secs",
            "health_check_interval_secs",
            "min_report_interval_secs",
            "max_report_interval_secs",
            "backoff_base_secs",
            "backoff_cap_secs",
            "rpc_timeout_secs",
            "keepalive_secs",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(name, f"must be > 0, got {getattr(self, name)}")
        if self.min_report_interval_secs > self.max_report_interval_secs:
            raise ConfigError("min_report_interval_secs", "must not exceed max_report_interval_secs")
        if self.max_clock_skew_secs < 0:
            raise ConfigError("max_clock_skew_secs", "must be >= 0 (0 means 300)")

    @property
    def advertised_agent_addr(self) -> str:
        """``agent_addr`` as sent in RegisterNode: a wildcard host (``0.0.0.0``, ``[::]``) is not
        reachable, so it is advertised as the loopback address (as the original's default
        ``advertised_ip`` 127.0.0.1); set a reachable ``agent_addr`` for a remote supervisor."""
        text = self.agent_addr.strip()
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
        else:
            host, sep, port = text.rpartition(":")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return text
        if not sep or not ip.is_unspecified:
            return text
        loopback = _LOOPBACK[ip.version]
        return f"[{loopback}]:{port}" if ip.version == 6 else f"{loopback}:{port}"

    @property
    def secret(self) -> SharedSecret:
        """The parsed shared secret."""
        return SharedSecret.from_hex(self.shared_secret, field="shared_secret")

    @property
    def target(self) -> str:
        """``host:port`` of ``endpoint`` for grpc (default port 443 for https, 80 for http)."""
        return endpoint_target(self.endpoint)

    @property
    def targets(self) -> list[str]:
        """``host:port`` of every endpoint, in failover order."""
        return [endpoint_target(e) for e in self.endpoint_list]


def endpoint_target(endpoint: str) -> str:
    """``http(s)://host:port`` → ``host:port`` (default port 443 for https, 80 for http)."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{host}:{port}"


def _check_endpoint(endpoint: str, key: str, enable_tls: bool) -> None:
    if not endpoint.strip():
        raise ConfigError(key, "must not be empty")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(key, f"scheme must be http:// or https://, got {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise ConfigError(key, "has no host (expected http(s)://host:port)")
    try:
        parts.port  # noqa: B018 - validates the port text
    except ValueError:
        raise ConfigError(key, "has an invalid port") from None
    if parts.scheme == "https" and not enable_tls:
        raise ConfigError("enable_tls", "must be true for an https:// endpoint")
