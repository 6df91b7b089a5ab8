"""What does one credential verification cost (HMAC check + nonce consume)?

For the memory and the SQLite nonce store (durable: synchronous=FULL, group commit), measure the
per-verification latency p50/p99 with a single task (sequential) and with 64 concurrent tasks,
and the resulting verifications per second::

    python bench/bench_verify.py [--count 5000] [--concurrency 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from typing import Any

import _common

from supervit.auth import (
    CredentialVerifier,
    MemoryNonceStorage,
    NonceStorage,
    SharedSecret,
    Signer,
    SqliteNonceStorage,
)

SECRET = SharedSecret.from_hex("0123456789abcdef" * 4)
PAYLOAD = "get_realm:node-1:42"


async def _measure(store: NonceStorage, count: int, concurrency: int) -> dict[str, Any]:
    verifier = CredentialVerifier(SECRET, store)
    signer = Signer(SECRET)
    creds = [signer.credential(PAYLOAD) for _ in range(count)]  # signed up front: measure verify only
    timings: list[int] = []
    queue = iter(creds)

    async def worker() -> None:
        for cred in queue:
            t0 = time.perf_counter_ns()
            await verifier.verify(cred, PAYLOAD)
            timings.append(time.perf_counter_ns() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    summary = _common.summarize_ns(timings)
    summary["per_second"] = round(count / elapsed, 1)
    return summary


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for store_kind in ("memory", "sqlite"):
        for concurrency in (1, args.concurrency):
            with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
                store: NonceStorage = (
                    MemoryNonceStorage() if store_kind == "memory" else await SqliteNonceStorage.open(tmp)
                )
                try:
                    count = args.count if concurrency > 1 or store_kind == "memory" else max(100, args.count // 5)
                    result = await _measure(store, count, concurrency)
                finally:
                    await store.close()
            rows.append({"store": store_kind, "concurrency": concurrency, "count": count, **result})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="verifications per measurement")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args))
    _common.print_table(
        ["store", "tasks", "count", "p50 µs", "p99 µs", "verifications/s"],
        [[r["store"], r["concurrency"], r["count"], r["p50_us"], r["p99_us"], r["per_second"]] for r in rows],
    )
    if args.json:
        _common.write_json(args.json, "verify", vars(args), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
