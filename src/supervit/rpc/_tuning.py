"""Process-level tuning for serving: applied by the daemons themselves when they start."""

from __future__ import annotations

import gc
import sys

__all__ = ["SERVER_GC_GEN0_THRESHOLD", "SERVER_SWITCH_INTERVAL_SECS", "tune_for_serving"]

# The daemons hand work between the event loop and SQLite writer/reader threads and grpc's poller.
# With CPython's default 5 ms GIL switch interval a thread woken by a finished fsync can wait up
# to 5 ms for the loop thread to yield the GIL, and every request pays that convoy. 0.5 ms nearly
# doubled authenticated throughput in bench/bench_node_rpc.py (see docs/performance.md).
SERVER_SWITCH_INTERVAL_SECS = 0.0005

# Every request allocates a few dozen tracked objects (messages, futures, tasks, frames) that are
# gone before the next request. CPython's default starts a young collection every 700 net
# allocations: under load, hundreds per second, each promoting whatever happens to be in flight.
# 10,000 cut the collector's CPU under Report load from ~3 % to under 1 % (docs/performance.md,
# "Per-request Python"); a young collection then takes a few milliseconds, once a second or so.
SERVER_GC_GEN0_THRESHOLD = 10_000


def tune_for_serving() -> None:
    """Apply the serving process settings (idempotent; it only ever shortens the switch interval
    and raises the young-generation collection threshold, and leaves a disabled collector alone).

    ``NodeDaemon.start()`` and ``Supervisor.start()`` call it, so a daemon embedded in another
    program gets the same behaviour as the CLI; pass ``tune_process=False`` to them to opt out.
    """
    if sys.getswitchinterval() > SERVER_SWITCH_INTERVAL_SECS:
        sys.setswitchinterval(SERVER_SWITCH_INTERVAL_SECS)
    young, *older = gc.get_threshold()
    if 0 < young < SERVER_GC_GEN0_THRESHOLD:
        gc.set_threshold(SERVER_GC_GEN0_THRESHOLD, *older)
