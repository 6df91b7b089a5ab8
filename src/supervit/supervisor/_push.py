"""Catalog push: bring each node's realms up to the catalog through its SupervisedService.

When is a node behind?
    A node reports ``realm_sync_version`` V (the highest realm version it stores). The registry
    remembers P, the catalog version up to which a push to this node last *succeeded*. With
    C = :attr:`RealmCatalog.version` and L = :attr:`RealmCatalog.live_version` the node needs a
    push when ``V < L`` (it lacks realms, e.g. it was down or lost its database) or ``P < C``
    (changes, removals included, were never confirmed). A node whose V exceeds L because of
    realms it got elsewhere (``supervit ctl realm create``) is not touched for that.

What is pushed?
    Every catalog entry changed after ``min(V, P)``, oldest change first. For each, the pusher
    first asks the node (GetRealm) and then:

    * removed from the catalog → DeleteRealm if the node has it;
    * the node has it at the catalog's version → nothing (pushes are idempotent);
    * the node has it at another version → DeleteRealm, then CreateRealm;
    * the node lacks it → CreateRealm.

    UpdateRealm is never used: it cannot carry a version, so the node's realm would keep its old
    version and V would never catch up. Delete + create replaces a changed realm, version
    included (the node's ``created_at`` then restarts; the realm is briefly absent).

How?
    Through :class:`~supervit.client.SupervisedClient`, signed with the node's own secrets,
    preferring the secret the node last authenticated with, so a rotating node gets the key it
    holds (the client tries the other key on ``UNAUTHENTICATED`` and the pusher remembers it).
    At most one push task runs per node; triggers that arrive meanwhile make
    it run once more afterwards. Reports only *schedule* pushes, never wait for them. A failed
    push is retried after an exponential, jittered backoff (``[push] backoff_base_secs`` …
    ``backoff_cap_secs``), reset when the node registers again. Each outcome is noted in the
    registry (``last_push_at``, ``last_push_error``, ``pushed_catalog_version``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

from supervit._exceptions import ConfigError, RpcError, SupervitError
from supervit.auth import SharedSecret
from supervit.client import RequestRefusedError, SupervisedClient
from supervit.supervisor._catalog import CatalogRealm
from supervit.supervisor._config import PushSection
from supervit.supervisor._store import CatalogStore, RegistryStore

__all__ = ["CatalogPusher", "PushError", "PushResult"]

log = logging.getLogger("supervit.supervisor.push")

_T = TypeVar("_T")


class PushError(SupervitError):
    """One step of a push failed; the message names the RPC, realm and reason."""


@dataclass(frozen=True, slots=True)
class PushResult:
    """Outcome of one push to one node."""

    node_id: str
    ok: bool
    pushed_version: int | None
    """Catalog version the node is now known to match (None on failure)."""
    created: int = 0
    deleted: int = 0
    error: str | None = None


@dataclass(slots=True)
class _Target:
    agent_addr: str
    realm_sync_version: int
    pushed_version: int


@dataclass(slots=True)
class _NodeState:
    target: _Target | None = None
    task: asyncio.Task[None] | None = None
    again: bool = False
    failures: int = 0
    not_before: float = 0.0
    preferred: SharedSecret | None = None
    results: list[PushResult] = field(default_factory=list)


class CatalogPusher:
    """Schedules and performs catalog pushes (see the module docstring for the rules).

    ``secrets_for(node_id)`` gives the node's secrets (as the SupervisorService accepts them).
    ``monotonic`` paces the backoff; ``rng`` its jitter. ``is_leader()`` says whether this process
    pushes at all: with replicas only the elected leader does (triggers elsewhere are ignored; the
    leader finds the nodes behind with :meth:`on_catalog_change`).
    """

    def __init__(
        self,
        catalog: CatalogStore,
        registry: RegistryStore,
        secrets_for: Callable[[str], Sequence[SharedSecret]],
        config: PushSection | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        is_leader: Callable[[], bool] = lambda: True,
        interceptors: Sequence[grpc.aio.UnaryUnaryClientInterceptor[Any, Any]] = (),
    ) -> None:
        self._is_leader = is_leader
        self._catalog = catalog
        self._registry = registry
        self._secrets_for = secrets_for
        self._config = config or PushSection()
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._nodes: dict[str, _NodeState] = {}
        self._closed = False
        self._tls = _channel_tls(self._config)
        self._interceptors: list[Any] = list(interceptors)
        self.pushes_ok = 0
        """Pushes that brought a node up to the catalog (metrics: ``supervit_catalog_pushes_total``)."""
        self.push_failures = 0
        """Pushes that failed (metrics: ``supervit_catalog_push_failures_total``)."""

    # -- triggers (synchronous: they never wait for a push) --------------------------------------

    def needs_push(self, realm_sync_version: int, pushed_version: int) -> bool:
        """Whether a node reporting ``realm_sync_version`` and pushed up to ``pushed_version`` is behind."""
        return realm_sync_version < self._catalog.live_version or pushed_version < self._catalog.version

    def sync_lag(self, realm_sync_version: int, pushed_version: int) -> int:
        """Catalog versions a node is behind (0 = in sync)."""
        if not self.needs_push(realm_sync_version, pushed_version):
            return 0
        return self._catalog.version - min(realm_sync_version, pushed_version)

    def _state(self, node_id: str) -> _NodeState:
        # Not setdefault: that would build a _NodeState on every report of a known node.
        state = self._nodes.get(node_id)
        if state is None:
            state = self._nodes[node_id] = _NodeState()
        return state

    def on_report(self, node_id: str, agent_addr: str, realm_sync_version: int, pushed_version: int) -> bool:
        """Note a node's report; schedule a push if it is behind. True if a push was started or queued."""
        state = self._state(node_id)
        known = state.target.pushed_version if state.target is not None else 0
        # The registry row may predate a push that finished meanwhile: keep the newer figure.
        target = _Target(agent_addr, realm_sync_version, max(pushed_version, known))
        state.target = target
        if not self.needs_push(target.realm_sync_version, target.pushed_version):
            return False
        return self._start(node_id, state)

    def node_registered(self, node_id: str, secret: SharedSecret | None = None) -> None:
        """A node (re-)registered: it probably restarted, so forget its backoff."""
        state = self._state(node_id)
        state.failures = 0
        state.not_before = 0.0
        if secret is not None:
            state.preferred = secret

    def prefer_secret(self, node_id: str, secret: SharedSecret) -> None:
        """Sign pushes to ``node_id`` with ``secret`` first (the one its last request used)."""
        self._state(node_id).preferred = secret

    async def on_catalog_change(self) -> int:
        """Schedule a push to every online node that is now behind; returns how many were scheduled."""
        if not self._is_leader():
            return 0
        started = 0
        # Offline nodes are left out: they catch up with their first report after coming back.
        behind = await self._registry.nodes_behind(self._catalog.live_version, self._catalog.version)
        for node_id, agent_addr, realm_sync_version, pushed_version in behind:
            started += self.on_report(node_id, agent_addr, realm_sync_version, pushed_version)
        return started

    def _start(self, node_id: str, state: _NodeState) -> bool:
        if self._closed or not self._is_leader():
            return False
        if state.task is not None and not state.task.done():
            state.again = True  # run once more when the current push ends
            return True
        if self._monotonic() < state.not_before:
            return False
        state.task = asyncio.get_running_loop().create_task(self._run(node_id, state), name=f"push:{node_id}")
        return True

    async def _run(self, node_id: str, state: _NodeState) -> None:
        while True:
            state.again = False
            target = state.target
            if target is None or not self.needs_push(target.realm_sync_version, target.pushed_version):
                return
            try:
                result = await self.push(node_id, target.agent_addr, target.realm_sync_version, target.pushed_version)
            except Exception as exc:  # e.g. the database: log, back off, never kill the loop
                log.exception("push to %s failed", node_id)
                result = PushResult(node_id, False, None, error=f"{type(exc).__name__}: {exc}")
            if result.ok and result.pushed_version is not None:
                self.pushes_ok += 1
                state.failures = 0
                state.not_before = 0.0
                if state.target is not None:
                    state.target.pushed_version = max(state.target.pushed_version, result.pushed_version)
            else:
                self.push_failures += 1
                state.failures += 1
                delay = min(self._config.backoff_cap_secs, self._config.backoff_base_secs * 2 ** (state.failures - 1))
                delay *= 0.5 + self._rng.random() / 2  # jitter: nodes failing together retry apart
                state.not_before = self._monotonic() + delay
                log.warning("push to %s failed (%s); retrying in %.1fs or later", node_id, result.error, delay)
                return
            if not state.again:
                return

    async def wait_idle(self) -> None:
        """Wait until no push task is running (for tests and orderly shutdown)."""
        while True:
            tasks = [s.task for s in self._nodes.values() if s.task is not None and not s.task.done()]
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    def last_results(self, node_id: str) -> list[PushResult]:
        """The outcomes of the latest pushes to ``node_id`` (at most 10, oldest first)."""
        state = self._nodes.get(node_id)
        return [] if state is None else list(state.results)

    async def close(self) -> None:
        """Cancel running pushes and refuse new ones."""
        self._closed = True
        tasks = [s.task for s in self._nodes.values() if s.task is not None and not s.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the push itself -------------------------------------------------------------------------

    async def push(self, node_id: str, agent_addr: str, realm_sync_version: int, pushed_version: int) -> PushResult:
        """Push every change after ``min(realm_sync_version, pushed_version)`` to the node now.

        Never raises for a node-side failure: the outcome is returned and noted in the registry.
        """
        changes = await self._catalog.changes_since(min(realm_sync_version, pushed_version))
        created = deleted = 0
        try:
            if changes.entries:
                async with self._client(node_id, agent_addr) as client:
                    for entry in changes.entries:
                        c, d = await self._apply(client, entry)
                        created += c
                        deleted += d
        except PushError as exc:
            result = PushResult(node_id, False, None, created, deleted, str(exc))
        else:
            result = PushResult(node_id, True, changes.catalog_version, created, deleted)
        await self._registry.record_push(node_id, pushed_version=result.pushed_version, error=result.error)
        state = self._state(node_id)
        state.results = [*state.results[-9:], result]
        if result.ok and (created or deleted):
            log.info(
                "pushed catalog v%d to %s: %d realm(s) created, %d deleted",
                changes.catalog_version,
                node_id,
                created,
                deleted,
            )
        return result

    async def _apply(self, client: SupervisedClient, entry: CatalogRealm) -> tuple[int, int]:
        rid = entry.realm_id
        try:
            have: int | None = (await _step("GetRealm", rid, client.get_realm(rid))).version
        except _Refused:
            have = None  # the node lacks it (or refuses to show it): treated as absent
        if entry.deleted:
            if have is None:
                return 0, 0
            await _step("DeleteRealm", rid, client.delete_realm(rid), refusal_fails=True)
            return 0, 1
        if have == entry.version:
            return 0, 0
        deleted = 0
        if have is not None:
            await _step("DeleteRealm", rid, client.delete_realm(rid), refusal_fails=True)
            deleted = 1
        create = client.create_realm(
            rid,
            entry.name,
            enabled=entry.enabled,
            use_servers=entry.use_servers,
            version=entry.version,
            expires_at=entry.expires_at,
        )
        await _step("CreateRealm", rid, create, refusal_fails=True)
        return 1, deleted

    def _client(self, node_id: str, agent_addr: str) -> SupervisedClient:
        secrets = self._secrets(node_id)
        if not secrets:
            raise PushError(f"no secret configured for node {node_id}")
        creds, options = self._tls if self._tls is not None else (None, [])
        return SupervisedClient(
            agent_addr,
            node_id,
            secrets,
            timeout=self._config.timeout_secs,
            credentials=creds,
            options=options,
            interceptors=self._interceptors,
            on_rotate=lambda secret: self.prefer_secret(node_id, secret),
        )

    def _secrets(self, node_id: str) -> list[SharedSecret]:
        secrets = list(self._secrets_for(node_id))
        preferred = self._state(node_id).preferred
        if preferred is not None and preferred in secrets:
            secrets.remove(preferred)
            secrets.insert(0, preferred)
        return secrets


class _Refused(Exception):
    """A GetRealm answered ``success = false``: not a push failure."""


async def _step(method: str, realm_id: int, call: Awaitable[_T], *, refusal_fails: bool = False) -> _T:
    """Await one SupervisedClient call; its failures become :class:`PushError` (or ``_Refused``)."""
    try:
        return await call
    except RequestRefusedError as exc:
        if not refusal_fails:
            raise _Refused() from None
        raise PushError(f"{method} realm {realm_id} refused: {exc.details}") from None
    except RpcError as exc:
        name = getattr(exc.code, "name", str(exc.code))
        raise PushError(f"{method} realm {realm_id}: {name}: {exc.details}") from None


def _channel_tls(cfg: PushSection) -> tuple[grpc.ChannelCredentials, list[tuple[str, Any]]] | None:
    """Channel credentials for pushes (files read once, at start-up), or None for plaintext."""
    if not cfg.enable_tls:
        return None

    def read(path: Path | None, key: str) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"push.{key}", f"cannot read {path}: {exc.strerror}") from None

    creds = grpc.ssl_channel_credentials(
        read(cfg.ca_cert, "ca_cert"), read(cfg.client_key, "client_key"), read(cfg.client_cert, "client_cert")
    )
    options = [("grpc.ssl_target_name_override", cfg.tls_domain)] if cfg.tls_domain else []
    return creds, options
