"""Cost of the metrics: GetRealm on ``supervit node`` and Report on ``supervit supervisor``, metrics on ÷ off.

Two daemons of each kind run side by side, identical but for ``listen`` of the metrics endpoint
(port 0 = on, ``""`` = off, which also leaves the gRPC instrumentation out). They are measured back
to back with the same load generator, alternating which goes first, and the "on" daemon is scraped
every 5 s during its runs as Prometheus would. The figure is the median per-round ratio on/off
(target: within 5 %, i.e. >= 0.95)::

    python bench/bench_metrics_overhead.py [--duration 8] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _common
import _loadgen
import _procs
from bench_node_rpc import NODE_ID, _seed

PREFIX = "bench"
NODE_METRICS = "supervit node metrics listening on "
SUP_METRICS = "supervit supervisor metrics listening on "


@contextlib.contextmanager
def scraping(address: str | None, every: float = 5.0) -> Iterator[list[int]]:
    """Scrape ``http://address/metrics`` every ``every`` seconds in a thread; yields the body sizes."""
    sizes: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        while address and not stop.wait(every):
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
                sizes.append(len(answer.read()))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield sizes
    finally:
        stop.set()
        thread.join()


def compare(
    on: str, off: str, metrics_address: str, workload: _loadgen.Workload, args: argparse.Namespace
) -> dict[str, Any]:
    settings = {
        "processes": args.processes,
        "concurrency": args.concurrency,
        "duration": args.duration,
        "warmup": args.warmup,
    }
    rounds = []
    scrapes = 0
    for i in range(args.rounds):
        order = [("off", off), ("on", on)]
        if i % 2:
            order.reverse()  # neither side always runs first
        measured = {}
        for name, address in order:
            with scraping(metrics_address if name == "on" else None) as sizes:
                measured[name] = _loadgen.run_load(address, workload, **settings)
            scrapes += len(sizes)
        rounds.append(
            {
                "off": measured["off"].as_dict(),
                "on": measured["on"].as_dict(),
                "ratio": round(measured["on"].rps / measured["off"].rps, 3) if measured["off"].rps else 0.0,
            }
        )
    ratios = sorted(r["ratio"] for r in rounds)
    median = rounds[[r["ratio"] for r in rounds].index(ratios[len(ratios) // 2])]
    return {"rounds": rounds, "ratio": median["ratio"], "off": median["off"], "on": median["on"], "scrapes": scrapes}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        root = Path(tmp)
        (root / "on").mkdir()
        (root / "off").mkdir()
        node_extra: dict[str, str] = {}
        with (
            _procs.node_daemon(root / "on", node_id=NODE_ID, metrics_listen="127.0.0.1:0", also=node_extra) as (
                node_on,
                _,
            ),
            _procs.node_daemon(root / "off", node_id=NODE_ID) as (node_off, _),
        ):
            for address in (node_on, node_off):
                asyncio.run(_seed(address, args.realms))
            workload = _loadgen.Workload("get_realm", NODE_ID, _procs.SECRET_HEX, realm_ids=args.realms)
            rows.append({"rpc": "get_realm", **compare(node_on, node_off, node_extra[NODE_METRICS], workload, args)})
        sup_extra: dict[str, str] = {}
        with (
            _procs.supervisor_daemon(root / "on", metrics_listen="127.0.0.1:0", also=sup_extra) as (sup_on, _),
            _procs.supervisor_daemon(root / "off") as (sup_off, _),
        ):
            for address in (sup_on, sup_off):
                asyncio.run(_procs.register_nodes(address, PREFIX, args.nodes))
            workload = _loadgen.Workload("report", PREFIX, _procs.SECRET_HEX, nodes=args.nodes)
            rows.append({"rpc": "report", **compare(sup_on, sup_off, sup_extra[SUP_METRICS], workload, args)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--realms", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=1000, help="registered nodes the reports rotate over")
    parser.add_argument("--rounds", type=int, default=5, help="alternating off/on pairs (median ratio)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    rows = run(args)
    table = []
    for r in rows:
        for side in ("off", "on"):
            d = r[side]
            table.append(
                [r["rpc"], side, d["rps"], d["p50_us"], d["p99_us"], d["errors"], r["ratio"] if side == "on" else ""]
            )
    print(f"median of {args.rounds} alternating rounds (metrics on ÷ off); every round is in the JSON")
    _common.print_table(["rpc", "metrics", "rps", "p50 µs", "p99 µs", "errors", "on/off"], table)
    for r in rows:
        print(f"{r['rpc']}: rounds {[x['ratio'] for x in r['rounds']]}, {r['scrapes']} scrape(s) during the 'on' runs")
    if args.json:
        _common.write_json(args.json, "metrics_overhead", vars(args), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
