"""`supervit gen-credential`: vectors, JSON shape, bad arguments.

Through the CLI's own ``main()`` in this process (tests/cli/_inprocess.py), except the one test
that runs ``python -m supervit`` as a real subprocess to prove the entry point and environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.cli._inprocess import run_cli
from tests.conftest import EXAMPLE_SECRET_HEX, SECRET_HEX, VECTORS

ACTIONS_WITH_REALM = {"create_realm", "get_realm", "update_realm", "delete_realm"}


def run_subprocess(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervit", *args], capture_output=True, text=True, check=False, env=env
    )


def _args_for(vector: dict[str, Any]) -> list[str]:
    action, _, rest = vector["payload"].partition(":")
    parts = rest.split(":", 2)
    args = ["--action", action, "--node-id", parts[0]]
    if action in ("update_config", "get_config"):
        args += ["--config-type", parts[1], "--subject", parts[2]]
    elif len(parts) > 1:
        args += ["--subject", parts[1]]
    return args


@pytest.mark.parametrize("vector", VECTORS["credentials"], ids=lambda v: v["payload"])
def test_reproduces_credential_vectors(vector: dict[str, Any]) -> None:
    """--output json with fixed timestamp and nonce reproduces each vector exactly."""
    result = run_cli(
        "gen-credential",
        *_args_for(vector),
        "--shared-secret",
        vector["secret_hex"],
        "--timestamp",
        str(vector["timestamp"]),
        "--nonce",
        vector["nonce"],
        "--output",
        "json",
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert list(doc) == ["timestamp", "nonce", "signature", "payload"]
    assert doc == {
        "timestamp": vector["timestamp"],
        "nonce": vector["nonce"],
        "signature": vector["signature"],
        "payload": vector["payload"],
    }


@pytest.mark.parametrize("vector", VECTORS["registration_fingerprints"], ids=lambda v: v["node_id"])
def test_register_action_signs_fingerprint(vector: dict[str, Any]) -> None:
    """register takes the fingerprint as subject."""
    result = run_cli(
        "gen-credential", "--action", "register", "--node-id", vector["node_id"], "--subject",
        vector["fingerprint_sha256_hex"], "--shared-secret", SECRET_HEX, "--output", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["payload"] == vector["signed_payload"] if "signed_payload" in vector else True


def test_secret_from_environment_and_human_output() -> None:
    """The secret may come from SUPERVIT_SHARED_SECRET; human output names each part (a real
    ``python -m supervit`` process)."""
    import os

    env = {**os.environ, "SUPERVIT_SHARED_SECRET": SECRET_HEX}
    result = run_subprocess("gen-credential", "--action", "node_info", "--node-id", "n1", env=env)
    assert result.returncode == 0, result.stderr
    assert "payload    node_info:n1" in result.stdout
    assert "signature" in result.stdout
    assert SECRET_HEX not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--action", "frobnicate", "--node-id", "n", "--shared-secret", SECRET_HEX], "--action"),
        (["--action", "get_realm", "--node-id", "n", "--shared-secret", SECRET_HEX], "needs --subject"),
        (["--action", "get_realm", "--node-id", "n", "--subject", "x", "--shared-secret", SECRET_HEX], "realm id"),
        (
            ["--action", "get_config", "--node-id", "n", "--subject", "k", "--shared-secret", SECRET_HEX],
            "--config-type",
        ),
        (
            [
                "--action",
                "get_config",
                "--node-id",
                "n",
                "--subject",
                "k",
                "--config-type",
                "7",
                "--shared-secret",
                SECRET_HEX,
            ],
            "unknown config type",
        ),
        (["--action", "node_info", "--node-id", "n", "--subject", "1", "--shared-secret", SECRET_HEX], "no --subject"),
        (["--action", "node_info", "--node-id", "n", "--shared-secret", "zz" * 32], "hex"),
        (["--action", "node_info", "--node-id", "n", "--shared-secret", "ab" * 31], "too short"),
        (["--action", "node_info", "--node-id", "n"], "--shared-secret"),
    ],
)
def test_bad_arguments_one_line_exit_2(args: list[str], message: str) -> None:
    """Every bad argument: exactly one line on stderr naming the problem, exit code 2, no stdout."""
    result = run_cli("gen-credential", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "zz" * 32 not in lines[0]


def test_config_type_by_name() -> None:
    """--config-type accepts the enum name as well as the number."""
    result = run_cli(
        "gen-credential", "--action", "update_config", "--node-id", "node-1", "--config-type", "log_level",
        "--subject", "log.level", "--shared-secret", EXAMPLE_SECRET_HEX, "--timestamp", "1764201600",
        "--nonce", "9b2f6c1e-3a4d-4e5f-8a7b-1c2d3e4f5a6b", "--output", "json",
    )  # fmt: skip
    assert json.loads(result.stdout)["signature"] == "peWhi3xDEG44V0QhB2KmN9mL4Qi7C7GbqxEYySLITqI="


def test_secret_from_the_daemons_variable_and_from_a_file(tmp_path: Any) -> None:
    """The node daemon's variable name works here too, and so does a secret file; all sign alike."""
    import os

    args = ["gen-credential", "--action", "node_info", "--node-id", "n1", "--timestamp", "1764201600",
            "--nonce", "fixed", "--output", "json"]  # fmt: skip
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVIT_")}
    by_option = run_cli(*args, "--shared-secret", SECRET_HEX, env=base)
    by_env = run_cli(*args, env={**base, "SUPERVIT_SUPERVISOR__CLIENT__SHARED_SECRET": SECRET_HEX})
    path = tmp_path / "node.secret"
    path.write_text(SECRET_HEX + "\n")
    path.chmod(0o600)
    by_file = run_cli(*args, "--shared-secret-file", str(path), env=base)
    by_file_env = run_cli(*args, env={**base, "SUPERVIT_SUPERVISOR__CLIENT__SHARED_SECRET_FILE": str(path)})
    signatures = {json.loads(r.stdout)["signature"] for r in (by_option, by_env, by_file, by_file_env)}
    assert len(signatures) == 1
    missing = run_cli(*args, "--shared-secret-file", str(tmp_path / "nope"), env=base)
    assert missing.returncode == 2 and "--shared-secret-file" in missing.stderr and "not found" in missing.stderr
