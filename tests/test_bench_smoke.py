"""Every benchmark script runs end to end on tiny parameters and writes its JSON (no thresholds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_bench_suite_quick(tmp_path: Path) -> None:
    """bench/run_all.py --quick exits 0 and each script leaves a JSON document with machine info."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    names = {p.stem for p in tmp_path.glob("*.json")}
    assert names == {
        "bench_verify",
        "bench_realm_paging",
        "bench_node_rpc",
        "bench_supervisor_ingest",
        "bench_metrics_overhead",
        "bench_fleet",
        "bench_footprint",
        "bench_hostile",
        "bench_replicas",
    }
    for path in tmp_path.glob("*.json"):
        doc = json.loads(path.read_text())
        assert doc["machine"]["cpu_count"] >= 1
        assert doc["results"], path.name
