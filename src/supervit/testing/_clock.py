"""A settable clock for code that takes ``clock=`` (verifiers, signers, clients, stores)."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """Unix time that moves only when told to: ``clock()`` returns :attr:`now`.

    Pass it wherever supervit accepts ``clock: Callable[[], float]``; time windows, nonce expiry
    and skew estimates then follow the test's script instead of the wall clock.
    """

    def __init__(self, now: float = 1_764_201_600.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward (or back, with a negative value); return the new time."""
        self.now += seconds
        return self.now
