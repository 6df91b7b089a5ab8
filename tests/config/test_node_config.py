"""The node TOML file: typed keys, env overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervit._exceptions import ConfigError
from supervit.config import load_node_config
from tests.conftest import SECRET_HEX

MINIMAL = f"""
[supervisor.client]
node_id = "edge-1"
shared_secret = "{SECRET_HEX}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_minimal_file_uses_defaults(tmp_path: Path) -> None:
    """Only node_id and secret are required; a node without endpoint is serve-only."""
    config = load_node_config(write(tmp_path, MINIMAL), environ={})
    assert config.node_id == "edge-1"
    assert config.supervisord.port == 50055
    assert config.supervisor.status_report_interval_secs == 60
    assert config.client_config() is None
    assert SECRET_HEX not in repr(config)


def test_full_file(tmp_path: Path) -> None:
    """Every section parses into its typed fields and feeds the client settings."""
    text = f"""
[supervisor]
connect_timeout_secs = 5
status_report_interval_secs = 2
health_check_interval_secs = 3
max_clock_skew_secs = 120

[supervisor.supervisord]
node_name = "Edge One"
ip = "127.0.0.1"
port = 0
advertised_ip = "127.0.0.2"
data_dir = "{tmp_path / "data"}"
location_tag = "eu-west"
service_tags = ["b", "a"]

[[supervisor.supervisord.services]]
name = "turn"
type = "TURN"
port = 3478
tags = ["x"]

[supervisor.client]
node_id = "edge-1"
shared_secret = "{SECRET_HEX}"
endpoint = "http://127.0.0.1:50051"
"""
    config = load_node_config(write(tmp_path, text), environ={})
    client = config.client_config(bound_port=4321)
    assert client is not None
    assert client.agent_addr == "127.0.0.2:4321"
    assert client.name == "Edge One"
    assert client.status_report_interval_secs == 2
    assert client.max_clock_skew_secs == 120
    assert config.supervisord.services[0].type_number == 2
    assert config.supervisord.data_dir == tmp_path / "data"


def test_env_overrides(tmp_path: Path) -> None:
    """SUPERVIT_SUPERVISOR__SUPERVISORD__PORT overrides the file, typed like the key."""
    env = {
        "SUPERVIT_SUPERVISOR__SUPERVISORD__PORT": "6000",
        "SUPERVIT_SUPERVISOR__ENABLE_TLS": "false",
        "SUPERVIT_SUPERVISOR__SUPERVISORD__SERVICE_TAGS": "a, b",
        "SUPERVIT_SHARED_SECRET": "not-a-config-key",  # no "__": not an override
        "SUPERVIT_SERVER__LISTEN": "127.0.0.1:1",  # the supervisor's table: not this file's
    }
    config = load_node_config(write(tmp_path, MINIMAL), environ=env)
    assert config.supervisord.port == 6000
    assert config.supervisord.service_tags == ["a", "b"]


@pytest.mark.parametrize(
    ("patch", "key", "reason"),
    [
        ({"supervisor": {"client": {"node_id": " "}}}, "supervisor.client.node_id", "must not be empty"),
        (
            {"supervisor": {"client": {"node_id": "n", "shared_secret": "abc"}}},
            "supervisor.client.shared_secret",
            "odd",
        ),
        ({"supervisor": {"supervisord": {"port": 70000}}}, "supervisor.supervisord.port", "0..65535"),
        ({"supervisor": {"supervisord": {"port": "x"}}}, "supervisor.supervisord.port", "integer"),
        ({"supervisor": {"supervisord": {"ip": "not-an-ip"}}}, "supervisor.supervisord.ip", "IP address"),
        ({"supervisor": {"supervisord": {"prot": 1}}}, "supervisor.supervisord.prot", "unknown key"),
        ({"supervisor": {"supervisord": {"log_level": "loud"}}}, "supervisor.supervisord.log_level", "one of"),
        ({"supervisor": {"supervisord": {"log_format": "xml"}}}, "supervisor.supervisord.log_format", "text, json"),
        ({"supervisor": {"metrics": {"listen": "9464"}}}, "supervisor.metrics.listen", "host:port"),
        ({"supervisor": {"metrics": {"listen": "example.org:9464"}}}, "supervisor.metrics.listen", "IP address"),
        ({"supervisor": {"metrics": {"listen": "[::1]:99999"}}}, "supervisor.metrics.listen", "65535"),
        ({"supervisor": {"metrics": {"port": 1}}}, "supervisor.metrics.port", "unknown key"),
        (
            {"supervisor": {"supervisord": {"tls_cert": "/nonexistent.pem"}}},
            "supervisor.supervisord.tls_key",
            "together",
        ),
        (
            {"supervisor": {"supervisord": {"services": [{"name": "s", "type": "FTP"}]}}},
            "supervisor.supervisord.services[0].type",
            "STUN",
        ),
        ({"supervisor": {"enable_tls": "maybe"}}, "supervisor.enable_tls", "boolean"),
        ({"supervisor": {"client": {"power_model": "rust"}}}, "supervisor.client.power_model", "'pwrzv', 'supervit'"),
        ({"supervisor": {"client": {"power_model": 5}}}, "supervisor.client.power_model", "string"),
        ({"supervisor": {"client": {"endpoint": "ftp://x:1"}}}, "supervisor.client.endpoint", "scheme"),
        (
            {
                "supervisor": {
                    "enable_tls": True,
                    "client": {"endpoint": "https://x:1"},
                    "supervisord": {"ip": "127.0.0.1"},
                }
            },
            "supervisor.tls_domain",
            "required",
        ),
        (
            {
                "supervisor": {
                    "status_report_interval_secs": 0,
                    "client": {"endpoint": "http://h:1"},
                    "supervisord": {"ip": "127.0.0.1"},
                }
            },
            "supervisor.status_report_interval_secs",
            "> 0",
        ),
    ],
)
def test_invalid_keys_are_named(patch: dict[str, Any], key: str, reason: str) -> None:
    """Each invalid or missing key raises ConfigError naming the full key and the reason."""
    base: dict[str, Any] = {"supervisor": {"client": {"node_id": "edge-1", "shared_secret": SECRET_HEX}}}
    merged = _merge(base, patch)
    with pytest.raises(ConfigError) as info:
        load_node_config(data=merged, environ={})
    assert info.value.key == key
    assert reason in info.value.reason
    assert SECRET_HEX not in str(info.value)


def test_power_model_defaults_to_pwrzv_and_is_selectable(tmp_path: Path) -> None:
    """``[supervisor.client] power_model``: "pwrzv" unless set in the file or the environment."""
    assert load_node_config(write(tmp_path, MINIMAL), environ={}).supervisor.client.power_model == "pwrzv"
    chosen = load_node_config(write(tmp_path, MINIMAL + 'power_model = "supervit"\n'), environ={})
    assert chosen.supervisor.client.power_model == "supervit"
    env = {"SUPERVIT_SUPERVISOR__CLIENT__POWER_MODEL": "supervit"}
    assert load_node_config(write(tmp_path, MINIMAL), environ=env).supervisor.client.power_model == "supervit"


def test_missing_required_key() -> None:
    """A missing required key is reported as required."""
    with pytest.raises(ConfigError, match="required") as info:
        load_node_config(data={"supervisor": {"client": {"shared_secret": SECRET_HEX}}}, environ={})
    assert info.value.key == "supervisor.client.node_id"


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    """Missing file and TOML syntax errors name the file."""
    with pytest.raises(ConfigError, match="not found"):
        load_node_config(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_node_config(write(tmp_path, "[supervisor\n"), environ={})


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in patch.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def test_metrics_and_log_format_defaults_and_overrides() -> None:
    """[supervisor.metrics] listen defaults to 127.0.0.1:9464; "" disables; the environment overrides it."""
    base: dict[str, Any] = {"supervisor": {"client": {"node_id": "edge-1", "shared_secret": SECRET_HEX}}}
    config = load_node_config(data=base, environ={})
    assert config.supervisor.metrics.listen == "127.0.0.1:9464"
    assert config.supervisord.log_format == "text"
    env = {"SUPERVIT_SUPERVISOR__METRICS__LISTEN": "", "SUPERVIT_SUPERVISOR__SUPERVISORD__LOG_FORMAT": "json"}
    config = load_node_config(data=base, environ=env)
    assert config.supervisor.metrics.listen == ""
    assert config.supervisord.log_format == "json"
    config = load_node_config(data=_merge(base, {"supervisor": {"metrics": {"listen": "[::1]:0"}}}), environ={})
    assert config.supervisor.metrics.listen == "[::1]:0"
