"""The original's examples, in Python (examples/seed/), run as written against ``supervit supervisor``."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.cli._inprocess import run_cli_in_thread
from tests.conftest import EXAMPLE_SECRET_HEX
from tests.e2e.test_fleet import ADMIN_HEX, SUP_ADMIN, SUP_LISTENING, Proc, clean_env
from tests.e2e.test_node_daemon import LISTENING as NODE_LISTENING

pytestmark = pytest.mark.e2e

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"


async def run(*args: str, env: dict[str, str], cwd: Path, within: float = 60) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd
    )
    out, err = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# The seed configs leave the metrics listeners at their defaults (9464/9465): tests must never
# take fixed ports (parallel workers, other daemons on the machine), so they get free ones.
FREE_METRICS_PORTS = {"SUPERVIT_METRICS__LISTEN": "127.0.0.1:0", "SUPERVIT_SUPERVISOR__METRICS__LISTEN": "127.0.0.1:0"}


async def seed_supervisor(tmp_path: Path, *extra: str) -> Proc:
    """examples/seed/supervisor.toml on free ports (environment overrides), admin enabled."""
    proc = Proc("supervisor", ["supervisor", "--config", str(SEED / "supervisor.toml"), *extra], tmp_path / "sup.log")
    env = {
        **clean_env(),
        **FREE_METRICS_PORTS,
        "SUPERVIT_SERVER__LISTEN": "127.0.0.1:0",
        "SUPERVIT_SERVER__DATA_DIR": str(tmp_path / "sup"),
        "SUPERVIT_ADMIN__LISTEN": "127.0.0.1:0",
        "SUPERVIT_ADMIN__SECRET": ADMIN_HEX,
    }
    await proc.start(SUP_LISTENING, SUP_ADMIN, env=env)
    return proc


async def admin_nodes(proc: Proc, cwd: Path) -> str:
    """``supervit ctl nodes`` as a real subprocess."""
    admin = proc.lines[SUP_ADMIN]
    code, out, err = await run(
        sys.executable, "-m", "supervit", "ctl", "nodes", "--admin", admin, "--admin-secret", ADMIN_HEX,
        env=clean_env(), cwd=cwd,
    )  # fmt: skip
    assert code == 0, err
    return out


async def admin_nodes_in_process(proc: Proc) -> str:
    """``supervit ctl nodes`` through ``main()`` in process: for polling (tests/cli/_inprocess.py)."""
    done = await run_cli_in_thread("ctl", "nodes", "--admin", proc.lines[SUP_ADMIN], "--admin-secret", ADMIN_HEX,
                                   env=clean_env())  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_seed_supervisor_needs_the_explicit_example_secret_opt_in(tmp_path: Path) -> None:
    code, _, err = await run(
        sys.executable, "-m", "supervit", "supervisor", "--config", str(SEED / "supervisor.toml"),
        env=clean_env(), cwd=tmp_path,
    )  # fmt: skip
    assert code == 2 and err.strip().splitlines()[-1].startswith(
        "supervit supervisor: error: fleet.shared_secret: is the published example secret"
    )


async def test_seed_client_example_runs_as_written(tmp_path: Path) -> None:
    """client.py: SupervitConfig(node_id, endpoint, shared_secret) with the original's defaults
    connects, reports and health-checks; agent_addr 0.0.0.0:50055 is advertised as 127.0.0.1:50055."""
    sup = await seed_supervisor(tmp_path, "--allow-example-secret")
    try:
        endpoint = f"http://{sup.lines[SUP_LISTENING]}"
        code, out, err = await run(sys.executable, str(SEED / "client.py"), endpoint, env=clean_env(), cwd=tmp_path)
        assert code == 0, out + err
        assert "Health check: healthy: true" in out
        assert "registered as actrix-01 (agent address 127.0.0.1:50055)" in out
        assert "advertising 127.0.0.1:50055" in err  # the wildcard default is announced, not hidden
        row = next(line for line in (await admin_nodes(sup, tmp_path)).splitlines() if line.startswith("actrix-01"))
        assert "127.0.0.1:50055" in row and "actrix-01" in row.split()[1]  # name defaults to node_id
        assert "example secret is in use" in sup.log()
    finally:
        await sup.stop()


async def test_seed_supervisord_example_serves_ctl(tmp_path: Path) -> None:
    """supervisord.py: Supervisord with the original's five arguments (default SQLite stores),
    AuthService with the decoded secret bytes; ctl talks to it with the example secret."""
    env = {**clean_env(), "SUPERVISORD_BIND": "127.0.0.1:0", "TMPDIR": str(tmp_path)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SEED / "supervisord.py"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert process.stdout is not None
    address = ""
    seen: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not address:
                line = (await process.stdout.readline()).decode()
                assert line, "\n".join(seen)
                seen.append(line.rstrip())
                if "Supervisord gRPC server listening on " in line:
                    address = line.split("listening on ")[1].strip()
        ctl = [sys.executable, "-m", "supervit", "ctl"]
        target = ["--node", address, "--node-id", "example-node-01", "--shared-secret", EXAMPLE_SECRET_HEX]
        code, out, err = await run(*ctl, "node", "info", *target, env=clean_env(), cwd=tmp_path)
        assert code == 0, err
        assert "example-node-01" in out and "Example Node" in out and "local,dev,example" in out
        code, out, err = await run(
            *ctl, "realm", "create", "7", "--name", "demo", *target, env=clean_env(), cwd=tmp_path
        )
        assert code == 0, err
        code, out, err = await run(*ctl, "realm", "get", "7", *target, env=clean_env(), cwd=tmp_path)
        assert code == 0 and "demo" in out, err
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0
    assert await asyncio.to_thread((tmp_path / "supervit-data" / "actrix.db").exists)  # the default data dir
    assert await asyncio.to_thread((tmp_path / "supervit_example" / "nonce.db").exists)  # the temp dir


async def test_seed_node_toml_without_advertised_ip(tmp_path: Path) -> None:
    """The original's TOML without advertised_ip: accepted (127.0.0.1 advertised, with a warning),
    registers with the supervisor; refused without the example-secret opt-in."""
    refused = await run(
        sys.executable, "-m", "supervit", "node", "--config", str(SEED / "node.toml"), env=clean_env(), cwd=tmp_path
    )
    last = refused[2].strip().splitlines()[-1]
    assert refused[0] == 2 and "supervisor.client.shared_secret: is the published example secret" in last
    assert "advertised_ip" not in last  # the missing advertised_ip is not an error (only a warning)

    sup = await seed_supervisor(tmp_path, "--allow-example-secret")
    node_env = {
        **clean_env(),
        **FREE_METRICS_PORTS,
        "SUPERVIT_SUPERVISOR__SUPERVISORD__PORT": "0",
        "SUPERVIT_SUPERVISOR__STATUS_REPORT_INTERVAL_SECS": "1",
        "SUPERVIT_SUPERVISOR__CLIENT__ENDPOINT": f"http://{sup.lines[SUP_LISTENING]}",
    }
    node = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "supervit", "node", "--config", str(SEED / "node.toml"), "--allow-example-secret",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=node_env, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert node.stdout is not None
        line = (await asyncio.wait_for(node.stdout.readline(), 20)).decode().strip()
        assert line.startswith(NODE_LISTENING + "0.0.0.0:"), line
        port = line.rsplit(":", 1)[1]
        row = ""
        async with asyncio.timeout(20):
            while "online" not in row:
                await asyncio.sleep(0.3)
                listing = await admin_nodes_in_process(sup)
                row = next((r for r in listing.splitlines() if r.startswith("actrix-node-01")), "")
        assert f"127.0.0.1:{port}" in row and "actrix-node" in row
    finally:
        node.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(node.communicate(), 20)
        await sup.stop()
    assert node.returncode == 0, err.decode()
    assert "advertised_ip is not set and ip '0.0.0.0' is a wildcard: advertising 127.0.0.1" in err.decode()
