"""Process-level tuning for serving: applied by the daemons themselves when they start."""

from __future__ import annotations

import gc

__all__ = ["SERVER_GC_GEN0_THRESHOLD", "tune_for_serving"]

# Every request allocates a few dozen tracked objects (messages, futures, tasks, frames) that are
# gone before the next request. CPython's default starts a young collection every 700 net
# allocations: under load, hundreds per second, each promoting whatever happens to be in flight.
# 10,000 cut the collector's CPU under Report load from ~3 % to under 1 % (docs/performance.md,
# "Per-request Python"); a young collection then takes a few milliseconds, once a second or so.
SERVER_GC_GEN0_THRESHOLD = 10_000

# The GIL switch interval stays CPython's 5 ms. The daemons used to shorten it to 0.5 ms, when
# every request handed work to SQLite threads; since only a group's COMMIT leaves the loop,
# 5 ms measured cheaper side by side (GetRealm 0.89-0.93x the CPU per call, Report and
# CreateRealm 0.97-0.99x; docs/performance.md, step 13).


def tune_for_serving() -> None:
    """Apply the serving process settings (idempotent; it only ever raises the young-generation
    collection threshold, and leaves a disabled collector alone).

    ``NodeDaemon.start()`` and ``Supervisor.start()`` call it, so a daemon embedded in another
    program gets the same behaviour as the CLI; pass ``tune_process=False`` to them to opt out.
    """
    young, *older = gc.get_threshold()
    if 0 < young < SERVER_GC_GEN0_THRESHOLD:
        gc.set_threshold(SERVER_GC_GEN0_THRESHOLD, *older)
