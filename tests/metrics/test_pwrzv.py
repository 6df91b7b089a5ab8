"""The pwrzv-compatible power reserve model: fixed inputs against levels derived by hand from pwrzv.

Rules (github.com/kookyleo/pwrzv, 0.6.x):
- ``src/sigmoid.rs`` ``SigmoidFn::evaluate``: ``s = 1 / (1 + exp(-k (x - m)))``;
  ``get_sigmoid_config``: ``<PREFIX>_MIDPOINT`` / ``_STEEPNESS`` parsed as f32, default otherwise.
- ``src/linux/calculator.rs`` (4ede4dc) ``get_*_config`` defaults, ``five_point_scale_with_decimal``
  ``n = round4(5 (1 - s))``, ``LinuxProvider::calculate``: min n over available metrics, 3.0 if none.
- The Rust node's ``clamp_power_reserve``: ``level.clamp(0.0, 5.0).round() as u32`` (half away from 0).
- ``src/linux/metrics.rs`` (07ff5c14) ``parse_*``: what each /proc file contributes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervit._exceptions import ConfigError
from supervit.metrics import (
    PWRZV_SIGMOIDS,
    PwrzvMetrics,
    SystemMetricsCollector,
    pwrzv_level,
    pwrzv_reserve,
    pwrzv_scores,
    read_pwrzv_metrics,
)
from supervit.metrics._pwrzv_proc import (
    parse_cpu_stat,
    parse_diskstats,
    parse_fd_usage,
    parse_iostat,
    parse_load_ratio,
    parse_memory_pressure,
    parse_memory_usage,
    parse_net_dev,
)

NO_ENV: dict[str, str] = {}

# An idle machine with all nine metrics available.
IDLE = PwrzvMetrics(
    cpu_usage_ratio=0.05,
    cpu_io_wait_ratio=0.01,
    cpu_load_ratio=0.1,
    memory_usage_ratio=0.1,
    memory_pressure_ratio=0.0,
    disk_io_utilization=0.05,
    network_dropped_packets_ratio=0.0,
    fd_usage_ratio=0.01,
    process_count_ratio=0.02,
)


def _with(base: PwrzvMetrics, **changes: float | None) -> PwrzvMetrics:
    values = {name: getattr(base, name) for name in PWRZV_SIGMOIDS}
    values.update(changes)
    return PwrzvMetrics(**values)


# --- the calculation -------------------------------------------------------------------------------


def test_defaults_are_pwrzvs() -> None:
    """The nine (prefix, midpoint, steepness) triples of calculator.rs get_*_config."""
    assert dict(PWRZV_SIGMOIDS) == {
        "cpu_usage_ratio": ("PWRZV_LINUX_CPU_USAGE", 0.65, 8.0),
        "cpu_io_wait_ratio": ("PWRZV_LINUX_CPU_IOWAIT", 0.20, 20.0),
        "cpu_load_ratio": ("PWRZV_LINUX_CPU_LOAD", 1.2, 5.0),
        "memory_usage_ratio": ("PWRZV_LINUX_MEMORY_USAGE", 0.85, 18.0),
        "memory_pressure_ratio": ("PWRZV_LINUX_MEMORY_PRESSURE", 0.30, 12.0),
        "disk_io_utilization": ("PWRZV_LINUX_DISK_IO", 0.70, 10.0),
        "network_dropped_packets_ratio": ("PWRZV_LINUX_NETWORK_DROPPED", 0.02, 100.0),
        "fd_usage_ratio": ("PWRZV_LINUX_FD", 0.90, 25.0),
        "process_count_ratio": ("PWRZV_LINUX_PROCESS", 0.80, 12.0),
    }


def test_idle_machine_is_capped_at_4_by_the_network_metric() -> None:
    """Zero drops still score s = 1/(1 + e^(100*0.02)) = 1/(1 + e^2) = 0.11920, n = 5 * 0.88080 = 4.4040:
    the lowest of the nine (cpu 0.05: s = 1/(1 + e^4.8) = 0.00816, n = 4.9592; the rest are higher),
    so pwrzv reports 4 for an idle machine that has network traffic."""
    scores = pwrzv_scores(IDLE, NO_ENV)
    assert scores["network_dropped_packets_ratio"] == 4.404
    assert scores["cpu_usage_ratio"] == 4.9592
    assert min(scores, key=scores.__getitem__) == "network_dropped_packets_ratio"
    assert pwrzv_reserve(IDLE, NO_ENV) == 4.404
    assert pwrzv_level(IDLE, NO_ENV) == 4


@pytest.mark.parametrize(
    ("metrics", "reserve", "level"),
    [
        # cpu 0.95: s = 1/(1 + e^(-8*0.30)) = 1/(1 + 0.090718) = 0.916827; n = 5*0.083173 = 0.4159 -> 0
        (PwrzvMetrics(cpu_usage_ratio=0.95), 0.4159, 0),
        # memory 0.90: s = 1/(1 + e^(-18*0.05)) = 1/(1 + 0.406570) = 0.710950; n = 1.4453 (1.44525..) -> 1
        (PwrzvMetrics(memory_usage_ratio=0.90), 1.4453, 1),
        # 3 % dropped packets (pwrzv's own test_packet_loss_sensitivity figure): s = 1/(1 + e^-1) =
        # 0.731059; n = 1.3447 -> 1, although every other metric is idle
        (_with(IDLE, network_dropped_packets_ratio=0.03), 1.3447, 1),
        # load exactly at the midpoint 1.2: s = 0.5, n = 2.5 -> 3 (Rust rounds half away from zero;
        # Python's round() would say 2)
        (PwrzvMetrics(cpu_load_ratio=1.2), 2.5, 3),
        # disk saturated (pwrzv's diskstats estimate of any busy disk): s = 1/(1 + e^-3) = 0.952574;
        # n = 0.2371 -> 0
        (PwrzvMetrics(disk_io_utilization=1.0), 0.2371, 0),
        # nothing readable: LinuxProvider::calculate returns 3.0
        (PwrzvMetrics(), 3.0, 3),
    ],
    ids=["cpu-95", "memory-90", "drops-3pct", "load-at-midpoint", "disk-saturated", "no-metrics"],
)
def test_fixed_inputs(metrics: PwrzvMetrics, reserve: float, level: int) -> None:
    assert pwrzv_reserve(metrics, NO_ENV) == reserve
    assert pwrzv_level(metrics, NO_ENV) == level


def test_the_bottleneck_decides_and_more_load_never_raises_the_level() -> None:
    """min over metrics: one loaded resource pulls the level down whatever the others say."""
    levels = [pwrzv_level(_with(IDLE, memory_usage_ratio=x / 20), NO_ENV) for x in range(21)]
    assert levels == sorted(levels, reverse=True)
    assert levels[0] == 4 and levels[-1] == 0


# --- PWRZV_* environment overrides -----------------------------------------------------------------


def test_overrides_are_honoured() -> None:
    """Moving the drop midpoint to 0.5 makes zero drops score s = 1/(1 + e^50) ~ 0, n = 5.0; the
    bottleneck becomes memory pressure 0 (s = 1/(1 + e^3.6) = 0.026597, n = 4.8670) and the level 5.
    Steepness 0 makes s = 0.5 for any x: n = 2.5 -> 3."""
    assert pwrzv_level(IDLE, {"PWRZV_LINUX_NETWORK_DROPPED_MIDPOINT": "0.5"}) == 5
    assert pwrzv_reserve(IDLE, {"PWRZV_LINUX_NETWORK_DROPPED_MIDPOINT": "0.5"}) == 4.867
    assert pwrzv_reserve(IDLE, {"PWRZV_LINUX_FD_STEEPNESS": "0"}) == 2.5
    assert pwrzv_level(IDLE, {"PWRZV_LINUX_FD_STEEPNESS": "0"}) == 3
    # Every metric has its own pair of variables.
    for prefix, _, _ in PWRZV_SIGMOIDS.values():
        assert pwrzv_reserve(IDLE, {f"{prefix}_STEEPNESS": "0"}) == 2.5, prefix


@pytest.mark.parametrize("text", ["5.", ".5", "+0.5", "5E-1", "0.5e0"])
def test_overrides_accept_what_rust_f32_parse_accepts(text: str) -> None:
    assert pwrzv_level(IDLE, {"PWRZV_LINUX_NETWORK_DROPPED_MIDPOINT": text}) == 5


@pytest.mark.parametrize("text", ["abc", "", " 0.5", "0.5 ", "0,5", "1_0", "0x1", "5%", "nan", "inf", "-infinity"])
def test_invalid_overrides_fall_back_to_the_default(text: str, caplog: pytest.LogCaptureFixture) -> None:
    """pwrzv: ``s.parse::<f32>().ok()...unwrap_or(default)``: a value Rust cannot parse is ignored.
    Non-finite values (which Rust parses) are ignored too: documented deviation, pwrzv would panic."""
    env = {"PWRZV_LINUX_NETWORK_DROPPED_MIDPOINT": text, "PWRZV_LINUX_NETWORK_DROPPED_STEEPNESS": text}
    assert pwrzv_reserve(IDLE, env) == 4.404
    assert pwrzv_level(IDLE, env) == 4


def test_overrides_that_overflow_f32_are_not_finite() -> None:
    """Rust parses "1e39" as f32 infinity; treated like any non-finite value (default kept)."""
    assert pwrzv_reserve(IDLE, {"PWRZV_LINUX_NETWORK_DROPPED_MIDPOINT": "1e39"}) == 4.404


# --- parsing /proc (fixed texts, the figures of pwrzv's own metrics.rs tests) -----------------------


def test_parse_cpu_stat() -> None:
    """total = user+nice+system+idle+iowait+irq+softirq = 1_295_748; steal/guest are not counted."""
    usage, iowait = parse_cpu_stat("cpu  123456 789 234567 890123 45678 901 234 0 0 0\ncpu0 1 2 3 4 5 6 7\n")
    total = 123456 + 789 + 234567 + 890123 + 45678 + 901 + 234
    assert usage == pytest.approx(1 - 890123 / total)
    assert iowait == pytest.approx(45678 / total)
    assert parse_cpu_stat("cpu 1 2 3\n") == (None, None)
    assert parse_cpu_stat("cpu  0 0 0 0 0 0 0 0\n") == (None, None)


def test_parse_load_memory_pressure_fds() -> None:
    cpuinfo = "processor\t: 0\nprocessor\t: 1\nprocessor\t: 2\nprocessor\t: 3\n"
    assert parse_load_ratio("1.23 2.34 3.45 1/234 5678\n", cpuinfo) == pytest.approx(1.23 / 4)
    assert parse_load_ratio("99 1 1 1/1 1\n", "processor : 0\n") == 10.0  # capped
    assert parse_load_ratio("invalid format\n", cpuinfo) is None
    assert parse_load_ratio("1.0 1 1\n", "") is None
    assert parse_memory_usage("MemTotal:       16384000 kB\nMemAvailable:   8192000 kB\n") == 0.5
    # No MemAvailable (kernels before 3.14): pwrzv counts it as 0 available, i.e. fully used.
    assert parse_memory_usage("MemTotal: 1000 kB\nMemFree: 900 kB\n") == 1.0
    assert parse_memory_usage("MemTotal: x kB\n") is None
    assert parse_memory_pressure("some avg10=12.34 avg60=23.45 avg300=34.56 total=1\nfull avg10=1.00\n") == (
        pytest.approx(0.1234)
    )
    assert parse_memory_pressure("full avg10=1.00 avg60=0 avg300=0 total=0\n") is None
    assert parse_fd_usage("2048\t0\t9223372036854775807\n", "1024\n") == 1.0  # capped
    assert parse_fd_usage("512\t0\t1000\n", "2048\n") == 0.25
    assert parse_fd_usage("512 0 1\n", "0\n") is None


NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed
    lo: 5000     50    0    10    0     0          0         0     5000     50    0    10    0     0       0          0
  eth0: 100000   900    0    9    0     0          0         0    200000   100    0    1    0     0       0          0
  eth1: 0        0      0    5    0     0          0         0    0        0      0    5    0     0       0          0
"""


def test_parse_net_dev() -> None:
    """lo is skipped, eth1 has no packets so its drops do not count: (9 + 1) / (900 + 100) = 0.01."""
    assert parse_net_dev(NET_DEV) == pytest.approx(0.01)
    assert parse_net_dev(NET_DEV.split("  eth0", 1)[0]) is None  # only lo: no traffic, no metric


def test_parse_disks() -> None:
    """iostat: highest %util; diskstats fallback: mean of min(1, sectors/1e6) over whole disks."""
    iostat = """Linux 6.1.0 (host) \t01/01/2026 \t_x86_64_\t(2 CPU)

avg-cpu:  %user   %nice %system %iowait  %steal   %idle
           1.00    0.00    1.00    0.10    0.00   97.90

Device   r/s  rkB/s rrqm/s %rrqm r_await rareq-sz  w/s wkB/s wrqm/s %wrqm w_await wareq-sz aqu-sz %util
sda     1.00  10.00   0.00  0.00    0.50    10.00 2.00 20.00   0.00  0.00    1.00    10.00   0.01  3.50
sdb     1.00  10.00   0.00  0.00    0.50    10.00 2.00 20.00   0.00  0.00    1.00    10.00   0.01 42.00
"""
    assert parse_iostat(iostat) == pytest.approx(0.42)
    assert parse_iostat("") == 0.0
    diskstats = (
        "   7       0 loop0 100 0 9000000 0 100 0 9000000 0 0 0 0\n"
        " 253       0 vda 1 0 250000 0 1 0 250000 0 0 0 0\n"
        " 253       1 vda1 1 0 9000000 0 1 0 9000000 0 0 0 0\n"
        " 259       0 nvme0n1 1 0 9000000 0 1 0 9000000 0 0 0 0\n"
        "   8       0 sdb 1 0 3000000 0 1 0 3000000 0 0 0 0\n"
    )
    # vda: 500_000 sectors -> 0.5; sdb: 6e6 -> capped 1.0; loop0, vda1 and nvme0n1 skipped.
    assert parse_diskstats(diskstats) == pytest.approx(0.75)
    assert parse_diskstats(" 7 0 loop0 1 0 1 0 1 0 1 0 0 0 0\n") is None


# --- reading a /proc tree ------------------------------------------------------------------------


def _fake_proc(root: Path) -> Path:
    files = {
        "stat": "cpu  300 0 100 500 100 0 0 0 0 0\n",  # total 1000: usage 0.5, iowait 0.1
        "loadavg": "0.50 0.40 0.30 1/100 1234\n",
        "cpuinfo": "processor\t: 0\nprocessor\t: 1\n",  # load 0.25
        "meminfo": "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 400 kB\n",  # 0.6
        "pressure/memory": "some avg10=5.00 avg60=1.00 avg300=0.00 total=1\n",  # 0.05
        "net/dev": NET_DEV,  # 0.01
        "diskstats": " 8 0 sda 1 0 100000 0 1 0 100000 0 0 0 0\n",  # 0.2
        "sys/fs/file-nr": "1000\t0\t100000\n",
        "sys/fs/file-max": "100000\n",  # 0.01
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for pid in ("1", "42", "4096"):
        (root / pid).mkdir()
    (root / "self").mkdir()  # not a pid
    return root


def test_reads_a_proc_tree(tmp_path: Path) -> None:
    metrics = read_pwrzv_metrics(_fake_proc(tmp_path), iostat=None)
    assert metrics.network_dropped_packets_ratio == pytest.approx(0.01)
    assert _with(metrics, network_dropped_packets_ratio=0.01) == PwrzvMetrics(
        cpu_usage_ratio=0.5,
        cpu_io_wait_ratio=0.1,
        cpu_load_ratio=0.25,
        memory_usage_ratio=0.6,
        memory_pressure_ratio=0.05,
        disk_io_utilization=0.2,
        network_dropped_packets_ratio=0.01,
        fd_usage_ratio=0.01,
        process_count_ratio=3 / 4096,
    )
    # Bottleneck: drops 0.01: s = 1/(1 + e^1) = 0.268941, n = 3.6553 (cpu 0.5: s = 1/(1 + e^1.2) =
    # 0.231475, n = 3.8426; iowait 0.1: s = 1/(1 + e^2) = 0.119203, n = 4.4040) -> level 4.
    assert pwrzv_reserve(metrics, NO_ENV) == 3.6553
    assert pwrzv_level(metrics, NO_ENV) == 4


def test_missing_files_leave_their_metric_out(tmp_path: Path) -> None:
    """As pwrzv's ``unwrap_or(None)``: a missing source drops its metric, the rest still count."""
    proc = _fake_proc(tmp_path)
    for name in ("net/dev", "pressure/memory", "sys/fs/file-max", "cpuinfo"):
        (proc / name).unlink()
    metrics = read_pwrzv_metrics(proc, iostat=None)
    assert metrics.network_dropped_packets_ratio is None
    assert metrics.memory_pressure_ratio is None
    assert metrics.fd_usage_ratio is None
    assert metrics.cpu_load_ratio is None  # needs both loadavg and cpuinfo
    assert metrics.cpu_usage_ratio == 0.5 and metrics.disk_io_utilization == 0.2
    # Now cpu 0.5 is the bottleneck: n = 3.8426 -> 4.
    assert pwrzv_reserve(metrics, NO_ENV) == 3.8426


def test_empty_proc_reports_pwrzvs_default_of_3(tmp_path: Path) -> None:
    metrics = read_pwrzv_metrics(tmp_path, iostat=None)
    assert metrics == PwrzvMetrics()
    assert pwrzv_level(metrics, NO_ENV) == 3


def test_iostat_wins_over_diskstats_and_a_missing_binary_falls_back(tmp_path: Path) -> None:
    """pwrzv runs ``iostat -x 1 1`` first and uses ``/proc/diskstats`` only when it cannot run."""
    proc = _fake_proc(tmp_path / "proc")
    script = tmp_path / "iostat"
    script.write_text(
        "#!/bin/sh\n[ \"$*\" = '-x 1 1' ] || exit 3\n"
        "echo 'Device r/s rkB/s rrqm/s %rrqm r_await rareq-sz w/s wkB/s wrqm/s %wrqm w_await wareq-sz aqu-sz %util'\n"
        "echo 'sda 1 1 1 1 1 1 1 1 1 1 1 1 1 64.00'\n"
    )
    script.chmod(0o755)
    assert read_pwrzv_metrics(proc, iostat=str(script)).disk_io_utilization == pytest.approx(0.64)
    assert read_pwrzv_metrics(proc, iostat=str(tmp_path / "absent")).disk_io_utilization == 0.2


# --- this machine --------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="pwrzv's model reads Linux /proc")
async def test_collector_uses_pwrzv_by_default_on_this_machine(tmp_path: Path) -> None:
    collector = await SystemMetricsCollector.create(tmp_path)
    assert collector.power_model == "pwrzv"
    snap = await collector.snapshot()
    assert snap.pwrzv is not None
    assert snap.pwrzv.cpu_usage_ratio is not None and 0.0 <= snap.pwrzv.cpu_usage_ratio <= 1.0
    assert snap.pwrzv.memory_usage_ratio is not None and 0.0 < snap.pwrzv.memory_usage_ratio <= 1.0
    assert 0 <= snap.power_reserve_level <= 5
    assert snap.power_reserve_level == pwrzv_level(snap.pwrzv, os.environ)


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="pwrzv's model reads Linux /proc")
async def test_collector_reads_the_environment_on_every_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pwrzv reads its variables on each call: with every steepness 0 each score is 2.5 -> level 3."""
    collector = await SystemMetricsCollector.create(tmp_path)
    for prefix, _, _ in PWRZV_SIGMOIDS.values():
        monkeypatch.setenv(f"{prefix}_STEEPNESS", "0")
    assert (await collector.snapshot()).power_reserve_level == 3


async def test_supervit_model_stays_selectable(tmp_path: Path) -> None:
    collector = await SystemMetricsCollector.create(tmp_path, power_model="supervit")
    snap = await collector.snapshot()
    assert collector.power_model == "supervit" and snap.pwrzv is None and snap.sample is not None


async def test_unknown_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="power_model"):
        SystemMetricsCollector(tmp_path, power_model="rust")
