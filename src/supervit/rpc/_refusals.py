"""Rate-limited logging of refused requests.

A flood of bad or unauthenticated requests must not turn into a flood of log lines (disk, CPU,
and the operator's attention). :class:`RefusalLog` logs the first few refusals of each period in
full, then only counts them; the next refusal after the period logs one summary line with the
counts by reason. Never a traceback per request.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping

__all__ = ["RefusalLog"]


class RefusalLog:
    """Logs at most ``burst`` refusals per ``period_secs`` on ``logger``, then a summary with counts."""

    __slots__ = ("_clock", "_level", "_logged", "_logger", "_period", "_started", "_suppressed", "burst")

    def __init__(
        self,
        logger: logging.Logger,
        *,
        level: int = logging.INFO,
        burst: int = 5,
        period_secs: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._level = level
        self.burst = burst
        self._period = period_secs
        self._clock = clock
        self._started = float("-inf")
        self._logged = 0
        self._suppressed: Counter[str] = Counter()

    def note(self, reason: str, message: str, *args: object, extra: Mapping[str, object] | None = None) -> None:
        """Record one refusal; ``reason`` groups it in the summary, ``message % args`` is the full line
        (``extra``: structured fields for the log record, e.g. node_id, peer, rpc, reason)."""
        now = self._clock()
        if now - self._started >= self._period:
            self._summarise()
            self._started = now
            self._logged = 0
        if self._logged < self.burst:
            self._logged += 1
            self._logger.log(self._level, message, *args, extra=extra)
        else:
            self._suppressed[reason] += 1

    def _summarise(self) -> None:
        if not self._suppressed:
            return
        total = sum(self._suppressed.values())
        counts = ", ".join(f"{reason}: {n}" for reason, n in self._suppressed.most_common())
        self._logger.warning("%d further refusal(s) not logged in the last period (%s)", total, counts)
        self._suppressed.clear()
