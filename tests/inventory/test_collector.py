"""ServiceCollector: registry, counters, conversions, and thread safety."""

from __future__ import annotations

import threading

import pytest

from supervit._exceptions import NotFoundError
from supervit.inventory import ServiceCollector, ServiceInfo, ServiceState
from supervit.protocol import common_pb2, supervisor_pb2

ADV = supervisor_pb2.ServiceAdvertisementStatus


def test_states_map_to_health_and_advertisement_status() -> None:
    """healthy/running → RUNNING and healthy; error → ERROR; disabled → DISABLED; both unhealthy."""
    collector = ServiceCollector([ServiceInfo(f"s-{state}", common_pb2.TURN, state=state) for state in ServiceState])
    by_name = {a.name: a.status for a in collector.advertisements()}
    assert by_name == {
        "s-healthy": ADV.SERVICE_ADVERTISEMENT_STATUS_RUNNING,
        "s-running": ADV.SERVICE_ADVERTISEMENT_STATUS_RUNNING,
        "s-error": ADV.SERVICE_ADVERTISEMENT_STATUS_ERROR,
        "s-disabled": ADV.SERVICE_ADVERTISEMENT_STATUS_DISABLED,
    }
    health = {s.name: s.is_healthy for s in collector.statuses()}
    assert health == {"s-healthy": True, "s-running": True, "s-error": False, "s-disabled": False}


def test_counters_and_average_latency() -> None:
    """record_request counts totals, failures and the mean latency."""
    collector = ServiceCollector([ServiceInfo("turn", common_pb2.TURN, domain="turn.example", port=3478, url="turn:x")])
    collector.record_request("turn", 10.0)
    collector.record_request("turn", 30.0, failed=True)
    collector.set_active_connections("turn", 7)
    (status,) = collector.statuses()
    assert (status.total_requests, status.failed_requests, status.active_connections) == (2, 1, 7)
    assert status.average_latency_ms == pytest.approx(20.0)
    assert (status.port, status.domain, status.url) == (3478, "turn.example", "turn:x")
    assert status.IsInitialized()


def test_optional_fields_left_unset() -> None:
    """Absent url/port/domain stay absent in ServiceStatus and the advertisement is complete."""
    collector = ServiceCollector([ServiceInfo("sig", common_pb2.SIGNALING)])
    (status,) = collector.statuses()
    assert not status.HasField("url") and not status.HasField("port") and not status.HasField("domain")
    (adv,) = collector.advertisements()
    assert adv.IsInitialized() and adv.port_info == "" and not adv.HasField("url")


def test_unknown_service_and_bad_input() -> None:
    """Updating an unknown service raises NotFoundError; bad values raise ValueError."""
    collector = ServiceCollector()
    with pytest.raises(NotFoundError):
        collector.set_state("nope", "error")
    with pytest.raises(ValueError, match="empty"):
        collector.add(ServiceInfo("", common_pb2.STUN))
    collector.add(ServiceInfo("a", common_pb2.STUN))
    with pytest.raises(ValueError, match="negative"):
        collector.set_active_connections("a", -1)
    with pytest.raises(ValueError):
        collector.set_state("a", "sleepy")
    assert collector.remove("a") and not collector.remove("a")


def test_concurrent_updates_from_threads_lose_nothing() -> None:
    """8 threads × 1000 record_request calls: every request is counted."""
    collector = ServiceCollector([ServiceInfo("turn", common_pb2.TURN)])

    def work() -> None:
        for _ in range(1000):
            collector.record_request("turn", 1.0)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = collector.get("turn")
    assert info is not None and info.total_requests == 8000
