"""The daemon commands' event loop: ``--event-loop auto|asyncio|uvloop`` (supervit.rpc.run_serving)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import grpc
import pytest

from supervit import ConfigError
from supervit.auth import SharedSecret, Signer, request_payload
from supervit.client import SupervisedClient
from supervit.node import NodeDaemon
from supervit.protocol import supervised_pb2
from supervit.rpc import EVENT_LOOPS, event_loop_factory, event_loop_name, run_serving
from tests.cli._inprocess import run_cli
from tests.conftest import SECRET_HEX
from tests.node.test_daemon import NODE, make_config

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
    """A real NodeDaemon on the chosen loop: signed writes are committed and answered (the group
    commit's thread wakes the loop), a replayed credential is refused, an unsigned call too."""

    async def main() -> tuple[str, list[int], grpc.StatusCode, grpc.StatusCode]:
        async with (
            NodeDaemon(make_config(tmp_path), tune_process=False) as daemon,
            SupervisedClient(daemon.address, NODE, SharedSecret.from_hex(SECRET_HEX), timeout=10) as node,
            grpc.aio.insecure_channel(daemon.address) as channel,
        ):
            created = await asyncio.gather(*(node.create_realm(i, f"realm {i}", version=i) for i in range(1, 41)))
            stored = [(await node.get_realm(i)).realm_id for i in (1, 40)]
            assert sorted(r.realm_id for r in created) == list(range(1, 41))
            request = supervised_pb2.GetRealmRequest(realm_id=1)
            request.credential.CopyFrom(
                Signer(SharedSecret.from_hex(SECRET_HEX)).credential(request_payload(request, NODE))
            )
            call = channel.unary_unary(
                "/supervisor.v1.SupervisedService/GetRealm",
                response_deserializer=supervised_pb2.GetRealmResponse.FromString,
            )
            await call(request.SerializeToString(), timeout=10)
            codes = []
            for raw in (
                request.SerializeToString(),
                supervised_pb2.GetRealmRequest(realm_id=1).SerializePartialToString(),
            ):
                try:
                    await call(raw, timeout=10)
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
            return event_loop_name(asyncio.get_running_loop()), stored, codes[0], codes[1]

    name, stored, replayed, unsigned = run_serving(main(), event_loop=choice)
    assert name == ("asyncio" if choice == "asyncio" else "uvloop")
    assert stored == [1, 40]
    assert replayed == grpc.StatusCode.UNAUTHENTICATED  # the same nonce twice
    assert unsigned == grpc.StatusCode.INVALID_ARGUMENT  # no credential: refused by the request checks
