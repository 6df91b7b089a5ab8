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

from supervit._exceptions import AuthError, StorageError, TimestampOutOfRangeError
from supervit.auth import (
    NONCE_TTL_EXTRA_SECS,
    Action,
    CredentialVerifier,
    SharedSecret,
    body_mac_hook,
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
from supervit.rpc import RefusalLog, abort, abort_for, current_request_bytes
from supervit.supervisor._config import SupervisorConfig
from supervit.supervisor._push import CatalogPusher
from supervit.supervisor._store import CatalogStore, IngestStore
from supervit.telemetry import refusal_reason_for

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

    def _log_refusal(self, what: str, node_id: str, context: Ctx, error: Exception) -> None:
        peer = context.peer()
        self._refusals.note(
            str(error),
            "refused %s of %r from %s: %s",
            what,
            node_id,
            peer,
            error,
            extra={"node_id": node_id, "peer": peer, "rpc": what, "reason": refusal_reason_for(error)},
        )

    def _check(self, node_id: str, credential: Any, payload: str, now: int, context: Ctx) -> SharedSecret:
        """The verifier's first two checks, in the contract's order: time window, then signature.

        The nonce (the third) is the caller's: consumed through :class:`ReportIngest`.
        """
        secrets = self.config.secrets_for(node_id)
        if not secrets:
            self._refusals.note(
                "no secret", "refused node %r from %s: no secret configured for it", node_id, context.peer()
            )
            raise AuthError()
        if abs(now - credential.timestamp) > self.verifier.window:
            raise TimestampOutOfRangeError()
        secret = CredentialVerifier.check_signature(credential, payload, secrets)
        check_body = self._body_check(context)
        if check_body is not None:
            check_body(secret)
        return secret

    def _body_check(self, context: Ctx) -> Callable[[SharedSecret], None] | None:
        # The x-supervit-body-mac extension: verified when present, required when configured.
        return body_mac_hook(
            context.invocation_metadata(), current_request_bytes(), required=self.config.security.require_body_mac
        )

    def _nonce_expiry(self, credential: Any, now: int) -> int:
        # As the verifier does: remembered until the timestamp can no longer pass, plus margin.
        return max(now, int(credential.timestamp)) + self.verifier.window + NONCE_TTL_EXTRA_SECS

    async def _authenticate(self, node_id: str, credential: Any, payload: str, context: Ctx) -> Any:
        secrets = self.config.secrets_for(node_id)
        try:
            if not secrets:
                self._refusals.note(
                    "no secret", "refused node %r from %s: no secret configured for it", node_id, context.peer()
                )
                raise AuthError()
            return await self.verifier.verify(
                credential, payload, secrets=secrets, before_consume=self._body_check(context)
            )
        except (AuthError, StorageError) as exc:
            if not isinstance(exc, StorageError):
                self._log_refusal("RegisterNode", node_id, context, exc)
            await self._refuse_for(context, exc)

    async def RegisterNode(
        self, request: supervisor_pb2.RegisterNodeRequest, context: Ctx
    ) -> supervisor_pb2.RegisterNodeResponse:
        """Verify, record every registration field and answer with the node's intervals."""
        now = int(self._clock())
        # Cheap refusals before the fingerprint (hashing every field) and the HMAC.
        if (
            not self.config.secrets_for(request.node_id)
            or abs(now - request.credential.timestamp) > self.verifier.window
        ):
            await self._authenticate(request.node_id, request.credential, "", context)
        fingerprint = registration_fingerprint(request)
        payload = build_payload(Action.REGISTER, request.node_id, fingerprint)
        secret = await self._authenticate(request.node_id, request.credential, payload, context)
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
            secret = self._check(node_id, credential, request_payload(request), now, context)
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
                nonce_expires_at=self._nonce_expiry(credential, now),
                interval_secs=self.config.report_interval(node_id),
                # A leaving node would never act on a directive: leave it queued for its return.
                take_directive=leaving is None,
            )
        except (AuthError, StorageError) as exc:
            if isinstance(exc, AuthError):
                self._log_refusal("Report", node_id, context, exc)
            await self._refuse_for(context, exc)
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
            self._check(request.node_id, credential, request_payload(request), now, context)
            await self.ingest.consume_nonce(credential.nonce, self._nonce_expiry(credential, now))
        except (AuthError, StorageError) as exc:
            if isinstance(exc, AuthError):
                self._log_refusal("HealthCheck", request.node_id, context, exc)
            await self._refuse_for(context, exc)
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
