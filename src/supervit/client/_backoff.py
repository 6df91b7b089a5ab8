"""Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter").

Attempt ``n`` (0-based) waits ``uniform(0, min(cap, base * 2**n))``. Full jitter spreads the
retries of many nodes that lost the same supervisor at the same moment, so they do not come back
in synchronized waves; the exponential ceiling keeps a long outage from being hammered.
"""

from __future__ import annotations

import math
import random

__all__ = ["Backoff"]


class Backoff:
    """Delays for consecutive failed attempts; :meth:`reset` after a success.

    ``rng`` is injectable so tests can pin the jitter (e.g. a ``random.Random`` subclass whose
    ``random()`` always returns the same value).
    """

    __slots__ = ("_attempts", "_rng", "base", "cap")

    def __init__(self, base: float, cap: float, *, rng: random.Random | None = None) -> None:
        if not (math.isfinite(base) and base > 0):
            raise ValueError(f"backoff base must be finite and > 0, got {base!r}")
        if not (math.isfinite(cap) and cap >= base):
            raise ValueError(f"backoff cap must be finite and >= base ({base}), got {cap!r}")
        self.base = base
        self.cap = cap
        self._rng = rng if rng is not None else random.Random()
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """Failed attempts since the last :meth:`reset`."""
        return self._attempts

    def ceiling(self, attempt: int | None = None) -> float:
        """Largest delay attempt ``attempt`` (default: the next one) may wait."""
        n = self._attempts if attempt is None else attempt
        # 2**n overflows float for large n; past the cap the exact value no longer matters.
        if n >= 64:
            return self.cap
        return min(self.cap, self.base * float(2**n))

    def next_delay(self) -> float:
        """The delay before the next attempt; counts one more failed attempt."""
        delay = self._rng.random() * self.ceiling()
        self._attempts += 1
        return delay

    def reset(self) -> None:
        """Start again from ``base`` (call after a successful attempt)."""
        self._attempts = 0
