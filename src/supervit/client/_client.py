"""SupervitClient: the node's side of the SupervisorService (RegisterNode, Report, HealthCheck).

Conventions beyond the protobuf contract (gRPC status and metadata only, so the wire messages
stay byte-compatible with actrix):

Re-registration
    A supervisor that does not know a reporting node (it restarted and lost its registry, or
    expired the node) answers the Report with gRPC status ``NOT_FOUND`` and details
    ``"node not registered"``. The client raises :class:`~supervit.NotRegisteredError` for any
    ``NOT_FOUND``, and the reporting loop re-registers immediately, then reports again (after the
    stampede-avoidance delay below). If the Report that follows a fresh registration is refused
    the same way, the loop backs off instead of spinning. After any outage (``UNAVAILABLE``,
    ``DEADLINE_EXCEEDED``, ``UNKNOWN``, ``INTERNAL``, ``ABORTED``) the node also registers again
    before its next report, since the supervisor may have restarted in between.

``x-server-time`` trailing metadata
    A supervit supervisor adds ``x-server-time: <Unix seconds, decimal>`` to the trailing
    metadata of every refusal (successful responses carry ``server_timestamp``), so a credential refused with
    ``UNAUTHENTICATED`` "timestamp out of range" still tells the node the supervisor's time. The
    client folds every server time it sees (``server_timestamp`` of successful responses, this
    entry on errors) into its clock-skew estimate, signs with the corrected clock, and retries a
    timestamp refusal once, immediately (:mod:`supervit.client._rpc`). Without the entry it asks
    for the time with a HealthCheck, and failing that the normal backoff applies.

Reporting schedule
    The interval starts at ``status_report_interval_secs`` clamped to
    ``[min_report_interval_secs, max_report_interval_secs]``; a positive
    ``next_report_interval_secs`` in a ReportResponse, or an ``ADJUST_INTERVAL`` directive
    (payload: seconds as decimal text; it wins over a steering value in the same response),
    replaces it, clamped the same way. The first report after start and after every
    (re-)registration waits a random fraction of the interval so a fleet that re-registers at
    once does not report in lockstep. ``REQUEST_FULL_REPORT`` sends a full
    report right away; ``GRACEFUL_SHUTDOWN`` calls ``on_shutdown(reason)`` once (reason = the
    payload, or ``""``). Malformed or unknown directives are logged and ignored.
    ``RegisterNodeResponse.heartbeat_interval_secs`` is logged only: reports are steered by Report
    responses, health checks by ``health_check_interval_secs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

import grpc

from supervit._exceptions import RpcError
from supervit.client._errors import LEAVING_METADATA_KEY, RegistrationRejectedError
from supervit.client._loop import Sleep, StatusLoops
from supervit.client._rpc import SupervisorConnection, health_rpc, register_rpc, report_rpc
from supervit.client._supervisor_views import HealthStatus, RegistrationResult, ReportResult
from supervit.config import SupervitConfig
from supervit.inventory import ServiceCollector
from supervit.metrics import MAX_POWER_RESERVE_LEVEL, MetricsProvider, Snapshot, SystemMetricsCollector
from supervit.protocol import supervisor_pb2

__all__ = ["RealmVersionSource", "ShutdownDirectiveHandler", "Sleep", "SupervitClient"]

log = logging.getLogger("supervit.client")

RealmVersionSource = Callable[[], Awaitable[int]]
"""Async callable returning the node's highest stored realm version (e.g. ``store.max_realm_version``)."""
ShutdownDirectiveHandler = Callable[[str], Awaitable[None]]
"""Async callback receiving the reason of a GRACEFUL_SHUTDOWN directive."""

_DIRECTIVE = supervisor_pb2.DirectiveType
LEAVE_TIMEOUT_SECS = 2.0
"""Deadline of the final report :meth:`SupervitClient.leave` sends (a stop must not hang on it)."""
# How long stop() lets a running on_shutdown callback finish before cancelling it.
_CALLBACK_GRACE_SECS = 5.0


class SupervitClient(SupervisorConnection):
    """A node's connection to its supervisor.

    ``service_collector`` supplies the advertised services and their statuses; ``metrics`` the
    system metrics and power reserve level (default: a :class:`SystemMetricsCollector` on the
    current directory, created on first use); ``realm_version`` the node's highest realm version
    (default: always 0); ``on_shutdown`` is awaited, in its own task, when the supervisor sends
    GRACEFUL_SHUTDOWN.

    ``clock`` (Unix seconds) is the node's wall clock, used for signing and skew measurement;
    ``rng`` drives the backoff jitter and the first-report delay; ``sleep`` is used for every
    wait of the background loops. All three exist so tests can control time and randomness.
    ``interceptors`` (grpc.aio client interceptors) go on every channel to the supervisor; the
    node daemon passes its ``grpc_client_*`` metrics interceptor here.

    Typical use::

        async with SupervitClient(config, collector, realm_version=store.max_realm_version) as client:
            await client.start_status_reporting()
            await stopped.wait()  # leaving the block stops the loops and closes the channel

    The configuration is validated at construction (:class:`~supervit.ConfigError` names the
    field). See the module docstring for the re-registration and ``x-server-time`` conventions.
    """

    def __init__(
        self,
        config: SupervitConfig,
        service_collector: ServiceCollector,
        *,
        metrics: MetricsProvider | None = None,
        realm_version: RealmVersionSource | None = None,
        on_shutdown: ShutdownDirectiveHandler | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        interceptors: Sequence[Any] = (),
    ) -> None:
        config.validate()
        super().__init__(config, clock=clock, interceptors=interceptors)
        self._services = service_collector
        self._metrics = metrics
        self._realm_version = realm_version
        self._on_shutdown = on_shutdown
        self._rng = rng if rng is not None else random.Random()
        self._sleep = sleep
        # Sorted and de-duplicated once: the same list goes into every RegisterNode.
        self._service_tags = sorted(set(config.service_tags))
        self._loops: StatusLoops | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._callback_tasks: set[asyncio.Task[None]] = set()
        self._full_report_requested = asyncio.Event()
        self._shutdown_requested = False
        self._last_snapshot: Snapshot | None = None
        self._last_realm_version = 0
        self._warned_agent_addr = False

    # -- public state --------------------------------------------------------------------

    @property
    def shutdown_requested(self) -> bool:
        """Whether the supervisor has sent GRACEFUL_SHUTDOWN."""
        return self._shutdown_requested

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the channel and wait up to ``connect_timeout_secs`` for it to become ready (with
        several endpoints: each in turn, for an equal share of that time, staying on the first
        that answers).

        Raises :class:`~supervit.RpcError` (``UNAVAILABLE``) when the supervisor cannot be
        reached in time; the channel stays open, so :meth:`start_status_reporting` may still be
        called and will keep retrying with backoff. Raises :class:`~supervit.ConfigError` when a
        TLS file cannot be read.
        """
        # With several endpoints each gets an equal share of the timeout, in failover order.
        attempts = len(self._config.endpoint_list)
        share = self._config.connect_timeout_secs / attempts
        for attempt in range(attempts):
            channel = self._ensure_channel()
            try:
                await asyncio.wait_for(channel.channel_ready(), share)
            except TimeoutError:
                error = RpcError(
                    "connect",
                    grpc.StatusCode.UNAVAILABLE,
                    f"supervisor at {self._target} not reachable within {share:g}s",
                )
                if attempt + 1 == attempts:
                    raise error from None
                self._fail_over(channel, error)
                continue
            log.info("connected to supervisor at %s (node %s)", self._target, self._config.node_id)
            return

    async def start_status_reporting(self) -> None:
        """Start the reporting and health-check loops in background tasks and return at once.

        Registers first (and again whenever needed), then reports on the steered interval until
        :meth:`stop`. Opens the channel if :meth:`connect` was not called. Idempotent.
        """
        if self._tasks:
            return
        self._ensure_channel()
        self._loops = StatusLoops(self, rng=self._rng, sleep=self._sleep)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._loops.run_reports(), name=f"supervit-report-{self._config.node_id}"),
            loop.create_task(self._loops.run_health_checks(), name=f"supervit-health-{self._config.node_id}"),
        ]

    async def stop(self) -> None:
        """Stop the loops and close the channel. Idempotent; safe to call from ``on_shutdown``.

        A running ``on_shutdown`` callback (other than the caller) gets a few seconds to finish
        before it is cancelled.
        """
        current = asyncio.current_task()
        await self._cancel_loops()
        callbacks = [t for t in self._callback_tasks if t is not current]
        if callbacks:
            _, pending = await asyncio.wait(callbacks, timeout=_CALLBACK_GRACE_SECS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._close_channel()

    async def _cancel_loops(self) -> None:
        current = asyncio.current_task()
        tasks, self._tasks, self._loops = self._tasks, [], None
        for task in tasks:
            if task is not current:
                task.cancel()
        for task in tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def disconnect(self) -> None:
        """Alias of :meth:`stop`."""
        await self.stop()

    async def __aenter__(self) -> SupervitClient:
        """Open the channel (without waiting for the supervisor) and return the client.

        A node agent must come up even while its supervisor is unreachable, so entering does not
        wait; call :meth:`connect` inside the block to fail fast instead.
        """
        self._ensure_channel()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """:meth:`stop`."""
        await self.stop()

    # -- RPCs ------------------------------------------------------------------------------

    async def register_node(self) -> RegistrationResult:
        """Register this node (services, tags, power level, addresses), signed over its fingerprint.

        Raises :class:`RegistrationRejectedError` when the supervisor answers ``success=false``,
        :class:`~supervit.RpcError` on a failed call.
        """
        snapshot = await self._snapshot()
        cfg = self._config
        request = supervisor_pb2.RegisterNodeRequest(
            node_id=cfg.node_id,
            name=self._name,
            location_tag=cfg.location_tag,
            version=cfg.version,
            agent_addr=self._agent_addr(),
            service_tags=self._service_tags,
            services=self._services.advertisements(),
        )
        if cfg.location is not None:
            request.location = cfg.location
        if snapshot is not None:
            request.power_reserve_level_init = _power_level(snapshot)
        response = await self._invoke("RegisterNode", request, register_rpc)
        if not response.success:
            self._state.failure()
            message = response.error_message if response.HasField("error_message") else ""
            log.error("supervisor rejected the registration of node %s: %s", cfg.node_id, message or "(no reason)")
            raise RegistrationRejectedError(message)
        self._state.registered_at = self._clock()
        log.info(
            "registered node %s with %d service(s) (supervisor heartbeat interval %ss)",
            cfg.node_id,
            len(request.services),
            response.heartbeat_interval_secs,
        )
        return RegistrationResult.from_message(response)

    async def leave(self, reason: str = "stopping", *, timeout_secs: float = LEAVE_TIMEOUT_SECS) -> bool:
        """Stop the loops and send one final report marked as leaving; True if it was received.

        The mark is the ``supervit-leaving`` request metadata (outside ``supervisor.v1``): a
        supervit supervisor shows the node ``stopped`` at once instead of ``offline`` after missed
        reports; an actrix supervisor takes it as an ordinary report. Nothing is sent when the
        node is not registered. Call :meth:`stop` afterwards to close the channel.
        """
        await self._cancel_loops()
        if self._stub is None or not self.registered:
            log.info("not registered: leaving without a final report")
            return False
        marker = "".join(c if " " <= c <= "~" else "?" for c in reason)[:200] or "stopping"
        try:
            await self.report(full=False, leaving=marker, timeout_secs=timeout_secs)
        except RpcError as exc:
            log.warning("final report before leaving failed: %s", exc)
            return False
        log.info("final report sent: the supervisor knows node %s is leaving (%s)", self._config.node_id, marker)
        return True

    async def report(
        self, full: bool = True, *, leaving: str | None = None, timeout_secs: float | None = None
    ) -> ReportResult:
        """Send one status report and apply the response (interval steering, directive).

        A full report carries the system metrics and every service status; ``full=False`` sends a
        light liveness report without them (power level, realm version and identity only; the
        power level is from the last snapshot when there is one). The reporting loop always sends
        full reports. Raises :class:`~supervit.NotRegisteredError` when the supervisor does not
        know the node, :class:`~supervit.RpcError` on other failures (including ``received=false``).
        """
        snapshot = await self._snapshot() if full or self._last_snapshot is None else self._last_snapshot
        cfg = self._config
        request = supervisor_pb2.ReportRequest(
            node_id=cfg.node_id,
            timestamp=0,  # set with the credential, on the corrected clock
            location_tag=cfg.location_tag,
            version=cfg.version,
            name=self._name,
            power_reserve_level=_power_level(snapshot) if snapshot is not None else 0,
            realm_sync_version=await self._read_realm_version(),
        )
        if full:
            if snapshot is not None:
                request.metrics.CopyFrom(snapshot.metrics)
            request.services.extend(self._services.statuses())
        metadata = None if leaving is None else ((LEAVING_METADATA_KEY, leaving),)
        try:
            response = await self._invoke("Report", request, report_rpc, metadata=metadata, deadline_secs=timeout_secs)
            if not response.received:
                self._state.failure()
                raise RpcError("Report", grpc.StatusCode.FAILED_PRECONDITION, "supervisor answered received=false")
        except RpcError as err:
            self._state.report_failed(getattr(err.code, "name", str(err.code)))
            raise
        self._state.reports_succeeded += 1
        self._state.last_report_at = self._clock()
        if leaving is None:  # a leaving node acts on nothing the answer says
            self._apply_report_response(response)
        return ReportResult.from_message(response)

    async def health_check(self) -> HealthStatus:
        """Ask the supervisor whether it is healthy (also refreshes the clock-skew estimate)."""
        return HealthStatus.from_message(await self._invoke("HealthCheck", self._health_request(), health_rpc))

    # -- internals -------------------------------------------------------------------------

    def _agent_addr(self) -> str:
        advertised = self._config.advertised_agent_addr
        if advertised != self._config.agent_addr and not self._warned_agent_addr:
            self._warned_agent_addr = True
            log.warning(
                "agent_addr %s is a wildcard, not reachable: advertising %s (set agent_addr to this node's"
                " reachable host:port for a supervisor on another host)",
                self._config.agent_addr,
                advertised,
            )
        return advertised

    @property
    def _name(self) -> str:
        return self._config.name or self._config.node_id

    async def _snapshot(self) -> Snapshot | None:
        """Current metrics; on a provider failure the last good snapshot (or None)."""
        try:
            if self._metrics is None:
                self._metrics = await SystemMetricsCollector.create(".")
            snapshot = await self._metrics.snapshot()
        except Exception:
            # A report without fresh metrics still proves liveness; do not let it fail the report.
            log.warning("metrics provider failed; reporting the last known figures", exc_info=True)
            return self._last_snapshot
        self._last_snapshot = snapshot
        return snapshot

    async def _read_realm_version(self) -> int:
        if self._realm_version is None:
            return 0
        try:
            version = int(await self._realm_version())
        except Exception:
            # Reporting 0 would tell the supervisor the node lost its realms and trigger a resync.
            log.warning("realm_version failed; reporting the last known version", exc_info=True)
            return self._last_realm_version
        self._last_realm_version = max(0, version)
        return self._last_realm_version

    # -- response handling -----------------------------------------------------------------

    def _apply_report_response(self, response: supervisor_pb2.ReportResponse) -> None:
        if response.next_report_interval_secs > 0:
            self._set_interval(float(response.next_report_interval_secs), "next_report_interval_secs")
        if response.HasField("directive"):
            self._handle_directive(response.directive)

    def _set_interval(self, secs: float, source: str) -> None:
        interval = self._clamp_interval(secs)
        if interval != secs:
            log.info("%s %ss clamped to %ss", source, secs, interval)
        if interval != self._state.current_interval_secs:
            log.info("report interval %ss -> %ss (%s)", self._state.current_interval_secs, interval, source)
            self._state.current_interval_secs = interval

    def _handle_directive(self, directive: supervisor_pb2.Directive) -> None:
        payload = directive.payload if directive.HasField("payload") else ""
        if not directive.HasField("type"):
            # An enum value this build does not know parses as "unset" (kept as an unknown field).
            log.warning("ignoring directive of unknown type (payload %r)", payload[:100])
            return
        kind = directive.type
        if kind == _DIRECTIVE.ADJUST_INTERVAL:
            try:
                secs = float(payload.strip())
            except ValueError:
                secs = math.nan
            if not (math.isfinite(secs) and secs > 0):
                log.warning("ignoring ADJUST_INTERVAL with malformed payload %r (expected seconds > 0)", payload[:100])
                return
            self._set_interval(secs, "ADJUST_INTERVAL")
        elif kind == _DIRECTIVE.REQUEST_FULL_REPORT:
            log.info("supervisor requested a full report")
            self._full_report_requested.set()
        elif kind == _DIRECTIVE.GRACEFUL_SHUTDOWN:
            self._request_shutdown(payload)
        else:
            log.warning("ignoring directive %s (payload %r)", _DIRECTIVE.Name(kind), payload[:100])

    def _request_shutdown(self, reason: str) -> None:
        if self._shutdown_requested:
            log.debug("GRACEFUL_SHUTDOWN repeated; on_shutdown already called")
            return
        self._shutdown_requested = True
        log.warning("supervisor requested a graceful shutdown: %s", reason or "(no reason given)")
        if self._on_shutdown is None:
            log.warning("no on_shutdown handler configured; the directive has no effect")
            return
        task = asyncio.get_running_loop().create_task(self._run_shutdown_handler(self._on_shutdown, reason))
        self._callback_tasks.add(task)
        task.add_done_callback(self._callback_tasks.discard)

    @staticmethod
    async def _run_shutdown_handler(handler: ShutdownDirectiveHandler, reason: str) -> None:
        try:
            await handler(reason)
        except Exception:
            log.exception("on_shutdown handler failed")


def _power_level(snapshot: Snapshot) -> int:
    return max(0, min(MAX_POWER_RESERVE_LEVEL, int(snapshot.power_reserve_level)))
