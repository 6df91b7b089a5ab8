"""The reporting loop against the real test supervisor: steering, directives, schedule.

Timing assertions are deliberately lenient (noisy 2-core CI machines): they check orders of
magnitude and lower bounds the loop guarantees, never tight windows.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

import pytest

from supervit.client import SupervitClient
from supervit.metrics import StaticMetricsProvider
from supervit.protocol import supervisor_pb2
from supervit.testing import SupervisorDouble
from tests.client.conftest import FixedRandom, fast_config

MakeClient = Callable[..., SupervitClient]
D = supervisor_pb2.DirectiveType


def _report_times(double: SupervisorDouble) -> list[float]:
    return [r.at for r in double.calls("Report", ok=True)]


async def _reports(double: SupervisorDouble, count: int, within: float = 5.0) -> None:
    await double.wait_for(lambda: len(double.reports()) >= count, within, f"{count} report(s)")


async def test_reports_follow_the_configured_interval(double: SupervisorDouble, make_client: MakeClient) -> None:
    pauses: list[float] = []

    async def sleep(delay: float) -> None:
        pauses.append(delay)
        await asyncio.sleep(delay)

    # rng 0: no random first-report delay, so every recorded pause is an interval wait.
    client = make_client(
        fast_config(double.endpoint, status_report_interval_secs=0.2), rng=FixedRandom(0.0), sleep=sleep
    )
    await client.start_status_reporting()
    await client.start_status_reporting()  # idempotent
    await _reports(double, 6)
    times = _report_times(double)[:6]
    # Never sooner than the interval (a lower bound holds however loaded the machine is) ...
    assert times[-1] - times[0] >= 5 * 0.2 * 0.9, times
    # ... and never asked to wait longer: each pause is the interval less the report's own time.
    waits = [p for p in pauses if p < 60]  # not the health-check loop's interval
    assert len(waits) >= 5 and all(0 < p <= 0.2 for p in waits), pauses
    [registration] = double.calls("RegisterNode")
    assert registration.ok and registration.at < double.calls("Report")[0].at


async def test_next_report_interval_steers_the_loop(double: SupervisorDouble, make_client: MakeClient) -> None:
    double.next_report_interval_secs = 1
    client = make_client(fast_config(double.endpoint, status_report_interval_secs=0.1), rng=FixedRandom(0.0))
    await client.start_status_reporting()
    await _reports(double, 4, within=8)
    times = _report_times(double)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert client.current_interval_secs == 1
    # Never sooner than the steered interval (small slack for arrival jitter), not much later.
    assert all(0.6 <= gap <= 2.5 for gap in gaps), gaps


async def test_steered_interval_is_clamped(double: SupervisorDouble, make_client: MakeClient) -> None:
    double.next_report_interval_secs = 3600
    client = make_client(fast_config(double.endpoint, max_report_interval_secs=0.3))
    await client.start_status_reporting()
    await _reports(double, 4)
    assert client.current_interval_secs == 0.3
    assert client.state.current_interval_secs == 0.3


async def test_adjust_interval_directive(double: SupervisorDouble, make_client: MakeClient) -> None:
    double.queue_directive(D.ADJUST_INTERVAL, "0.6")
    client = make_client(fast_config(double.endpoint, status_report_interval_secs=0.1), rng=FixedRandom(0.0))
    await client.start_status_reporting()
    await _reports(double, 4)
    assert client.current_interval_secs == pytest.approx(0.6)
    times = _report_times(double)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.4 for gap in gaps), gaps  # configured 0.1 s would be far below


async def test_adjust_interval_is_clamped_to_the_minimum(double: SupervisorDouble, make_client: MakeClient) -> None:
    double.queue_directive(D.ADJUST_INTERVAL, "0.001")
    client = make_client(fast_config(double.endpoint, min_report_interval_secs=0.15))
    await client.start_status_reporting()
    await _reports(double, 2)
    assert client.current_interval_secs == pytest.approx(0.15)


async def test_request_full_report_sends_one_at_once(double: SupervisorDouble, make_client: MakeClient) -> None:
    double.queue_directive(D.REQUEST_FULL_REPORT)
    pauses: list[float] = []

    async def sleep(delay: float) -> None:
        pauses.append(delay)
        await asyncio.sleep(delay)

    client = make_client(fast_config(double.endpoint, status_report_interval_secs=4), rng=FixedRandom(0.0), sleep=sleep)
    await client.start_status_reporting()
    await _reports(double, 2, within=3)  # the interval alone would take 4 s
    first, second = double.calls("Report", ok=True)[:2]
    assert second.at - first.at < 2.0
    full = second.request
    assert full.HasField("metrics") and len(full.services) == 2
    # Back to the 4 s interval afterwards: the loop waits (most of) 4 s, with no report meanwhile.
    await double.wait_for(lambda: any(p > 3 for p in pauses), what="the loop to wait for the next interval")
    assert len(double.reports()) == 2


async def test_graceful_shutdown_calls_the_handler_once(double: SupervisorDouble, make_client: MakeClient) -> None:
    reasons: list[str] = []
    called = asyncio.Event()

    async def on_shutdown(reason: str) -> None:
        reasons.append(reason)
        called.set()

    double.queue_directive(D.GRACEFUL_SHUTDOWN, "maintenance window")
    double.queue_directive(D.GRACEFUL_SHUTDOWN, "again")
    client = make_client(fast_config(double.endpoint), on_shutdown=on_shutdown)
    await client.start_status_reporting()
    await asyncio.wait_for(called.wait(), 5)
    await _reports(double, 3)
    assert reasons == ["maintenance window"]
    assert client.shutdown_requested


async def test_graceful_shutdown_handler_may_stop_the_client(double: SupervisorDouble, make_client: MakeClient) -> None:
    reasons: list[str] = []
    done = asyncio.Event()

    async def on_shutdown(reason: str) -> None:
        reasons.append(reason)
        await client.stop()
        done.set()

    double.queue_directive(D.GRACEFUL_SHUTDOWN)  # no payload: reason ""
    client = make_client(fast_config(double.endpoint), on_shutdown=on_shutdown)
    await client.start_status_reporting()
    await asyncio.wait_for(done.wait(), 5)
    assert reasons == [""]
    assert client.state.status.value == "disconnected"
    count = len(double.calls("Report"))
    await asyncio.sleep(0.5)
    assert len(double.calls("Report")) == count  # the loop really stopped


async def test_malformed_and_unknown_directives_are_ignored(
    double: SupervisorDouble, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    for payload in ("abc", "-5", "nan", "inf", "", "0"):
        double.queue_directive(D.ADJUST_INTERVAL, payload)
    double.queue_directive(D.DIRECTIVE_TYPE_UNSPECIFIED, "x")
    double.queue_raw_directive(b"\x08\x63\x12\x05hello")  # type 99: unknown to this build
    caplog.set_level(logging.WARNING, logger="supervit.client")
    client = make_client(fast_config(double.endpoint, status_report_interval_secs=0.1))
    await client.start_status_reporting()
    await _reports(double, 11, within=6)
    assert client.current_interval_secs == pytest.approx(0.1)
    ignored = [r for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(ignored) == 8, [r.getMessage() for r in ignored]


async def test_realm_version_and_power_level_come_from_their_sources(
    double: SupervisorDouble, make_client: MakeClient, metrics: StaticMetricsProvider
) -> None:
    version = 0

    async def realm_version() -> int:
        return version

    client = make_client(fast_config(double.endpoint), realm_version=realm_version)
    await client.start_status_reporting()
    await _reports(double, 1)
    version = 17
    metrics.update(power_reserve_level=1)
    await double.wait_for(
        lambda: any(r.realm_sync_version == 17 and r.power_reserve_level == 1 for r in double.reports()),
        what="a report with the new realm version and power level",
    )
    assert double.reports()[0].realm_sync_version == 0
    assert double.reports()[0].power_reserve_level == 4


async def test_first_report_is_delayed_by_a_random_fraction(double: SupervisorDouble, make_client: MakeClient) -> None:
    client = make_client(fast_config(double.endpoint, status_report_interval_secs=1.5), rng=FixedRandom(0.5))
    await client.start_status_reporting()
    await _reports(double, 1)
    registered = double.calls("RegisterNode", ok=True)[0].at
    first_report = double.calls("Report", ok=True)[0].at
    assert first_report - registered >= 0.65  # half of 1.5 s, minus slack


async def test_health_checks_run_on_their_interval(double: SupervisorDouble, make_client: MakeClient) -> None:
    client = make_client(fast_config(double.endpoint, status_report_interval_secs=5, health_check_interval_secs=0.2))
    await client.start_status_reporting()
    await double.wait_for(lambda: len(double.calls("HealthCheck", ok=True)) >= 4, what="4 health checks")
    assert client.state.last_success is not None
