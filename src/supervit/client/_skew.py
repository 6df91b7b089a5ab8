"""Clock-skew estimation from the supervisor's timestamps.

Every SupervisorService response carries ``server_timestamp`` (integer Unix seconds); error
responses of a supervit supervisor carry the same figure in the ``x-server-time`` trailing
metadata (see :mod:`supervit.client._client`). One observation pairs that time with the local
send and receive times of the call, NTP style: the server read its clock somewhere between the two,
so the best guess is the midpoint, and since the integer timestamp truncates, the server's true
time lies in ``[ts, ts + 1)`` whose midpoint is ``ts + 0.5``. Hence each sample is::

    skew = (t_send + t_recv) / 2 - (server_ts + 0.5)        # uncertainty ±(rtt / 2 + 0.5)

Positive skew means the node's clock is ahead of the supervisor's. Samples are smoothed with an
exponential moving average; a sample further from the estimate than its uncertainty plus
``step_secs`` is taken as a clock step (NTP correction, VM resume) and adopted at once.
"""

from __future__ import annotations

import math

__all__ = ["ClockSkewEstimator"]


class ClockSkewEstimator:
    """Smoothed estimate of ``node clock - supervisor clock`` in seconds.

    ``smoothing`` is the EWMA weight of a new sample (0 < smoothing <= 1); ``resolution_secs`` is
    what the integer timestamps can resolve: estimates smaller than that in magnitude read as 0,
    so measurement noise never shifts the signing clock back and forth.
    """

    __slots__ = ("_estimate", "_samples", "resolution_secs", "smoothing", "step_secs")

    def __init__(self, *, smoothing: float = 0.3, step_secs: float = 2.0, resolution_secs: float = 1.0) -> None:
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing!r}")
        self.smoothing = smoothing
        self.step_secs = step_secs
        self.resolution_secs = resolution_secs
        self._estimate: float | None = None
        self._samples = 0

    @property
    def samples(self) -> int:
        """Observations taken so far."""
        return self._samples

    @property
    def raw_secs(self) -> float | None:
        """The smoothed estimate without the resolution dead band (``None`` before any sample)."""
        return self._estimate

    @property
    def skew_secs(self) -> float:
        """The node's clock minus the supervisor's, 0.0 when unknown or below the resolution."""
        est = self._estimate
        if est is None or abs(est) < self.resolution_secs:
            return 0.0
        return est

    def observe(self, server_time: float, sent_at: float, received_at: float) -> float:
        """Fold in one observation (all times Unix seconds, local ones on the node's clock).

        An integral ``server_time`` is taken as truncated to the second; a fractional one is
        used as is. Returns the new :attr:`skew_secs`. Non-finite inputs are ignored.
        """
        if not (math.isfinite(server_time) and math.isfinite(sent_at) and math.isfinite(received_at)):
            return self.skew_secs
        rtt = max(0.0, received_at - sent_at)
        truncated = float(server_time).is_integer()
        server_mid = server_time + 0.5 if truncated else server_time
        sample = (sent_at + rtt / 2) - server_mid
        uncertainty = rtt / 2 + (0.5 if truncated else 0.0)
        if self._estimate is None or abs(sample - self._estimate) > uncertainty + self.step_secs:
            self._estimate = sample
        else:
            self._estimate += self.smoothing * (sample - self._estimate)
        self._samples += 1
        return self.skew_secs

    def reset(self) -> None:
        """Forget every observation."""
        self._estimate = None
        self._samples = 0
