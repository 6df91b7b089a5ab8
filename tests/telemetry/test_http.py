"""MetricsServer over real HTTP: /metrics, /healthz, /readyz, and what it does with odd requests."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterable

import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from supervit import SupervitError
from supervit.telemetry import DaemonMetrics, MetricsServer
from tests.telemetry._scrape import Scrape, http_get, scrape


class Switch:
    """A readiness check whose answer the test sets."""

    def __init__(self) -> None:
        self.problem: str | None = None
        self.calls = 0

    async def __call__(self) -> str | None:
        self.calls += 1
        return self.problem


@pytest.fixture
async def server() -> AsyncIterator[tuple[MetricsServer, Switch, str]]:
    switch = Switch()
    server = MetricsServer(DaemonMetrics("node"), {"storage": switch})
    yield server, switch, await started(server)
    await server.stop()


async def started(server: MetricsServer) -> str:
    return f"127.0.0.1:{await server.start('127.0.0.1', 0)}"


async def test_metrics_is_a_parseable_exposition_with_the_standard_collectors(
    server: tuple[MetricsServer, Switch, str],
) -> None:
    _, _, address = server
    found = await scrape(address)
    assert found.value("supervit_build_info", daemon="node", version=__import__("supervit").__version__) == 1
    for family in ("process_cpu_seconds", "python_info", "python_gc_objects_collected", "supervit_auth_refusals"):
        assert family in found.families, family
    for reason in ("timestamp", "signature", "replay", "malformed"):
        assert found.value("supervit_auth_refusals_total", reason=reason) == 0


async def test_openmetrics_when_asked(server: tuple[MetricsServer, Switch, str]) -> None:
    _, _, address = server
    answer = await http_get(address, "/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert answer.status == 200
    assert answer.content_type.startswith("application/openmetrics-text")
    assert answer.body.rstrip().endswith("# EOF")


async def test_healthz_and_readyz_follow_the_checks(server: tuple[MetricsServer, Switch, str]) -> None:
    _, switch, address = server
    health = await http_get(address, "/healthz")
    assert (health.status, json.loads(health.body)) == (200, {"status": "ok"})
    assert health.content_type == "application/json"

    ready = await http_get(address, "/readyz")
    assert (ready.status, json.loads(ready.body)) == (200, {"status": "ready", "checks": {"storage": "ok"}})

    switch.problem = "disk on fire"
    ready = await http_get(address, "/readyz")
    assert ready.status == 503
    assert json.loads(ready.body) == {"status": "not ready", "checks": {"storage": "disk on fire"}}
    # Liveness does not depend on readiness.
    assert (await http_get(address, "/healthz")).status == 200

    switch.problem = None
    assert (await http_get(address, "/readyz")).status == 200
    assert switch.calls == 3


async def test_a_failing_check_is_not_ready_and_says_why() -> None:
    async def broken() -> str | None:
        raise OSError("read-only file system")

    async def fine() -> str | None:
        return None

    srv = MetricsServer(DaemonMetrics("supervisor"), {"storage": broken, "other": fine})
    address = await started(srv)
    try:
        ready = await http_get(address, "/readyz")
        assert ready.status == 503
        assert json.loads(ready.body)["checks"] == {"storage": "OSError: read-only file system", "other": "ok"}
    finally:
        await srv.stop()


async def test_unknown_paths_methods_and_garbage(server: tuple[MetricsServer, Switch, str]) -> None:
    _, _, address = server
    assert (await http_get(address, "/nope")).status == 404
    assert (await http_get(address, "/")).status == 200
    post = await http_get(address, "/metrics", method="POST")
    assert post.status == 405
    head = await http_get(address, "/healthz", method="HEAD")
    assert (head.status, head.body) == (200, "")
    # A query string is ignored (Prometheus may add one).
    assert (await http_get(address, "/metrics?x=1")).status == 200

    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"NONSENSE\r\n\r\n")
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 400 ")
    # The server keeps serving after all of that.
    assert (await http_get(address, "/healthz")).status == 200


async def test_samplers_feed_the_exposition_and_a_failing_one_hides_only_itself() -> None:
    metrics = DaemonMetrics("node")
    calls = 0

    async def good() -> Iterable[Metric]:
        nonlocal calls
        calls += 1
        return [GaugeMetricFamily("supervit_test_gauge", "A test figure.", value=calls)]

    async def bad() -> Iterable[Metric]:
        raise RuntimeError("source unavailable")

    metrics.add_sampler("bad", bad)
    metrics.add_sampler("good", good)
    srv = MetricsServer(metrics)
    address = await started(srv)
    try:
        assert (await scrape(address)).value("supervit_test_gauge") == 1
        assert (await scrape(address)).value("supervit_test_gauge") == 2  # computed at each scrape
        assert (await http_get(address, "/readyz")).status == 200  # no checks: ready
    finally:
        await srv.stop()


async def test_a_taken_port_is_a_clear_error_and_stop_releases_the_port() -> None:
    srv = MetricsServer(DaemonMetrics("node"))
    address = await started(srv)
    other = MetricsServer(DaemonMetrics("node"))
    with pytest.raises(SupervitError, match=rf"cannot listen on {address} for metrics"):
        await other.start("127.0.0.1", int(address.rsplit(":", 1)[1]))
    await srv.stop()
    await srv.stop()  # idempotent
    with socket.create_server(("127.0.0.1", int(address.rsplit(":", 1)[1]))):
        pass  # free again


async def test_stop_drops_a_connection_that_never_sends_a_request() -> None:
    srv = MetricsServer(DaemonMetrics("node"))
    address = await started(srv)
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /metrics HTTP/1.1\r\n")  # an incomplete head: the handler waits for more
    await writer.drain()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(srv.stop(), 5)
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


def test_scrape_helper_reads_labels_exactly() -> None:
    text = '# TYPE x_total counter\nx_total{a="1"} 2\nx_total{a="1",b="2"} 3\n'
    found = Scrape(text)
    assert found.value("x_total", a="1") == 2
    assert found.sum("x_total", a="1") == 5


async def test_idle_connections_beyond_the_cap_are_closed_and_serving_goes_on() -> None:
    from supervit.telemetry._http import MAX_CONNECTIONS

    srv = MetricsServer(DaemonMetrics("node"))
    address = await started(srv)
    host, port = address.rsplit(":", 1)
    idle = [await asyncio.open_connection(host, int(port)) for _ in range(MAX_CONNECTIONS)]
    try:
        await asyncio.sleep(0.1)  # let the server accept them all
        reader, writer = await asyncio.open_connection(host, int(port))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # one too many: closed without an answer
        writer.close()
        await writer.wait_closed()
    finally:
        for _, w in idle:
            w.close()
            await w.wait_closed()
    deadline = asyncio.get_running_loop().time() + 5
    while True:  # the idle ones are released as the server sees them close
        try:
            if (await http_get(address, "/healthz")).status == 200:
                break
        except OSError:
            pass  # still at the cap: closed without an answer
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    await srv.stop()
