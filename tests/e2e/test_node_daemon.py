"""``supervit node`` as a real process: every RPC over gRPC, auth refusals, restarts, kill -9, exit codes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import grpc
import pytest

from supervit.auth import SharedSecret
from supervit.metrics import PWRZV_SIGMOIDS
from supervit.protocol import common_pb2, supervised_pb2, supervisor_pb2
from supervit.testing import SupervisorDouble
from tests.conftest import OTHER_SECRET_HEX, SECRET_HEX
from tests.node._helpers import NodeClient, status_of

pytestmark = pytest.mark.e2e
sd = supervised_pb2
NODE = "e2e-node"
LISTENING = "supervit node listening on "


def write_config(
    directory: Path, *, data_dir: Path | None = None, extra: str = "", endpoint: str = "", model: str = ""
) -> Path:
    """A node config on 127.0.0.1, port 0, debug logging; serve-only unless ``endpoint`` is given."""
    path = directory / "node.toml"
    path.write_text(
        f"""
[supervisor]
status_report_interval_secs = 1

[supervisor.metrics]
listen = "127.0.0.1:0"

[supervisor.client]
node_id = "{NODE}"
shared_secret = "{SECRET_HEX}"
{f'endpoint = "{endpoint}"' if endpoint else ""}
{f'power_model = "{model}"' if model else ""}

[supervisor.supervisord]
node_name = "E2E Node"
ip = "127.0.0.1"
port = 0
data_dir = "{data_dir or directory / "data"}"
location_tag = "lab"
log_level = "debug"
shutdown_grace_secs = 2
{extra}

[[supervisor.supervisord.services]]
name = "turn-a"
type = "TURN"
port = 3478
"""
    )
    return path


def clean_env() -> dict[str, str]:
    # Our own SUPERVIT_* variables would override the file under test.
    return {k: v for k, v in os.environ.items() if not k.startswith("SUPERVIT_")}


class Daemon:
    """One ``python -m supervit node`` process; logs go to ``stderr.log``."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = {**clean_env(), **(env or {})}
        self.log_path = config.parent / "stderr.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.address = ""
        self._log: IO[bytes] | None = None

    async def start(self) -> str:
        self._log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "supervit",
            "node",
            "--config",
            str(self.config),
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            env=self.env,
        )
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 10)).decode()
        assert line.startswith(LISTENING), f"unexpected first line {line!r}; log:\n{self.log()}"
        self.address = line.removeprefix(LISTENING).strip()
        return self.address

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self) -> int:
        """Reap the process (at most 8 s) and return its exit code."""
        assert self.proc is not None
        try:
            await asyncio.wait_for(self.proc.communicate(), 8)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
        if self.proc is not None:
            await self.wait()


@pytest.fixture
async def daemons() -> AsyncIterator[list[Daemon]]:
    """Every Daemon appended here is killed (if still running) and reaped after the test."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        await daemon.close()


async def start_daemon(daemons: list[Daemon], config: Path, env: dict[str, str] | None = None) -> Daemon:
    daemon = Daemon(config, env)
    daemons.append(daemon)
    await daemon.start()
    return daemon


def realm_request(realm_id: int) -> sd.CreateRealmRequest:
    return sd.CreateRealmRequest(
        realm_id=realm_id,
        name=f"realm-{realm_id}-" + "x" * (realm_id % 17),
        enabled=bool(realm_id % 2),
        use_servers=[common_pb2.TURN, common_pb2.STUN][: realm_id % 3],
        version=realm_id * 10,
        expires_at=1_900_000_000 + realm_id,
    )


async def test_every_rpc_auth_refusals_and_sigterm(tmp_path: Path, daemons: list[Daemon]) -> None:
    """All nine RPCs work with valid credentials; replay/stale/wrong-secret/missing-field are refused and
    the daemon keeps answering; SIGTERM exits 0; the secret never appears in the (debug) log."""
    daemon = await start_daemon(daemons, write_config(tmp_path))
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        client = NodeClient(channel, node_id=NODE)
        created = await client.call(realm_request(1))
        assert created.success and created.realm.status == "Normal"
        assert (await client.call(sd.GetRealmRequest(realm_id=1))).realm == created.realm
        updated = await client.call(sd.UpdateRealmRequest(realm_id=1, name="renamed"))
        assert updated.realm.name == "renamed" and updated.realm.enabled == created.realm.enabled
        await client.call(realm_request(2))
        listed = await client.call(sd.ListRealmsRequest())
        assert listed.total_count == 2 and [r.realm_id for r in listed.realms] == [1, 2]
        assert (await client.call(sd.DeleteRealmRequest(realm_id=2))).success
        set_level = sd.UpdateConfigRequest(
            config_type=common_pb2.LOG_LEVEL, config_key="log_level", config_value="info", apply_immediately=True
        )
        assert (await client.call(set_level)).success
        got = await client.call(sd.GetConfigRequest(config_type=common_pb2.LOG_LEVEL, config_key="log_level"))
        assert got.config_value == "info"
        info = await client.call(sd.GetNodeInfoRequest())
        assert (info.node_id, info.name, info.location_tag) == (NODE, "E2E Node", "lab")
        assert info.current_metrics.memory_total_bytes > 0 and [s.name for s in info.services] == ["turn-a"]

        replay = client.sign(sd.GetRealmRequest(realm_id=1))
        assert (await client.call(replay, sign=False)).success
        refusals: list[tuple[Any, dict[str, Any], str]] = [
            (replay, {"sign": False}, "nonce already used"),
            (sd.GetRealmRequest(realm_id=1), {"timestamp": int(time.time()) - 3600}, "timestamp out of range"),
        ]
        for request, kwargs, message in refusals:
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await client.call(request, **kwargs)
            assert status_of(exc) == (grpc.StatusCode.UNAUTHENTICATED, message)
        stranger = NodeClient(channel, node_id=NODE, secret=SharedSecret.from_hex(OTHER_SECRET_HEX))
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stranger.call(sd.ListRealmsRequest())
        assert status_of(exc) == (grpc.StatusCode.UNAUTHENTICATED, "invalid signature")
        partial = client.sign(sd.CreateRealmRequest(realm_id=5, name="x", enabled=True, version=1))
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await client.raw("CreateRealm", partial.SerializePartialToString())
        code, details = status_of(exc)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "expires_at" in details

        assert (await client.call(sd.ListRealmsRequest())).total_count == 1  # still answering
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    log = daemon.log()
    assert "stopped" in log and SECRET_HEX not in log


async def test_realms_and_config_survive_restart(tmp_path: Path, daemons: list[Daemon]) -> None:
    """What one daemon process stored, the next one (same data_dir) serves."""
    config = write_config(tmp_path)
    first = await start_daemon(daemons, config)
    async with grpc.aio.insecure_channel(first.address) as channel:
        client = NodeClient(channel, node_id=NODE)
        for realm_id in (3, 4):
            await client.call(realm_request(realm_id))
        await client.call(
            sd.UpdateConfigRequest(
                config_type=common_pb2.TURN_REALM, config_key="realm", config_value="t.example", apply_immediately=False
            )
        )
    first.signal(signal.SIGTERM)
    assert await first.wait() == 0

    second = await start_daemon(daemons, config)
    async with grpc.aio.insecure_channel(second.address) as channel:
        client = NodeClient(channel, node_id=NODE)
        listed = await client.call(sd.ListRealmsRequest())
        assert listed.total_count == 2
        assert [r.name for r in listed.realms] == [realm_request(3).name, realm_request(4).name]
        got = await client.call(sd.GetConfigRequest(config_type=common_pb2.TURN_REALM, config_key="realm"))
        assert got.config_value == "t.example"


async def test_kill_9_leaves_no_half_written_realm(tmp_path: Path, daemons: list[Daemon]) -> None:
    """kill -9 during a stream of CreateRealm calls: after restart every realm present is complete and
    exactly as sent, every acknowledged one is present, and total_count matches."""
    config = write_config(tmp_path)
    daemon = await start_daemon(daemons, config)
    acknowledged: set[int] = set()
    enough = asyncio.Event()

    async def writer(client: NodeClient, start: int) -> None:
        realm_id = start
        while True:
            try:
                response = await client.call(realm_request(realm_id), deadline=3)
            except grpc.aio.AioRpcError:
                return  # the daemon is gone
            assert response.success
            acknowledged.add(realm_id)
            if len(acknowledged) >= 400:
                enough.set()
            realm_id += 8

    async with grpc.aio.insecure_channel(daemon.address) as channel:
        client = NodeClient(channel, node_id=NODE)
        writers = [asyncio.create_task(writer(client, start)) for start in range(1, 9)]
        await asyncio.wait_for(enough.wait(), 8)
        daemon.signal(signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*writers), 8)
    assert await daemon.wait() == -signal.SIGKILL

    restarted = await start_daemon(daemons, config)
    async with grpc.aio.insecure_channel(restarted.address) as channel:
        listed = await NodeClient(channel, node_id=NODE).call(sd.ListRealmsRequest())
    present = {realm.realm_id: realm for realm in listed.realms}
    assert listed.total_count == len(present)
    assert acknowledged <= set(present)
    for realm_id, realm in present.items():
        sent = realm_request(realm_id)
        assert (realm.name, realm.enabled, list(realm.use_servers), realm.version, realm.expires_at) == (
            sent.name,
            sent.enabled,
            list(sent.use_servers),
            sent.version,
            sent.expires_at,
        )
        assert realm.status == "Normal" and realm.created_at > 0


async def test_registers_reports_and_obeys_graceful_shutdown(tmp_path: Path, daemons: list[Daemon]) -> None:
    """With an endpoint the node registers (agent_addr = the bound address, configured services),
    reports, and exits 0 after a GRACEFUL_SHUTDOWN directive."""
    async with SupervisorDouble(SharedSecret.from_hex(SECRET_HEX)) as supervisor:
        supervisor.queue_directive(supervisor_pb2.GRACEFUL_SHUTDOWN, "rollout")
        daemon = await start_daemon(daemons, write_config(tmp_path, endpoint=supervisor.endpoint))
        assert await daemon.wait() == 0
        (registration,) = supervisor.registrations()
        assert registration.node_id == NODE and registration.agent_addr == daemon.address
        assert [s.name for s in registration.services] == ["turn-a"]
        assert supervisor.reports() and supervisor.reports()[0].node_id == NODE
    assert "GRACEFUL_SHUTDOWN directive (rollout)" in daemon.log()


PWRZV_FLAT = {f"{prefix}_STEEPNESS": "0" for prefix, _, _ in PWRZV_SIGMOIDS.values()}


@pytest.mark.parametrize(
    ("model", "env", "levels"),
    [
        ("pwrzv", {}, set(range(6))),
        # Every sigmoid flat (steepness 0): each pwrzv score is 5 * (1 - 0.5) = 2.5, rounded half up
        # to 3 whatever this machine's load: proves the node process honours PWRZV_* overrides.
        ("pwrzv", PWRZV_FLAT, {3}),
        ("supervit", PWRZV_FLAT, set(range(6))),
    ],
    ids=["pwrzv", "pwrzv-overridden", "supervit"],
)
async def test_reports_a_real_power_reserve_level(
    tmp_path: Path, daemons: list[Daemon], model: str, env: dict[str, str], levels: set[int]
) -> None:
    """A real node measures this machine and registers and reports a level in 0..5 with either model."""
    async with SupervisorDouble(SharedSecret.from_hex(SECRET_HEX)) as supervisor:
        supervisor.queue_directive(supervisor_pb2.GRACEFUL_SHUTDOWN, "done")
        config = write_config(tmp_path, endpoint=supervisor.endpoint, model=model)
        daemon = await start_daemon(daemons, config, env)
        assert await daemon.wait() == 0, daemon.log()
        (registration,) = supervisor.registrations()
        assert registration.power_reserve_level_init in levels
        assert supervisor.reports() and all(r.power_reserve_level in levels for r in supervisor.reports())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_exits_zero(tmp_path: Path, daemons: list[Daemon], sig: signal.Signals) -> None:
    """SIGTERM and SIGINT stop the daemon gracefully with exit code 0."""
    daemon = await start_daemon(daemons, write_config(tmp_path))
    daemon.signal(sig)
    assert await daemon.wait() == 0
    assert f"stopping: signal {sig.name}" in daemon.log()


@pytest.mark.parametrize("graceful", [True, False], ids=["graceful", "immediate"])
async def test_shutdown_rpc_exits_zero(tmp_path: Path, daemons: list[Daemon], graceful: bool) -> None:
    """An accepted Shutdown RPC stops the process with exit code 0."""
    daemon = await start_daemon(daemons, write_config(tmp_path))
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        request = sd.ShutdownRequest(graceful=graceful, timeout_secs=1, reason="e2e")
        response = await NodeClient(channel, node_id=NODE).call(request)
    assert response.accepted
    assert await daemon.wait() == 0
    assert "Shutdown RPC (e2e)" in daemon.log()


@pytest.mark.parametrize(
    ("extra", "env", "key"),
    [
        ("max_message_bytes = 10", {}, "supervisor.supervisord.max_message_bytes"),
        ("", {"SUPERVIT_SUPERVISOR__SUPERVISORD__PORT": "70000"}, "supervisor.supervisord.port"),
        ("", {"SUPERVIT_SUPERVISOR__CLIENT__SHARED_SECRET": "abc"}, "supervisor.client.shared_secret"),
        ('tls_cert = "/nonexistent/c.pem"\ntls_key = "/nonexistent/k.pem"', {}, "supervisor.supervisord.tls_cert"),
        ("", {"SUPERVIT_SUPERVISOR__CLIENT__POWER_MODEL": "rust"}, "supervisor.client.power_model"),
    ],
    ids=["toml", "env-port", "env-secret", "tls-file", "env-power-model"],
)
async def test_invalid_config_exits_2_with_one_line(tmp_path: Path, extra: str, env: dict[str, str], key: str) -> None:
    """Invalid configuration: exit 2, one stderr line naming the key, nothing started (no data dir)."""
    config = write_config(tmp_path, extra=extra)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "supervit",
        "node",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean_env(), **env},
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 10)
    lines = stderr.decode().splitlines()
    assert proc.returncode == 2 and stdout == b""
    assert len(lines) == 1 and lines[0].startswith("supervit node: error: ") and key in lines[0], lines
    assert "abc" not in lines[0] or key != "supervisor.client.shared_secret"
    assert not (tmp_path / "data").exists()
