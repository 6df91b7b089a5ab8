"""The background loops of :class:`~supervit.client.SupervitClient`.

The reporting loop registers (again whenever the registration is lost), waits a random fraction
of the interval, then reports on the steered interval; every failure backs off with full jitter.
The health loop calls HealthCheck every ``health_check_interval_secs``; it keeps the skew estimate
fresh and notices an outage (which makes the reporting loop register again) between reports.
Neither loop ever ends on an error: only cancellation (``SupervitClient.stop()``) stops them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Protocol

from supervit._exceptions import NotRegisteredError, RpcError
from supervit.auth import Signer
from supervit.client._backoff import Backoff
from supervit.client._errors import is_auth_failure
from supervit.client._supervisor_views import HealthStatus, RegistrationResult, ReportResult
from supervit.config import SupervitConfig

__all__ = ["OUTAGE_WARNING_EVERY_SECS", "LoopClient", "Sleep", "StatusLoops"]

log = logging.getLogger("supervit.client")

OUTAGE_WARNING_EVERY_SECS = 60.0
"""While the supervisor stays unreachable, a WARNING at the first failure and then at most this often."""

Sleep = Callable[[float], Awaitable[None]]
"""An ``asyncio.sleep``-compatible coroutine function (injectable for tests)."""


class LoopClient(Protocol):
    """What the loops need from their client (``SupervitClient`` provides it; no import cycle)."""

    _full_report_requested: asyncio.Event
    _clock: Callable[[], float]

    @property
    def config(self) -> SupervitConfig: ...
    @property
    def signer(self) -> Signer: ...
    @property
    def registered(self) -> bool: ...
    @property
    def current_interval_secs(self) -> float: ...
    async def register_node(self) -> RegistrationResult: ...
    async def report(self, *, full: bool = ...) -> ReportResult: ...
    async def health_check(self) -> HealthStatus: ...


class StatusLoops:
    """Reporting and health-check loops bound to one client (created by ``start_status_reporting``)."""

    def __init__(self, client: LoopClient, *, rng: random.Random, sleep: Sleep) -> None:
        self._client = client
        self._rng = rng
        self._sleep = sleep
        cfg = client.config
        self.backoff = Backoff(cfg.backoff_base_secs, cfg.backoff_cap_secs, rng=rng)
        # True between a registration and the first report the supervisor accepts after it.
        self._fresh_registration = False
        # Outage logging (node clock): when the current run of failures began, last WARNING.
        self._failing_since: float | None = None
        self._last_warning_at: float | None = None

    async def run_reports(self) -> None:
        """Register when needed, then report forever (until cancelled)."""
        client = self._client
        loop = asyncio.get_running_loop()
        while True:
            try:
                if not client.registered:
                    await client.register_node()
                    self._fresh_registration = True
                    # Stampede avoidance: a supervisor restart makes a whole fleet re-register at
                    # once; a random share of the interval spreads their reports out again.
                    await self._pause(self._rng.random() * client.current_interval_secs)
                started = loop.time()
                # The report below is full, which satisfies any pending REQUEST_FULL_REPORT.
                client._full_report_requested.clear()
                await client.report(full=True)
                self._fresh_registration = False
                # Only a full register-and-report cycle counts as recovered: a supervisor that
                # accepts registrations but refuses every report must still be backed off from.
                self._recovered()
            except NotRegisteredError as err:
                if self._fresh_registration or err.method != "Report":
                    # Refused right after registering: re-registering at once would only spin.
                    await self._back_off(err)
                else:
                    log.info("supervisor does not know node %s; registering again", client.config.node_id)
                continue
            except RpcError as err:
                await self._back_off(err)
                continue
            except Exception:
                # A bug in a provider or collector must not end reporting for good.
                delay = self.backoff.next_delay()
                log.exception("unexpected error in the reporting loop; retrying in %.2fs", delay)
                await self._sleep(delay)
                continue
            await self._pause(started + client.current_interval_secs - loop.time())

    async def run_health_checks(self) -> None:
        """Call HealthCheck every ``health_check_interval_secs`` (until cancelled)."""
        client = self._client
        interval = client.config.health_check_interval_secs
        while True:
            await self._sleep(interval)
            try:
                response = await client.health_check()
            except RpcError as err:
                level = logging.ERROR if is_auth_failure(err) else logging.INFO
                log.log(level, "health check failed: %s", err)
                continue
            except Exception:
                log.exception("unexpected error in the health-check loop")
                continue
            if not response.healthy:
                log.warning("supervisor reports itself unhealthy")

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if the supervisor asks for a full report meanwhile."""
        event = self._client._full_report_requested
        if delay <= 0 or event.is_set():
            return

        async def sleep() -> None:
            await self._sleep(delay)

        sleeper = asyncio.ensure_future(sleep())
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait((sleeper, waiter), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()
            await asyncio.gather(sleeper, waiter, return_exceptions=True)

    async def _back_off(self, err: RpcError) -> None:
        client = self._client
        delay = self.backoff.next_delay()
        if is_auth_failure(err):
            # Loud, but paced by the backoff: a wrong secret or id will not fix itself.
            log.error(
                "supervisor refused node %s: %s (secret key id %s); check the shared secret, node id and clock;"
                " retrying in %.2fs",
                client.config.node_id,
                err,
                client.signer.secret.key_id,
                delay,
            )
        else:
            now = client._clock()
            if self.backoff.attempts == 1:
                self._failing_since = now
            if self._last_warning_at is None or now - self._last_warning_at >= OUTAGE_WARNING_EVERY_SECS:
                # Loud at the first failure, then a reminder at most once a minute: an outage must
                # stay visible at WARNING without flooding the log at every retry.
                self._last_warning_at = now
                log.warning(
                    "supervisor at %s unreachable for %ds: %s (attempt %d); next retry in %.1fs",
                    client.config.target,
                    max(0, int(now - (self._failing_since if self._failing_since is not None else now))),
                    err,
                    self.backoff.attempts,
                    delay,
                )
            else:
                log.debug("%s (attempt %d); retrying in %.2fs", err, self.backoff.attempts, delay)
        await self._sleep(delay)

    def _recovered(self) -> None:
        if self.backoff.attempts:
            log.warning("supervisor reachable again after %d failed attempt(s)", self.backoff.attempts)
            self.backoff.reset()
        self._failing_since = None
        self._last_warning_at = None
