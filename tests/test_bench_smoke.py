"""Every benchmark script runs end to end on tiny parameters and writes its JSON (no thresholds).

One test per script (``run_all.py --quick --only NAME``), so the scripts run on parallel workers
instead of one after another in a single test; a separate check pins that the quick plan is
exactly these scripts, as running ``run_all.py --quick`` whole would.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [
    "bench_verify",
    "bench_handlers",
    "bench_realm_paging",
    "bench_node_rpc",
    "bench_supervisor_ingest",
    "bench_metrics_overhead",
    "bench_fleet",
    "bench_footprint",
    "bench_hostile",
    "bench_replicas",
]


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python bench/SCRIPT ARGS`` to completion (at most 280 s), output captured."""
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
        # Not measured for coverage: the daemons and clients a bench starts are the e2e tests'
        # code paths (94.75 % with, 94.67 % without), and tracing its load generators and servers
        # cost ~19 s of the suite's CPU.
        env={k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_CONFIG"},
    )


def test_quick_plan_runs_every_script() -> None:
    """run_all.py --quick (and the full plan) covers every bench_*.py script, no more, no less."""
    spec = importlib.util.spec_from_file_location("bench_run_all", ROOT / "bench" / "run_all.py")
    assert spec is not None and spec.loader is not None
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    on_disk = {p.stem for p in (ROOT / "bench").glob("bench_*.py")}
    assert set(run_all.QUICK) == set(run_all.FULL) == on_disk == set(SCRIPTS)


@pytest.mark.e2e
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", SCRIPTS)
def test_bench_script_quick(tmp_path: Path, name: str) -> None:
    """bench/run_all.py --quick --only NAME exits 0 and leaves NAME's JSON document with machine info."""
    result = run_bench("run_all.py", "--quick", "--only", name, "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert {p.stem for p in tmp_path.glob("*.json")} == {name}
    doc = json.loads((tmp_path / f"{name}.json").read_text())
    assert doc["machine"]["cpu_count"] >= 1
    assert doc["results"], name


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_side_by_side_runs_trees_against_the_bare_server(tmp_path: Path) -> None:
    """bench/side_by_side.py (the A/B of trees) runs this checkout against the bare server and
    writes its JSON; on each event loop when uvloop is installed (ratios within a loop, and of each
    server to itself on the first loop)."""
    loops = ["asyncio", "uvloop"] if importlib.util.find_spec("uvloop") else ["asyncio"]
    out = tmp_path / "side_by_side.json"
    args = ["--rpc", "get_realm", "--rounds", "1", "--duration", "0.5", "--warmup", "0.2", "--json", str(out)]
    result = run_bench("side_by_side.py", *args, "--event-loop", ",".join(loops), str(ROOT))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (row,) = json.loads(out.read_text())["results"]
    suffix = [f"/{loop}" for loop in loops] if len(loops) > 1 else [""]
    assert [s["server"] for s in row["servers"]] == [f"{name}{s}" for s in suffix for name in ("bare", "tree 1")]
    assert [s["event_loop"] for s in row["servers"]] == [loop for loop in loops for _ in range(2)]
    assert all(s["errors"] == 0 and s["rps"] > 0 for s in row["servers"])
    assert [s["rps_vs_tree_1"] for s in row["servers"][1::2]] == [1.0] * len(loops)
    assert [s["rps_vs_first_loop"] for s in row["servers"][:2]] == [1.0, 1.0]


def test_side_by_side_refuses_one_loop_twice() -> None:
    result = run_bench("side_by_side.py", "--event-loop", "asyncio,asyncio", str(ROOT))
    assert result.returncode == 2 and "names one loop twice" in result.stderr
    result = run_bench("side_by_side.py", "--event-loop", "asyncio,trio", str(ROOT))
    assert result.returncode == 2 and "'trio' is not one of auto, asyncio, uvloop" in result.stderr


def test_side_by_side_refuses_a_directory_that_is_not_a_checkout(tmp_path: Path) -> None:
    result = run_bench("side_by_side.py", str(tmp_path))
    assert result.returncode == 2 and "not a supervit checkout" in result.stderr


def test_side_by_side_names_an_unknown_rpc() -> None:
    result = run_bench("side_by_side.py", "--rpc", "get_realm,nope", str(ROOT))
    assert result.returncode == 2 and "unknown --rpc nope" in result.stderr


@pytest.mark.e2e
@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="bench/instructions.py needs valgrind (not installed)")
def test_instructions_counts_the_bare_server_under_callgrind(tmp_path: Path) -> None:
    """bench/instructions.py counts a server's GetRealm under callgrind and writes its JSON (the bare
    server: a supervit daemon under valgrind would add ~15 s of the suite's CPU; its command line
    is checked below)."""
    out = tmp_path / "instructions.json"
    args = ["--rpc", "get_realm", "--duration", "1", "--warmup", "0.5", "--json", str(out)]
    result = run_bench("instructions.py", *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["server"] == "bare" and row["errors"] == 0 and row["calls"] > 0
    # Far more than nothing, far less than a second of an interpreter's work per call.
    assert 50 < row["k_instructions_per_call"] < 50_000


def test_instructions_starts_each_trees_daemon_under_callgrind(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from instructions import _command
    finally:
        sys.path.remove(str(ROOT / "bench"))
    node, prefix = _command("tree 1", "get_realm", ROOT, tmp_path, tmp_path / "out")
    assert node[:2] == ["valgrind", "--tool=callgrind"] and node[-4:-2] == ["supervit", "node"]
    assert prefix == "supervit node listening on "
    supervisor, prefix = _command("tree 1", "report", ROOT, tmp_path, tmp_path / "out")
    assert supervisor[-4:-2] == ["supervit", "supervisor"] and prefix == "supervit supervisor listening on "
    assert (tmp_path / "supervisor.toml").is_file() and (tmp_path / "node.toml").is_file()


def test_instructions_needs_something_to_measure() -> None:
    result = run_bench("instructions.py", "--no-bare")
    assert result.returncode == 2 and "nothing to measure" in result.stderr


def test_callgrind_total_reads_the_summary_line(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from instructions import callgrind_total
    finally:
        sys.path.remove(str(ROOT / "bench"))
    dump = tmp_path / "callgrind.out.1"
    dump.write_text("# callgrind format\nversion: 1\nevents: Ir\nfn=(1) main\n0 5\nsummary: 123456\n")
    assert callgrind_total(dump) == 123456
    dump.write_text("not a dump\n")
    with pytest.raises(ValueError, match="no summary line"):
        callgrind_total(dump)
