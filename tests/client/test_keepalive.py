"""Keepalive notices a half-open connection (peer silent, socket still open) long before the deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from supervit._exceptions import RpcError
from supervit.client import SupervitClient
from supervit.testing import SupervisorDouble
from tests.client.conftest import fast_config

MakeClient = Callable[..., SupervitClient]


class FreezingProxy:
    """TCP forwarder to the double that can go silent: bytes are swallowed, sockets stay open."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.frozen = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if not self.frozen:
                    writer.write(data)
                    await writer.drain()


@pytest.fixture
async def proxy(double: SupervisorDouble) -> AsyncIterator[FreezingProxy]:
    forwarder = FreezingProxy(double.port)
    await forwarder.start()
    yield forwarder
    await forwarder.close()


async def test_keepalive_detects_a_half_open_connection(
    double: SupervisorDouble, proxy: FreezingProxy, make_client: MakeClient
) -> None:
    config = fast_config(f"http://127.0.0.1:{proxy.port}", keepalive_secs=0.3, rpc_timeout_secs=6)
    client = make_client(config)
    await client.connect()
    await client.register_node()

    proxy.frozen = True
    started = time.monotonic()
    with pytest.raises(RpcError) as info:
        await client.health_check()
    elapsed = time.monotonic() - started
    # Without keepalive the call would hang until its 6 s deadline (DEADLINE_EXCEEDED).
    assert info.value.code == grpc.StatusCode.UNAVAILABLE, info.value
    assert elapsed < 4, elapsed
    assert not client.registered  # an outage: register again before the next report
