"""Where secrets come from: the TOML, the environment (one naming scheme), or files (``*_file``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from supervit._exceptions import ConfigError
from supervit.auth import SharedSecret
from supervit.config import load_node_config
from supervit.supervisor import load_supervisor_config
from tests.conftest import EXAMPLE_SECRET_HEX, OTHER_SECRET_HEX, SECRET_HEX

ADMIN_HEX = "ad" * 32
THIRD_HEX = "3c" * 32


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def node_data(**client: object) -> dict[str, object]:
    return {"supervisor": {"client": {"node_id": "edge-1", **client}, "supervisord": {"ip": "127.0.0.1"}}}


def test_node_secret_from_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = secret_file(tmp_path / "node.secret", SECRET_HEX)
    config = load_node_config(data=node_data(shared_secret_file=str(path)), environ={})
    assert config.secret == SharedSecret.from_hex(SECRET_HEX)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_node_secret_file_from_the_environment(tmp_path: Path) -> None:
    path = secret_file(tmp_path / "node.secret", OTHER_SECRET_HEX)
    env = {"SUPERVIT_SUPERVISOR__CLIENT__SHARED_SECRET_FILE": str(path)}
    config = load_node_config(data=node_data(), environ=env)
    assert config.secret == SharedSecret.from_hex(OTHER_SECRET_HEX)


def test_loose_permissions_warn_but_work(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = secret_file(tmp_path / "node.secret", SECRET_HEX, mode=0o644)
    with caplog.at_level(logging.WARNING, logger="supervit.config"):
        config = load_node_config(data=node_data(shared_secret_file=str(path)), environ={})
    assert config.secret == SharedSecret.from_hex(SECRET_HEX)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "supervisor.client.shared_secret_file" in warning and "0644" in warning and f"chmod 600 {path}" in warning
    assert SECRET_HEX not in warning


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("missing", "secret file not found"),
        ("empty", "is empty"),
        ("both", "not both"),
        ("short", "too short"),
    ],
)
def test_node_secret_file_problems_name_the_key(tmp_path: Path, setup: str, reason: str) -> None:
    path = tmp_path / "node.secret"
    client: dict[str, object] = {"shared_secret_file": str(path)}
    if setup == "empty":
        secret_file(path, "")
    elif setup == "both":
        secret_file(path, SECRET_HEX)
        client["shared_secret"] = SECRET_HEX
    elif setup == "short":
        secret_file(path, "abcd")
    with pytest.raises(ConfigError) as info:
        load_node_config(data=node_data(**client), environ={})
    assert info.value.key.startswith("supervisor.client.shared_secret") and reason in info.value.reason


def test_node_without_any_secret_says_how_to_give_one() -> None:
    with pytest.raises(ConfigError) as info:
        load_node_config(data=node_data(), environ={})
    assert info.value.key == "supervisor.client.shared_secret" and "shared_secret_file" in info.value.reason


def test_node_published_example_secret_is_detected() -> None:
    config = load_node_config(data=node_data(shared_secret=EXAMPLE_SECRET_HEX), environ={})
    assert config.published_example_secrets() == ["supervisor.client.shared_secret"]
    assert load_node_config(data=node_data(shared_secret=SECRET_HEX), environ={}).published_example_secrets() == []


def sup_data(**tables: dict[str, object]) -> dict[str, object]:
    return {"server": {"listen": "127.0.0.1:0"}, **tables}


def test_supervisor_secrets_from_files(tmp_path: Path) -> None:
    fleet = secret_file(tmp_path / "fleet.secret", SECRET_HEX)
    admin = secret_file(tmp_path / "admin.secret", ADMIN_HEX)
    per_node = tmp_path / "node-secrets.toml"
    per_node.write_text(f'edge-1 = "{OTHER_SECRET_HEX}"\n"edge-2" = ["{OTHER_SECRET_HEX}", "{THIRD_HEX}"]\n')
    per_node.chmod(0o600)
    data = sup_data(
        fleet={"shared_secret_file": str(fleet), "node_secrets_file": str(per_node)},
        admin={"secret_file": str(admin)},
    )
    config = load_supervisor_config(data=data, environ={})
    assert config.secrets_for("edge-9") == (SharedSecret.from_hex(SECRET_HEX),)
    assert config.secrets_for("edge-1") == (SharedSecret.from_hex(OTHER_SECRET_HEX),)
    assert config.secrets_for("edge-2") == (SharedSecret.from_hex(OTHER_SECRET_HEX), SharedSecret.from_hex(THIRD_HEX))
    assert config.admin_secret == SharedSecret.from_hex(ADMIN_HEX)
    assert config.published_example_secrets() == []


def test_supervisor_secret_files_from_the_environment(tmp_path: Path) -> None:
    fleet = secret_file(tmp_path / "fleet.secret", SECRET_HEX)
    admin = secret_file(tmp_path / "admin.secret", ADMIN_HEX)
    env = {"SUPERVIT_FLEET__SHARED_SECRET_FILE": str(fleet), "SUPERVIT_ADMIN__SECRET_FILE": str(admin)}
    config = load_supervisor_config(data=sup_data(), environ=env)
    assert config.secrets_for("x") == (SharedSecret.from_hex(SECRET_HEX),)
    assert config.admin_secret == SharedSecret.from_hex(ADMIN_HEX)


def test_per_node_secrets_for_hyphenated_ids_from_the_environment() -> None:
    """SUPERVIT_NODE_SECRETS carries the map (ids with hyphens included; two keys = rotation)."""
    env = {
        "SUPERVIT_FLEET__SHARED_SECRET": SECRET_HEX,
        "SUPERVIT_NODE_SECRETS": f"edge-1={OTHER_SECRET_HEX}; edge-2 = {OTHER_SECRET_HEX},{THIRD_HEX}",
    }
    config = load_supervisor_config(data=sup_data(), environ=env)
    assert config.secrets_for("edge-1") == (SharedSecret.from_hex(OTHER_SECRET_HEX),)
    assert len(config.secrets_for("edge-2")) == 2
    assert config.secrets_for("edge-3") == (SharedSecret.from_hex(SECRET_HEX),)


def test_malformed_node_secrets_variable_never_echoes_it() -> None:
    env = {"SUPERVIT_FLEET__SHARED_SECRET": SECRET_HEX, "SUPERVIT_NODE_SECRETS": f"edge-1{OTHER_SECRET_HEX}"}
    with pytest.raises(ConfigError) as info:
        load_supervisor_config(data=sup_data(), environ=env)
    assert info.value.key == "SUPERVIT_NODE_SECRETS" and OTHER_SECRET_HEX not in str(info.value)


def test_supervisor_file_problems(tmp_path: Path) -> None:
    fleet = secret_file(tmp_path / "fleet.secret", SECRET_HEX)
    both = sup_data(fleet={"shared_secret": SECRET_HEX, "shared_secret_file": str(fleet)})
    with pytest.raises(ConfigError, match="not both") as info:
        load_supervisor_config(data=both, environ={})
    assert info.value.key == "fleet.shared_secret_file"
    per_node = tmp_path / "node-secrets.toml"
    per_node.write_text(f'edge-1 = "{OTHER_SECRET_HEX}"\n')
    clash = sup_data(
        fleet={"shared_secret": SECRET_HEX, "node_secrets_file": str(per_node)},
        node_secrets={"edge-1": THIRD_HEX},
    )
    with pytest.raises(ConfigError) as info:
        load_supervisor_config(data=clash, environ={})
    assert info.value.key == "node_secrets.edge-1" and str(per_node) in info.value.reason
    missing = sup_data(fleet={"shared_secret": SECRET_HEX}, admin={"secret_file": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="secret file not found") as info:
        load_supervisor_config(data=missing, environ={})
    assert info.value.key == "admin.secret_file"


def test_supervisor_published_example_secrets_are_listed() -> None:
    data = sup_data(fleet={"shared_secret": EXAMPLE_SECRET_HEX}, node_secrets={"edge-1": EXAMPLE_SECRET_HEX}, admin={})
    config = load_supervisor_config(data=data, environ={})
    assert config.published_example_secrets() == ["fleet.shared_secret", "node_secrets.edge-1"]
