"""One error style for every command: ``supervit <command>: error: <what>``, exit 2 for usage and
configuration errors, 1 for runtime failures, never a traceback.

Daemon commands run as real subprocesses; argument errors that never get past the command line
(unknown words, bad addresses) run through the same ``main()`` in process (tests/cli/_inprocess.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli import _inprocess
from tests.conftest import EXAMPLE_SECRET_HEX, SECRET_HEX

ADMIN_HEX = "ad" * 32


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVIT_")}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervit", *args],
        capture_output=True,
        text=True,
        check=False,
        env=clean_env() if env is None else env,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str], start: str, code: int, *, logs: bool = False) -> str:
    """The single stderr line, checked to start with ``start`` and to come with exit ``code``.

    With ``logs`` (a daemon that started logging before it failed) the error is the last line.
    """
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, (result.returncode, result.stderr)
    if logs:
        lines = lines[-1:]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(start), lines[0]
    return lines[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def node_toml(tmp_path: Path, *, port: int = 0, extra: str = "", secret: str = SECRET_HEX) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(
        f"""[supervisor.metrics]
listen = ""

[supervisor.client]
node_id = "edge-1"
shared_secret = "{secret}"

[supervisor.supervisord]
ip = "127.0.0.1"
port = {port}
data_dir = "{tmp_path / "data"}"
{extra}
"""
    )
    return path


def supervisor_toml(tmp_path: Path, *, listen: str = "127.0.0.1:0", extra: str = "", fleet: str = SECRET_HEX) -> Path:
    path = tmp_path / "supervisor.toml"
    path.write_text(
        f"""[server]
listen = "{listen}"
data_dir = "{tmp_path / "sup"}"
{extra}

[fleet]
shared_secret = "{fleet}"

[admin]
listen = "127.0.0.1:0"
secret = "{ADMIN_HEX}"

[metrics]
listen = ""
"""
    )
    return path


def test_gen_credential_timestamp_out_of_range_is_a_usage_error() -> None:
    """A 20-digit --timestamp is refused with one line, exit 2, no traceback."""
    result = _inprocess.run_cli(
        "gen-credential", "--action", "node_info", "--node-id", "n", "--shared-secret", SECRET_HEX,
        "--timestamp", "99999999999999999999",
    )  # fmt: skip
    line = one_line(result, "supervit gen-credential: error: ", 2)
    assert "--timestamp" in line


def test_unknown_command_and_option() -> None:
    one_line(_inprocess.run_cli("frobnicate"), "supervit: error: No such command 'frobnicate'", 2)
    one_line(_inprocess.run_cli("ctl", "nodes", "--bogus"), "supervit ctl nodes: error: No such option '--bogus'", 2)


def test_node_port_in_use_says_address_already_in_use(tmp_path: Path, taken_port: int) -> None:
    result = run_cli("node", "--config", str(node_toml(tmp_path, port=taken_port)))
    line = one_line(result, f"supervit node: error: cannot listen on 127.0.0.1:{taken_port}: ", 1, logs=True)
    assert "address already in use" in line


def test_supervisor_port_in_use_says_address_already_in_use(tmp_path: Path, taken_port: int) -> None:
    result = run_cli("supervisor", "--config", str(supervisor_toml(tmp_path, listen=f"127.0.0.1:{taken_port}")))
    line = one_line(result, f"supervit supervisor: error: cannot listen on 127.0.0.1:{taken_port}: ", 1, logs=True)
    assert "address already in use" in line


def test_invalid_tls_files_are_configuration_errors(tmp_path: Path) -> None:
    """A file that is not a PEM certificate/key: exit 2 naming the key and the file (not "cannot listen")."""
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    result = run_cli("node", "--config", str(node_toml(tmp_path, extra=f'tls_cert = "{bad}"\ntls_key = "{bad}"')))
    line = one_line(result, "supervit node: error: supervisor.supervisord.tls_cert: ", 2)
    assert str(bad) in line and "PEM certificate" in line
    result = run_cli(
        "supervisor", "--config", str(supervisor_toml(tmp_path, extra=f'tls_cert = "{bad}"\ntls_key = "{bad}"'))
    )
    one_line(result, "supervit supervisor: error: server.tls_cert: ", 2)


def test_invalid_tls_key_names_the_key_file(tmp_path: Path) -> None:
    from tests.tls_certs import generate_tls_files

    files = generate_tls_files(tmp_path / "tls")
    extra = f'tls_cert = "{files.server_cert}"\ntls_key = "{files.client_key}"'  # a key of another certificate
    result = run_cli("node", "--config", str(node_toml(tmp_path, extra=extra)))
    line = one_line(result, "supervit node: error: supervisor.supervisord.tls_key: ", 2)
    assert str(files.client_key) in line


def test_daemons_refuse_the_published_example_secret(tmp_path: Path) -> None:
    """One line naming the key and saying how to make a secret; nothing started."""
    result = run_cli("node", "--config", str(node_toml(tmp_path, secret=EXAMPLE_SECRET_HEX)))
    line = one_line(result, "supervit node: error: supervisor.client.shared_secret: is the published example", 2)
    assert "secrets.token_hex(32)" in line and EXAMPLE_SECRET_HEX not in line
    assert not (tmp_path / "data").exists()
    result = run_cli("supervisor", "--config", str(supervisor_toml(tmp_path, fleet=EXAMPLE_SECRET_HEX)))
    one_line(result, "supervit supervisor: error: fleet.shared_secret: is the published example", 2)
    env = clean_env(SUPERVIT_NODE_SECRETS=f"edge-1={EXAMPLE_SECRET_HEX}")
    result = run_cli("supervisor", "--config", str(supervisor_toml(tmp_path)), env=env)
    one_line(result, "supervit supervisor: error: node_secrets.edge-1: is the published example", 2)


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("127.0.0.1", "missing port"),
        ("edge.example.org", "missing port"),
        ("http://127.0.0.1", "missing port"),
        ("[::1]", "missing port"),
        ("::1:50055", "brackets"),
        ("ftp://h:1", "scheme"),
        ("127.0.0.1:0", "1-65535"),
    ],
)
def test_ctl_addresses_without_a_port_are_refused(address: str, words: str) -> None:
    result = _inprocess.run_cli(
        "ctl", "realm", "list", "--node", address, "--node-id", "n", "--shared-secret", SECRET_HEX
    )
    line = one_line(result, "supervit ctl realm list: error: Invalid value for --node: ", 2)
    assert words in line
    result = _inprocess.run_cli("ctl", "nodes", "--admin", address, "--admin-secret", ADMIN_HEX)
    one_line(result, "supervit ctl nodes: error: Invalid value for --admin: ", 2)


def test_ctl_runtime_failure_exits_1(unused_tcp_port_addr: str) -> None:
    result = run_cli(
        "ctl", "nodes", "--admin", f"http://{unused_tcp_port_addr}", "--admin-secret", ADMIN_HEX, "--timeout", "2"
    )
    line = one_line(result, "supervit ctl nodes: error: ", 1)
    assert unused_tcp_port_addr in line


def test_invalid_config_names_key_with_command_prefix(tmp_path: Path) -> None:
    result = run_cli("node", "--config", str(node_toml(tmp_path, extra="port = 70000")))
    # "port" twice in one table is invalid TOML: the file is named.
    one_line(result, f"supervit node: error: {tmp_path / 'node.toml'}: invalid TOML", 2)
    result = run_cli("node", "--config", str(tmp_path / "missing.toml"))
    one_line(result, f"supervit node: error: {tmp_path / 'missing.toml'}: config file not found", 2)
