"""Configuration: client settings, the node daemon's TOML file, and the shared typed loader."""

from supervit.config._client import SupervitConfig, endpoint_target
from supervit.config._listen import check_listen, format_host_port, split_host_port, split_listen
from supervit.config._loader import ENV_PREFIX, apply_env, build, read_toml
from supervit.config._node import (
    ClientSection,
    MetricsSection,
    NodeConfig,
    ServiceSection,
    SupervisordSection,
    SupervisorSection,
    load_node_config,
    python_log_level,
)
from supervit.config._secrets import check_file_permissions, read_secret_file
from supervit.config._security import SecuritySection
from supervit.config._tls import check_cert_and_key, check_certificates

__all__ = [
    "ENV_PREFIX",
    "ClientSection",
    "MetricsSection",
    "NodeConfig",
    "SecuritySection",
    "ServiceSection",
    "SupervisorSection",
    "SupervisordSection",
    "SupervitConfig",
    "apply_env",
    "build",
    "check_cert_and_key",
    "check_certificates",
    "check_file_permissions",
    "check_listen",
    "endpoint_target",
    "format_host_port",
    "load_node_config",
    "python_log_level",
    "read_secret_file",
    "read_toml",
    "split_host_port",
    "split_listen",
]
