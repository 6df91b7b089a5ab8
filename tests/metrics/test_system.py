"""System metrics collection: real psutil figures, rate windows, off-loop execution, providers."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import psutil
import pytest

from supervit._exceptions import ConfigError
from supervit.metrics import (
    MetricsProvider,
    ResourceSample,
    Snapshot,
    StaticMetricsProvider,
    SystemMetricsCollector,
    _system,
    power_reserve_level,
)
from supervit.metrics._sampler import Counters, rates_between
from supervit.protocol import common_pb2

MIB = 1024 * 1024


def assert_sane(metrics: common_pb2.SystemMetrics) -> None:
    assert metrics.IsInitialized()
    assert 0.0 <= metrics.cpu_usage_percent <= 100.0
    assert metrics.memory_total_bytes > 0
    assert 0 < metrics.memory_used_bytes <= metrics.memory_total_bytes
    assert 0.0 < metrics.memory_usage_percent <= 100.0
    assert metrics.disk_total_bytes > 0
    assert 0 < metrics.disk_used_bytes <= metrics.disk_total_bytes
    assert metrics.HasField("load_average_5m")
    assert metrics.HasField("load_average_15m")
    assert min(metrics.load_average_1m, metrics.load_average_5m, metrics.load_average_15m) >= 0.0


def assert_sane_sample(sample: ResourceSample) -> None:
    for name in ("cpu_percent", "iowait_percent", "memory_available_percent", "disk_busy_percent"):
        assert 0.0 <= getattr(sample, name) <= 100.0, name
    assert 0.0 < sample.fd_usage_percent <= 100.0  # this process has stdin/stdout/... open
    assert sample.swap_bytes_per_sec >= 0.0
    assert sample.network_bytes_per_sec >= 0.0


def burn_cpu_and_disk(directory: Path) -> None:
    digest = b""
    for _ in range(20_000):
        digest = hashlib.sha256(digest).digest()
    (directory / "work.bin").write_bytes(digest * 10_000)


# --- real psutil ----------------------------------------------------------------------------------


async def test_collect_reports_real_values_in_sane_ranges(tmp_path: Path) -> None:
    collector = await SystemMetricsCollector.create(tmp_path)
    metrics = await collector.collect()
    assert_sane(metrics)
    assert metrics.memory_total_bytes == psutil.virtual_memory().total
    # The filesystem holding data_dir, not some other mount.
    assert metrics.disk_total_bytes == psutil.disk_usage(str(tmp_path)).total


async def test_snapshot_level_comes_from_the_same_sample(tmp_path: Path) -> None:
    collector = await SystemMetricsCollector.create(tmp_path, power_model="supervit")
    snap = await collector.snapshot()
    assert isinstance(snap, Snapshot)
    assert_sane(snap.metrics)
    assert snap.sample is not None
    assert_sane_sample(snap.sample)
    assert 0 <= snap.power_reserve_level <= 5
    assert snap.power_reserve_level == power_reserve_level(snap.sample, collector.thresholds)
    # Memory figures of the message and the sample describe the same reading.
    assert snap.sample.memory_available_percent == pytest.approx(100.0 - snap.metrics.memory_usage_percent)


async def test_second_snapshot_after_work_has_non_decreasing_counters(tmp_path: Path) -> None:
    collector = await SystemMetricsCollector.create(tmp_path, min_rate_window=0.0)
    first = await collector.snapshot()
    await asyncio.to_thread(burn_cpu_and_disk, tmp_path)
    second = await collector.snapshot()
    for snap in (first, second):
        assert_sane(snap.metrics)
        assert snap.sample is not None
        assert_sane_sample(snap.sample)
    assert second.metrics.network_rx_bytes >= first.metrics.network_rx_bytes
    assert second.metrics.network_tx_bytes >= first.metrics.network_tx_bytes


async def test_missing_data_dir_reports_the_filesystem_that_would_hold_it(tmp_path: Path) -> None:
    collector = await SystemMetricsCollector.create(tmp_path / "not" / "yet")
    metrics = await collector.collect()
    assert metrics.disk_total_bytes == psutil.disk_usage(str(tmp_path)).total


def test_collect_sync_in_a_plain_thread(tmp_path: Path) -> None:
    collector = SystemMetricsCollector(str(tmp_path))
    results: list[common_pb2.SystemMetrics] = []
    worker = threading.Thread(target=lambda: results.append(collector.collect_sync()))
    worker.start()
    worker.join()
    assert len(results) == 1
    assert_sane(results[0])
    assert collector.data_dir == tmp_path


async def test_snapshots_run_off_the_event_loop(tmp_path: Path) -> None:
    loop_thread = threading.get_ident()
    entered = threading.Event()
    gate = threading.Event()
    worker_threads: set[int] = set()

    class GatedCollector(SystemMetricsCollector):
        def snapshot_sync(self) -> Snapshot:
            worker_threads.add(threading.get_ident())
            entered.set()
            # Only the ticker on the event loop opens the gate: run on the loop, this would wait
            # out the timeout and fail instead of deadlocking the test. Opening the gate on failure
            # lets the other 19 calls finish at once rather than each waiting out the timeout.
            if not gate.wait(timeout=30):
                gate.set()
                raise AssertionError("gate never opened: the event loop was blocked")
            return super().snapshot_sync()

    collector = await GatedCollector.create(tmp_path)
    ticks_in_flight = 0

    async def ticker() -> None:
        nonlocal ticks_in_flight
        while True:
            await asyncio.sleep(0.001)
            if entered.is_set():
                ticks_in_flight += 1
                if ticks_in_flight >= 5:
                    gate.set()

    ticking = asyncio.create_task(ticker())
    try:
        snaps = await asyncio.gather(*(collector.snapshot() for _ in range(20)))
    finally:
        ticking.cancel()
    assert ticks_in_flight >= 5
    assert loop_thread not in worker_threads
    assert len(snaps) == 20
    for snap in snaps:
        assert_sane(snap.metrics)
        assert 0 <= snap.power_reserve_level <= 5


# --- rate windows on synthetic counters -----------------------------------------------------------


def counters(
    at: float,
    *,
    total: float = 0.0,
    busy: float = 0.0,
    iowait: float = 0.0,
    swap: int = 0,
    disk: Mapping[str, int] | None = None,
    net: Mapping[str, tuple[int, int]] | None = None,
) -> Counters:
    return Counters(
        at=at,
        cpu_total=total,
        cpu_busy=busy,
        cpu_iowait=iowait,
        swap_bytes=swap,
        disk_busy_ms=disk or {},
        net=net or {},
    )


def test_rates_between_two_readings() -> None:
    prev = counters(
        10.0,
        total=100.0,
        busy=40.0,
        iowait=5.0,
        swap=1 * MIB,
        disk={"sda": 1000, "sdb": 500, "gone": 7},
        net={"eth0": (1_000, 1_000), "eth1": (0, 0)},
    )
    cur = counters(
        12.0,  # 2 s window, 2 CPUs -> 4 CPU-seconds
        total=104.0,
        busy=42.0,
        iowait=5.4,
        swap=11 * MIB,
        disk={"sda": 2000, "sdb": 1000, "new": 99_999},
        net={"eth0": (2_001_000, 1_001_000), "eth1": (4_000_000, 0), "new": (10**12, 10**12)},
    )
    rates = rates_between(prev, cur)
    assert rates is not None
    assert rates.cpu_percent == pytest.approx(50.0)
    assert rates.iowait_percent == pytest.approx(10.0)
    assert rates.swap_bytes_per_sec == pytest.approx(5 * MIB)
    assert rates.disk_busy_percent == pytest.approx(50.0)  # sda; devices in one reading ignored
    assert rates.network_bytes_per_sec == pytest.approx(2_000_000.0)  # eth1 rx, the busiest direction
    assert cur.net_rx_bytes == 2_001_000 + 4_000_000 + 10**12


def test_rates_never_negative_or_above_100() -> None:
    prev = counters(0.0, total=10.0, busy=5.0, iowait=3.0, swap=500, disk={"sda": 5000}, net={"e": (9, 9)})
    # Counters reset or going backwards (re-plugged device, kernel iowait quirk).
    cur = counters(1.0, total=12.0, busy=9.0, iowait=2.0, swap=0, disk={"sda": 0}, net={"e": (0, 0)})
    rates = rates_between(prev, cur)
    assert rates is not None
    assert rates.cpu_percent == 100.0
    assert rates.iowait_percent == 0.0
    assert rates.swap_bytes_per_sec == 0.0
    assert rates.disk_busy_percent == 0.0
    assert rates.network_bytes_per_sec == 0.0
    over = rates_between(counters(0.0, disk={"sda": 0}), counters(1.0, disk={"sda": 1500}))
    assert over is not None
    assert over.disk_busy_percent == 100.0


def test_rates_without_elapsed_time() -> None:
    assert rates_between(counters(5.0), counters(5.0)) is None
    same_tick = rates_between(counters(5.0, total=3.0, busy=1.0), counters(5.001, total=3.0, busy=1.0))
    assert same_tick is not None
    assert same_tick.cpu_percent == 0.0


def test_rates_hold_until_the_window_has_elapsed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # 2 CPUs: total CPU time grows by 2 s per second.
    readings: Iterator[Counters] = iter(
        [
            counters(0.0, total=0.0, busy=0.0),  # priming, at construction
            counters(0.1, total=0.2, busy=0.2, net={"eth0": (1, 2)}),
            counters(0.5, total=1.0, busy=0.5, net={"eth0": (3, 4)}),
            counters(1.2, total=2.4, busy=0.6, net={"eth0": (5, 6)}),
            counters(1.3, total=2.6, busy=0.8, net={"eth0": (7, 8)}),
        ]
    )
    monkeypatch.setattr(_system, "read_counters", lambda: next(readings))
    collector = SystemMetricsCollector(tmp_path, min_rate_window=1.0)
    cpu = []
    for rx, tx in [(1, 2), (3, 4), (5, 6), (7, 8)]:
        snap = collector.snapshot_sync()
        cpu.append(snap.metrics.cpu_usage_percent)
        # Totals are always fresh, whatever the rate window.
        assert (snap.metrics.network_rx_bytes, snap.metrics.network_tx_bytes) == (rx, tx)
    # Provisional since construction (0.1 s, then 0.5 s: the baseline did not move), then the
    # first full window 0 -> 1.2 s, then held because 1.2 -> 1.3 s is shorter than the window.
    assert cpu == pytest.approx([100.0, 50.0, 25.0, 25.0])


def test_invalid_min_rate_window(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        SystemMetricsCollector(tmp_path, min_rate_window=-1.0)


# --- static provider ------------------------------------------------------------------------------


def fixed_metrics(cpu: float = 12.5) -> common_pb2.SystemMetrics:
    return common_pb2.SystemMetrics(
        cpu_usage_percent=cpu,
        memory_used_bytes=1 << 30,
        memory_total_bytes=4 << 30,
        memory_usage_percent=25.0,
        network_rx_bytes=1000,
        network_tx_bytes=2000,
        disk_used_bytes=10 << 30,
        disk_total_bytes=100 << 30,
        load_average_1m=0.5,
    )


async def test_static_provider_reports_copies_of_fixed_values() -> None:
    provider = StaticMetricsProvider(fixed_metrics(), power_reserve_level=4)
    assert isinstance(provider, MetricsProvider)
    first = await provider.snapshot()
    assert first.metrics == fixed_metrics()
    assert first.power_reserve_level == 4
    assert first.sample is None
    first.metrics.cpu_usage_percent = 99.0  # the caller owns its copy
    assert (await provider.snapshot()).metrics == fixed_metrics()

    provider.update(power_reserve_level=1)
    provider.update(metrics=fixed_metrics(cpu=80.0))
    latest = await provider.snapshot()
    assert (latest.power_reserve_level, latest.metrics.cpu_usage_percent) == (1, 80.0)


async def test_collector_is_a_metrics_provider(tmp_path: Path) -> None:
    provider: MetricsProvider = await SystemMetricsCollector.create(tmp_path)
    assert isinstance(provider, MetricsProvider)


@pytest.mark.parametrize("level", [-1, 6, True, 2.0])
def test_static_provider_rejects_bad_levels(level: int) -> None:
    with pytest.raises(ConfigError, match="power_reserve_level"):
        StaticMetricsProvider(fixed_metrics(), level)


async def test_static_provider_rejects_incomplete_metrics_and_keeps_old_values() -> None:
    provider = StaticMetricsProvider(fixed_metrics(), 3)
    with pytest.raises(ConfigError, match="memory_used_bytes"):
        provider.update(common_pb2.SystemMetrics(cpu_usage_percent=1.0), power_reserve_level=5)
    snap = await provider.snapshot()
    assert (snap.metrics, snap.power_reserve_level) == (fixed_metrics(), 3)
