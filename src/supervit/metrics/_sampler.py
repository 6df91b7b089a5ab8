"""Raw cumulative OS counters and the rates between two readings of them.

Everything here blocks (psutil reads ``/proc``) and must run off the event loop; the collector in
:mod:`supervit.metrics._system` calls it from a worker thread. Sources that only feed the power
reserve level degrade to "no pressure" when the OS cannot report them (containers often hide
``/proc/diskstats`` or swap counters), logging once; the figures that fill required
``SystemMetrics`` fields are read by the collector and let their errors propagate.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import psutil

__all__ = ["Counters", "Rates", "fd_usage_percent", "rates_between", "read_counters"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

# Loopback traffic never crosses a link, so it is neither reported nor counted as utilisation.
_LOOPBACK = re.compile(r"lo\d*")

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _optional(source: str, read: Callable[[], _T], fallback: _T) -> _T:
    """``read()``, or ``fallback`` (logging once per source) when the OS cannot provide it."""
    try:
        return read()
    except (OSError, ValueError, RuntimeError, NotImplementedError, AttributeError) as exc:
        with _warned_lock:
            first = source not in _warned
            _warned.add(source)
        if first:
            _log.warning("metrics source %s unavailable, treated as idle: %s", source, exc)
        return fallback


@dataclass(frozen=True, slots=True)
class Counters:
    """One reading of the cumulative counters rates are derived from."""

    at: float
    """``time.monotonic()`` of the reading, seconds."""
    cpu_total: float
    """All CPU time, seconds (guest time excluded: Linux already counts it in user/nice)."""
    cpu_busy: float
    """CPU time neither idle nor waiting on I/O, seconds."""
    cpu_iowait: float
    """CPU time idle while waiting on I/O, seconds (0 where not reported)."""
    swap_bytes: int
    """Bytes swapped in plus out since boot."""
    disk_busy_ms: Mapping[str, int]
    """Per block device: milliseconds with I/O in flight since boot."""
    net: Mapping[str, tuple[int, int]]
    """Per non-loopback NIC: (bytes received, bytes sent) since boot."""

    @property
    def net_rx_bytes(self) -> int:
        """Bytes received by all non-loopback NICs."""
        return sum(rx for rx, _ in self.net.values())

    @property
    def net_tx_bytes(self) -> int:
        """Bytes sent by all non-loopback NICs."""
        return sum(tx for _, tx in self.net.values())


@dataclass(frozen=True, slots=True)
class Rates:
    """Averages over the window between two :class:`Counters` readings."""

    cpu_percent: float = 0.0
    iowait_percent: float = 0.0
    swap_bytes_per_sec: float = 0.0
    disk_busy_percent: float = 0.0
    network_bytes_per_sec: float = 0.0
    """Busiest direction of the busiest NIC."""


def _cpu() -> tuple[float, float, float]:
    times = psutil.cpu_times()
    # Same accounting as psutil.cpu_percent(): guest time is already part of user/nice on Linux,
    # and iowait is idle time. Computed from our own deltas so concurrent callers of
    # psutil.cpu_percent() elsewhere in the process cannot reset our baseline.
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    iowait = getattr(times, "iowait", 0.0)
    return total, total - times.idle - iowait, iowait


def _swap_bytes() -> int:
    swap = psutil.swap_memory()
    return swap.sin + swap.sout


def _disk_busy() -> dict[str, int]:
    per_disk = psutil.disk_io_counters(perdisk=True) or {}
    # busy_time exists on Linux and FreeBSD only; elsewhere the disk counts as idle.
    return {name: c.busy_time for name, c in per_disk.items() if hasattr(c, "busy_time")}


def _net() -> dict[str, tuple[int, int]]:
    per_nic = psutil.net_io_counters(pernic=True) or {}
    return {name: (c.bytes_recv, c.bytes_sent) for name, c in per_nic.items() if not _LOOPBACK.fullmatch(name)}


def read_counters() -> Counters:
    """Read all cumulative counters now (blocking)."""
    total, busy, iowait = _cpu()
    return Counters(
        at=time.monotonic(),
        cpu_total=total,
        cpu_busy=busy,
        cpu_iowait=iowait,
        swap_bytes=_optional("swap", _swap_bytes, 0),
        disk_busy_ms=_optional("disk_io", _disk_busy, {}),
        net=_net(),
    )


def _clamp_percent(value: float) -> float:
    return max(0.0, min(100.0, value))


def rates_between(prev: Counters, cur: Counters) -> Rates | None:
    """Average rates from ``prev`` to ``cur``; ``None`` if no time passed between them.

    A counter that went backwards (device re-plugged, kernel iowait quirk) yields 0, never a
    negative rate; devices present in only one reading are ignored.
    """
    window = cur.at - prev.at
    if window <= 0:
        return None
    cpu_dt = cur.cpu_total - prev.cpu_total
    if cpu_dt > 0:
        cpu = _clamp_percent((cur.cpu_busy - prev.cpu_busy) / cpu_dt * 100.0)
        iowait = _clamp_percent((cur.cpu_iowait - prev.cpu_iowait) / cpu_dt * 100.0)
    else:
        # Both readings fell in the same clock tick: nothing measurable happened.
        cpu = iowait = 0.0
    disk = max(
        (
            (busy - prev.disk_busy_ms[name]) / (window * 1000.0) * 100.0
            for name, busy in cur.disk_busy_ms.items()
            if name in prev.disk_busy_ms
        ),
        default=0.0,
    )
    net = max(
        (
            max(rx - prev.net[name][0], tx - prev.net[name][1]) / window
            for name, (rx, tx) in cur.net.items()
            if name in prev.net
        ),
        default=0.0,
    )
    return Rates(
        cpu_percent=cpu,
        iowait_percent=iowait,
        swap_bytes_per_sec=max(0.0, (cur.swap_bytes - prev.swap_bytes) / window),
        disk_busy_percent=_clamp_percent(disk),
        network_bytes_per_sec=max(0.0, net),
    )


def _process_fd_percent(process: psutil.Process) -> float:
    import resource  # POSIX only: the caller checks os.name first.

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 0.0
    return process.num_fds() / soft * 100.0


def _system_fd_percent() -> float:
    # Linux: "allocated  unused  max" for the whole system.
    with open("/proc/sys/fs/file-nr", encoding="ascii") as f:
        allocated, _, maximum = (int(v) for v in f.read().split())
    return allocated / maximum * 100.0 if maximum > 0 else 0.0


def fd_usage_percent(process: psutil.Process) -> float:
    """Worse of this process's fds vs its soft ``RLIMIT_NOFILE`` and the system-wide fd table."""
    process_pct = 0.0
    if os.name == "posix":
        process_pct = _optional("process_fds", lambda: _process_fd_percent(process), 0.0)
    system_pct = 0.0
    if os.path.exists("/proc/sys/fs/file-nr"):
        system_pct = _optional("system_fds", _system_fd_percent, 0.0)
    return _clamp_percent(max(process_pct, system_pct))
