"""The daemon commands' event loop: ``--event-loop auto|asyncio|uvloop`` (supervit.rpc.run_serving)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import grpc
import pytest

from supervit import ConfigError
from supervit.node import NodeDaemon
from supervit.protocol import supervised_pb2, supervised_pb2_grpc
from supervit.rpc import EVENT_LOOPS, event_loop_factory, event_loop_name, run_serving
from tests.cli._inprocess import run_cli
from tests.node.test_daemon import make_config

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None and sys.platform != "win32"
needs_uvloop = pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed (pip install 'supervit[uvloop]')")


def test_asyncio_is_the_default_loop_factory() -> None:
    assert event_loop_factory("asyncio") is None


@needs_uvloop
def test_auto_takes_uvloop_when_installed() -> None:
    import uvloop

    assert event_loop_factory("auto") is uvloop.new_event_loop
    assert event_loop_factory("uvloop") is uvloop.new_event_loop


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert event_loop_factory("auto") is None
    with pytest.raises(ConfigError) as caught:
        event_loop_factory("uvloop")
    assert caught.value.key == "event_loop" and "not installed" in caught.value.reason


def test_an_unknown_loop_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="must be one of auto, asyncio, uvloop, got 'trio'"):
        event_loop_factory("trio")


def test_a_refused_choice_closes_the_coroutine() -> None:
    async def main() -> None:
        raise AssertionError("never runs")

    coro = main()
    with pytest.raises(ConfigError):
        run_serving(coro, event_loop="trio")
    assert coro.cr_frame is None  # closed: no "never awaited" warning (warnings are errors here)


def test_cli_refuses_uvloop_when_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Usage error naming the option, exit 2, before anything starts."""
    monkeypatch.setitem(sys.modules, "uvloop", None)
    config = tmp_path / "node.toml"
    config.write_text("")
    result = run_cli("node", "--config", str(config), "--event-loop", "uvloop")
    assert result.returncode == 2
    assert "--event-loop" in result.stderr and "uvloop is not installed" in result.stderr


def test_cli_lists_the_choices() -> None:
    result = run_cli("supervisor", "--help")
    assert result.returncode == 0
    assert "--event-loop [auto|asyncio|uvloop]" in result.stdout and "SUPERVIT_EVENT_LOOP" in result.stdout


@pytest.mark.parametrize("choice", [pytest.param(c, marks=needs_uvloop) if c != "asyncio" else c for c in EVENT_LOOPS])
def test_a_node_daemon_serves_on_each_loop(tmp_path: Path, choice: str) -> None:
    """A real NodeDaemon on the chosen loop answers a real (unauthenticated, hence refused) call."""

    async def main() -> tuple[str, grpc.StatusCode]:
        async with NodeDaemon(make_config(tmp_path), tune_process=False) as daemon:
            async with grpc.aio.insecure_channel(daemon.address) as channel:
                stub = supervised_pb2_grpc.SupervisedServiceStub(channel)
                try:
                    await stub.GetNodeInfo(supervised_pb2.GetNodeInfoRequest(), timeout=10)
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
                else:
                    raise AssertionError("an unsigned request was answered")
            return event_loop_name(asyncio.get_running_loop()), code

    name, code = run_serving(main(), event_loop=choice)
    assert name == ("asyncio" if choice == "asyncio" else "uvloop")
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # no credential: refused by the request checks
