"""Power reserve level: how much headroom a node has left, on a 0-5 scale (5 = most headroom).

Formula
-------
Every resource in a :class:`ResourceSample` is first expressed as a *pressure* ``x`` where
higher always means worse, then mapped to a score in ``[0, 1]`` by a decreasing logistic
sigmoid::

    score(x) = 1 / (1 + exp(k * (x - m)))

``m`` (midpoint) is the pressure at which the score is exactly 0.5 and ``k`` (steepness, > 0)
sets how sharply the score falls around it. A node is only as strong as its weakest resource, so
the overall score is the **minimum** over all resources (the bottleneck), and::

    level = clamp(floor(5 * min_score + 0.5), 0, 5)

that is: score >= 0.9 -> 5, >= 0.7 -> 4, >= 0.5 -> 3, >= 0.3 -> 2, >= 0.1 -> 1, otherwise 0.
Because every sigmoid decreases in ``x`` and ``min``/``floor`` are monotonic, more load on any
resource can never raise the level.

Default thresholds (:data:`DEFAULT_THRESHOLDS`); the last three columns are the pressure up to
which that resource alone still allows level 5, and above which it forces level <= 1 and 0:

========  =============================================  =====  =====  =======  =========  =======
resource  pressure ``x``                                 ``m``  ``k``  5 up to  <=1 above  0 above
========  =============================================  =====  =====  =======  =========  =======
cpu       busy CPU time, % of all CPUs                      80   0.15     65.4       85.6     94.6
iowait    CPU time waiting on I/O, % of all CPUs            30   0.15     15.4       35.6     44.6
memory    100 - available memory %                          90   0.30     82.7       92.8     97.3
swap      swap-in + swap-out, MiB/s                         10   0.50      5.6       11.7     14.4
disk      busy time of the busiest disk, %                  80   0.15     65.4       85.6     94.6
network   busiest NIC direction, % of the link capacity     80   0.15     65.4       85.6     94.6
fds       open file descriptors, % of the limit             85   0.30     77.7       87.8     92.3
========  =============================================  =====  =====  =======  =========  =======

So memory alone allows level 5 with >= 17.3 % available and forces level <= 1 below 7.2 %.
The network pressure is ``8 * bytes_per_sec / link_capacity_bits_per_sec * 100`` with a default
link capacity of 1 Gbit/s (configurable, :attr:`PowerThresholds.link_capacity_bits_per_sec`).
A NaN pressure scores 0: an unreadable figure must not advertise headroom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from supervit._exceptions import ConfigError

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MAX_POWER_RESERVE_LEVEL",
    "PowerThresholds",
    "ResourceSample",
    "Sigmoid",
    "bottleneck",
    "power_reserve_level",
    "resource_scores",
]

MAX_POWER_RESERVE_LEVEL = 5
"""The highest power reserve level (most headroom); the lowest is 0."""

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ResourceSample:
    """Instantaneous resource pressure of a node, the input of :func:`power_reserve_level`.

    Defaults describe an idle machine, so tests can set only the figures they care about.
    Rates are averages over the collector's sampling window.
    """

    cpu_percent: float = 0.0
    """Busy CPU time (not idle, not iowait) as % of all CPUs, 0-100."""
    iowait_percent: float = 0.0
    """CPU time spent waiting on I/O as % of all CPUs, 0-100 (0 where the OS does not report it)."""
    memory_available_percent: float = 100.0
    """Memory available to new work without swapping, % of total, 0-100."""
    swap_bytes_per_sec: float = 0.0
    """Swap-in plus swap-out traffic, bytes per second."""
    disk_busy_percent: float = 0.0
    """Share of wall time the busiest disk had I/O in flight, 0-100."""
    network_bytes_per_sec: float = 0.0
    """Throughput of the busiest direction (rx or tx) of the busiest non-loopback NIC, bytes/s."""
    fd_usage_percent: float = 0.0
    """Open file descriptors as % of their limit (the worse of process and system-wide), 0-100."""


@dataclass(frozen=True, slots=True)
class Sigmoid:
    """A decreasing logistic curve ``1 / (1 + exp(steepness * (x - midpoint)))``."""

    midpoint: float
    """Pressure at which the score is 0.5."""
    steepness: float
    """How sharply the score falls around the midpoint; must be > 0."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.midpoint):
            raise ConfigError("midpoint", f"must be finite, got {self.midpoint!r}")
        if not (math.isfinite(self.steepness) and self.steepness > 0):
            raise ConfigError("steepness", f"must be finite and > 0, got {self.steepness!r}")

    def score(self, x: float) -> float:
        """Score in ``[0, 1]`` of pressure ``x``; 1 is no pressure at all. NaN scores 0."""
        if math.isnan(x):
            return 0.0
        z = self.steepness * (x - self.midpoint)
        # Two branches so exp() only ever sees a non-positive argument and cannot overflow.
        if z > 0:
            e = math.exp(-z)
            return e / (1.0 + e)
        return 1.0 / (1.0 + math.exp(z))


@dataclass(frozen=True, slots=True)
class PowerThresholds:
    """Per-resource sigmoids and the link capacity; see the module docstring for the meaning."""

    cpu: Sigmoid = field(default_factory=lambda: Sigmoid(80.0, 0.15))
    iowait: Sigmoid = field(default_factory=lambda: Sigmoid(30.0, 0.15))
    memory: Sigmoid = field(default_factory=lambda: Sigmoid(90.0, 0.30))
    """Applied to ``100 - memory_available_percent``."""
    swap: Sigmoid = field(default_factory=lambda: Sigmoid(10.0, 0.50))
    """Applied to swap traffic in MiB/s."""
    disk: Sigmoid = field(default_factory=lambda: Sigmoid(80.0, 0.15))
    network: Sigmoid = field(default_factory=lambda: Sigmoid(80.0, 0.15))
    """Applied to the network utilisation in % of ``link_capacity_bits_per_sec``."""
    fds: Sigmoid = field(default_factory=lambda: Sigmoid(85.0, 0.30))
    link_capacity_bits_per_sec: float = 1e9
    """Capacity of one direction of the node's link; default 1 Gbit/s."""

    def __post_init__(self) -> None:
        capacity = self.link_capacity_bits_per_sec
        if not (math.isfinite(capacity) and capacity > 0):
            raise ConfigError("link_capacity_bits_per_sec", f"must be finite and > 0, got {capacity!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "link_capacity_bits_per_sec" and not isinstance(value, Sigmoid):
                raise ConfigError(f.name, f"must be a Sigmoid, got {type(value).__name__}")


DEFAULT_THRESHOLDS = PowerThresholds()
"""The documented default thresholds."""


def _pressures(sample: ResourceSample, thresholds: PowerThresholds) -> dict[str, float]:
    """The pressure ``x`` of every resource, higher = worse (see the module table)."""
    return {
        "cpu": sample.cpu_percent,
        "iowait": sample.iowait_percent,
        "memory": 100.0 - sample.memory_available_percent,
        "swap": sample.swap_bytes_per_sec / _MIB,
        "disk": sample.disk_busy_percent,
        "network": sample.network_bytes_per_sec * 8.0 / thresholds.link_capacity_bits_per_sec * 100.0,
        "fds": sample.fd_usage_percent,
    }


def resource_scores(sample: ResourceSample, thresholds: PowerThresholds = DEFAULT_THRESHOLDS) -> dict[str, float]:
    """Score in ``[0, 1]`` per resource (1 = no pressure), keyed by the resource names of the table.

    Useful to explain a level: the lowest score is the bottleneck (see :func:`bottleneck`).
    """
    return {name: getattr(thresholds, name).score(x) for name, x in _pressures(sample, thresholds).items()}


def bottleneck(sample: ResourceSample, thresholds: PowerThresholds = DEFAULT_THRESHOLDS) -> tuple[str, float]:
    """The resource with the lowest score and that score; ties go to the first in table order."""
    scores = resource_scores(sample, thresholds)
    name = min(scores, key=scores.__getitem__)
    return name, scores[name]


def power_reserve_level(sample: ResourceSample, thresholds: PowerThresholds = DEFAULT_THRESHOLDS) -> int:
    """Power reserve level 0-5 of ``sample``: ``floor(5 * min(scores) + 0.5)``, clamped."""
    worst = min(resource_scores(sample, thresholds).values())
    level = math.floor(worst * MAX_POWER_RESERVE_LEVEL + 0.5)
    return max(0, min(MAX_POWER_RESERVE_LEVEL, level))
