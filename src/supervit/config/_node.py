"""The node daemon's TOML file: ``[supervisor]``, ``[supervisor.supervisord]``, ``[supervisor.client]``.

See ``docs/configuration.md`` for every key. Environment variables override keys:
``SUPERVIT_SUPERVISOR__SUPERVISORD__PORT=50056`` overrides ``[supervisor.supervisord] port``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from supervit._exceptions import ConfigError
from supervit.auth import SharedSecret
from supervit.config._client import SupervitConfig
from supervit.config._listen import check_listen
from supervit.config._loader import apply_env, build, read_toml
from supervit.config._secrets import read_secret_file
from supervit.config._security import SecuritySection
from supervit.config._tls import check_cert_and_key, check_certificates
from supervit.metrics import POWER_MODELS
from supervit.protocol import LOG_LEVELS, common_pb2

log = logging.getLogger("supervit.config")

__all__ = [
    "DEFAULT_ADVERTISED_IP",
    "DEFAULT_NODE_NAME",
    "ClientSection",
    "MetricsSection",
    "NodeConfig",
    "ServiceSection",
    "SupervisorSection",
    "SupervisordSection",
    "load_node_config",
    "python_log_level",
]

DEFAULT_NODE_NAME = "actrix-node"
"""The original's default ``node_name``."""
DEFAULT_ADVERTISED_IP = "127.0.0.1"
"""Advertised when ``ip`` is a wildcard and neither ``advertised_ip`` nor ``agent_addr`` is set (as the original)."""
LOG_FORMATS = ("text", "json")
DEFAULT_NODE_METRICS_LISTEN = "127.0.0.1:9464"
SERVICE_STATES = ("healthy", "running", "error", "disabled")


@dataclass
class ServiceSection:
    """``[[supervisor.supervisord.services]]``: one service this node advertises."""

    name: str
    type: str
    domain: str = ""
    port: int | None = None
    url: str | None = None
    state: str = "running"
    description: str | None = None
    tags: list[str] = field(default_factory=list)

    @property
    def type_number(self) -> int:
        return int(common_pb2.ResourceType.Value(self.type.upper()))


@dataclass
class SupervisordSection:
    """``[supervisor.supervisord]``: this node's callback server."""

    node_name: str = DEFAULT_NODE_NAME
    ip: str = "0.0.0.0"
    port: int = 50055
    advertised_ip: str | None = None
    # Added by supervit:
    data_dir: Path = Path("./supervit-data")
    location_tag: str = "default"
    location: str | None = None
    service_tags: list[str] = field(default_factory=list)
    log_level: str = "info"
    log_format: str = "text"
    max_message_bytes: int = 4 * 1024 * 1024
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    shutdown_grace_secs: float = 10
    services: list[ServiceSection] = field(default_factory=list)


@dataclass
class ClientSection:
    """``[supervisor.client]``: identity and secret, and the supervisor to report to."""

    node_id: str
    shared_secret: str = field(default="", repr=False)
    # Added by supervit: read the secret from this file instead (see docs/configuration.md).
    shared_secret_file: Path | None = None
    endpoint: str | None = None
    agent_addr: str | None = None
    # Added by supervit: further supervisor replicas to fail over to (docs/deploy.md).
    endpoints: list[str] = field(default_factory=list)
    # Added by supervit:
    power_model: str = "pwrzv"


@dataclass
class MetricsSection:
    """``[supervisor.metrics]``: the HTTP endpoint for Prometheus (``/metrics``) and the probes."""

    listen: str = DEFAULT_NODE_METRICS_LISTEN
    """``host:port`` (port 0: any free port); ``""`` disables metrics and probes."""


@dataclass
class SupervisorSection:
    """``[supervisor]``: connection settings towards the supervisor, plus the two sub-tables."""

    client: ClientSection
    supervisord: SupervisordSection = field(default_factory=SupervisordSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    connect_timeout_secs: float = 30
    status_report_interval_secs: float = 60
    health_check_interval_secs: float = 30
    enable_tls: bool = False
    tls_domain: str | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_cert: Path | None = None
    max_clock_skew_secs: int = 300
    # Added by supervit:
    min_report_interval_secs: float = 1
    max_report_interval_secs: float = 3600
    backoff_base_secs: float = 1
    backoff_cap_secs: float = 60
    rpc_timeout_secs: float = 10
    keepalive_secs: float = 30
    # Trust boundary (issue 10, docs/security.md): [supervisor.security].
    security: SecuritySection = field(default_factory=SecuritySection)


@dataclass
class _NodeFile:
    supervisor: SupervisorSection


@dataclass
class NodeConfig:
    """The validated node daemon configuration."""

    supervisor: SupervisorSection
    source: Path | None = None

    @property
    def supervisord(self) -> SupervisordSection:
        return self.supervisor.supervisord

    @property
    def node_id(self) -> str:
        return self.supervisor.client.node_id

    @property
    def secret(self) -> SharedSecret:
        return SharedSecret.from_hex(self.supervisor.client.shared_secret, field="supervisor.client.shared_secret")

    def published_example_secrets(self) -> list[str]:
        """The keys whose secret is a published example value (a daemon refuses those)."""
        return ["supervisor.client.shared_secret"] if self.secret.is_published_example else []

    @property
    def listen_addr(self) -> str:
        ip = self.supervisord.ip
        return f"[{ip}]:{self.supervisord.port}" if ":" in ip else f"{ip}:{self.supervisord.port}"

    def agent_addr(self, bound_port: int | None = None) -> str:
        """The address the supervisor calls back: explicit agent_addr, else advertised_ip (or ip) : port."""
        if self.supervisor.client.agent_addr:
            return self.supervisor.client.agent_addr
        host = self.supervisord.advertised_ip or self.supervisord.ip
        if not self.supervisord.advertised_ip and _is_wildcard(host):
            host = DEFAULT_ADVERTISED_IP
        port = bound_port if bound_port is not None else self.supervisord.port
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def client_config(self, bound_port: int | None = None) -> SupervitConfig | None:
        """The client settings, or None when neither ``endpoint`` nor ``endpoints`` is configured
        (serve-only node)."""
        sup, client, sd = self.supervisor, self.supervisor.client, self.supervisord
        if not client.endpoint and not client.endpoints:
            return None
        endpoint = client.endpoint or client.endpoints[0]
        return SupervitConfig(
            node_id=client.node_id,
            endpoint=endpoint,
            endpoints=[e for e in client.endpoints if e != endpoint],
            shared_secret=client.shared_secret,
            name=sd.node_name or client.node_id,
            location_tag=sd.location_tag,
            agent_addr=self.agent_addr(bound_port),
            connect_timeout_secs=sup.connect_timeout_secs,
            status_report_interval_secs=sup.status_report_interval_secs,
            health_check_interval_secs=sup.health_check_interval_secs,
            enable_tls=sup.enable_tls,
            tls_domain=sup.tls_domain,
            client_cert=sup.client_cert,
            client_key=sup.client_key,
            ca_cert=sup.ca_cert,
            max_clock_skew_secs=sup.max_clock_skew_secs,
            location=sd.location,
            service_tags=list(sd.service_tags),
            min_report_interval_secs=sup.min_report_interval_secs,
            max_report_interval_secs=sup.max_report_interval_secs,
            backoff_base_secs=sup.backoff_base_secs,
            backoff_cap_secs=sup.backoff_cap_secs,
            rpc_timeout_secs=sup.rpc_timeout_secs,
            keepalive_secs=sup.keepalive_secs,
        )

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the full TOML key of the first problem."""
        sd, client = self.supervisord, self.supervisor.client
        pre = "supervisor.supervisord"
        if not client.node_id.strip():
            raise ConfigError("supervisor.client.node_id", "must not be empty")
        if not client.shared_secret.strip():
            raise ConfigError(
                "supervisor.client.shared_secret",
                "is required: set shared_secret_file (a 0600 file holding the hex secret) or "
                "SUPERVIT_SUPERVISOR__CLIENT__SHARED_SECRET",
            )
        self.secret  # noqa: B018 - parses and validates the hex secret
        if client.power_model not in POWER_MODELS:
            raise ConfigError(
                "supervisor.client.power_model",
                f"must be one of {', '.join(repr(m) for m in POWER_MODELS)}, got {client.power_model!r}",
            )
        _check_ip(sd.ip, f"{pre}.ip")
        if not 0 <= sd.port <= 65535:
            raise ConfigError(f"{pre}.port", f"must be 0..65535, got {sd.port}")
        if sd.advertised_ip is not None and not sd.advertised_ip.strip():
            raise ConfigError(f"{pre}.advertised_ip", "must not be empty when set")
        if sd.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"{pre}.log_level", f"must be one of {', '.join(LOG_LEVELS)}, got {sd.log_level!r}")
        if sd.log_format not in LOG_FORMATS:
            raise ConfigError(f"{pre}.log_format", f"must be one of {', '.join(LOG_FORMATS)}, got {sd.log_format!r}")
        check_listen(self.supervisor.metrics.listen, "supervisor.metrics.listen")
        if sd.max_message_bytes < 1024:
            raise ConfigError(f"{pre}.max_message_bytes", "must be at least 1024")
        if (sd.tls_cert is None) != (sd.tls_key is None):
            missing = "tls_key" if sd.tls_key is None else "tls_cert"
            raise ConfigError(f"{pre}.{missing}", "tls_cert and tls_key must be set together")
        if sd.tls_client_ca is not None and sd.tls_cert is None:
            raise ConfigError(f"{pre}.tls_client_ca", "mTLS needs tls_cert and tls_key too")
        if sd.tls_cert is not None and sd.tls_key is not None:
            check_cert_and_key(sd.tls_cert, f"{pre}.tls_cert", sd.tls_key, f"{pre}.tls_key")
        if sd.tls_client_ca is not None:
            check_certificates(sd.tls_client_ca, f"{pre}.tls_client_ca")
        if sd.shutdown_grace_secs < 0:
            raise ConfigError(f"{pre}.shutdown_grace_secs", "must be >= 0")
        self.supervisor.security.validate("supervisor.security")
        names: set[str] = set()
        for i, svc in enumerate(sd.services):
            key = f"{pre}.services[{i}]"
            if not svc.name or svc.name in names:
                raise ConfigError(f"{key}.name", "must be a non-empty unique name")
            names.add(svc.name)
            if svc.type.upper() not in common_pb2.ResourceType.keys():  # noqa: SIM118 - enum wrapper, not a dict
                raise ConfigError(f"{key}.type", f"must be one of STUN, TURN, SIGNALING, AIS, KS; got {svc.type!r}")
            if svc.state not in SERVICE_STATES:
                raise ConfigError(f"{key}.state", f"must be one of {', '.join(SERVICE_STATES)}")
            if svc.port is not None and not 0 < svc.port <= 65535:
                raise ConfigError(f"{key}.port", "must be 1..65535")
        client_cfg = self.client_config()
        if client_cfg is None:
            return
        try:
            client_cfg.validate()
        except ConfigError as exc:
            raise ConfigError(_client_key(exc.key), exc.reason) from None


def _client_key(field_name: str) -> str:
    """Map a SupervitConfig field to where it lives in the TOML file."""
    if field_name.partition("[")[0] in {f.name for f in fields(ClientSection)}:  # endpoints[1] too
        return f"supervisor.client.{field_name}"
    if field_name == "name":
        return "supervisor.supervisord.node_name"
    if field_name in {"location_tag", "location", "service_tags"}:
        return f"supervisor.supervisord.{field_name}"
    return f"supervisor.{field_name}"


def _is_wildcard(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_unspecified
    except ValueError:
        return False


def _check_ip(value: str, key: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if value != "localhost":
            raise ConfigError(key, f"must be an IP address to bind, got {value!r}") from None


def load_node_config(
    path: Path | str | None = None, *, environ: Mapping[str, str] | None = None, data: dict[str, Any] | None = None
) -> NodeConfig:
    """Read, override from the environment, type-check and validate the node configuration."""
    raw: dict[str, Any] = dict(data or {}) if path is None else read_toml(path)
    apply_env(raw, environ, tables={"supervisor"})
    parsed = build(_NodeFile, raw)
    client = parsed.supervisor.client
    if client.shared_secret_file is not None:
        if client.shared_secret:
            raise ConfigError(
                "supervisor.client.shared_secret_file", "set either shared_secret or shared_secret_file, not both"
            )
        client.shared_secret = read_secret_file(client.shared_secret_file, "supervisor.client.shared_secret_file")
    config = NodeConfig(parsed.supervisor, Path(path) if path is not None else None)
    config.validate()
    sd = config.supervisord
    if config.client_config() is not None and not (client.agent_addr or sd.advertised_ip) and _is_wildcard(sd.ip):
        log.warning(
            "supervisor.supervisord.advertised_ip is not set and ip %r is a wildcard: advertising %s to the"
            " supervisor (only right when it runs on this host; set advertised_ip to this node's reachable address)",
            sd.ip,
            DEFAULT_ADVERTISED_IP,
        )
    return config


def python_log_level(level: str) -> int:
    """Map a configured level name (trace/warn included) onto :mod:`logging` levels."""
    name = level.lower()
    return {"trace": 5, "warn": logging.WARNING}.get(name, getattr(logging, name.upper(), logging.INFO))
