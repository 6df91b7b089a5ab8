"""The supervisor TOML file: defaults, per-node secrets, environment overrides, errors naming keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervit._exceptions import ConfigError
from supervit.auth import SharedSecret
from supervit.supervisor import load_supervisor_config
from tests.conftest import OTHER_SECRET_HEX, SECRET_HEX
from tests.supervisor.conftest import ADMIN_HEX, NODE_A_HEX, NODE_A_NEW_HEX

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "supervisor.toml"


def test_defaults_with_only_a_fleet_secret() -> None:
    config = load_supervisor_config(data={"fleet": {"shared_secret": SECRET_HEX}}, environ={})
    assert config.server.listen == "0.0.0.0:50051" and config.admin.listen == "127.0.0.1:50052"
    assert config.report_interval("any") == 60 and config.heartbeat_interval("any") == 30
    assert config.fleet.offline_after_missed == 3 and not config.admin_enabled
    assert config.secrets_for("any") == (SharedSecret.from_hex(SECRET_HEX),)
    assert SECRET_HEX not in repr(config)


def test_node_secrets_one_or_two_and_overrides() -> None:
    data = {
        "node_secrets": {"a": NODE_A_HEX, "b": [NODE_A_HEX, NODE_A_NEW_HEX]},
        "nodes": {"a": {"report_interval_secs": 5}},
    }
    config = load_supervisor_config(data=data, environ={})
    assert config.secrets_for("a") == (SharedSecret.from_hex(NODE_A_HEX),)
    assert len(config.secrets_for("b")) == 2
    assert config.secrets_for("c") == ()  # no fleet secret: unknown nodes are refused
    assert config.report_interval("a") == 5 and config.report_interval("b") == 60
    assert config.shortest_report_interval() == 5


def test_environment_overrides_only_own_tables() -> None:
    env = {
        "SUPERVIT_FLEET__SHARED_SECRET": SECRET_HEX,
        "SUPERVIT_SERVER__LISTEN": "127.0.0.1:6000",
        "SUPERVIT_NODE_SECRETS__N1": f"{NODE_A_HEX},{NODE_A_NEW_HEX}",
        "SUPERVIT_ADMIN__SECRET": ADMIN_HEX,
        # A node's variables in the same environment are not this file's business.
        "SUPERVIT_SUPERVISOR__CLIENT__NODE_ID": "node-1",
    }
    config = load_supervisor_config(data={}, environ=env)
    assert config.server.listen == "127.0.0.1:6000" and config.admin_enabled
    assert len(config.secrets_for("n1")) == 2


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({}, "fleet.shared_secret"),
        ({"fleet": {"shared_secret": "abc"}}, "fleet.shared_secret"),
        ({"fleet": {"shared_secret": SECRET_HEX, "report_interval_secs": 0}}, "fleet.report_interval_secs"),
        ({"fleet": {"shared_secret": SECRET_HEX}, "server": {"listen": "nowhere"}}, "server.listen"),
        ({"fleet": {"shared_secret": SECRET_HEX}, "server": {"colour": 1}}, "server.colour"),
        ({"node_secrets": {"a": []}}, "node_secrets.a"),
        ({"node_secrets": {"a": [NODE_A_HEX, NODE_A_NEW_HEX, OTHER_SECRET_HEX]}}, "node_secrets.a"),
        ({"node_secrets": {"a": [NODE_A_HEX, "zz"]}}, "node_secrets.a[1]"),
        (
            {"fleet": {"shared_secret": SECRET_HEX}, "nodes": {"a": {"report_interval_secs": -1}}},
            "nodes.a.report_interval_secs",
        ),
        ({"fleet": {"shared_secret": SECRET_HEX}, "admin": {"secret": SECRET_HEX}}, "admin.secret"),
        ({"fleet": {"shared_secret": SECRET_HEX}, "push": {"backoff_base_secs": 100}}, "push.backoff_base_secs"),
        ({"fleet": {"shared_secret": SECRET_HEX}, "push": {"ca_cert": "/x"}}, "push.enable_tls"),
        (
            {"fleet": {"shared_secret": SECRET_HEX}, "server": {"sqlite_synchronous": "OFF"}},
            "server.sqlite_synchronous",
        ),
        ({"fleet": {"shared_secret": SECRET_HEX}, "server": {"tls_cert": "/nope"}}, "server.tls_key"),
        ({"fleet": {"shared_secret": SECRET_HEX}, "server": {"log_format": "logfmt"}}, "server.log_format"),
        ({"fleet": {"shared_secret": SECRET_HEX}, "metrics": {"listen": "localhost"}}, "metrics.listen"),
        ({"fleet": {"shared_secret": SECRET_HEX}, "metrics": {"path": "/m"}}, "metrics.path"),
    ],
)
def test_errors_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_supervisor_config(data=data, environ={})
    assert info.value.key == key
    for secret in (SECRET_HEX, NODE_A_HEX, NODE_A_NEW_HEX):
        assert secret not in str(info.value)


def test_example_file_loads() -> None:
    """examples/supervisor.toml is valid as shipped (its secrets are placeholders for the env)."""
    env = {"SUPERVIT_FLEET__SHARED_SECRET": SECRET_HEX, "SUPERVIT_ADMIN__SECRET": ADMIN_HEX}
    config = load_supervisor_config(EXAMPLE, environ=env)
    assert config.source == EXAMPLE and config.admin_enabled


def test_supervisor_allows_a_fleets_burst_of_concurrent_calls() -> None:
    """The supervisor's default concurrency cap is sized for a fleet's bursts; [security] still overrides it."""
    base = {"fleet": {"shared_secret": SECRET_HEX}}
    assert load_supervisor_config(data=base, environ={}).security.max_concurrent_rpcs == 4096
    partial = {**base, "security": {"require_body_mac": True}}
    assert load_supervisor_config(data=partial, environ={}).security.max_concurrent_rpcs == 4096
    tuned = {**base, "security": {"max_concurrent_rpcs": 64}}
    assert load_supervisor_config(data=tuned, environ={}).security.max_concurrent_rpcs == 64


def test_metrics_listen_default_and_environment() -> None:
    config = load_supervisor_config(data={"fleet": {"shared_secret": SECRET_HEX}}, environ={})
    assert config.metrics.listen == "127.0.0.1:9465" and config.server.log_format == "text"
    env = {"SUPERVIT_METRICS__LISTEN": "0.0.0.0:0", "SUPERVIT_SERVER__LOG_FORMAT": "json"}
    config = load_supervisor_config(data={"fleet": {"shared_secret": SECRET_HEX}}, environ=env)
    assert config.metrics.listen == "0.0.0.0:0" and config.server.log_format == "json"
