"""SupervisorService: RegisterNode, Report and HealthCheck as the supervisor answers them.

Credentials follow the same rules as on the nodes (time window, signature, nonce; refusals are
``UNAUTHENTICATED`` with the contract's message), with the secret chosen per node: the node's own
secrets from ``[node_secrets]`` (either of two during a rotation), otherwise the fleet secret; a
node with neither is refused ("authentication failed").

Conventions beyond the protobuf contract (status codes and metadata only):

* A Report from a node the registry does not know (the supervisor lost its database, or the node
  never registered) is answered ``NOT_FOUND`` with details ``"node not registered"``: the node
  registers again and resumes reporting. The credential is checked first, so strangers learn
  nothing about which nodes exist.
* Every refusal this service answers (``UNAUTHENTICATED``, ``INVALID_ARGUMENT``, ``NOT_FOUND``,
  ``INTERNAL`` storage failures) carries the trailing metadata ``x-server-time: <Unix
  seconds>``, so a node refused for its timestamp learns the supervisor's clock (successful
  responses carry it in ``server_timestamp``; leaving the trailer off them is measurably
  cheaper under load). Requests rejected before they reach the service, for being undecodable,
  missing required fields or beyond the limits table (``docs/security.md``), are answered
  ``INVALID_ARGUMENT`` by the shared RPC layer without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

import grpc

from supervit._exceptions import AuthError, StorageError
from supervit.auth import (
    Action,
    CredentialVerifier,
    build_payload,
    registration_fingerprint,
    request_payload,
)
from supervit.config import split_host_port
from supervit.metrics import MAX_POWER_RESERVE_LEVEL
from supervit.protocol import (
    LEAVING_METADATA_KEY,
    NOT_REGISTERED_DETAILS,
    SERVER_TIME_METADATA_KEY,
    supervisor_pb2,
    supervisor_pb2_grpc,
)
from supervit.rpc import RefusalLog, RequestAuthenticator, abort, abort_for, current_request_bytes
from supervit.supervisor._config import SupervisorConfig
from supervit.supervisor._push import CatalogPusher
from supervit.supervisor._store import CatalogStore, IngestStore

__all__ = ["NOT_REGISTERED_DETAILS", "SERVER_TIME_METADATA_KEY", "SUPERVISOR_SERVICE", "SupervisorService"]

log = logging.getLogger("supervit.supervisor")

SUPERVISOR_SERVICE = supervisor_pb2.DESCRIPTOR.services_by_name["SupervisorService"]
"""The ``supervisor.v1.SupervisorService`` descriptor."""

Ctx = grpc.aio.ServicerContext[Any, Any]


def iso_utc(timestamp: int) -> str:
    """``2026-05-09T07:35:25Z`` for a Unix timestamp."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SupervisorService(supervisor_pb2_grpc.SupervisorServiceServicer):
    """The supervisor's answers to its nodes.

    ``verifier`` checks RegisterNode credentials (its nonce store must be
    :class:`~supervit.supervisor.IngestNonceStorage` on ``ingest``, so a nonce is single-use across
    every RPC). Report and HealthCheck credentials get the same window and signature checks, then
    their nonce goes through ``ingest`` (:class:`~supervit.supervisor.ReportIngest`: checked in
    memory, persisted behind).
    ``clock`` gives Unix seconds.
    """

    def __init__(
        self,
        config: SupervisorConfig,
        ingest: IngestStore,
        verifier: CredentialVerifier,
        catalog: CatalogStore,
        pusher: CatalogPusher,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.ingest = ingest
        self.registry = ingest.registry
        self.verifier = verifier
        self.catalog = catalog
        self.pusher = pusher
        self._clock = clock
        self._refusals = RefusalLog(log)
        # The shared credential path; the nonce of a Report or HealthCheck goes through `ingest`.
        self.authenticator = RequestAuthenticator(
            verifier,
            request_payload,
            refusals=self._refusals,
            secrets=lambda request: self.config.secrets_for(request.node_id),
            require_body_mac=config.security.require_body_mac,
            node_id=lambda request: request.node_id,
            stamp=self._stamp_refusal,
        )
        self.reports_accepted = 0
        """Reports acknowledged since start (metrics: ``supervit_reports_total``)."""
        self.registrations = 0
        """Registrations accepted since start (metrics: ``supervit_registrations_total``)."""

    def _stamp_refusal(self, context: Ctx) -> None:
        # Set before aborting: grpc captures the trailers together with the status.
        context.set_trailing_metadata(((SERVER_TIME_METADATA_KEY, str(int(self._clock()))),))

    async def _refuse(self, context: Ctx, code: grpc.StatusCode, details: str) -> NoReturn:
        self._stamp_refusal(context)
        await abort(context, code, details)

    async def _refuse_for(self, context: Ctx, error: Exception) -> NoReturn:
        self._stamp_refusal(context)
        await abort_for(context, error)

    async def RegisterNode(
        self, request: supervisor_pb2.RegisterNodeRequest, context: Ctx
    ) -> supervisor_pb2.RegisterNodeResponse:
        """Verify, record every registration field and answer with the node's intervals."""
        now = int(self._clock())
        fingerprint = ""

        def payload() -> str:
            # Called only once the window check passed: a stale request costs no fingerprint.
            nonlocal fingerprint
            fingerprint = registration_fingerprint(request)
            return build_payload(Action.REGISTER, request.node_id, fingerprint)

        secret = await self.authenticator.authenticate(request, context, now=now, payload=payload)
        problem = _registration_problem(request)
        node_id = request.node_id
        heartbeat = self.config.heartbeat_interval(node_id)
        if problem is not None:
            self._refusals.note(problem, "refused registration of %r: %s", node_id, problem)
            return supervisor_pb2.RegisterNodeResponse(
                success=False, error_message=problem, server_timestamp=now, heartbeat_interval_secs=heartbeat
            )
        try:
            await self.ingest.before_registration(node_id)
            registration = await self.registry.register(
                request, fingerprint, report_interval_secs=self.config.report_interval(node_id)
            )
        except StorageError as exc:
            await self._refuse_for(context, exc)
        self.ingest.node_registered(node_id, registration)
        self.pusher.node_registered(node_id, secret)
        registered_at, first = registration.registered_at, registration.first_registered_at
        log.info(
            "node %s registered (%s, agent %s, version %s)%s",
            node_id,
            request.name,
            request.agent_addr,
            request.version,
            "" if first == registered_at else " again",
            extra={"node_id": node_id, "peer": context.peer(), "rpc": "RegisterNode"},
        )
        self.registrations += 1
        return supervisor_pb2.RegisterNodeResponse(
            success=True,
            server_timestamp=now,
            heartbeat_interval_secs=heartbeat,
            resource_version=self.catalog.version,
            registered_at_iso=iso_utc(registered_at),
        )

    async def Report(self, request: supervisor_pb2.ReportRequest, context: Ctx) -> supervisor_pb2.ReportResponse:
        """Verify, record the report and hand over the node's next directive (see :class:`ReportIngest`)."""
        now = int(self._clock())
        node_id = request.node_id
        credential = request.credential
        try:
            secret = self.authenticator.check(request, context, now=now)
            if request.power_reserve_level > MAX_POWER_RESERVE_LEVEL:
                await self._refuse(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"power_reserve_level must be 0-{MAX_POWER_RESERVE_LEVEL}, got {request.power_reserve_level}",
                )
            leaving = _leaving_reason(context)
            outcome = await self.ingest.report(
                request,
                nonce=credential.nonce,
                nonce_expires_at=self.verifier.nonce_expiry(credential, now),
                interval_secs=self.config.report_interval(node_id),
                # A leaving node would never act on a directive: leave it queued for its return.
                take_directive=leaving is None,
                received=current_request_bytes(),
            )
        except (AuthError, StorageError) as exc:
            await self.authenticator.refuse(request, context, exc)
        if outcome is None:
            log.info("report from unregistered node %r: asking it to register", node_id)
            await self._refuse(context, grpc.StatusCode.NOT_FOUND, NOT_REGISTERED_DETAILS)
        if leaving is not None:
            try:
                await self.ingest.node_left(node_id)
            except StorageError as exc:
                await self._refuse_for(context, exc)
            log.info("node %s is leaving (%s): marked stopped", node_id, leaving)
        self.pusher.prefer_secret(node_id, secret)
        if leaving is None:  # no catalog push to a node on its way out
            self.pusher.on_report(
                node_id, outcome.agent_addr, request.realm_sync_version, outcome.pushed_catalog_version
            )
        response = supervisor_pb2.ReportResponse(
            received=True, server_timestamp=now, next_report_interval_secs=outcome.interval_secs
        )
        if outcome.directive is not None:
            log.info(
                "delivering directive %s to %s",
                supervisor_pb2.DirectiveType.Name(outcome.directive.type),  # type: ignore[arg-type]
                node_id,
            )
            response.directive.CopyFrom(outcome.directive.to_proto())
        self.reports_accepted += 1
        return response

    async def HealthCheck(
        self, request: supervisor_pb2.HealthCheckRequest, context: Ctx
    ) -> supervisor_pb2.HealthCheckResponse:
        """Verify and answer healthy; ``latency_ms`` is the time this supervisor spent on the call."""
        started = time.perf_counter()
        now = int(self._clock())
        credential = request.credential
        try:
            self.authenticator.check(request, context, now=now)
            await self.ingest.consume_nonce(credential.nonce, self.verifier.nonce_expiry(credential, now))
        except (AuthError, StorageError) as exc:
            await self.authenticator.refuse(request, context, exc)
        latency_ms = int((time.perf_counter() - started) * 1000)
        return supervisor_pb2.HealthCheckResponse(healthy=True, server_timestamp=now, latency_ms=latency_ms)


def _leaving_reason(context: Ctx) -> str | None:
    """The reason of a final report (the ``supervit-leaving`` request metadata), else None."""
    for key, value in context.invocation_metadata() or ():
        if key == LEAVING_METADATA_KEY:
            text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            return text[:200] or "stopping"
    return None


def _registration_problem(request: supervisor_pb2.RegisterNodeRequest) -> str | None:
    """Why a (correctly signed) registration cannot be accepted, or None."""
    if not request.node_id.strip():
        return "node_id must not be empty"
    try:
        _, port = split_host_port(request.agent_addr)
    except ValueError as exc:
        return f"agent_addr: {exc}"
    if port == 0:
        return "agent_addr: port 0 cannot be called back"
    if request.HasField("power_reserve_level_init") and request.power_reserve_level_init > MAX_POWER_RESERVE_LEVEL:
        return f"power_reserve_level_init must be 0-{MAX_POWER_RESERVE_LEVEL}, got {request.power_reserve_level_init}"
    return None
