"""SupervitConfig.validate() errors name the offending field; the client validates on construction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervit._exceptions import ConfigError
from supervit.client import SupervitClient
from supervit.config import SupervitConfig
from supervit.node import ServiceCollector
from tests.client.conftest import fast_config
from tests.tls_certs import TlsFiles

ENDPOINT = "http://127.0.0.1:50051"


def _config(**overrides: Any) -> SupervitConfig:
    return fast_config(overrides.pop("endpoint", ENDPOINT), **overrides)


def _tls(files: TlsFiles, **overrides: Any) -> dict[str, Any]:
    return {"endpoint": "https://127.0.0.1:50051", "enable_tls": True, "tls_domain": "localhost", **overrides}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"node_id": ""}, "node_id"),
        ({"node_id": "   "}, "node_id"),
        ({"endpoint": ""}, "endpoint"),
        ({"endpoint": "ftp://127.0.0.1:50051"}, "endpoint"),
        ({"endpoint": "127.0.0.1:50051"}, "endpoint"),
        ({"endpoint": "http://127.0.0.1:notaport"}, "endpoint"),
        ({"endpoint": "https://127.0.0.1:50051"}, "enable_tls"),
        ({"enable_tls": True}, "tls_domain"),
        ({"enable_tls": True, "tls_domain": "  "}, "tls_domain"),
        ({"shared_secret": "abcd"}, "shared_secret"),
        ({"shared_secret": "zz" * 32}, "shared_secret"),
        ({"shared_secret": ""}, "shared_secret"),
        ({"status_report_interval_secs": 0}, "status_report_interval_secs"),
        ({"rpc_timeout_secs": -1}, "rpc_timeout_secs"),
        ({"min_report_interval_secs": 10, "max_report_interval_secs": 5}, "min_report_interval_secs"),
    ],
)
def test_invalid_field_is_named(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(**overrides).validate()
    assert info.value.key == field


def test_secret_never_appears_in_errors() -> None:
    bad = "g" + "0123456789abcdef" * 4
    with pytest.raises(ConfigError) as info:
        _config(shared_secret=bad).validate()
    assert bad not in str(info.value)
    assert "0123456789abcdef" not in str(info.value)
    assert "0123456789abcdef" not in repr(_config())


def test_client_cert_without_key(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError) as info:
        _config(**_tls(tls_files, client_cert=tls_files.client_cert)).validate()
    assert info.value.key == "client_key"


def test_client_key_without_cert(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError) as info:
        _config(**_tls(tls_files, client_key=tls_files.client_key)).validate()
    assert info.value.key == "client_cert"


def test_mtls_without_tls(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError) as info:
        _config(client_cert=tls_files.client_cert, client_key=tls_files.client_key).validate()
    assert info.value.key == "enable_tls"


def test_missing_ca_file(tls_files: TlsFiles, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _config(**_tls(tls_files, ca_cert=tmp_path / "missing.pem")).validate()
    assert info.value.key == "ca_cert"


def test_valid_configs_pass(tls_files: TlsFiles) -> None:
    _config().validate()
    _config(
        **_tls(tls_files, ca_cert=tls_files.ca_cert, client_cert=tls_files.client_cert, client_key=tls_files.client_key)
    ).validate()


def test_client_constructor_validates() -> None:
    with pytest.raises(ConfigError) as info:
        SupervitClient(_config(endpoint="ftp://x:1"), ServiceCollector())
    assert info.value.key == "endpoint"


def test_configured_interval_is_clamped() -> None:
    client = SupervitClient(_config(status_report_interval_secs=100, max_report_interval_secs=3), ServiceCollector())
    assert client.current_interval_secs == 3
    client = SupervitClient(_config(status_report_interval_secs=0.01, min_report_interval_secs=0.5), ServiceCollector())
    assert client.current_interval_secs == 0.5
