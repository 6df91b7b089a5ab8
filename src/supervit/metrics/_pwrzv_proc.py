"""Read pwrzv's Linux inputs from ``/proc`` the way ``src/linux/metrics.rs`` does (blocking).

Source: github.com/kookyleo/pwrzv ``src/linux/metrics.rs`` at 07ff5c14cb2a4d678d29a25fcb27a9bb06a6e145
(``LinuxSystemMetrics::collect_system_metrics`` and its ``parse_*`` helpers). Each reading is one
instant: CPU and packet-drop ratios are the kernel's counters since boot, not rates over a window,
exactly as in pwrzv. A file that is missing or does not parse leaves its metric ``None`` (pwrzv's
``unwrap_or(None)``), and the calculator then ignores it.

Two deliberate differences, neither of which changes a ratio by more than 1/4096:
the process count is the number of ``/proc/<pid>`` directories instead of the lines of ``ps aux``
(pwrzv's count includes the ``ps`` process itself, and needs procps installed), and ``iostat`` is
given a timeout so a hung binary cannot stall reporting.

Everything here blocks; the collector calls it from a worker thread.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from supervit.metrics._pwrzv import PwrzvMetrics

__all__ = [
    "parse_cpu_stat",
    "parse_diskstats",
    "parse_fd_usage",
    "parse_iostat",
    "parse_load_ratio",
    "parse_memory_pressure",
    "parse_memory_usage",
    "parse_net_dev",
    "read_pwrzv_metrics",
]

_TYPICAL_MAX_PROCESSES = 4096.0
_IOSTAT_TIMEOUT_SECS = 5.0


def _u64(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _f32(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_cpu_stat(stat: str) -> tuple[float | None, float | None]:
    """``(cpu_usage_ratio, cpu_io_wait_ratio)`` from the first line of ``/proc/stat``.

    pwrzv ``parse_cpu_stat``: needs 8 fields; total = user + nice + system + idle + iowait + irq +
    softirq (steal and guest are not counted); usage = 1 - idle / total, iowait = iowait / total.
    """
    lines = stat.splitlines()
    parts = lines[0].split() if lines else []
    if len(parts) < 8:
        return None, None
    values = [_u64(p) for p in parts[1:8]]
    if any(v is None for v in values):
        return None, None
    user, nice, system, idle, iowait, irq, softirq = (v or 0 for v in values)
    total = user + nice + system + idle + iowait + irq + softirq
    if total <= 0:
        return None, None
    usage = min(1.0, max(0.0, 1.0 - idle / total))
    return usage, min(1.0, max(0.0, iowait / total))


def parse_load_ratio(loadavg: str, cpuinfo: str) -> float | None:
    """1-minute load / number of ``processor`` lines in ``/proc/cpuinfo``, capped at 10."""
    first = loadavg.split()
    load = _f32(first[0]) if first else None
    cores = sum(1 for line in cpuinfo.splitlines() if line.startswith("processor"))
    if load is None or cores == 0:
        return None
    return min(load / cores, 10.0)


def _meminfo_kb(line: str) -> int | None:
    parts = line.split()
    return _u64(parts[1]) if len(parts) >= 2 else None


def parse_memory_usage(meminfo: str) -> float | None:
    """``(MemTotal - MemAvailable) / MemTotal``; a missing ``MemAvailable`` counts as 0, as in pwrzv."""
    total = available = 0
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            value = _meminfo_kb(line)
            if value is None:
                return None
            total = value
        elif line.startswith("MemAvailable:"):
            value = _meminfo_kb(line)
            if value is None:
                return None
            available = value
    if total <= 0:
        return None
    return min(1.0, (total - available) / total if available < total else 0.0)


def parse_memory_pressure(pressure: str) -> float | None:
    """PSI ``some avg10`` / 100 from ``/proc/pressure/memory``, capped at 1."""
    for line in pressure.splitlines():
        if line.startswith("some avg10="):
            rest = line.split("avg10=", 1)[1].split()
            value = _f32(rest[0]) if rest else None
            return None if value is None else min(1.0, value / 100.0)
    return None


def parse_net_dev(net_dev: str) -> float | None:
    """Dropped / total packets (rx + tx) over non-``lo`` interfaces that have packets.

    pwrzv ``parse_network_stats``: skips the two header lines and any line with fewer than 17
    whitespace-separated fields; unparsable counters count as 0.
    """
    packets = dropped = 0
    for line in net_dev.splitlines()[2:]:
        parts = line.split()
        if len(parts) < 17 or parts[0].rstrip(":") == "lo":
            continue
        rx_packets, rx_dropped, tx_packets, tx_dropped = (_u64(parts[i]) or 0 for i in (2, 4, 10, 12))
        if rx_packets + tx_packets > 0:
            packets += rx_packets + tx_packets
            dropped += rx_dropped + tx_dropped
    if packets == 0:
        return None
    return min(1.0, max(0.0, dropped / packets))


def parse_iostat(output: str) -> float:
    """Highest ``%util`` (last column) / 100 of ``iostat -x`` device lines; 0 when there are none."""
    worst = 0.0
    for line in output.splitlines():
        if "Device" in line or not line.strip() or "avg-cpu" in line:
            continue
        parts = line.split()
        if len(parts) >= 14:
            util = _f32(parts[-1])
            if util is not None:
                worst = max(worst, min(1.0, util / 100.0))
    return worst


def parse_diskstats(diskstats: str) -> float | None:
    """pwrzv's fallback disk estimate: mean over whole disks of ``min(1, sectors read+written / 1e6)``.

    Devices named ``loop*`` or ending in a digit (partitions, but also ``nvme0n1``) are skipped.
    The figure is cumulative since boot, so any disk that moved more than about 0.5 GB counts as
    fully used: that is pwrzv's behaviour, kept for comparability (see docs/power-reserve.md).
    """
    per_disk: list[float] = []
    for line in diskstats.splitlines():
        parts = line.split()
        if len(parts) < 14:
            continue
        device = parts[2]
        if device.startswith("loop") or device[-1].isdigit():
            continue
        sectors = (_u64(parts[5]) or 0) + (_u64(parts[9]) or 0)
        per_disk.append(min(1.0, sectors / 1_000_000.0))
    return sum(per_disk) / len(per_disk) if per_disk else None


def parse_fd_usage(file_nr: str, file_max: str) -> float | None:
    """Allocated handles (first field of ``file-nr``) / ``file-max``, capped at 1."""
    first = file_nr.split()
    allocated = _u64(first[0]) if first else None
    maximum = _u64(file_max.strip())
    if allocated is None or maximum is None or maximum == 0:
        return None
    return min(1.0, allocated / maximum)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _iostat_util(iostat: str | None) -> float | None:
    """``iostat -x 1 1`` parsed, or ``None`` when it cannot be run (pwrzv then reads diskstats)."""
    if iostat is None:
        return None
    try:
        done = subprocess.run([iostat, "-x", "1", "1"], capture_output=True, timeout=_IOSTAT_TIMEOUT_SECS, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        text = done.stdout.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Like pwrzv, whatever ran is used, whatever its exit status (no device lines -> 0.0).
    return parse_iostat(text)


def _process_ratio(proc: Path) -> float | None:
    try:
        count = sum(1 for entry in proc.iterdir() if entry.name.isdigit())
    except OSError:
        return None
    return min(10.0, count / _TYPICAL_MAX_PROCESSES) if count else None


def read_pwrzv_metrics(proc: Path | str = "/proc", *, iostat: str | None = "auto") -> PwrzvMetrics:
    """One reading of pwrzv's nine Linux metrics (blocking).

    ``proc`` is the procfs root (tests point it at a directory of fixed files). ``iostat`` is the
    binary to run for disk utilisation: ``"auto"`` looks it up on ``PATH``, ``None`` skips it and
    uses the ``/proc/diskstats`` fallback, as pwrzv does when iostat is not installed.
    """
    root = Path(proc)
    text = {name: _read(root / name) for name in ("stat", "loadavg", "cpuinfo", "meminfo", "net/dev", "diskstats")}
    usage = iowait = load = None
    if text["stat"] is not None:
        usage, iowait = parse_cpu_stat(text["stat"])
    if text["loadavg"] is not None and text["cpuinfo"] is not None:
        load = parse_load_ratio(text["loadavg"], text["cpuinfo"])
    pressure = _read(root / "pressure" / "memory")
    file_nr, file_max = _read(root / "sys/fs/file-nr"), _read(root / "sys/fs/file-max")
    binary = shutil.which("iostat") if iostat == "auto" else iostat
    disk = _iostat_util(binary)
    if disk is None and text["diskstats"] is not None:
        disk = parse_diskstats(text["diskstats"])
    return PwrzvMetrics(
        cpu_usage_ratio=usage,
        cpu_io_wait_ratio=iowait,
        cpu_load_ratio=load,
        memory_usage_ratio=None if text["meminfo"] is None else parse_memory_usage(text["meminfo"]),
        memory_pressure_ratio=None if pressure is None else parse_memory_pressure(pressure),
        disk_io_utilization=disk,
        network_dropped_packets_ratio=None if text["net/dev"] is None else parse_net_dev(text["net/dev"]),
        fd_usage_ratio=None if file_nr is None or file_max is None else parse_fd_usage(file_nr, file_max),
        process_count_ratio=_process_ratio(root),
    )
