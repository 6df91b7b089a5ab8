"""Logging set-up shared by the daemons (``supervit node``, ``supervit supervisor``).

Process tuning (the GIL switch interval) is applied by the daemons themselves: see
:func:`supervit.rpc.tune_for_serving`.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["setup_logging"]

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
