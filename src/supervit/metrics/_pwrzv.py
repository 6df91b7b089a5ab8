"""The power reserve level as the Rust node computes it with the ``pwrzv`` crate (0.6.x, Linux).

A mixed fleet (Rust actrix nodes and supervit nodes) only has comparable levels if both compute
them the same way, so this module re-implements pwrzv's Linux provider rule for rule. Sources
(github.com/kookyleo/pwrzv): ``src/linux/calculator.rs`` at 4ede4dc1a88165b911eef59e2267a4dac1d5cfce
(``LinuxProvider::calculate``, ``five_point_scale_with_decimal``, the ``get_*_config`` defaults),
``src/linux/metrics.rs`` at 07ff5c14cb2a4d678d29a25fcb27a9bb06a6e145 (what is read and how it is
parsed), ``src/sigmoid.rs`` (``SigmoidFn::evaluate``, ``get_sigmoid_config``); the rounding to an
integer is the Rust node's ``clamp_power_reserve``: ``level.clamp(0.0, 5.0).round() as u32``.

Rule: every available ratio ``x`` gets ``s = 1 / (1 + exp(-k * (x - m)))`` (increasing: 1 = fully
loaded), then ``n = 5 * (1 - s)`` rounded to 4 decimals; the reserve is the minimum ``n`` over the
available metrics (3.0 when none is), and the reported level rounds it half away from zero.
``PWRZV_LINUX_<METRIC>_MIDPOINT`` / ``_STEEPNESS`` override ``m`` / ``k``; a value that does not
parse as a Rust ``f32`` is ignored (the default applies), as in pwrzv. The reading of ``/proc``
lives in :mod:`supervit.metrics._pwrzv_proc`; everything here is pure.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields

__all__ = [
    "POWER_MODELS",
    "PWRZV_SIGMOIDS",
    "PwrzvMetrics",
    "pwrzv_level",
    "pwrzv_reserve",
    "pwrzv_scores",
    "sigmoid_params",
]

_log = logging.getLogger(__name__)

POWER_MODELS = ("pwrzv", "supervit")
"""How a node computes its level: ``"pwrzv"`` (default, as the Rust node) or ``"supervit"``
(windowed rates, :mod:`supervit.metrics._power`)."""


@dataclass(frozen=True, slots=True)
class PwrzvMetrics:
    """pwrzv's ``LinuxSystemMetrics``: ratios, ``None`` when the source could not be read."""

    cpu_usage_ratio: float | None = None
    """``1 - idle / total`` of the ``cpu`` line of ``/proc/stat`` (since boot)."""
    cpu_io_wait_ratio: float | None = None
    """``iowait / total`` of the same line."""
    cpu_load_ratio: float | None = None
    """1-minute load average / ``processor`` lines of ``/proc/cpuinfo``, capped at 10."""
    memory_usage_ratio: float | None = None
    """``(MemTotal - MemAvailable) / MemTotal`` from ``/proc/meminfo``."""
    memory_pressure_ratio: float | None = None
    """PSI ``some avg10`` of ``/proc/pressure/memory`` / 100."""
    disk_io_utilization: float | None = None
    """Highest ``%util`` of ``iostat -x 1 1`` / 100, else pwrzv's ``/proc/diskstats`` estimate."""
    network_dropped_packets_ratio: float | None = None
    """Dropped / total packets over non-loopback interfaces of ``/proc/net/dev`` (since boot)."""
    fd_usage_ratio: float | None = None
    """Allocated file handles (``/proc/sys/fs/file-nr``) / ``/proc/sys/fs/file-max``."""
    process_count_ratio: float | None = None
    """Processes / 4096, capped at 10."""


# Field of PwrzvMetrics -> (environment prefix, default midpoint, default steepness); from the
# get_*_config functions of src/linux/calculator.rs, in its evaluation order.
PWRZV_SIGMOIDS: Mapping[str, tuple[str, float, float]] = {
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
"""The nine metric sigmoids: environment prefix, default midpoint ``m``, default steepness ``k``."""

_NO_METRICS_RESERVE = 3.0  # LinuxProvider::calculate when no metric is available
_MAX_LEVEL = 5
_F32_MAX = 3.4028234663852886e38

# What Rust's `str::parse::<f32>` accepts: decimal with optional sign and exponent, or
# inf/infinity/nan in any case. No surrounding whitespace, no `_` separators, no hex.
_RUST_FLOAT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE)

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(name: str, value: str, why: str) -> None:
    with _warned_lock:
        if name in _warned:
            return
        _warned.add(name)
    _log.warning("ignoring %s=%r (%s); using pwrzv's default", name, value, why)


def _parse_override(environ: Mapping[str, str], name: str) -> float | None:
    """The value of ``name`` as pwrzv would parse it, or ``None`` to keep the default."""
    raw = environ.get(name)
    if raw is None:
        return None
    if not _RUST_FLOAT.fullmatch(raw):
        # pwrzv: `.and_then(|s| s.parse::<f32>().ok()).unwrap_or(default)`: silently ignored.
        _warn_once(name, raw, "not a number")
        return None
    value = float(raw)
    if abs(value) > _F32_MAX:
        value = math.copysign(math.inf, value)  # f32 overflow parses as infinity in Rust
    if not math.isfinite(value):
        # Deviation: pwrzv would accept it, and a NaN score makes its min_by(partial_cmp.unwrap())
        # panic; a reserve level cannot be computed from it, so the default is used instead.
        _warn_once(name, raw, "not finite")
        return None
    return value


def sigmoid_params(metric: str, environ: Mapping[str, str]) -> tuple[float, float]:
    """``(midpoint, steepness)`` of ``metric`` (a :data:`PWRZV_SIGMOIDS` key) after overrides."""
    prefix, midpoint, steepness = PWRZV_SIGMOIDS[metric]
    m = _parse_override(environ, f"{prefix}_MIDPOINT")
    k = _parse_override(environ, f"{prefix}_STEEPNESS")
    return (midpoint if m is None else m, steepness if k is None else k)


def _sigmoid(x: float, midpoint: float, steepness: float) -> float:
    """``SigmoidFn::evaluate``: ``1 / (1 + exp(-k (x - m)))``, without overflowing ``exp``."""
    z = -steepness * (x - midpoint)
    if z > 0:
        e = math.exp(-z)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(z))


def _round_half_away(value: float) -> float:
    """Rust's ``f32::round`` for the non-negative values used here."""
    return math.floor(value + 0.5)


def _five_point(score: float) -> float:
    """``five_point_scale_with_decimal``: ``5 * (1 - score)`` kept to 4 decimals."""
    return _round_half_away(5.0 * (1.0 - score) * 10_000.0) / 10_000.0


def pwrzv_scores(metrics: PwrzvMetrics, environ: Mapping[str, str]) -> dict[str, float]:
    """Per available metric, its 0-5 score (5 = no pressure); unavailable metrics are absent."""
    scores: dict[str, float] = {}
    for f in fields(metrics):
        value = getattr(metrics, f.name)
        if value is None:
            continue
        midpoint, steepness = sigmoid_params(f.name, environ)
        scores[f.name] = _five_point(_sigmoid(value, midpoint, steepness))
    return scores


def pwrzv_reserve(metrics: PwrzvMetrics, environ: Mapping[str, str]) -> float:
    """pwrzv's fractional reserve (``get_power_reserve_level_direct``): the lowest score, or 3.0."""
    scores = pwrzv_scores(metrics, environ)
    return min(scores.values()) if scores else _NO_METRICS_RESERVE


def pwrzv_level(metrics: PwrzvMetrics, environ: Mapping[str, str]) -> int:
    """The 0-5 level a Rust node reports for ``metrics``: the reserve clamped and rounded half up."""
    reserve = min(float(_MAX_LEVEL), max(0.0, pwrzv_reserve(metrics, environ)))
    return int(_round_half_away(reserve))
