"""Observability end to end: real ``supervit supervisor`` and ``supervit node`` processes, scraped over HTTP.

Authenticated calls, one replay and one wrong-secret call against each daemon, then both
``/metrics`` are scraped and parsed with prometheus-client's parser and the counters must have
moved by exactly those amounts; the node's ``/readyz`` turns 503 while its supervisor is down and
200 once it is back. The node logs JSON at ``--log-level debug``. The Grafana dashboard may query
only metrics that these real expositions contain, and ``promtool check metrics`` (when installed)
must accept both; the example alerting rules likewise use only real metrics and load in Prometheus.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from supervit.auth import SharedSecret, Signer, request_payload
from supervit.protocol import supervised_pb2 as sd
from supervit.protocol import supervisor_pb2, supervisor_pb2_grpc
from tests.conftest import OTHER_SECRET_HEX, SECRET_HEX
from tests.e2e.test_fleet import NODE_LISTENING, NODE_METRICS, SUP_LISTENING, SUP_METRICS, Fleet, Proc
from tests.node._helpers import NodeClient
from tests.telemetry._scrape import Scrape, http_get, scrape

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DASHBOARD = EXAMPLES / "grafana" / "supervit.json"
ALERTS = EXAMPLES / "prometheus" / "supervit-alerts.yml"
SCRAPE_CONFIG = EXAMPLES / "prometheus" / "prometheus.yml"
NODE_SVC = "supervisor.v1.SupervisedService"
SUP_SVC = "supervisor.v1.SupervisorService"


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    running = Fleet(tmp_path)
    yield running
    await running.close()


async def wait_status(address: str, path: str, status: int, proc: Proc, within: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + within
    while True:
        try:
            answer = await http_get(address, path)
        except OSError:
            answer = None
        if answer is not None and answer.status == status:
            return dict(json.loads(answer.body))
        if time.monotonic() > deadline:
            pytest.fail(f"{path} of {proc.name} never answered {status} (last: {answer})\n{proc.log()[-3000:]}")
        await asyncio.sleep(0.1)


def handled(found: Scrape, service: str, method: str, code: str) -> float:
    return found.value(
        "grpc_server_handled_total", grpc_type="unary", grpc_service=service, grpc_method=method, grpc_code=code
    )


async def node_calls(address: str) -> None:
    """3 accepted ListRealms (the last one then replayed) and one signed with the wrong secret."""
    async with grpc.aio.insecure_channel(address) as channel:
        client = NodeClient(channel, node_id="n1")
        await client.call(sd.ListRealmsRequest())
        await client.call(sd.ListRealmsRequest())
        signed = client.sign(sd.ListRealmsRequest())
        await client.call(signed, sign=False)
        with pytest.raises(grpc.aio.AioRpcError, match="nonce already used"):
            await client.call(signed, sign=False)
        wrong = NodeClient(channel, node_id="n1", secret=SharedSecret.from_hex(OTHER_SECRET_HEX))
        with pytest.raises(grpc.aio.AioRpcError, match="invalid signature"):
            await wrong.call(sd.ListRealmsRequest())


async def supervisor_calls(address: str) -> None:
    """3 accepted HealthChecks (the last one then replayed) and one signed with the wrong secret."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)

        def signed(secret_hex: str = SECRET_HEX) -> supervisor_pb2.HealthCheckRequest:
            request = supervisor_pb2.HealthCheckRequest(node_id="probe")
            request.credential.CopyFrom(Signer(SharedSecret.from_hex(secret_hex)).credential(request_payload(request)))
            return request

        await stub.HealthCheck(signed())
        await stub.HealthCheck(signed())
        again = signed()
        await stub.HealthCheck(again)
        with pytest.raises(grpc.aio.AioRpcError, match="nonce already used"):
            await stub.HealthCheck(again)
        with pytest.raises(grpc.aio.AioRpcError, match="invalid signature"):
            await stub.HealthCheck(signed(OTHER_SECRET_HEX))


async def test_counters_probes_and_json_logs(fleet: Fleet) -> None:
    sup = await fleet.start_supervisor()
    # No health checks from the node during the test: the supervisor's HealthCheck counts are ours.
    node = await fleet.start_node(
        "n1", health_check_interval_secs=3600, extra='log_format = "json"', args=("--log-level", "debug")
    )
    sup_metrics, node_metrics = sup.lines[SUP_METRICS], node.lines[NODE_METRICS]
    assert (await wait_status(node_metrics, "/readyz", 200, node))["checks"] == {"storage": "ok", "supervisor": "ok"}
    assert (await wait_status(sup_metrics, "/readyz", 200, sup))["checks"] == {"storage": "ok"}
    assert (await wait_status(node_metrics, "/healthz", 200, node)) == {"status": "ok"}
    deadline = time.monotonic() + 10
    while (await scrape(node_metrics)).value("supervit_report_success_total") < 1:  # the first report is jittered
        assert time.monotonic() < deadline, node.log()[-3000:]
        await asyncio.sleep(0.1)

    node_before, sup_before = await scrape(node_metrics), await scrape(sup_metrics)
    await node_calls(node.lines[NODE_LISTENING])
    await supervisor_calls(sup.lines[SUP_LISTENING])
    node_after = await scrape(node_metrics)
    sup_after = await scrape(sup_metrics)

    def moved(before: Scrape, after: Scrape, sample: str, **labels: str) -> float:
        return after.value(sample, **labels) - before.value(sample, **labels)

    # The node: 3 accepted, 2 refused (replay, signature), all timed.
    assert handled(node_after, NODE_SVC, "ListRealms", "OK") - handled(node_before, NODE_SVC, "ListRealms", "OK") == 3
    unauth = handled(node_after, NODE_SVC, "ListRealms", "Unauthenticated")
    assert unauth - handled(node_before, NODE_SVC, "ListRealms", "Unauthenticated") == 2
    labels = {"grpc_type": "unary", "grpc_service": NODE_SVC, "grpc_method": "ListRealms"}
    assert moved(node_before, node_after, "grpc_server_started_total", **labels) == 5
    assert moved(node_before, node_after, "grpc_server_handling_seconds_count", **labels) == 5
    assert moved(node_before, node_after, "supervit_auth_refusals_total", reason="replay") == 1
    assert moved(node_before, node_after, "supervit_auth_refusals_total", reason="signature") == 1
    assert moved(node_before, node_after, "supervit_auth_refusals_total", reason="timestamp") == 0

    # The supervisor: the same for HealthCheck.
    assert handled(sup_after, SUP_SVC, "HealthCheck", "OK") - handled(sup_before, SUP_SVC, "HealthCheck", "OK") == 3
    refused = handled(sup_after, SUP_SVC, "HealthCheck", "Unauthenticated")
    assert refused - handled(sup_before, SUP_SVC, "HealthCheck", "Unauthenticated") == 2
    assert moved(sup_before, sup_after, "supervit_auth_refusals_total", reason="replay") == 1
    assert moved(sup_before, sup_after, "supervit_auth_refusals_total", reason="signature") == 1

    # Reports flow: every report the node saw acknowledged was counted by the supervisor (scraped after).
    acknowledged = node_after.value("supervit_report_success_total")
    assert acknowledged >= 1
    assert sup_after.value("supervit_reports_total") >= acknowledged
    # One scrape reads the two counters a moment apart while the node keeps reporting every second,
    # so a report can complete between the two reads: they agree to within that one report.
    assert abs(handled(sup_after, SUP_SVC, "Report", "OK") - sup_after.value("supervit_reports_total")) <= 1
    assert sup_after.value("supervit_registrations_total") == 1
    assert sup_after.value("supervit_nodes", state="online") == 1
    assert node_after.value("supervit_registered") == 1
    # The node's own calls to the supervisor, counted by its channel's interceptor (read after the
    # report counter in the same scrape, so never behind it).
    seen = {"grpc_type": "unary", "grpc_service": SUP_SVC, "grpc_method": "Report", "grpc_code": "OK"}
    assert node_after.value("grpc_client_handled_total", **seen) >= acknowledged
    assert node_after.value("supervit_report_interval_seconds") == 1
    assert node_after.value("supervit_last_report_success_timestamp_seconds") > time.time() - 60

    # The supervisor goes away: the node's readiness follows, and comes back with it.
    await sup.stop()
    body = await wait_status(node_metrics, "/readyz", 503, node)
    assert body["checks"] == {"storage": "ok", "supervisor": "not registered with the supervisor"}
    failed = await scrape(node_metrics)
    assert failed.value("supervit_registered") == 0
    assert failed.sum("supervit_report_failure_total") >= 1
    sup = await fleet.start_supervisor()
    await wait_status(node_metrics, "/readyz", 200, node)
    assert (await scrape(sup.lines[SUP_METRICS])).value("supervit_registrations_total") == 1

    # JSON logs at --log-level debug: every line an object; supervit's debug detail, no grpc chatter.
    await node.stop(signal.SIGTERM)
    entries = [json.loads(line) for line in node.log().splitlines() if line.strip()]
    assert entries and all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    # supervit's own debug detail is there (the data dir line is logged at every start).
    assert any(e["level"] == "DEBUG" and e["message"].startswith("data dir ") for e in entries)
    assert not [e for e in entries if e["logger"].startswith("grpc") and e["level"] in ("DEBUG", "INFO")]
    refusals = [e for e in entries if e.get("reason") in ("replay", "signature")]
    assert {e["reason"] for e in refusals} == {"replay", "signature"}
    assert all(e["rpc"] == "ListRealms" and e["node_id"] == "n1" and e["peer"] for e in refusals)
    assert not any(SECRET_HEX in line for line in node.log().splitlines())


def metric_names(expr: str) -> set[str]:
    """The supervit/gRPC/process metric names a PromQL expression uses."""
    # Label matchers and grouping clauses name labels (grpc_code…), not metrics.
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    return set(re.findall(r"\b((?:supervit|grpc|process|python)_[a-z0-9_]+)\b", expr))


def dashboard_metrics() -> set[str]:
    """Every metric name the dashboard's PromQL expressions use."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {name for panel in panels for target in panel.get("targets", []) for name in metric_names(target["expr"])}


def alert_metrics() -> set[str]:
    """Every metric name the example alerting rules' expressions use (``expr:`` up to ``for:``)."""
    names: set[str] = set()
    expr: list[str] | None = None
    for line in ALERTS.read_text().splitlines():
        key = line.strip().split(":", 1)[0]
        if key == "expr":
            expr = [line.split(":", 1)[1]]
        elif expr is not None and key in ("for", "labels", "annotations", "- alert"):
            names |= metric_names(" ".join(expr))
            expr = None
        elif expr is not None:
            expr.append(line)
    return names


def exposed(found: Scrape) -> set[str]:
    """Sample names present, plus those of declared families still without series (a counter by
    code before the first failure): HELP and TYPE are in the exposition, so queries are right."""
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    for family in found.family_list:
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
        names.update(s.name for s in family.samples)
    return names


async def test_dashboard_queries_only_real_metrics_and_promtool_accepts_them(fleet: Fleet) -> None:
    sup = await fleet.start_supervisor()
    node = await fleet.start_node("n1")
    await wait_status(node.lines[NODE_METRICS], "/readyz", 200, node)
    node_text = (await http_get(node.lines[NODE_METRICS], "/metrics")).body
    sup_text = (await http_get(sup.lines[SUP_METRICS], "/metrics")).body
    available = exposed(Scrape(node_text)) | exposed(Scrape(sup_text))
    wanted = dashboard_metrics()
    assert len(wanted) >= 10
    assert wanted <= available, f"the dashboard queries metrics nobody exports: {sorted(wanted - available)}"
    alerts = alert_metrics()
    assert len(alerts) >= 8
    assert alerts <= available, f"the alerting rules use metrics nobody exports: {sorted(alerts - available)}"

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus); dashboard check done")
    for name, text in (("node", node_text), ("supervisor", sup_text)):
        result = await asyncio.to_thread(
            subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"promtool rejects the {name} exposition:\n{result.stdout}{result.stderr}"
        # promtool's lint (naming conventions) prints its findings; there must be none.
        assert not result.stdout.strip() and not result.stderr.strip(), f"{name}: {result.stdout}{result.stderr}"
    # The example scrape configuration and its alerting rules load in Prometheus.
    for args in (["check", "rules", str(ALERTS)], ["check", "config", str(SCRAPE_CONFIG)]):
        result = await asyncio.to_thread(subprocess.run, [promtool, *args], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
