"""The supervisor's TOML file: ``[server]``, ``[fleet]``, ``[node_secrets]``, ``[nodes.<id>]``, ``[admin]``, ``[push]``,
``[metrics]``.

See ``docs/supervisor.md`` and ``examples/supervisor.toml`` for every key. Environment variables
override keys with the shared loader's rule (``SUPERVIT_<TABLE>__<KEY>``), e.g.
``SUPERVIT_FLEET__SHARED_SECRET`` or ``SUPERVIT_SERVER__LISTEN``; only variables naming one of
the tables above are applied here, so a node's ``SUPERVIT_SUPERVISOR__…`` variables in the same
environment are ignored.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervit._exceptions import ConfigError
from supervit.auth import SharedSecret
from supervit.config import (
    SecuritySection,
    apply_env,
    build,
    check_cert_and_key,
    check_certificates,
    check_file_permissions,
    check_listen,
    read_secret_file,
    read_toml,
    split_host_port,
)
from supervit.protocol import LOG_LEVELS
from supervit.rpc import ADMIN_LIMITS, SUPERVISOR_LIMITS, ServiceLimits, with_overrides

log = logging.getLogger("supervit.config")

__all__ = [
    "NODE_SECRETS_ENV",
    "AdminSection",
    "FleetSection",
    "MetricsSection",
    "NodeOverride",
    "PushSection",
    "ServerSection",
    "SupervisorConfig",
    "load_supervisor_config",
]

_SYNCHRONOUS = ("FULL", "NORMAL")
_MAX_INTERVAL_SECS = 86_400
_LOG_FORMATS = ("text", "json")
_TABLES = ("server", "fleet", "node_secrets", "nodes", "admin", "push", "security", "metrics")
DEFAULT_SUPERVISOR_METRICS_LISTEN = "127.0.0.1:9465"


@dataclass
class ServerSection:
    """``[server]``: where SupervisorService listens and where the registry lives."""

    listen: str = "0.0.0.0:50051"
    data_dir: Path = Path("./supervit-supervisor-data")
    log_level: str = "info"
    log_format: str = "text"
    max_message_bytes: int = 4 * 1024 * 1024
    max_clock_skew_secs: int = 300
    # FULL: every commit is fsynced (nothing acknowledged is lost on power failure). NORMAL (WAL):
    # survives a process crash, may lose the last commits on power loss; faster report ingest.
    sqlite_synchronous: str = "FULL"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    shutdown_grace_secs: float = 5
    # Shared state for replicas (docs/deploy.md). Unset: embedded SQLite in data_dir.
    database_url: str | None = field(default=None, repr=False)
    database_schema: str = "public"
    database_pool_size: int = 10
    database_timeout_secs: float = 5.0
    # Consumed nonces in Redis (needs database_url); unset: in PostgreSQL with a unique key.
    nonce_store_url: str | None = field(default=None, repr=False)
    nonce_key_prefix: str = "supervit:nonce:"


@dataclass
class FleetSection:
    """``[fleet]``: the fleet-wide secret and the intervals every node is told."""

    shared_secret: str | None = field(default=None, repr=False)
    shared_secret_file: Path | None = None
    # A TOML file of `node_id = "hex"` (or a two-key list) entries, merged into [node_secrets].
    node_secrets_file: Path | None = None
    report_interval_secs: int = 60
    heartbeat_interval_secs: int = 30
    offline_after_missed: int = 3


@dataclass
class NodeOverride:
    """``[nodes.<node_id>]``: intervals for one node instead of the fleet's."""

    report_interval_secs: int | None = None
    heartbeat_interval_secs: int | None = None


@dataclass
class AdminSection:
    """``[admin]``: the SupervisorAdmin port used by ``supervit ctl``; enabled when ``secret`` is set."""

    listen: str = "127.0.0.1:50052"
    secret: str | None = field(default=None, repr=False)
    secret_file: Path | None = None


@dataclass
class PushSection:
    """``[push]``: how the supervisor calls nodes' SupervisedService to push catalog realms."""

    timeout_secs: float = 10
    backoff_base_secs: float = 1
    backoff_cap_secs: float = 30
    enable_tls: bool = False
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    tls_domain: str | None = None


@dataclass
class SupervisorSecuritySection(SecuritySection):
    """``[security]`` of the supervisor: as the node's, with room for a fleet's bursts.

    A fleet reports open-loop: 10,000 nodes at a 10 s interval keep ~1,000 reports/s coming, and a
    200 ms pause (a PostgreSQL failover, a GC pause) means ~200 calls in flight at once. The node's
    256 would refuse part of that burst with RESOURCE_EXHAUSTED; 4,096 calls of at most the Report
    limit stay far below the process's memory budget (gRPC refuses an oversize message from its
    length prefix, before buffering it).
    """

    max_concurrent_rpcs: int = 4096


@dataclass
class MetricsSection:
    """``[metrics]``: the HTTP endpoint for Prometheus (``/metrics``) and the probes."""

    listen: str = DEFAULT_SUPERVISOR_METRICS_LISTEN
    """``host:port`` (port 0: any free port); ``""`` disables metrics and probes."""


@dataclass
class _SupervisorFile:
    server: ServerSection = field(default_factory=ServerSection)
    fleet: FleetSection = field(default_factory=FleetSection)
    node_secrets: dict[str, list[str]] = field(default_factory=dict)
    nodes: dict[str, NodeOverride] = field(default_factory=dict)
    admin: AdminSection = field(default_factory=AdminSection)
    push: PushSection = field(default_factory=PushSection)
    # Trust boundary (issue 10, docs/security.md).
    security: SupervisorSecuritySection = field(default_factory=SupervisorSecuritySection)
    metrics: MetricsSection = field(default_factory=MetricsSection)


@dataclass
class SupervisorConfig:
    """The validated supervisor configuration, with the secrets parsed once.

    Construct with :func:`load_supervisor_config` (or directly, then call :meth:`validate`).
    """

    server: ServerSection = field(default_factory=ServerSection)
    fleet: FleetSection = field(default_factory=FleetSection)
    node_secrets: dict[str, list[str]] = field(default_factory=dict, repr=False)
    nodes: dict[str, NodeOverride] = field(default_factory=dict)
    admin: AdminSection = field(default_factory=AdminSection)
    push: PushSection = field(default_factory=PushSection)
    security: SecuritySection = field(default_factory=SupervisorSecuritySection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    source: Path | None = None
    _fleet_secret: SharedSecret | None = field(default=None, init=False, repr=False)
    _node_secrets: dict[str, tuple[SharedSecret, ...]] = field(default_factory=dict, init=False, repr=False)
    _admin_secret: SharedSecret | None = field(default=None, init=False, repr=False)
    _limits: tuple[ServiceLimits, ServiceLimits] = field(
        default=(SUPERVISOR_LIMITS, ADMIN_LIMITS), init=False, repr=False
    )

    # -- secrets ----------------------------------------------------------------------------

    def secrets_for(self, node_id: str) -> tuple[SharedSecret, ...]:
        """The secrets a node's credentials may be made with.

        A node listed in ``[node_secrets]`` gets exactly its own (one, or two during a rotation);
        any other node the fleet secret; no secret at all (empty) means the node is refused.
        """
        own = self._node_secrets.get(node_id)
        if own is not None:
            return own
        return () if self._fleet_secret is None else (self._fleet_secret,)

    @property
    def admin_secret(self) -> SharedSecret | None:
        """The admin credential's secret; None disables the admin service."""
        return self._admin_secret

    @property
    def admin_enabled(self) -> bool:
        return self._admin_secret is not None and bool(self.admin.listen)

    # -- intervals --------------------------------------------------------------------------

    def report_interval(self, node_id: str) -> int:
        """Seconds between reports this node is told (its ``[nodes.<id>]`` value, else the fleet's)."""
        override = self.nodes.get(node_id)
        if override is not None and override.report_interval_secs is not None:
            return override.report_interval_secs
        return self.fleet.report_interval_secs

    def heartbeat_interval(self, node_id: str) -> int:
        """Seconds between health checks this node is told at registration."""
        override = self.nodes.get(node_id)
        if override is not None and override.heartbeat_interval_secs is not None:
            return override.heartbeat_interval_secs
        return self.fleet.heartbeat_interval_secs

    def shortest_report_interval(self) -> int:
        """The smallest report interval any node can be told (paces the offline sweep)."""
        values = [self.fleet.report_interval_secs]
        values += [o.report_interval_secs for o in self.nodes.values() if o.report_interval_secs is not None]
        return min(values)

    # -- validation -------------------------------------------------------------------------

    def validate(self) -> None:
        """Parse the secrets and raise :class:`ConfigError` naming the TOML key of the first problem."""
        srv = self.server
        _check_listen(srv.listen, "server.listen")
        if srv.log_level.lower() not in LOG_LEVELS:
            raise ConfigError("server.log_level", f"must be one of {', '.join(LOG_LEVELS)}, got {srv.log_level!r}")
        if srv.log_format not in _LOG_FORMATS:
            raise ConfigError("server.log_format", f"must be one of {', '.join(_LOG_FORMATS)}, got {srv.log_format!r}")
        if srv.max_message_bytes < 1024:
            raise ConfigError("server.max_message_bytes", "must be at least 1024")
        if srv.max_clock_skew_secs < 0:
            raise ConfigError("server.max_clock_skew_secs", "must be >= 0 (0 means 300)")
        if srv.sqlite_synchronous.upper() not in _SYNCHRONOUS:
            raise ConfigError("server.sqlite_synchronous", f"must be FULL or NORMAL, got {srv.sqlite_synchronous!r}")
        srv.sqlite_synchronous = srv.sqlite_synchronous.upper()
        if srv.shutdown_grace_secs < 0:
            raise ConfigError("server.shutdown_grace_secs", "must be >= 0")
        _check_tls_files(srv.tls_cert, srv.tls_key, srv.tls_client_ca, "server")
        _check_shared_store(srv)

        fleet = self.fleet
        _check_interval(fleet.report_interval_secs, "fleet.report_interval_secs")
        _check_interval(fleet.heartbeat_interval_secs, "fleet.heartbeat_interval_secs")
        if not 1 <= fleet.offline_after_missed <= 100:
            raise ConfigError("fleet.offline_after_missed", f"must be 1..100, got {fleet.offline_after_missed}")
        self._fleet_secret = (
            None
            if fleet.shared_secret is None
            else SharedSecret.from_hex(fleet.shared_secret, field="fleet.shared_secret")
        )
        parsed: dict[str, tuple[SharedSecret, ...]] = {}
        for node_id, texts in self.node_secrets.items():
            key = f"node_secrets.{node_id}"
            if not node_id.strip():
                raise ConfigError(key, "node id must not be empty")
            if not texts:
                raise ConfigError(key, "needs at least one secret")
            if len(texts) > 2:
                # More than two keys in force at once defeats the point of rotating.
                raise ConfigError(key, f"at most two secrets (old and new during a rotation), got {len(texts)}")
            parsed[node_id] = tuple(
                SharedSecret.from_hex(text, field=f"{key}[{i}]" if len(texts) > 1 else key)
                for i, text in enumerate(texts)
            )
        self._node_secrets = parsed
        if self._fleet_secret is None and not parsed:
            raise ConfigError("fleet.shared_secret", "is required unless [node_secrets] gives every node its secret")
        for node_id, override in self.nodes.items():
            if override.report_interval_secs is not None:
                _check_interval(override.report_interval_secs, f"nodes.{node_id}.report_interval_secs")
            if override.heartbeat_interval_secs is not None:
                _check_interval(override.heartbeat_interval_secs, f"nodes.{node_id}.heartbeat_interval_secs")

        if self.admin.listen:
            _check_listen(self.admin.listen, "admin.listen")
        check_listen(self.metrics.listen, "metrics.listen")
        self._admin_secret = (
            None if self.admin.secret is None else SharedSecret.from_hex(self.admin.secret, field="admin.secret")
        )
        if self._admin_secret is not None and any(self._admin_secret == s for s in self._all_node_secrets()):
            # A node holding the admin key could administer the whole fleet.
            raise ConfigError("admin.secret", "must differ from the fleet and node secrets")

        push = self.push
        for name in ("timeout_secs", "backoff_base_secs", "backoff_cap_secs"):
            if not getattr(push, name) > 0:
                raise ConfigError(f"push.{name}", f"must be > 0, got {getattr(push, name)}")
        if push.backoff_base_secs > push.backoff_cap_secs:
            raise ConfigError("push.backoff_base_secs", "must not exceed push.backoff_cap_secs")
        if (push.client_cert is None) != (push.client_key is None):
            missing = "client_key" if push.client_key is None else "client_cert"
            raise ConfigError(f"push.{missing}", "client_cert and client_key must be set together (mTLS)")
        if not push.enable_tls and (push.ca_cert or push.client_cert or push.tls_domain):
            raise ConfigError("push.enable_tls", "must be true when ca_cert, client_cert or tls_domain is set")
        if push.client_cert is not None and push.client_key is not None:
            check_cert_and_key(push.client_cert, "push.client_cert", push.client_key, "push.client_key")
        if push.ca_cert is not None:
            check_certificates(push.ca_cert, "push.ca_cert")
        self._limits = self._build_limits()

    def published_example_secrets(self) -> list[str]:
        """The keys whose secret is a published example value (call after :meth:`validate`)."""
        found = []
        if self._fleet_secret is not None and self._fleet_secret.is_published_example:
            found.append("fleet.shared_secret")
        for node_id, secrets in self._node_secrets.items():
            if any(s.is_published_example for s in secrets):
                found.append(f"node_secrets.{node_id}")
        if self._admin_secret is not None and self._admin_secret.is_published_example:
            found.append("admin.secret")
        return found

    def _build_limits(self) -> tuple[ServiceLimits, ServiceLimits]:
        sec = self.security
        sec.validate("security")
        service, admin = with_overrides(
            (SUPERVISOR_LIMITS, ADMIN_LIMITS),
            max_request_bytes={
                SUPERVISOR_LIMITS.service: sec.max_request_bytes,
                ADMIN_LIMITS.service: sec.admin_max_request_bytes,
            },
            max_bytes=sec.max_bytes,
            max_count=sec.max_count,
        )
        return service, admin

    @property
    def service_limits(self) -> ServiceLimits:
        """SupervisorService's limits table with the ``[security]`` overrides."""
        return self._limits[0]

    @property
    def admin_limits(self) -> ServiceLimits:
        """The admin service's limits table with the ``[security]`` overrides."""
        return self._limits[1]

    def _all_node_secrets(self) -> list[SharedSecret]:
        found = [] if self._fleet_secret is None else [self._fleet_secret]
        for secrets in self._node_secrets.values():
            found.extend(secrets)
        return found

    @property
    def python_log_level(self) -> int:
        """The configured level as a :mod:`logging` level (``trace`` is 5, ``warn`` WARNING)."""
        name = self.server.log_level.lower()
        return {"trace": 5, "warn": logging.WARNING}.get(name, getattr(logging, name.upper(), logging.INFO))


_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _check_shared_store(srv: ServerSection) -> None:
    # URLs may hold passwords: errors name the key and the scheme, never the URL.
    if srv.database_url is not None:
        scheme = srv.database_url.partition("://")[0]
        if scheme not in ("postgresql", "postgres"):
            raise ConfigError("server.database_url", f"must be a postgresql:// URL, got scheme {scheme!r}")
    if srv.nonce_store_url is not None:
        if srv.database_url is None:
            raise ConfigError("server.nonce_store_url", "needs server.database_url (Redis holds only nonces)")
        scheme = srv.nonce_store_url.partition("://")[0]
        if scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("server.nonce_store_url", f"must be a redis://, rediss:// or unix:// URL, got {scheme!r}")
    if not _SCHEMA_NAME.fullmatch(srv.database_schema):
        raise ConfigError(
            "server.database_schema", f"must be a lower-case SQL identifier (a-z, 0-9, _), got {srv.database_schema!r}"
        )
    if not 1 <= srv.database_pool_size <= 1000:
        raise ConfigError("server.database_pool_size", f"must be 1..1000, got {srv.database_pool_size}")
    if not srv.database_timeout_secs > 0:
        raise ConfigError("server.database_timeout_secs", f"must be > 0, got {srv.database_timeout_secs}")
    if not srv.nonce_key_prefix:
        raise ConfigError("server.nonce_key_prefix", "must not be empty")


def _check_interval(value: int, key: str) -> None:
    if not 1 <= value <= _MAX_INTERVAL_SECS:
        raise ConfigError(key, f"must be 1..{_MAX_INTERVAL_SECS} seconds, got {value}")


def _check_listen(address: str, key: str) -> None:
    try:
        host, _ = split_host_port(address)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(key, f"must be an IP address (or localhost) to bind, got {host!r}") from None


def _check_tls_files(cert: Path | None, key: Path | None, client_ca: Path | None, table: str) -> None:
    if (cert is None) != (key is None):
        missing = "tls_key" if key is None else "tls_cert"
        raise ConfigError(f"{table}.{missing}", "tls_cert and tls_key must be set together")
    if client_ca is not None and cert is None:
        raise ConfigError(f"{table}.tls_client_ca", "mTLS needs tls_cert and tls_key too")
    if cert is not None and key is not None:
        check_cert_and_key(cert, f"{table}.tls_cert", key, f"{table}.tls_key")
    if client_ca is not None:
        check_certificates(client_ca, f"{table}.tls_client_ca")


NODE_SECRETS_ENV = "SUPERVIT_NODE_SECRETS"
"""The per-node secrets as one variable: ``node-id=hex[,hex];node-id=hex`` (ids with hyphens included)."""


def _normalise_node_secrets(secrets: Mapping[str, Any]) -> dict[str, Any]:
    # One secret is the common case; normalise to the list form the dataclass holds. Hex never
    # contains commas, so splitting text is safe (and gives environment variables lists).
    return {
        str(k): [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v for k, v in secrets.items()
    }


def _parse_node_secrets_env(text: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    for i, part in enumerate(p for p in text.split(";") if p.strip()):
        node_id, sep, value = part.partition("=")
        if not sep or not node_id.strip() or not value.strip():
            # Never echo the text: it holds secrets.
            raise ConfigError(NODE_SECRETS_ENV, f"entry {i + 1} is not node-id=hex[,hex]")
        entries[node_id.strip()] = value.strip()
    return entries


def _read_secret_files(parsed: _SupervisorFile) -> None:
    """Fill the secrets given as files (``*_file`` keys) in place; both forms at once is an error."""
    fleet, admin = parsed.fleet, parsed.admin
    if fleet.shared_secret_file is not None:
        if fleet.shared_secret is not None:
            raise ConfigError("fleet.shared_secret_file", "set either shared_secret or shared_secret_file, not both")
        fleet.shared_secret = read_secret_file(fleet.shared_secret_file, "fleet.shared_secret_file")
    if admin.secret_file is not None:
        if admin.secret is not None:
            raise ConfigError("admin.secret_file", "set either secret or secret_file, not both")
        admin.secret = read_secret_file(admin.secret_file, "admin.secret_file")
    if fleet.node_secrets_file is not None:
        key = "fleet.node_secrets_file"
        path = fleet.node_secrets_file
        warning = check_file_permissions(path, key)
        if warning is not None:
            log.warning("%s", warning)
        try:
            entries = read_toml(path)
        except ConfigError as exc:
            raise ConfigError(key, f"{path}: {exc.reason}") from None
        from_file = build(_NodeSecretsFile, {"node_secrets": _normalise_node_secrets(entries)}, key).node_secrets
        for node_id, texts in from_file.items():
            if node_id in parsed.node_secrets:
                raise ConfigError(f"node_secrets.{node_id}", f"is given both in [node_secrets] and in {path}")
            parsed.node_secrets[node_id] = texts


@dataclass
class _NodeSecretsFile:
    node_secrets: dict[str, list[str]] = field(default_factory=dict)


def load_supervisor_config(
    path: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
) -> SupervisorConfig:
    """Read ``path`` (or use ``data``), apply environment overrides, type-check and validate.

    ``[node_secrets]`` values may be one hex string or a list of them (comma-separated in the
    environment). Errors are :class:`ConfigError` naming the full key.
    """
    raw: dict[str, Any] = dict(data or {}) if path is None else read_toml(path)
    env = os.environ if environ is None else environ
    apply_env(raw, env, tables=_TABLES)
    if env.get(NODE_SECRETS_ENV):
        # Node ids may hold characters an environment variable name cannot ("edge-1"), so the
        # whole map can come as one variable: SUPERVIT_NODE_SECRETS="edge-1=hex;edge-2=old,new".
        table = raw.setdefault("node_secrets", {})
        if not isinstance(table, dict):
            raise ConfigError("node_secrets", "must be a table")
        table.update(_parse_node_secrets_env(env[NODE_SECRETS_ENV]))
    secrets = raw.get("node_secrets")
    if isinstance(secrets, Mapping):
        raw["node_secrets"] = _normalise_node_secrets(secrets)
    parsed = build(_SupervisorFile, raw)
    _read_secret_files(parsed)
    config = SupervisorConfig(
        server=parsed.server,
        fleet=parsed.fleet,
        node_secrets=parsed.node_secrets,
        nodes=parsed.nodes,
        admin=parsed.admin,
        push=parsed.push,
        security=parsed.security,
        metrics=parsed.metrics,
        source=Path(path) if path is not None else None,
    )
    config.validate()
    return config
