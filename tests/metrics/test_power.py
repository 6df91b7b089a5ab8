"""Power reserve level on synthetic samples."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest

from supervit._exceptions import ConfigError
from supervit.metrics import (
    DEFAULT_THRESHOLDS,
    MAX_POWER_RESERVE_LEVEL,
    PowerThresholds,
    ResourceSample,
    Sigmoid,
    bottleneck,
    power_reserve_level,
    resource_scores,
)

MIB = 1024 * 1024
GBIT_BYTES_PER_SEC = 1e9 / 8

# A quiet but realistic machine: a little of everything.
IDLE = ResourceSample(
    cpu_percent=3.0,
    iowait_percent=0.5,
    memory_available_percent=85.0,
    swap_bytes_per_sec=0.0,
    disk_busy_percent=2.0,
    network_bytes_per_sec=50_000.0,
    fd_usage_percent=1.0,
)


def with_(**changes: float) -> ResourceSample:
    fields = {name: getattr(IDLE, name) for name in ResourceSample.__dataclass_fields__}
    fields.update(changes)
    return ResourceSample(**fields)


def test_idle_is_level_5() -> None:
    assert power_reserve_level(IDLE) == 5
    assert power_reserve_level(ResourceSample()) == 5
    assert all(score > 0.95 for score in resource_scores(IDLE).values())


@pytest.mark.parametrize(
    ("name", "sample"),
    [
        ("cpu", with_(cpu_percent=98.0)),
        ("cpu", with_(cpu_percent=100.0)),
        ("iowait", with_(iowait_percent=60.0)),
        ("memory", with_(memory_available_percent=3.0)),
        ("memory", with_(memory_available_percent=0.0)),
        ("swap", with_(swap_bytes_per_sec=50 * MIB)),
        ("swap", with_(swap_bytes_per_sec=20 * MIB)),
        ("disk", with_(disk_busy_percent=100.0)),
        ("network", with_(network_bytes_per_sec=GBIT_BYTES_PER_SEC)),
        ("fds", with_(fd_usage_percent=95.0)),
        ("fds", with_(fd_usage_percent=100.0)),
    ],
)
def test_saturated_resource_is_level_at_most_1_and_named_as_bottleneck(name: str, sample: ResourceSample) -> None:
    assert power_reserve_level(sample) <= 1
    assert bottleneck(sample)[0] == name


def test_documented_boundaries() -> None:
    # From the module table: cpu allows 5 up to 65.4 %, forces <= 1 above 85.6 %, 0 above 94.6 %.
    assert power_reserve_level(with_(cpu_percent=65.0)) == 5
    assert power_reserve_level(with_(cpu_percent=80.0)) == 3
    assert power_reserve_level(with_(cpu_percent=86.0)) == 1
    assert power_reserve_level(with_(cpu_percent=95.0)) == 0
    assert power_reserve_level(with_(memory_available_percent=17.5)) == 5
    assert power_reserve_level(with_(memory_available_percent=7.0)) <= 1


def test_level_mapping_rounds_the_worst_score() -> None:
    # At the midpoint the score is exactly 0.5 -> floor(2.5 + 0.5) = 3.
    assert resource_scores(with_(cpu_percent=80.0))["cpu"] == pytest.approx(0.5)
    assert power_reserve_level(with_(cpu_percent=80.0)) == 3
    # The worst resource decides, not the average.
    both = with_(cpu_percent=80.0, disk_busy_percent=99.0)
    assert power_reserve_level(both) == power_reserve_level(with_(disk_busy_percent=99.0)) == 0


GRID = {
    "cpu_percent": [0.0, 50.0, 75.0, 85.0, 95.0, 100.0],
    "iowait_percent": [0.0, 20.0, 40.0],
    "memory_available_percent": [100.0, 20.0, 10.0, 2.0],
    "swap_bytes_per_sec": [0.0, 8 * MIB, 30 * MIB],
    "disk_busy_percent": [0.0, 70.0, 100.0],
    "network_bytes_per_sec": [0.0, 0.8 * GBIT_BYTES_PER_SEC],
    "fd_usage_percent": [0.0, 80.0, 90.0],
}
# Direction in which each field means *more* load.
MORE_LOAD = {name: (-1.0 if name == "memory_available_percent" else 1.0) for name in GRID}


def test_monotonic_more_load_never_raises_the_level() -> None:
    names = list(GRID)
    for values in itertools.product(*GRID.values()):
        sample = ResourceSample(**dict(zip(names, values, strict=True)))
        level = power_reserve_level(sample)
        assert 0 <= level <= MAX_POWER_RESERVE_LEVEL
        for i, name in enumerate(names):
            # Every strictly heavier value of one field, the others fixed.
            for heavier in GRID[name]:
                if (heavier - values[i]) * MORE_LOAD[name] > 0:
                    worse = ResourceSample(**dict(zip(names, values, strict=True)) | {name: heavier})
                    assert power_reserve_level(worse) <= level, (sample, name, heavier)


def test_scores_are_monotonic_and_bounded() -> None:
    sigmoid = Sigmoid(midpoint=50.0, steepness=0.5)
    xs = [-1e308, -100.0, 0.0, 49.0, 50.0, 51.0, 100.0, 1e308, math.inf]
    scores = [sigmoid.score(x) for x in xs]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)  # and no OverflowError for huge inputs
    assert sigmoid.score(50.0) == 0.5


def test_nan_pressure_is_worst_case() -> None:
    assert Sigmoid(10.0, 1.0).score(math.nan) == 0.0
    assert power_reserve_level(with_(cpu_percent=math.nan)) == 0


def test_link_capacity_is_configurable() -> None:
    busy_100m = with_(network_bytes_per_sec=12_000_000.0)  # ~96 Mbit/s
    assert power_reserve_level(busy_100m) == 5
    assert power_reserve_level(busy_100m, PowerThresholds(link_capacity_bits_per_sec=100e6)) == 0


def test_custom_thresholds() -> None:
    lenient = PowerThresholds(cpu=Sigmoid(midpoint=99.0, steepness=1.0))
    assert power_reserve_level(with_(cpu_percent=95.0), lenient) == 5
    assert power_reserve_level(with_(cpu_percent=95.0), DEFAULT_THRESHOLDS) == 0


@pytest.mark.parametrize(
    "build",
    [
        lambda: Sigmoid(50.0, 0.0),
        lambda: Sigmoid(50.0, -1.0),
        lambda: Sigmoid(math.nan, 1.0),
        lambda: PowerThresholds(link_capacity_bits_per_sec=0.0),
        lambda: PowerThresholds(link_capacity_bits_per_sec=math.inf),
    ],
)
def test_invalid_thresholds_are_config_errors(build: Callable[[], object]) -> None:
    with pytest.raises(ConfigError):
        build()
