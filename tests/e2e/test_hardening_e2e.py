"""Issue 10 with real processes: one daemon per data directory, limits from the config file."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest

from supervit.protocol import supervised_pb2
from tests.e2e.test_node_daemon import Daemon, clean_env, daemons, start_daemon, write_config

__all__ = ["daemons"]  # the fixture, shared with test_node_daemon

pytestmark = pytest.mark.e2e


async def _run_to_exit(config: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "supervit",
        "node",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_a_second_node_on_the_same_data_dir_refuses_to_start(tmp_path: Path, daemons: list[Daemon]) -> None:
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    shared = tmp_path / "shared-data"
    first = await start_daemon(daemons, write_config(first_dir, data_dir=shared))
    code, err = await _run_to_exit(write_config(second_dir, data_dir=shared))
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("supervit node: error:")]
    assert len(lines) == 1, err
    assert "supervisor.supervisord.data_dir" in lines[0] and "in use by another supervit process" in lines[0]
    assert str(first.proc.pid if first.proc else "") in lines[0]
    # The first one is unaffected; once it is gone (even killed) the directory is free again.
    assert first.proc is not None and first.proc.returncode is None
    first.proc.kill()
    await first.wait()
    await start_daemon(daemons, write_config(second_dir, data_dir=shared))


async def test_configured_limits_apply(tmp_path: Path, daemons: list[Daemon]) -> None:
    extra = """
[supervisor.security]
max_bytes = { "ShutdownRequest.reason" = 8 }
max_request_bytes = 2048
"""
    config = (
        write_config(tmp_path)
        .read_text()
        .replace("[[supervisor.supervisord.services]]", extra + "\n[[supervisor.supervisord.services]]")
    )
    path = tmp_path / "node.toml"
    path.write_text(config)
    daemon = await start_daemon(daemons, path)
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        call = channel.unary_unary("/supervisor.v1.SupervisedService/Shutdown")
        request = supervised_pb2.ShutdownRequest(graceful=True, reason="much too long")
        request.credential.timestamp, request.credential.nonce, request.credential.signature = 1, "n", "s"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(request.SerializeToString())
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "ShutdownRequest.reason is longer than 8 bytes"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(b"\x1a\xf0\x1f" + b"x" * 4080)  # 4 KB: over the configured 2 KB
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_an_unknown_limits_key_is_a_config_error(tmp_path: Path) -> None:
    extra = '\n[supervisor.security]\nmax_bytes = { "ShutdownRequest.reasons" = 8 }\n'
    config = (
        write_config(tmp_path)
        .read_text()
        .replace("[[supervisor.supervisord.services]]", extra + "\n[[supervisor.supervisord.services]]")
    )
    path = tmp_path / "node.toml"
    path.write_text(config)
    code, err = await _run_to_exit(path)
    assert code == 2
    assert "supervisor.security.max_bytes.ShutdownRequest.reasons" in err
