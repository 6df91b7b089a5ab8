"""Process-level tuning shared by the daemons (``supervit node``, ``supervit supervisor``)."""

from __future__ import annotations

import logging
import sys

__all__ = ["SERVER_SWITCH_INTERVAL_SECS", "setup_logging", "tune_for_serving"]

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The daemons hand work between the event loop and SQLite writer/reader threads and grpc's poller.
# With CPython's default 5 ms GIL switch interval a thread woken by a finished fsync can wait up
# to 5 ms for the loop thread to yield the GIL, and every request pays that convoy. 0.5 ms nearly
# doubled authenticated throughput in bench/bench_node_rpc.py (see docs/performance.md).
SERVER_SWITCH_INTERVAL_SECS = 0.0005


def tune_for_serving() -> None:
    """Apply the daemon process settings (call once, before the event loop starts)."""
    sys.setswitchinterval(SERVER_SWITCH_INTERVAL_SECS)


def setup_logging(level: int) -> None:
    """Log to stderr (stdout carries only the daemons' machine-readable lines) at ``level``.

    The handler passes everything: logger levels alone decide, so a live LOG_LEVEL change
    (UpdateConfig) takes effect without touching handlers.
    """
    logging.addLevelName(5, "TRACE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
