"""Process-level tuning for serving: applied by the daemons themselves when they start."""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from supervit._exceptions import ConfigError

__all__ = [
    "EVENT_LOOPS",
    "EVENT_LOOP_ENV",
    "SERVER_GC_GEN0_THRESHOLD",
    "event_loop_factory",
    "event_loop_name",
    "run_serving",
    "tune_for_serving",
]

log = logging.getLogger("supervit")

T = TypeVar("T")

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


EVENT_LOOP_ENV = "SUPERVIT_EVENT_LOOP"
"""The environment variable the daemon commands read ``--event-loop`` from."""

EVENT_LOOPS = ("auto", "asyncio", "uvloop")
"""The event loops a daemon command can run on (``--event-loop``, ``SUPERVIT_EVENT_LOOP``).

``auto`` takes uvloop when it is installed (``pip install 'supervit[uvloop]'``; not on Windows),
else asyncio's own. grpc.aio runs on either. On uvloop the loop's own work per request (polling,
callbacks, thread-safe wake-ups from the database threads) is cheaper: measured side by side, a
supervisor spent 0.74-0.78x the CPU per Report, a node 0.86x per CreateRealm, a bare grpc.aio
server 0.85-0.93x per call (docs/performance.md, step 15).
"""


def event_loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the event loop ``choice`` names (None: asyncio's default loop).

    Raises :class:`~supervit.ConfigError` for an unknown choice, or ``uvloop`` when it is not
    installed.
    """
    if choice not in EVENT_LOOPS:
        raise ConfigError("event_loop", f"must be one of {', '.join(EVENT_LOOPS)}, got {choice!r}")
    if choice == "asyncio" or (choice == "auto" and sys.platform == "win32"):
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "event_loop", "uvloop is not installed (pip install 'supervit[uvloop]'), or choose asyncio"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_serving(main: Coroutine[Any, Any, T], *, event_loop: str = "auto") -> T:
    """Run ``main`` to completion on a new event loop of the ``event_loop`` choice (see
    :data:`EVENT_LOOPS`) and close it: the daemon commands' ``asyncio.run``.

    Only a program that owns its process should choose its loop; a daemon embedded in another
    program runs on whatever loop that program runs.
    """
    try:
        factory = event_loop_factory(event_loop)
    except ConfigError:
        main.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        log.info("running on the %s event loop", event_loop_name(runner.get_loop()))
        return runner.run(main)


def event_loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: the implementation ``loop`` belongs to."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
