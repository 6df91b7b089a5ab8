"""Log set-up: JSON lines with structured fields, grpc kept quiet, --log-level on the daemon commands."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervit.telemetry import JsonFormatter, configure_logging
from tests.conftest import SECRET_HEX


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("grpc", "asyncio")})
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def record(message: str, *args: object, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    rec = logging.getLogger("supervit.test").makeRecord(
        "supervit.test", level, __file__, 1, message, args, None, extra=extra
    )
    return rec


def test_json_line_has_the_fixed_keys_and_the_attached_fields() -> None:
    line = JsonFormatter().format(
        record("refused %s", "GetRealm", node_id="edge-1", peer="ipv4:1.2.3.4:5", rpc="GetRealm", reason="replay")
    )
    entry = json.loads(line)
    assert entry["message"] == "refused GetRealm"
    assert entry["level"] == "INFO" and entry["logger"] == "supervit.test"
    assert entry["time"].endswith("Z") and len(entry["time"]) == len("2026-11-29T17:00:00.123Z")
    assert (entry["node_id"], entry["peer"], entry["rpc"], entry["reason"]) == (
        "edge-1",
        "ipv4:1.2.3.4:5",
        "GetRealm",
        "replay",
    )
    assert "\n" not in line
    # Nothing of LogRecord's own bookkeeping leaks into the object.
    assert not {"args", "msg", "levelno", "pathname", "lineno", "created"} & entry.keys()


def test_json_line_carries_the_traceback_and_odd_values() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        rec = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    rec.path = Path("/tmp/a")  # not JSON-serialisable: written as text
    entry = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in entry["exception"] and entry["path"] == "/tmp/a"


def test_configure_logging_json_and_quiet_grpc(restore_logging: None) -> None:
    configure_logging(logging.DEBUG, "json")
    root = logging.getLogger()
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("supervit.x").debug("detail", extra={"node_id": "n1"})
    logging.getLogger("grpc._cython.cygrpc").debug("chatter")
    logging.getLogger("grpc.aio").info("more chatter")
    logging.getLogger("grpc._server").warning("a real grpc problem")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["logger"], e["level"]) for e in lines] == [("supervit.x", "DEBUG"), ("grpc._server", "WARNING")]
    assert lines[0]["node_id"] == "n1"
    with pytest.raises(ValueError, match="text, json"):
        configure_logging(logging.INFO, "xml")


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "supervit",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.e2e
async def test_log_level_option_and_bad_format(tmp_path: Path) -> None:
    """--log-level is offered by both daemons and checked; an unknown log_format names the key (exit 2)."""
    for command in ("node", "supervisor"):
        code, out, _ = await run_cli(command, "--help")
        assert code == 0 and "--log-level" in out
    config = tmp_path / "node.toml"
    config.write_text(
        f'[supervisor.client]\nnode_id = "n"\nshared_secret = "{SECRET_HEX}"\n'
        '[supervisor.supervisord]\nlog_format = "xml"\n'
    )
    code, _, err = await run_cli("node", "--config", str(config))
    assert code == 2 and "supervisor.supervisord.log_format" in err
    code, _, err = await run_cli("node", "--config", str(config), "--log-level", "chatty")
    assert code == 2 and "--log-level" in err


def write_node_config(directory: Path, config_level: str) -> Path:
    """A serve-only node logging JSON at ``config_level``."""
    directory.mkdir()
    config = directory / "node.toml"
    config.write_text(
        f'[supervisor.metrics]\nlisten = ""\n[supervisor.client]\nnode_id = "n"\nshared_secret = "{SECRET_HEX}"\n'
        f'[supervisor.supervisord]\nip = "127.0.0.1"\nport = 0\ndata_dir = "{directory / "data"}"\n'
        f'log_level = "{config_level}"\nlog_format = "json"\nshutdown_grace_secs = 0\n'
    )
    return config


async def node_stderr(directory: Path, config_level: str, *args: str) -> list[dict[str, object]]:
    """Start that node (plus CLI ``args``), stop it, parse its stderr."""
    config = write_node_config(directory, config_level)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "supervit",
        "node",
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.startswith(b"supervit node listening on "), line
    proc.terminate()
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in err.decode().splitlines() if line.strip()]


@pytest.mark.e2e
async def test_log_level_option_overrides_the_file(tmp_path: Path) -> None:
    """--log-level debug shows the DEBUG lines a file at error hides, and --log-level error hides INFO."""
    louder = await node_stderr(tmp_path / "a", "error", "--log-level", "debug")
    assert any(e["level"] == "DEBUG" and str(e["logger"]).startswith("supervit") for e in louder)
    quieter = await node_stderr(tmp_path / "b", "debug", "--log-level", "error")
    assert not [e for e in quieter if e["level"] in ("DEBUG", "INFO", "WARNING")]
    as_configured = await node_stderr(tmp_path / "c", "info")
    levels = {e["level"] for e in as_configured}
    assert "INFO" in levels and "DEBUG" not in levels


GOAWAY = """
import asyncio, grpc
async def main():
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    await channel.channel_ready()
    await server.stop(0)  # the connected channel gets a GOAWAY, which grpc's core logs at INFO
    await asyncio.sleep(0.3)
    await channel.close()
asyncio.run(main())
"""


@pytest.mark.e2e
async def test_grpc_core_transport_chatter_stays_off_stderr() -> None:
    """Importing supervit (before grpc) keeps grpc's C core at ERROR unless GRPC_VERBOSITY says otherwise."""

    async def run(code: str, env: dict[str, str]) -> tuple[str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        return out.decode(), err.decode()

    base = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    out, _ = await run("import os, supervit; print(os.environ['GRPC_VERBOSITY'])", base)
    assert out.strip() == "ERROR"
    # grpc alone usually prints "... chttp2_transport.cc] ... Got goaway" here (timing permitting).
    assert await run("import supervit\n" + GOAWAY, base) == ("", "")
    # The user's choice wins.
    out, _ = await run("import os, supervit; print(os.environ['GRPC_VERBOSITY'])", {**base, "GRPC_VERBOSITY": "debug"})
    assert out.strip() == "debug"
