"""Health that tells the truth: NOT_SERVING while storage cannot write, SERVING again once it can.

A request that fails because a store could not write reports the failure here (through
:func:`~supervit.rpc.abort_for`). A probe (a real write) confirms it at once, so one request the
store refused for its own content does not count; if the probe fails too (disk full, read-only
file system, I/O error) the servers' gRPC health turns ``NOT_SERVING``, so a load balancer or an
operator's probe sees what the callers see.
While unhealthy, ``probe`` (a real write, e.g. consuming a throwaway nonce) runs every
``interval_secs``; its first success, or any request that succeeds, turns health back to
``SERVING``. Each change of state is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervit.rpc._server import RpcServer

__all__ = ["StorageHealth"]

log = logging.getLogger(__name__)


class StorageHealth:
    """Tracks whether the process's storage writes; drives the health of the attached servers."""

    def __init__(self, probe: Callable[[], Awaitable[object]], *, interval_secs: float = 1.0) -> None:
        self._probe = probe
        self._interval = interval_secs
        self._servers: list[RpcServer] = []
        self._prober: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.serving = True

    def attach(self, server: RpcServer) -> None:
        """Let ``server``'s requests report here and its health follow this state."""
        self._servers.append(server)
        server.storage_health = self

    def failed(self, error: BaseException) -> None:
        """A write failed: confirm with a probe (one bad item is not a bad disk); if the probe
        fails too, turn NOT_SERVING (logged once) and probe until writes work again."""
        if not self.serving or self._prober is not None:
            return
        self._prober = asyncio.get_running_loop().create_task(self._confirm(error), name="storage-health-probe")

    async def _confirm(self, error: BaseException) -> None:
        try:
            await self._probe()
        except Exception as exc:
            if self.serving:
                self.serving = False
                log.error("storage cannot write (%s; probe: %s): health NOT_SERVING until it recovers", error, exc)
                self._apply(False)
            await self._probe_loop()
        else:
            self._prober = None

    def succeeded(self) -> None:
        """A request that wrote succeeded: SERVING again if it was not."""
        if not self.serving:
            self._recover()

    def _recover(self) -> None:
        self.serving = True
        log.warning("storage writes again: health SERVING")
        self._apply(True)

    def _apply(self, serving: bool) -> None:
        for server in self._servers:
            task = asyncio.get_running_loop().create_task(server.set_serving(serving))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _probe_loop(self) -> None:
        try:
            while not self.serving:
                await asyncio.sleep(self._interval)
                if self.serving:
                    break
                try:
                    await self._probe()
                except Exception as exc:
                    log.debug("storage probe still failing: %s", exc)
                    continue
                self._recover()
        finally:
            self._prober = None

    async def close(self) -> None:
        """Stop probing."""
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
