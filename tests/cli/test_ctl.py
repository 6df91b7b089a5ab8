"""`supervit ctl` against an in-process node (NodeDaemon) and supervisor.

ctl runs through ``main()`` in process (tests/cli/_inprocess.py): the same parsing, calls, output
and exit codes as ``python -m supervit ctl``. Secrets read from the environment and files, with the
warning a loose secret file gets, run as real subprocesses (the process's own environment, stderr
and logging set-up), as do ctl's calls in tests/e2e.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from supervit.config import load_node_config
from supervit.metrics import StaticMetricsProvider
from supervit.node import NodeDaemon
from supervit.protocol import common_pb2, supervisor_pb2
from supervit.supervisor import Supervisor, load_supervisor_config
from tests.cli._inprocess import run_cli_in_thread
from tests.conftest import OTHER_SECRET_HEX, SECRET_HEX
from tests.supervisor.conftest import NodeSim

ADMIN_HEX = "ad" * 32
METRICS = common_pb2.SystemMetrics(
    cpu_usage_percent=12.0,
    memory_used_bytes=512 * 2**20,
    memory_total_bytes=2**30,
    memory_usage_percent=50.0,
    network_rx_bytes=0,
    network_tx_bytes=0,
    disk_used_bytes=1,
    disk_total_bytes=2,
    load_average_1m=0.25,
)


@dataclass
class Result:
    code: int
    out: str
    err: str


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVIT_")}
    env.update(extra)
    return env


async def supervit(*args: str, env: dict[str, str] | None = None) -> Result:
    """``supervit ARGS`` through ``main()`` in a worker thread while this loop serves the node/supervisor."""
    done = await run_cli_in_thread(*args, env=clean_env() if env is None else env)
    return Result(done.returncode, done.stdout, done.stderr)


async def supervit_subprocess(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``python -m supervit ARGS`` without blocking the loop that serves the node/supervisor."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "supervit",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env() if env is None else env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeDaemon]:
    data = {
        "supervisor": {
            "metrics": {"listen": "127.0.0.1:0"},
            "client": {"node_id": "n1", "shared_secret": SECRET_HEX},
            "supervisord": {
                "ip": "127.0.0.1",
                "port": 0,
                "data_dir": str(tmp_path / "node"),
                "shutdown_grace_secs": 0,
                "services": [{"name": "turn-main", "type": "TURN", "port": 3478}],
            },
        }
    }
    daemon = NodeDaemon(load_node_config(data=data, environ={}), metrics=StaticMetricsProvider(METRICS, 4))
    await daemon.start()
    yield daemon
    await daemon.stop(0)


def node_args(daemon: NodeDaemon, secret: str = SECRET_HEX) -> list[str]:
    return ["--node", daemon.address, "--node-id", "n1", "--shared-secret", secret]


async def test_realm_lifecycle(node: NodeDaemon) -> None:
    args = node_args(node)
    created = await supervit("ctl", "realm", "create", "7", "--name", "seven", "--use-servers", "turn,STUN", *args)
    assert created.code == 0, created.err
    assert "seven" in created.out and "TURN,STUN" in created.out and created.out.startswith("ID")
    got = await supervit("ctl", "realm", "get", "7", "--json", *args)
    doc = json.loads(got.out)
    assert doc["name"] == "seven" and doc["use_servers"] == ["TURN", "STUN"] and doc["status"] == "Normal"
    updated = await supervit("ctl", "realm", "update", "7", "--disable", "--name", "siete", *args)
    assert updated.code == 0 and "siete" in updated.out and " no " in updated.out
    await supervit("ctl", "realm", "create", "8", "--name", "eight", "--version", "5", *args)
    listed = await supervit("ctl", "realm", "list", "--page-size", "1", "--json", *args)
    doc = json.loads(listed.out)
    assert [r["realm_id"] for r in doc["realms"]] == [7, 8] and doc["total_count"] == 2
    table = await supervit("ctl", "realm", "list", *args)
    assert table.out.splitlines()[0].split() == ["ID", "NAME", "ENABLED", "STATUS", "VERSION", "SERVERS", "EXPIRES"]
    deleted = await supervit("ctl", "realm", "delete", "7", *args)
    assert deleted.code == 0 and "realm 7 deleted" in deleted.out
    missing = await supervit("ctl", "realm", "get", "7", *args)
    assert missing.code == 1 and missing.out == ""
    assert (
        missing.err.strip()
        == f"supervit ctl realm get: error: GetRealm failed on node n1 at {node.address}: Realm 7 not found"
    )
    duplicate = await supervit("ctl", "realm", "create", "8", "--name", "x", *args)
    assert duplicate.code == 1 and "already exists" in duplicate.err and len(duplicate.err.splitlines()) == 1


@pytest.fixture
def restore_log_levels() -> Iterator[None]:
    """The in-process node applies LOG_LEVEL to this process's root and supervit loggers: undo it.

    (Left at DEBUG, grpc's debug logging in later tests keeps grpc objects alive in captured log
    records until after their event loop closed, and collecting them then crashes grpc.)
    """
    loggers = [logging.getLogger(), logging.getLogger("supervit")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.mark.usefixtures("restore_log_levels")
async def test_config_get_set_with_env_and_node_toml(node: NodeDaemon, tmp_path: Path) -> None:
    """The secret from SUPERVIT_SHARED_SECRET; address, id and secret from the node's TOML file."""
    env = clean_env(SUPERVIT_SHARED_SECRET=SECRET_HEX, SUPERVIT_NODE=node.address, SUPERVIT_NODE_ID="n1")
    set_ = await supervit("ctl", "config", "set", "log_level", "root", "DEBUG", env=env)
    assert set_.code == 0, set_.err
    assert set_.out.strip() == "LOG_LEVEL root: (unset) -> debug (applied)"  # what the node stored
    toml = tmp_path / "node.toml"
    toml.write_text(
        f'[supervisor.client]\nnode_id = "n1"\nshared_secret = "{SECRET_HEX}"\n'
        f'[supervisor.supervisord]\nip = "127.0.0.1"\nport = {node.port}\n'
    )
    got = await supervit("ctl", "config", "get", "3", "root", "--config", str(toml))
    assert got.code == 0 and got.out.strip() == "debug"
    doc = json.loads((await supervit("ctl", "config", "get", "LOG_LEVEL", "root", "--json", env=env)).out)
    assert doc == {"config_type": "LOG_LEVEL", "key": "root", "value": "debug"}
    bad = await supervit("ctl", "config", "set", "LOG_LEVEL", "root", "loud", env=env)
    assert bad.code == 1 and "invalid LOG_LEVEL value" in bad.err
    unknown = await supervit("ctl", "config", "get", "COLOUR", "x", env=env)
    assert unknown.code == 2 and "unknown config type" in unknown.err


async def test_node_info_and_shutdown(node: NodeDaemon) -> None:
    info = await supervit("ctl", "node", "info", *node_args(node))
    assert info.code == 0 and "n1" in info.out and "turn-main" in info.out and "50.0% of 1024 MiB" in info.out
    doc = json.loads((await supervit("ctl", "node", "info", "--json", *node_args(node))).out)
    assert doc["node_id"] == "n1" and doc["current_metrics"]["cpu_usage_percent"] == 12.0
    down = await supervit("ctl", "node", "shutdown", "--grace", "0", "--reason", "test", *node_args(node))
    assert down.code == 0 and "accepted the shutdown" in down.out
    assert node.stop_requested


async def test_errors_are_one_line(node: NodeDaemon) -> None:
    wrong = await supervit("ctl", "node", "info", *node_args(node, OTHER_SECRET_HEX))
    assert wrong.code == 1 and wrong.err.count("\n") == 1
    assert f"node n1 at {node.address} refused the credential: invalid signature" in wrong.err
    gone = await supervit(
        "ctl",
        "node",
        "info",
        "--timeout",
        "2",
        "--node",
        "127.0.0.1:9",
        "--node-id",
        "x",
        env=clean_env(SUPERVIT_SHARED_SECRET=SECRET_HEX),
    )
    assert gone.code == 1 and "cannot reach node x at 127.0.0.1:9" in gone.err and gone.err.count("\n") == 1
    missing = await supervit("ctl", "realm", "list", "--node", node.address)
    assert missing.code == 2 and "--node-id" in missing.err and "--shared-secret" in missing.err
    short = await supervit("ctl", "realm", "list", "--node", node.address, "--node-id", "n1", "--shared-secret", "ab")
    assert short.code == 2 and "--shared-secret" in short.err


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    data = {
        "server": {"listen": "127.0.0.1:0", "data_dir": str(tmp_path / "sup"), "shutdown_grace_secs": 0},
        # A long interval: slow ctl subprocesses on a loaded machine must not let n1 go offline
        # (pushes skip offline nodes) between its simulated report and the catalog change.
        "fleet": {"shared_secret": SECRET_HEX, "report_interval_secs": 60},
        "admin": {"listen": "127.0.0.1:0", "secret": ADMIN_HEX},
        "metrics": {"listen": "127.0.0.1:0"},
    }
    sup = Supervisor(load_supervisor_config(data=data, environ={}))
    await sup.start()
    yield sup
    await sup.stop(0)


async def test_admin_commands(supervisor: Supervisor, node: NodeDaemon, tmp_path: Path) -> None:
    async with grpc.aio.insecure_channel(supervisor.address) as channel:
        sim = NodeSim(channel, "n1", agent_addr=node.address)
        await sim.register()
        await sim.report(power=3)
        env = clean_env(SUPERVIT_ADMIN_ADDR=supervisor.admin_address or "", SUPERVIT_ADMIN_SECRET=ADMIN_HEX)
        empty = await supervit("ctl", "catalog", "list", env=env)
        assert empty.code == 0 and "catalog version 0, 0 realm(s)" in empty.out
        added = await supervit("ctl", "catalog", "realm", "add", "1", "--name", "one", "--use-servers", "TURN", env=env)
        assert added.code == 0 and "catalog version 1" in added.out, added.err
        await supervisor.pusher.wait_idle()
        assert node.supervisord is not None and await node.supervisord.realm_store.max_realm_version() == 1
        await sim.report(realm_sync_version=1)
        listing = await supervit("ctl", "nodes", env=env)
        assert listing.code == 0, listing.err
        header, row = listing.out.splitlines()[:2]
        assert header.split()[:3] == ["NODE", "NAME", "STATE"]
        assert row.startswith("n1") and "online" in row and "v1 in sync" in row and node.address in row
        updated = await supervit("ctl", "catalog", "realm", "update", "1", "--disable", "--json", env=env)
        assert json.loads(updated.out)["realm"]["version"] == "2"  # uint64 is a string in proto JSON
        queued = await supervit("ctl", "directive", "n1", "request-full-report", env=env)
        assert queued.code == 0 and "queued REQUEST_FULL_REPORT" in queued.out
        assert (await sim.report()).directive.type == supervisor_pb2.REQUEST_FULL_REPORT
        bad = await supervit("ctl", "directive", "n1", "adjust_interval", "soon", env=env)
        assert bad.code == 1 and "ADJUST_INTERVAL" in bad.err
        removed = await supervit("ctl", "catalog", "realm", "remove", "1", env=env)
        assert removed.code == 0 and "catalog version 3" in removed.out
        doc = json.loads((await supervit("ctl", "nodes", "--json", env=env)).out)
        assert doc["nodes"][0]["node_id"] == "n1" and doc["catalog_version"] == "3"

    # --config supervisor.toml gives address and secret.
    toml = tmp_path / "supervisor.toml"
    toml.write_text(f'[admin]\nlisten = "{supervisor.admin_address}"\nsecret = "{ADMIN_HEX}"\n')
    via_file = await supervit("ctl", "nodes", "--config", str(toml))
    assert via_file.code == 0 and "n1" in via_file.out
    wrong = await supervit("ctl", "nodes", "--admin", supervisor.admin_address or "", "--admin-secret", SECRET_HEX)
    assert wrong.code == 1 and "refused the credential: invalid signature" in wrong.err


async def test_ctl_reads_the_daemons_variable_names_and_secret_files(
    supervisor: Supervisor, node: NodeDaemon, tmp_path: Path
) -> None:
    """The README's exports work as they are: ctl reads SUPERVIT_ADMIN__SECRET & co. like the
    daemons (old names stay aliases); secrets also come from files; --admin/--node override a
    config's port 0; addresses may be http://host:port; JSON lists are always present."""
    assert supervisor.admin_address is not None
    env = clean_env(SUPERVIT_ADMIN__LISTEN=supervisor.admin_address, SUPERVIT_ADMIN__SECRET=ADMIN_HEX)
    empty = await supervit("ctl", "catalog", "list", "--json", env=env)
    assert empty.code == 0, empty.err
    assert json.loads(empty.out)["realms"] == []
    assert json.loads((await supervit("ctl", "nodes", "--json", env=env)).out)["nodes"] == []

    secret_file = tmp_path / "admin.secret"
    secret_file.write_text(ADMIN_HEX + "\n")
    secret_file.chmod(0o600)
    env = clean_env(SUPERVIT_ADMIN__SECRET_FILE=str(secret_file))
    quiet = await supervit_subprocess("ctl", "nodes", "--admin", f"http://{supervisor.admin_address}", env=env)
    assert quiet.code == 0 and quiet.err == "", quiet.err
    secret_file.chmod(0o644)
    loose = await supervit_subprocess("ctl", "nodes", "--admin", supervisor.admin_address, env=env)
    assert loose.code == 0 and f"chmod 600 {secret_file}" in loose.err
    assert loose.err.startswith("supervit ctl nodes: warning: --admin-secret-file: secret file ")

    port_zero = tmp_path / "supervisor.toml"
    port_zero.write_text(f'[admin]\nlisten = "127.0.0.1:0"\nsecret_file = "{secret_file}"\n')
    refused = await supervit("ctl", "nodes", "--config", str(port_zero))
    assert refused.code == 2 and "give the actual address with --admin" in refused.err
    overridden = await supervit("ctl", "nodes", "--config", str(port_zero), "--admin", supervisor.admin_address)
    assert overridden.code == 0, overridden.err

    async with grpc.aio.insecure_channel(supervisor.address) as channel:
        await NodeSim(channel, "n1", agent_addr=node.address).register()
    queued = await supervit("ctl", "directive", "n1", "request-full-report", "--config", str(port_zero),
                            "--admin", supervisor.admin_address)  # fmt: skip
    assert queued.code == 0, queued.err
    assert "delivered at n1's next report" in queued.out

    node_env = clean_env(
        SUPERVIT_SUPERVISOR__CLIENT__AGENT_ADDR=f"http://{node.address}",
        SUPERVIT_SUPERVISOR__CLIENT__NODE_ID="n1",
        SUPERVIT_SUPERVISOR__CLIENT__SHARED_SECRET=SECRET_HEX,
    )
    listed = await supervit("ctl", "realm", "list", "--json", env=node_env)
    assert listed.code == 0, listed.err
    assert json.loads(listed.out) == {"realms": [], "total_count": 0}
    node_secret = tmp_path / "node.secret"
    node_secret.write_text(SECRET_HEX)
    node_secret.chmod(0o600)
    toml = tmp_path / "node.toml"
    toml.write_text(
        f'[supervisor.client]\nnode_id = "n1"\nshared_secret_file = "{node_secret}"\n'
        '[supervisor.supervisord]\nip = "0.0.0.0"\nport = 0\n'
    )
    refused = await supervit("ctl", "node", "info", "--config", str(toml))
    assert refused.code == 2 and "give the node's actual address with --node" in refused.err
    info = await supervit("ctl", "node", "info", "--json", "--config", str(toml), "--node", node.address)
    assert info.code == 0, info.err
    assert json.loads(info.out)["node_id"] == "n1"
    by_file = await supervit("ctl", "node", "info", "--node", node.address, "--node-id", "n1",
                             "--shared-secret-file", str(node_secret))  # fmt: skip
    assert by_file.code == 0, by_file.err
    both = await supervit("ctl", "node", "info", "--node", node.address, "--node-id", "n1",
                          "--shared-secret-file", str(node_secret), "--shared-secret", SECRET_HEX)  # fmt: skip
    assert both.code == 2 and "not both" in both.err
