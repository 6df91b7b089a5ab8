"""System metrics of the node and the providers the node server and client read them from.

:class:`SystemMetricsCollector` reads real figures with psutil. One :meth:`~SystemMetricsCollector.snapshot`
is one off-loop pass that yields both the ``SystemMetrics`` message and the power reserve level,
so the two always describe the same moment.

Rates (CPU and iowait %, swap traffic, disk busy %, network throughput) are averages between the
counters of the previous accepted reading and now. A reading is accepted as the new baseline only
once ``min_rate_window`` seconds have passed, so bursts of snapshots (several RPCs at once) keep
reporting the last full-window rates instead of noisy millisecond deltas. The very first snapshot
measures since construction.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import psutil

from supervit._exceptions import ConfigError
from supervit.metrics._power import (
    DEFAULT_THRESHOLDS,
    MAX_POWER_RESERVE_LEVEL,
    PowerThresholds,
    ResourceSample,
    power_reserve_level,
)
from supervit.metrics._pwrzv import POWER_MODELS, PwrzvMetrics, pwrzv_level
from supervit.metrics._pwrzv_proc import read_pwrzv_metrics
from supervit.metrics._sampler import Counters, Rates, fd_usage_percent, rates_between, read_counters
from supervit.protocol import common_pb2

__all__ = ["MetricsProvider", "Snapshot", "StaticMetricsProvider", "SystemMetricsCollector"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """System metrics and the power reserve level taken at the same moment."""

    metrics: common_pb2.SystemMetrics
    """A fresh message owned by the caller (providers never hand out a shared instance)."""
    power_reserve_level: int
    """0-5, 5 = most headroom; see :mod:`supervit.metrics._power`."""
    sample: ResourceSample | None = None
    """The pressures of the ``supervit`` model, when known (``None`` for static providers)."""
    pwrzv: PwrzvMetrics | None = None
    """The ratios the ``pwrzv`` model computed the level from (``None`` under the other model)."""


@runtime_checkable
class MetricsProvider(Protocol):
    """Anything that can report the node's current metrics; the node server and client take one."""

    async def snapshot(self) -> Snapshot:
        """Current metrics and power reserve level. Must not block the event loop."""
        ...


def _copy(metrics: common_pb2.SystemMetrics) -> common_pb2.SystemMetrics:
    out = common_pb2.SystemMetrics()
    out.CopyFrom(metrics)
    return out


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor: the filesystem that holds (or will hold) it."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class SystemMetricsCollector:
    """Real system metrics from psutil; implements :class:`MetricsProvider`.

    ``data_dir`` selects the filesystem whose usage is reported (it need not exist yet: its
    nearest existing ancestor is used). ``power_model`` picks how the power reserve level is
    computed: ``"pwrzv"`` (default) as the Rust node's pwrzv crate does, from ``/proc`` and the
    ``PWRZV_*`` environment variables (see :mod:`supervit.metrics._pwrzv`; on non-Linux systems
    it falls back to ``"supervit"`` with a warning), or ``"supervit"``, the sigmoid model over
    windowed rates of :mod:`supervit.metrics._power` tuned by ``thresholds``.
    ``min_rate_window`` is the shortest window, in seconds, rates are averaged over.

    The constructor takes one quick blocking reading to prime the rate baselines; from async code
    prefer ``await SystemMetricsCollector.create(...)``, which does it in a worker thread.
    Thread-safe: concurrent snapshots are fine.
    """

    def __init__(
        self,
        data_dir: Path | str = ".",
        *,
        thresholds: PowerThresholds = DEFAULT_THRESHOLDS,
        min_rate_window: float = 1.0,
        power_model: str = "pwrzv",
    ) -> None:
        if not (math.isfinite(min_rate_window) and min_rate_window >= 0):
            raise ConfigError("min_rate_window", f"must be finite and >= 0, got {min_rate_window!r}")
        if power_model not in POWER_MODELS:
            raise ConfigError("power_model", f"must be one of {', '.join(POWER_MODELS)}, got {power_model!r}")
        if power_model == "pwrzv" and not sys.platform.startswith("linux"):
            # pwrzv's /proc provider is Linux-only; its macOS provider is not ported.
            _log.warning("power_model 'pwrzv' needs Linux /proc; using 'supervit' on %s", sys.platform)
            power_model = "supervit"
        self._power_model = power_model
        self._data_dir = Path(data_dir)
        self._thresholds = thresholds
        self._min_rate_window = min_rate_window
        self._process = psutil.Process()
        # Guards the baseline/rates pair: snapshots run concurrently in worker threads.
        self._lock = threading.Lock()
        self._base = read_counters()
        self._rates: Rates | None = None

    @classmethod
    async def create(
        cls,
        data_dir: Path | str = ".",
        *,
        thresholds: PowerThresholds = DEFAULT_THRESHOLDS,
        min_rate_window: float = 1.0,
        power_model: str = "pwrzv",
    ) -> SystemMetricsCollector:
        """Construct in a worker thread so the priming reading does not block the event loop."""
        return await asyncio.to_thread(
            cls, data_dir, thresholds=thresholds, min_rate_window=min_rate_window, power_model=power_model
        )

    @property
    def data_dir(self) -> Path:
        """The directory whose filesystem usage is reported."""
        return self._data_dir

    @property
    def thresholds(self) -> PowerThresholds:
        """Thresholds of the ``supervit`` power model."""
        return self._thresholds

    @property
    def power_model(self) -> str:
        """The model in use: ``"pwrzv"`` or ``"supervit"`` (after any non-Linux fallback)."""
        return self._power_model

    async def snapshot(self) -> Snapshot:
        """Metrics and power reserve level from one reading, taken in a worker thread."""
        return await asyncio.to_thread(self.snapshot_sync)

    async def collect(self) -> common_pb2.SystemMetrics:
        """Current ``SystemMetrics``, read in a worker thread."""
        return (await self.snapshot()).metrics

    def collect_sync(self) -> common_pb2.SystemMetrics:
        """Blocking :meth:`collect`; call from a worker thread, never from the event loop."""
        return self.snapshot_sync().metrics

    def _advance(self) -> tuple[Rates, Counters]:
        """Read the counters and return the current rates (see the module docstring)."""
        with self._lock:
            cur = read_counters()
            if cur.at - self._base.at >= self._min_rate_window:
                rates = rates_between(self._base, cur)
                if rates is not None:
                    self._base, self._rates = cur, rates
                    return rates, cur
            if self._rates is not None:
                return self._rates, cur
            # First snapshot, still inside the window: provisional rates since construction.
            # The baseline stays put so the next snapshot gets a longer window.
            return rates_between(self._base, cur) or Rates(), cur

    def snapshot_sync(self) -> Snapshot:
        """Blocking :meth:`snapshot`; call from a worker thread, never from the event loop.

        Raises ``OSError`` (from psutil) if the OS refuses the figures required by
        ``SystemMetrics``; figures only used by the power level degrade to "idle" instead.
        """
        rates, counters = self._advance()
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(str(_existing(self._data_dir)))
        load_1m, load_5m, load_15m = psutil.getloadavg()

        memory_used = max(0, memory.total - memory.available)
        memory_used_percent = memory_used / memory.total * 100.0 if memory.total else 0.0
        metrics = common_pb2.SystemMetrics(
            cpu_usage_percent=rates.cpu_percent,
            # used = total - available, so used and percent agree with what new work can get.
            memory_used_bytes=memory_used,
            memory_total_bytes=memory.total,
            memory_usage_percent=memory_used_percent,
            network_rx_bytes=counters.net_rx_bytes,
            network_tx_bytes=counters.net_tx_bytes,
            disk_used_bytes=disk.used,
            disk_total_bytes=disk.total,
            load_average_1m=load_1m,
            load_average_5m=load_5m,
            load_average_15m=load_15m,
        )
        sample = ResourceSample(
            cpu_percent=rates.cpu_percent,
            iowait_percent=rates.iowait_percent,
            memory_available_percent=100.0 - memory_used_percent,
            swap_bytes_per_sec=rates.swap_bytes_per_sec,
            disk_busy_percent=rates.disk_busy_percent,
            network_bytes_per_sec=rates.network_bytes_per_sec,
            fd_usage_percent=fd_usage_percent(self._process),
        )
        if self._power_model == "pwrzv":
            # pwrzv re-reads its environment on every call, so overrides apply without a restart.
            ratios = read_pwrzv_metrics()
            return Snapshot(metrics, pwrzv_level(ratios, os.environ), sample, ratios)
        return Snapshot(metrics, power_reserve_level(sample, self._thresholds), sample)


class StaticMetricsProvider:
    """A :class:`MetricsProvider` that reports fixed values (tests, demos); change them with :meth:`update`."""

    def __init__(self, metrics: common_pb2.SystemMetrics, power_reserve_level: int) -> None:
        self._metrics = common_pb2.SystemMetrics()
        self._level = 0
        self.update(metrics, power_reserve_level)

    def update(
        self,
        metrics: common_pb2.SystemMetrics | None = None,
        power_reserve_level: int | None = None,
    ) -> None:
        """Replace the reported metrics and/or level (``None`` keeps the current value).

        Raises :class:`~supervit._exceptions.ConfigError` if ``metrics`` lacks required fields or
        the level is not an integer in 0-5.
        """
        if power_reserve_level is not None and (
            isinstance(power_reserve_level, bool)
            or not isinstance(power_reserve_level, int)
            or not 0 <= power_reserve_level <= MAX_POWER_RESERVE_LEVEL
        ):
            raise ConfigError("power_reserve_level", f"must be an int in 0-5, got {power_reserve_level!r}")
        if metrics is not None and not metrics.IsInitialized():
            present = {f.name for f, _ in metrics.ListFields()}
            missing = ", ".join(f.name for f in metrics.DESCRIPTOR.fields if f.is_required and f.name not in present)
            raise ConfigError("metrics", f"missing required fields: {missing}")
        # Validate both before applying either, so a failed update changes nothing.
        if metrics is not None:
            self._metrics = _copy(metrics)
        if power_reserve_level is not None:
            self._level = power_reserve_level

    async def snapshot(self) -> Snapshot:
        """The configured values, as a fresh copy of the message."""
        return Snapshot(_copy(self._metrics), self._level)
