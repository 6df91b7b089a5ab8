"""Give memory back to the OS after a burst (glibc keeps freed heap pages otherwise).

A flood of large requests (refused or not) makes grpc-core buffer them; once they are gone the
allocator keeps most of those pages, so the process stays at its peak RSS for good. Every
``interval_secs`` :class:`MemoryTrimmer` looks at the resident size and, when it grew by more
than ``threshold_bytes`` since the last look, asks glibc to release free pages
(``malloc_trim(0)``, on a worker thread). Without glibc (or off Linux) it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

__all__ = ["MemoryTrimmer", "resident_bytes"]

log = logging.getLogger(__name__)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """This process's resident set size in bytes (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class MemoryTrimmer:
    """Releases freed heap memory after RSS grew (see the module docstring). ``start`` / ``close``."""

    def __init__(self, *, interval_secs: float = 2.0, threshold_bytes: int = 16 * 1024 * 1024) -> None:
        self._interval = interval_secs
        self._threshold = threshold_bytes
        self._trim = _malloc_trim()
        self._task: asyncio.Task[None] | None = None
        self._last = 0

    def start(self) -> None:
        if self._trim is not None and self._task is None and resident_bytes():
            self._last = resident_bytes()
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="memory-trimmer")

    async def _loop(self) -> None:
        trim = self._trim
        assert trim is not None
        while True:
            await asyncio.sleep(self._interval)
            rss = resident_bytes()
            if rss > self._last + self._threshold:
                await asyncio.to_thread(trim, 0)
                after = resident_bytes()
                log.debug("released %d MB of freed memory", max(0, rss - after) // (1024 * 1024))
                rss = after
            self._last = rss

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
