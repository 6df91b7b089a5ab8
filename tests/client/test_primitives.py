"""Backoff, skew estimation, error mapping and channel options (no network)."""

from __future__ import annotations

import random

import grpc
import pytest

from supervit._exceptions import NotRegisteredError, RpcError
from supervit.client import Backoff, ClockSkewEstimator
from supervit.client._channel import channel_options
from supervit.client._errors import (
    is_auth_failure,
    is_outage,
    is_timestamp_rejection,
    server_time_from_metadata,
    to_rpc_error,
)
from tests.client.conftest import FixedRandom, fast_config


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 4.0, rng=FixedRandom(1.0))
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.attempts == 6
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == 0.5


def test_backoff_full_jitter_spans_zero_to_ceiling() -> None:
    backoff = Backoff(1.0, 8.0, rng=random.Random(7))
    delays = []
    for _ in range(2000):
        backoff.reset()
        for _ in range(3):
            backoff.next_delay()
        delays.append(backoff.next_delay())  # 4th attempt: ceiling 8
    assert min(delays) >= 0 and max(delays) <= 8.0
    assert min(delays) < 0.5 and max(delays) > 7.5  # the whole range is used, not just the top


def test_backoff_survives_many_attempts_and_rejects_bad_bounds() -> None:
    backoff = Backoff(1.0, 30.0, rng=FixedRandom(1.0))
    for _ in range(5000):
        assert backoff.next_delay() <= 30.0
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)


def test_skew_first_sample_is_round_trip_aware() -> None:
    est = ClockSkewEstimator()
    # Node clock 900 s ahead; request sent at 1900.0, answered at 1900.2 (node clock);
    # server read 1000.1 and truncated it to 1000.
    assert est.observe(1000, 1900.0, 1900.2) == pytest.approx(899.6, abs=1e-9)
    assert est.samples == 1


def test_skew_is_smoothed_and_steps_on_a_clock_jump() -> None:
    est = ClockSkewEstimator(smoothing=0.5)
    est.observe(1000, 1010.5, 1010.5)  # 10.0
    est.observe(1000, 1011.5, 1011.5)  # sample 11 -> halfway
    assert est.skew_secs == pytest.approx(10.5)
    est.observe(1000, 1300.5, 1300.5)  # a 300 s jump is adopted at once
    assert est.skew_secs == pytest.approx(300.0)


def test_skew_below_resolution_reads_zero() -> None:
    est = ClockSkewEstimator()
    est.observe(1000, 1000.4, 1000.6)
    assert est.raw_secs == pytest.approx(0.0)
    assert est.skew_secs == 0.0
    est.observe(1000.0, 999.3, 999.3)  # fractional server time: used as is, still < 1 s
    assert est.skew_secs == 0.0
    est.reset()
    assert est.raw_secs is None and est.samples == 0


def test_error_mapping() -> None:
    assert isinstance(to_rpc_error("Report", grpc.StatusCode.NOT_FOUND, "node not registered"), NotRegisteredError)
    plain = to_rpc_error("Report", grpc.StatusCode.UNAVAILABLE, None)
    assert type(plain) is RpcError and plain.details == "" and is_outage(plain)
    ts = RpcError("Report", grpc.StatusCode.UNAUTHENTICATED, "timestamp out of range")
    assert is_timestamp_rejection(ts) and is_auth_failure(ts)
    actrix = RpcError("Report", grpc.StatusCode.UNAUTHENTICATED, "timestamp outside allowed window")
    assert is_timestamp_rejection(actrix)
    sig = RpcError("Report", grpc.StatusCode.UNAUTHENTICATED, "invalid signature")
    assert not is_timestamp_rejection(sig) and is_auth_failure(sig) and not is_outage(sig)
    assert not is_timestamp_rejection(RpcError("Report", grpc.StatusCode.INTERNAL, "timestamp out of range"))


def test_server_time_metadata_parsing() -> None:
    assert server_time_from_metadata((("x-server-time", "1764201600"),)) == 1764201600.0
    assert server_time_from_metadata((("X-Server-Time", b"1764201600.5"),)) == 1764201600.5
    assert server_time_from_metadata(None, (("other", "1"),), (("x-server-time", "12"),)) == 12.0
    for junk in ("", "soon", "nan", "-5", "inf"):
        assert server_time_from_metadata((("x-server-time", junk),)) is None
    assert server_time_from_metadata((("malformed",),)) is None


def test_channel_options_keepalive_backoff_and_tls_override() -> None:
    options = dict(channel_options(fast_config("http://127.0.0.1:1", keepalive_secs=20, rpc_timeout_secs=5)))
    assert options["grpc.keepalive_time_ms"] == 20_000
    assert options["grpc.keepalive_timeout_ms"] == 5_000
    assert options["grpc.http2.ping_timeout_ms"] == 5_000
    assert options["grpc.http2.bdp_probe"] == 0
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.initial_reconnect_backoff_ms"] == 50
    assert options["grpc.max_reconnect_backoff_ms"] == 400
    assert "grpc.ssl_target_name_override" not in options
    tls = dict(channel_options(fast_config("https://10.0.0.5:1", enable_tls=True, tls_domain="supervisor.example")))
    assert tls["grpc.ssl_target_name_override"] == "supervisor.example"
