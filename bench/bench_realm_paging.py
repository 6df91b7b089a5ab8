"""Does a realm page cost the same at 1k, 10k and 100k realms? So should max_realm_version.

For each size: fill a fresh node database in a temp directory (one bulk write), walk it once with
random page sizes to collect real ``next_page_token`` values at random offsets, then time
``list_page(page_size, token)`` for random tokens and ``max_realm_version()``; print p50/p99 and
optionally write everything as JSON::

    python bench/bench_realm_paging.py [--sizes 1000,10000,100000] [--pages N] [--json out.json]

Timings are per awaited call, i.e. they include the hop to the reader thread and back.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common

from supervit.storage import RealmStore, open_node_database

_INSERT_SQL = """
INSERT INTO realms (realm_id, name, enabled, status, expires_at, created_at, updated_at, use_servers, version)
VALUES (?, ?, 1, 'Normal', 0, ?, NULL, '1,2', ?)
"""
# Recount in the same transaction as the bulk insert: the counter row stays exact.
_RECOUNT_SQL = "UPDATE store_meta SET value = (SELECT COUNT(*) FROM realms) WHERE key = 'realm_count'"


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not sizes or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    return sizes


def _dir_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


async def _bench_size(size: int, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-realms-") as tmp:
        db = await open_node_database(tmp, synchronous=args.synchronous)
        try:
            store = RealmStore(db)
            ids = sorted(rng.sample(range(2**32), size))  # sparse ids, like real realm numbers
            now = int(time.time())
            rows = [(realm_id, f"realm-{realm_id}", now, rng.randrange(1, 2**40)) for realm_id in ids]

            def fill(conn: sqlite3.Connection) -> None:
                conn.executemany(_INSERT_SQL, rows)
                conn.execute(_RECOUNT_SQL)

            started = time.perf_counter()
            await db.write(fill)
            fill_s = time.perf_counter() - started
            assert await store.count() == size

            # One pass with random page sizes: real tokens that point at random offsets.
            tokens: list[str] = []
            token: str | None = None
            started = time.perf_counter()
            while True:
                page = await store.list_page(rng.randint(1, 2 * args.page_size), token)
                if page.next_page_token is None:
                    break
                token = page.next_page_token
                tokens.append(token)
            walk_s = time.perf_counter() - started
            choices: list[str | None] = list(tokens) or [None]

            for _ in range(args.warmup):
                await store.list_page(args.page_size, rng.choice(choices))
                await store.max_realm_version()

            page_ns: list[int] = []
            for _ in range(args.pages):
                token = rng.choice(choices)
                t0 = time.perf_counter_ns()
                page = await store.list_page(args.page_size, token)
                page_ns.append(time.perf_counter_ns() - t0)
                assert page.total_count == size

            version_ns: list[int] = []
            expected_max = max(row[3] for row in rows)
            for _ in range(args.pages):
                t0 = time.perf_counter_ns()
                version = await store.max_realm_version()
                version_ns.append(time.perf_counter_ns() - t0)
                assert version == expected_max

            db_bytes = _dir_bytes(Path(tmp))  # database + WAL, checkpointed or not
        finally:
            await db.close()
    return {
        "size": size,
        "fill_seconds": round(fill_s, 4),
        "walk_seconds": round(walk_s, 4),
        "walk_tokens": len(tokens),
        "db_bytes": db_bytes,
        "list_page": _common.summarize_ns(page_ns),
        "max_realm_version": _common.summarize_ns(version_ns),
    }


async def _main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    results = []
    for size in args.sizes:
        print(f"size {size:,}: filling and measuring...", file=sys.stderr)
        results.append(await _bench_size(size, args, rng))
    base = results[0]["list_page"]["p50_us"]
    _common.print_table(
        ["realms", "fill s", "walk s", "page p50 us", "page p99 us", "vs first", "maxver p50 us", "maxver p99 us"],
        [
            [
                r["size"],
                r["fill_seconds"],
                r["walk_seconds"],
                r["list_page"]["p50_us"],
                r["list_page"]["p99_us"],
                f"{r['list_page']['p50_us'] / base:.2f}x",
                r["max_realm_version"]["p50_us"],
                r["max_realm_version"]["p99_us"],
            ]
            for r in results
        ],
    )
    if args.json:
        parameters = {
            "sizes": args.sizes,
            "pages": args.pages,
            "page_size": args.page_size,
            "warmup": args.warmup,
            "seed": args.seed,
            "synchronous": args.synchronous,
        }
        _common.write_json(args.json, "realm_paging", parameters, results)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_parse_sizes, default=[1000, 10_000, 100_000], help="realm counts")
    parser.add_argument("--pages", type=int, default=500, help="timed calls per operation and size")
    parser.add_argument("--page-size", type=int, default=100, help="realms per timed page")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls before measuring")
    parser.add_argument("--seed", type=int, default=1, help="random seed (ids, versions, offsets)")
    parser.add_argument("--synchronous", default="FULL", help="PRAGMA synchronous for the bench DB")
    parser.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    args = parser.parse_args(argv)
    if args.pages < 1 or args.page_size < 1 or args.warmup < 0:
        parser.error("--pages and --page-size must be >= 1, --warmup >= 0")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
