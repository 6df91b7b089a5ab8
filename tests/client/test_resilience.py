"""Outages, unknown-node answers, clock skew and refused credentials, against the real double."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest

from supervit._exceptions import RpcError
from supervit.auth import SharedSecret
from supervit.client import ConnectionStatus, SupervitClient
from supervit.testing import SupervisorDouble
from tests.client.conftest import FixedRandom, fast_config
from tests.conftest import OTHER_SECRET_HEX

MakeClient = Callable[..., SupervitClient]


def _recording_sleep(delays: list[float]) -> Callable[[float], Awaitable[None]]:
    async def sleep(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(delay)

    return sleep


def _is_subsequence(wanted: list[float], seen: list[float]) -> bool:
    it = iter(seen)
    return all(any(abs(s - w) < 1e-9 for s in it) for w in wanted)


async def test_restarted_supervisor_backoff_reregister_resume(
    double: SupervisorDouble, make_client: MakeClient
) -> None:
    delays: list[float] = []
    client = make_client(
        fast_config(double.endpoint, status_report_interval_secs=0.1, backoff_base_secs=0.05, backoff_cap_secs=0.4),
        rng=FixedRandom(1.0),  # jitter pinned at its ceiling: delays are exactly base * 2**n, capped
        sleep=_recording_sleep(delays),
    )
    await client.start_status_reporting()
    await double.wait_for(lambda: len(double.reports()) >= 2, what="reports before the outage")

    await double.stop()
    backoff = [0.05, 0.1, 0.2, 0.4, 0.4]
    await double.wait_for(lambda: _is_subsequence(backoff, delays), within=15, what="the backoff to reach its cap")
    state = client.state
    assert state.status is ConnectionStatus.DEGRADED
    assert not client.registered
    # Backed off, not spun: 0.05 + 0.1 + 0.2 + 0.4 + 0.4 ... fits ~6 attempts into 1.5 s.
    assert 2 <= state.consecutive_failures <= 15, state.consecutive_failures
    assert _is_subsequence(backoff, delays), delays

    restarted_at = time.monotonic()
    await double.start()
    await double.wait_for(
        lambda: any(r.at > restarted_at for r in double.calls("Report", ok=True)), what="a report after the restart"
    )
    after = [r for r in double.received if r.at > restarted_at]
    assert after[0].method == "RegisterNode" and after[0].ok  # registered again before reporting
    assert client.state.status is ConnectionStatus.REGISTERED
    assert client.state.consecutive_failures == 0


async def test_not_found_makes_the_node_register_again(double: SupervisorDouble, make_client: MakeClient) -> None:
    client = make_client(fast_config(double.endpoint, status_report_interval_secs=0.1))
    await client.start_status_reporting()
    await double.wait_for(lambda: len(double.reports()) >= 2, what="initial reports")

    double.forget_nodes()
    await double.wait_for(lambda: len(double.registrations()) >= 2, what="a second registration")
    refused = double.calls("Report", ok=False)
    assert refused and refused[0].code == grpc.StatusCode.NOT_FOUND
    second_registration = double.calls("RegisterNode", ok=True)[1]
    # Re-registered at once, without backing off.
    assert second_registration.at - refused[0].at < 0.5
    count = len(double.reports())
    await double.wait_for(lambda: len(double.reports()) > count, what="reports after re-registering")
    assert client.registered


async def test_not_found_right_after_registering_backs_off(double: SupervisorDouble, make_client: MakeClient) -> None:
    double.fail_next("Report", grpc.StatusCode.NOT_FOUND, "node not registered", times=1000)
    client = make_client(
        fast_config(double.endpoint, status_report_interval_secs=0.05, backoff_base_secs=0.05, backoff_cap_secs=0.4),
        rng=FixedRandom(1.0),
    )
    await client.start_status_reporting()

    def gaps_between_registrations() -> list[float]:
        registrations = [r.at for r in double.calls("RegisterNode", ok=True)]
        return [b - a for a, b in itertools.pairwise(registrations)]

    await double.wait_for(lambda: max(gaps_between_registrations(), default=0) >= 0.3, within=15, what="a long gap")
    registrations = [r.at for r in double.calls("RegisterNode", ok=True)]
    assert 2 <= len(registrations) <= 12, len(registrations)
    gaps = [b - a for a, b in itertools.pairwise(registrations)]
    assert max(gaps) >= 0.3, gaps  # the backoff grew towards its cap instead of spinning


async def test_outage_error_forces_registration_before_the_next_report(
    double: SupervisorDouble, make_client: MakeClient
) -> None:
    client = make_client(fast_config(double.endpoint, status_report_interval_secs=0.1))
    await client.start_status_reporting()
    await double.wait_for(lambda: len(double.reports()) >= 1, what="a report")
    double.fail_next("Report", grpc.StatusCode.UNAVAILABLE, "overloaded")
    await double.wait_for(lambda: len(double.registrations()) >= 2, what="registration after the outage")
    failed = double.calls("Report", ok=False)[0]
    later = [r for r in double.received if r.at > failed.at]
    assert later[0].method == "RegisterNode"


async def test_node_clock_900s_ahead_recovers(double: SupervisorDouble, make_client: MakeClient) -> None:
    client = make_client(fast_config(double.endpoint), clock=lambda: time.time() + 900)
    await client.connect()
    await client.register_node()  # refused once ("timestamp out of range"), then retried and accepted

    first, second = double.calls("RegisterNode")
    assert first.code == grpc.StatusCode.UNAUTHENTICATED and first.details == "timestamp out of range"
    assert second.ok
    assert client.clock_skew_secs == pytest.approx(900, abs=2)
    assert client.state.clock_skew_secs == client.clock_skew_secs
    assert client.signer.clock_offset == pytest.approx(-900, abs=2)
    assert (await client.report()).message.received
    assert (await client.health_check()).healthy
    assert all(r.ok for r in double.received[1:])


async def test_supervisor_clock_behind_is_handled_in_the_loop(
    double: SupervisorDouble, make_client: MakeClient
) -> None:
    double.clock_offset = -900
    client = make_client(fast_config(double.endpoint))
    await client.start_status_reporting()
    await double.wait_for(lambda: len(double.reports()) >= 2, what="reports despite the skew")
    assert client.clock_skew_secs == pytest.approx(900, abs=2)
    assert len(double.calls(ok=False)) == 1  # only the very first call was refused


async def test_skew_without_server_time_falls_back_to_backoff(
    double: SupervisorDouble, make_client: MakeClient
) -> None:
    double.send_server_time = False
    delays: list[float] = []
    client = make_client(
        fast_config(double.endpoint, backoff_base_secs=0.05, backoff_cap_secs=0.4),
        clock=lambda: time.time() + 900,
        rng=FixedRandom(0.5),
        sleep=_recording_sleep(delays),
    )
    await client.connect()
    with pytest.raises(RpcError) as info:
        await client.register_node()
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    # The client asked for the time with a HealthCheck, which was refused too.
    assert [r.method for r in double.received] == ["RegisterNode", "HealthCheck"]

    before = len(double.calls("RegisterNode"))
    await client.start_status_reporting()
    await double.wait_for(lambda: len(double.calls("RegisterNode")) >= before + 5, what="five refused registrations")
    # Backing off, not spinning: a pause before every retry, growing to the cap (jitter pinned at half).
    backoffs = [d for d in delays if d < 60]  # not the health-check loop's interval
    assert backoffs[:4] == pytest.approx([0.025, 0.05, 0.1, 0.2]), delays
    assert len(backoffs) >= len(double.calls("RegisterNode")) - before - 1, delays
    assert not client.registered

    double.send_server_time = True  # a supervisor that tells the time lets the node in
    await double.wait_for(lambda: len(double.reports()) >= 1, what="a report once the server time is known")
    assert client.clock_skew_secs == pytest.approx(900, abs=2)


async def test_wrong_secret_is_logged_loudly_and_backed_off(
    double: SupervisorDouble, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="supervit.client")
    config = fast_config(double.endpoint, shared_secret=OTHER_SECRET_HEX, backoff_base_secs=0.05, backoff_cap_secs=0.4)
    delays: list[float] = []
    client = make_client(config, rng=FixedRandom(1.0), sleep=_recording_sleep(delays))
    await client.start_status_reporting()
    # Until the backoff reached its cap (0.05 + 0.1 + 0.2 + 0.4 s of waiting), not a fixed time.
    await double.wait_for(lambda: 0.4 in delays, within=15, what="the backoff to reach its cap")
    attempts = double.calls("RegisterNode")
    assert 2 <= len(attempts) <= 12, len(attempts)
    assert all(r.code == grpc.StatusCode.UNAUTHENTICATED for r in attempts)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "refused" in errors[0].getMessage()
    key_id = SharedSecret.from_hex(OTHER_SECRET_HEX).key_id
    assert key_id in errors[0].getMessage()
    assert all(OTHER_SECRET_HEX not in r.getMessage() for r in caplog.records)
    assert client.state.status is ConnectionStatus.DEGRADED


async def test_loop_survives_a_failing_collector(
    double: SupervisorDouble, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    class FlakyCollector:
        def __init__(self) -> None:
            self.calls = 0

        def advertisements(self) -> list[object]:
            return []

        def statuses(self) -> list[object]:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("collector bug")
            return []

    client = make_client(
        fast_config(double.endpoint, status_report_interval_secs=0.1), service_collector=FlakyCollector()
    )
    await client.start_status_reporting()
    await double.wait_for(lambda: len(double.reports()) >= 2, what="reports after the collector failed once")
    assert any("unexpected error" in r.getMessage() for r in caplog.records)


async def test_outage_warns_at_first_failure_then_at_most_once_a_minute(
    make_client: MakeClient, unused_tcp_port_addr: str, caplog: pytest.LogCaptureFixture
) -> None:
    """While the supervisor is unreachable: WARNING at the first failure, then at most once a
    minute (node clock), each with the attempt count and the next retry; the rest at DEBUG."""
    now = [1_800_000_000.0]
    attempts: list[float] = []
    enough = asyncio.Event()

    async def sleep(delay: float) -> None:
        attempts.append(now[0])
        now[0] += 17.0  # each wait moves the node's clock on; the real loop does not wait
        if len(attempts) >= 25:
            enough.set()
        await asyncio.sleep(0)

    client = make_client(
        fast_config(f"http://{unused_tcp_port_addr}", health_check_interval_secs=3600),
        clock=lambda: now[0],
        sleep=sleep,
    )
    caplog.set_level(logging.DEBUG, logger="supervit.client")
    await client.start_status_reporting()
    await asyncio.wait_for(enough.wait(), 30)
    await client.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unreachable" in r.getMessage()]
    assert len(attempts) >= 25
    assert 2 <= len(warnings) < len(attempts) // 2, [r.getMessage() for r in warnings]
    assert "(attempt 1)" in warnings[0].getMessage() and "next retry in" in warnings[0].getMessage()
    assert "(attempt 1)" not in warnings[1].getMessage()
    stamps = [r.created for r in warnings]
    assert stamps == sorted(stamps)
    # The node clock at each warning is in the message as "unreachable for Ns": a minute apart at least.
    seconds = [int(r.getMessage().split("unreachable for ")[1].split("s:")[0]) for r in warnings]
    assert seconds[0] == 0 and all(b - a >= 60 for a, b in itertools.pairwise(seconds)), seconds
    assert any(r.levelno == logging.DEBUG and "attempt" in r.getMessage() for r in caplog.records)
