"""examples/systemd: the units start the real commands with variables the daemons really read."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from supervit.auth import SharedSecret
from supervit.cli import cli
from supervit.config import load_node_config
from supervit.supervisor import load_supervisor_config
from tests.conftest import OTHER_SECRET_HEX, SECRET_HEX

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "examples" / "systemd"


def unit_entries(path: Path) -> dict[str, list[str]]:
    """``Key=Value`` entries of a unit's ``[Service]`` section (repeated keys keep every value)."""
    entries: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            entries.setdefault(key, []).append(value)
    return entries


def environment(entries: dict[str, list[str]], credentials: Path) -> dict[str, str]:
    env = {}
    for item in entries["Environment"]:
        name, _, value = item.partition("=")
        env[name] = value.replace("%d", str(credentials))
    return env


def load_credentials(entries: dict[str, list[str]], credentials: Path, contents: dict[str, str]) -> None:
    """What systemd does for LoadCredential=: a 0400 copy of each file in the credentials dir."""
    credentials.mkdir()
    for item in entries["LoadCredential"]:
        name, _, source = item.partition(":")
        assert source.startswith("/etc/supervit/"), source
        target = credentials / name
        target.write_text(contents[name] + "\n")
        target.chmod(0o400)


def check_command(entries: dict[str, list[str]], command: str) -> None:
    (exec_start,) = entries["ExecStart"]
    words = exec_start.split()
    assert words[0] == "/opt/supervit/bin/supervit" and words[1] == command and words[2] == "--config"
    sub = cli.get_command(cli.make_context("supervit", [command, "--help"], resilient_parsing=True), command)
    assert sub is not None and any("--config" in p.opts for p in sub.params)


def test_node_unit(tmp_path: Path) -> None:
    entries = unit_entries(UNITS / "supervit-node.service")
    check_command(entries, "node")
    load_credentials(entries, tmp_path / "creds", {"node.secret": SECRET_HEX})
    env = environment(entries, tmp_path / "creds")
    config = load_node_config(ROOT / "examples" / "node.toml", environ=env)
    assert config.secret == SharedSecret.from_hex(SECRET_HEX)
    assert str(config.supervisord.data_dir) == entries["StateDirectory"][0].join(("/var/lib/", ""))
    assert entries["RestartPreventExitStatus"] == ["2"] and entries["KillSignal"] == ["SIGTERM"]


def test_supervisor_unit(tmp_path: Path) -> None:
    entries = unit_entries(UNITS / "supervit-supervisor.service")
    check_command(entries, "supervisor")
    load_credentials(entries, tmp_path / "creds", {"fleet.secret": SECRET_HEX, "admin.secret": OTHER_SECRET_HEX})
    env = environment(entries, tmp_path / "creds")
    config = load_supervisor_config(ROOT / "examples" / "supervisor.toml", environ=env)
    assert config.secrets_for("edge-1") == (SharedSecret.from_hex(SECRET_HEX),)
    assert config.admin_secret == SharedSecret.from_hex(OTHER_SECRET_HEX)
    assert str(config.server.data_dir) == "/var/lib/" + entries["StateDirectory"][0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize("unit", ["supervit-node.service", "supervit-supervisor.service"])
def test_units_pass_systemd_analyze_verify(tmp_path: Path, unit: str) -> None:
    """systemd itself accepts every directive (the binary path swapped for one that exists here)."""
    text = (UNITS / unit).read_text().replace("/opt/supervit/bin/supervit", "/bin/true")
    (tmp_path / unit).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    # verify exits 0 even for unknown keys or bad values; it says ", ignoring" for each of them.
    assert "ignoring" not in result.stderr and "Unknown" not in result.stderr, result.stderr
