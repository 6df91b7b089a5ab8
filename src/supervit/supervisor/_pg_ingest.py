"""The Report / HealthCheck hot path on PostgreSQL (+ Redis): one statement per group of requests.

Requests that arrive while earlier ones are being written are collected, and each group is
written by **one** statement (one round trip, its own transaction): ``unnest`` turns the group
into rows; the statement consumes the nonces (``INSERT … ON CONFLICT DO NOTHING RETURNING``, when
PostgreSQL holds them), takes each reporting node's oldest directive (``DELETE … RETURNING``),
updates the node rows (``UPDATE … FROM``) and returns what every response needs. Each request is
answered only after that statement has committed, so an acknowledged report is durable in the
shared store and visible to every replica.

With Redis for nonces, the group's nonces are first consumed there in one pipeline
(``SET NX EXAT``); only the fresh ones reach PostgreSQL.

Exactly-once hand-over across replicas: a directive row is deleted by the statement that delivers
it; a concurrent statement on another replica waiting for that row finds it gone and delivers
nothing. A node appears at most once per statement (a second report of the same node in a group
goes into the next statement). A statement that fails for a bad value is split until the
offending request fails alone: one node's bad report never fails another's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from supervit._exceptions import NonceReusedError, StorageError, StoreUnavailableError
from supervit.protocol import supervisor_pb2
from supervit.supervisor._directives import QueuedDirective
from supervit.supervisor._pg_nonces import RedisNonceStorage
from supervit.supervisor._pg_pool import PgPool
from supervit.supervisor._pg_registry import PgRegistry
from supervit.supervisor._registry import Registration, ReportOutcome, encode_without_credential

__all__ = ["PgIngest"]

log = logging.getLogger("supervit.supervisor")

# Statements in flight at once (each on its own pooled connection), and the largest group.
_IN_FLIGHT = 2
_MAX_GROUP = 1000
_ADJUST_INTERVAL = int(supervisor_pb2.ADJUST_INTERVAL)

_INPUT = """
input AS (
    SELECT * FROM unnest($1::int[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::bytea[], $9::int[], $10::numeric[], $11::int[], $12::bool[])
        AS t(i, nonce, expires_at, node_id, name, location_tag, version, last_report, power, realm, interval, take)
)"""
_FRESH_PG = """
fresh AS (
    INSERT INTO nonces (nonce, expires_at) SELECT nonce, expires_at FROM input
    ON CONFLICT (nonce) DO NOTHING RETURNING nonce
)"""
_FRESH_ALL = """
fresh AS (SELECT nonce FROM input)"""
_REPORT = f"""
r AS (SELECT input.* FROM input JOIN fresh USING (nonce) WHERE input.node_id IS NOT NULL),
taken AS (
    DELETE FROM directives WHERE directive_id IN (
        SELECT DISTINCT ON (node_id) directive_id FROM directives
        WHERE node_id IN (SELECT node_id FROM r WHERE r.take) ORDER BY node_id, directive_id)
    RETURNING directive_id, node_id, type, payload, created_at
),
upd AS (
    UPDATE nodes n SET
        name = r.name, location_tag = r.location_tag, version = r.version, last_report = r.last_report,
        last_report_at = $13, last_seen_at = $13, reports = n.reports + 1, power_reserve_level = r.power,
        realm_sync_version = r.realm, online = TRUE, offline_since = NULL, stopped_at = NULL,
        interval_override = COALESCE(CASE WHEN t.type = {_ADJUST_INTERVAL} THEN t.payload::int END,
                                     n.interval_override),
        report_interval_secs = COALESCE(CASE WHEN t.type = {_ADJUST_INTERVAL} THEN t.payload::int END,
                                        n.interval_override, r.interval)
    FROM r LEFT JOIN taken t ON t.node_id = r.node_id
    WHERE n.node_id = r.node_id
    RETURNING r.i, n.agent_addr, n.interval_override, n.report_interval_secs, n.pushed_catalog_version,
              t.directive_id, t.type, t.payload, t.created_at
)
SELECT input.i, fresh.nonce IS NOT NULL, upd.i IS NOT NULL, upd.agent_addr, upd.interval_override,
       upd.report_interval_secs, upd.pushed_catalog_version, upd.directive_id, upd.type, upd.payload, upd.created_at
FROM input LEFT JOIN fresh USING (nonce) LEFT JOIN upd ON upd.i = input.i
"""
_SQL_PG_NONCES = f"WITH {_INPUT},{_FRESH_PG},{_REPORT}"
_SQL_REDIS_NONCES = f"WITH {_INPUT},{_FRESH_ALL},{_REPORT}"

_Report = tuple[str, str, str, str, bytes, int, int, int, bool]
"""node_id, name, location_tag, version, last_report, power, realm_sync_version, configured interval,
whether to take a queued directive (not for a leaving node's final report)."""
_Result = tuple[bool, ReportOutcome | None]
"""(nonce was fresh, outcome: None for a health check or an unknown node)."""


@dataclass(slots=True)
class _Item:
    nonce: str
    expires_at: int
    report: _Report | None
    done: asyncio.Future[_Result]


class PgIngest:
    """:class:`~supervit.supervisor.IngestStore` on PostgreSQL; ``redis`` holds nonces if given."""

    def __init__(
        self,
        db: PgPool,
        registry: PgRegistry,
        *,
        redis: RedisNonceStorage | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._registry = registry
        registry.read_barrier = self.flush  # reads of the node rows wait for statements in flight
        self._redis = redis
        self._clock = clock
        self._sql = _SQL_REDIS_NONCES if redis is not None else _SQL_PG_NONCES
        self._pending: list[_Item] = []
        self._running: set[asyncio.Task[None]] = set()
        self.statements = 0
        """Statements run so far (a group of requests each; for benchmarks)."""

    @property
    def registry(self) -> PgRegistry:
        """The registry the reports go to."""
        return self._registry

    async def load(self) -> None:
        """Nothing to prepare: the shared store is the state."""

    def node_registered(self, node_id: str, registration: Registration) -> None:
        """No cache to update."""

    def directive_queued(self, node_id: str) -> None:
        """No cache to update: every report statement looks for directives."""

    async def before_registration(self, node_id: str) -> None:
        """Nothing to do: reports are in the node rows once acknowledged."""

    async def flush(self) -> None:
        """Wait for the statements in flight now (acknowledged reports are already in the rows).

        Statements started later are not waited for, so this returns under a constant stream.
        """
        running = list(self._running)
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    async def node_left(self, node_id: str) -> bool:
        """Record that ``node_id`` stopped on purpose (its final report is already in its row)."""
        await self.flush()
        return await self._registry.mark_stopped(node_id)

    async def drain(self) -> None:
        """Wait until nothing is in flight or queued (at shutdown, once no request arrives)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def consume_nonce(self, nonce: str, expires_at: int) -> None:
        """Consume a HealthCheck nonce; :class:`NonceReusedError` if any replica consumed it."""
        fresh, _ = await self._submit(nonce, expires_at, None)
        if not fresh:
            raise NonceReusedError()

    async def report(
        self,
        request: supervisor_pb2.ReportRequest,
        *,
        nonce: str,
        nonce_expires_at: int,
        interval_secs: int,
        take_directive: bool = True,
        received: bytes = b"",
    ) -> ReportOutcome | None:
        """Consume the nonce, record the report and take a directive: committed before returning.

        ``received`` is not used: the registry row stores the request without its credential.
        """
        report: _Report = (
            request.node_id,
            request.name,
            request.location_tag,
            request.version,
            encode_without_credential(request),
            request.power_reserve_level,
            request.realm_sync_version,
            interval_secs,
            take_directive,
        )
        fresh, outcome = await self._submit(nonce, nonce_expires_at, report)
        if not fresh:
            raise NonceReusedError()
        return outcome

    # -- grouping -----------------------------------------------------------------------------

    async def _submit(self, nonce: str, expires_at: int, report: _Report | None) -> _Result:
        done: asyncio.Future[_Result] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(nonce, expires_at, report, done))
        self._kick()
        return await done

    def _kick(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending and len(self._running) < _IN_FLIGHT:
            group, self._pending = self._pending[:_MAX_GROUP], self._pending[_MAX_GROUP:]
            task = loop.create_task(self._run(group))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._kick()

    async def _run(self, group: list[_Item]) -> None:
        try:
            await self._write_group(group)
        except Exception as exc:  # answer every waiter; never leave one hanging
            failure = exc if isinstance(exc, StorageError) else StorageError(f"reports not stored: {exc}")
            if not isinstance(exc, StoreUnavailableError):
                log.error("%d report(s)/health check(s) could not be stored: %s", len(group), exc)
            for item in group:
                if not item.done.done():
                    item.done.set_exception(failure)

    async def _write_group(self, group: list[_Item]) -> None:
        # A nonce twice in one group: the later copy is a replay of the first.
        seen: set[str] = set()
        todo: list[_Item] = []
        for item in group:
            if item.nonce in seen:
                _settle(item, (False, None))
            else:
                seen.add(item.nonce)
                todo.append(item)
        if self._redis is not None:
            flags = await self._redis.consume_many([(item.nonce, item.expires_at) for item in todo])
            fresh = []
            for item, flag in zip(todo, flags, strict=True):
                if not flag:
                    _settle(item, (False, None))
                elif item.report is None:
                    _settle(item, (True, None))  # a health check: the nonce was all there was to store
                else:
                    fresh.append(item)
            todo = fresh
        # One node at most once per statement; later reports of a node go into the next one.
        while todo:
            nodes: set[str] = set()
            now_items: list[_Item] = []
            later: list[_Item] = []
            for item in todo:
                node_id = item.report[0] if item.report is not None else None
                if node_id is not None and node_id in nodes:
                    later.append(item)
                else:
                    if node_id is not None:
                        nodes.add(node_id)
                    now_items.append(item)
            await self._write_split(now_items)
            todo = later

    async def _write_split(self, items: list[_Item]) -> None:
        try:
            await self._statement(items)
        except StoreUnavailableError:
            raise
        except StorageError as exc:
            # A value the database refuses (for example a NUL in a text field): isolate it.
            if len(items) == 1:
                log.warning("report of %r refused by the database: %s", _node(items[0]), exc)
                if not items[0].done.done():
                    items[0].done.set_exception(exc)
                return
            half = len(items) // 2
            await self._write_split(items[:half])
            await self._write_split(items[half:])

    async def _statement(self, items: list[_Item]) -> None:
        now = int(self._clock())
        columns: list[list[Any]] = [[] for _ in range(12)]
        for i, item in enumerate(items):
            report = item.report
            row = (i, item.nonce, item.expires_at, *(report if report is not None else (None,) * 9))
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        async with self._db.connection("store reports") as conn:
            rows = await conn.fetch(self._sql, *columns, now)
        self.statements += 1
        for i, fresh, found, agent_addr, override, interval, pushed, d_id, d_type, d_payload, d_created in rows:
            item = items[i]
            if not fresh:
                _settle(item, (False, None))
            elif item.report is None or not found:
                _settle(item, (True, None))
            else:
                directive = (
                    None
                    if d_id is None
                    else QueuedDirective(int(d_id), item.report[0], int(d_type), d_payload, int(d_created))
                )
                forced = None if override is None else int(override)
                _settle(item, (True, ReportOutcome(int(interval), directive, str(agent_addr), int(pushed), forced)))


def _settle(item: _Item, result: _Result) -> None:
    if not item.done.done():  # else the caller went away; the outcome is committed all the same
        item.done.set_result(result)


def _node(item: _Item) -> str:
    return item.report[0] if item.report is not None else "(health check)"
