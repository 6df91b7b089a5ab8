"""The Report / HealthCheck hot path: batched persistence, answered only once durable.

The supervisor keeps in memory what a report response depends on: which nodes exist, their
interval override and catalog push position, which nodes may have queued directives, and the
nonces consumed within the credential window. Nonces are checked against that memory on the
event loop (check-and-remember is atomic there), so a replay is refused at once.

That window is the supervisor's one replay check: RegisterNode and admin credentials (and the
readiness probe) consume through it too (:class:`IngestNonceStorage`), so a nonce is single-use
across every RPC. And the report log is the one place accepted nonces are remembered: every
accepted report, health check and credential is then written through one shared database
operation per group commit: one row of the ``report_log`` table holding all their nonces and
reports (an append: one or two pages per commit). **Each request is answered only after that
operation has committed**: an acknowledged report is durable and its nonce too, so a replay is
refused after a crash and restart as well (:meth:`ReportIngest.load` reads every unexpired
logged nonce back into the window). A report that takes its own transaction (below) logs its
nonce in that transaction, as a report-log row of its own.

The reports reach the node rows of the registry by a *fold*: at most a second later (and before
anything reads those rows: the registry's reads await :meth:`ReportIngest.flush` through its
``read_barrier``, so this class is the one owner of acknowledged-but-unfolded state), one
operation updates every node that reported since the last fold with its latest report and
advances the ``reports_folded_through`` watermark in the same transaction. A node reporting
several times between folds costs one row update, and the commits of the hot path stay small.
At start-up, log rows past the watermark (reports acknowledged before a crash but not yet
folded) are folded first, so nothing acknowledged is lost.

Two kinds of report go through :meth:`NodeRegistry.ingest_report`'s own transaction instead:

* a node that may have a queued directive: delivery and dequeue must commit together;
* a node the memory does not know: so the unknown-node answer (``NOT_FOUND``) is authoritative.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from supervit._exceptions import NonceReusedError, NonceStorageError, StorageError
from supervit.auth import NonceStorage, NonceWindow
from supervit.protocol import supervisor_pb2
from supervit.storage import REPORT_LOG_BATCHING, Database, DurableLog
from supervit.supervisor._registry import NodeRegistry, Registration, ReportOutcome, rows_leniently
from supervit.supervisor._report_log import LoggedReport, decode_reports, encode_reports

__all__ = ["IngestNonceStorage", "RecentNonces", "ReportIngest"]

log = logging.getLogger("supervit.supervisor")

# Acknowledged reports reach the node rows at most this much later (sooner when something reads them).
_FOLD_INTERVAL_SECS = 1.0

# A log row can go once its nonces expired (their credentials can no longer pass the window
# check) and its reports, if any, are folded. The newest row always stays: a row id is one above
# the largest in the table, so an emptied table would hand out ids at or below the folded
# watermark again (and a crash would then skip their reports at start-up). Small chunks: a row
# holds one group commit's reports (kilobytes), and each chunk's DELETE runs on the event loop
# between report groups, so it must stay short.
_CLEANUP_CHUNK_ROWS = 100
_CLEANUP_SQL = """
DELETE FROM report_log WHERE batch_id IN (
    SELECT batch_id FROM report_log
    WHERE expires_at < ?
      AND (reports IS NULL OR batch_id <= (SELECT value FROM meta WHERE key = 'reports_folded_through'))
      AND batch_id < (SELECT MAX(batch_id) FROM report_log)
    LIMIT ?
)
RETURNING json_array_length(nonces)
"""
_COUNT_SQL = "SELECT COALESCE(SUM(json_array_length(nonces)), 0) FROM report_log"

# One statement updates every node of a fold (a row per node is many more statement steps, each
# releasing and re-taking the GIL). UPDATE ... FROM needs SQLite 3.33; older ones update row by row.
_BATCH_UPDATE = """
UPDATE nodes SET
    name = v.column1, location_tag = v.column2, version = v.column3, last_report = v.column4,
    last_report_at = v.column5, last_seen_at = v.column5, reports = reports + v.column9,
    power_reserve_level = v.column6, realm_sync_version = v.column7, online = 1, offline_since = NULL,
    stopped_at = NULL, report_interval_secs = v.column8
FROM (VALUES {values}) AS v
WHERE nodes.node_id = v.column10
"""
_ROW_UPDATE = """
UPDATE nodes SET
    name = ?, location_tag = ?, version = ?, last_report = ?, last_report_at = ?5, last_seen_at = ?5,
    power_reserve_level = ?, realm_sync_version = ?, report_interval_secs = ?, reports = reports + ?,
    online = 1, offline_since = NULL, stopped_at = NULL
WHERE node_id = ?
"""
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)
_ROWS_PER_STATEMENT = 300  # 10 parameters each: far below SQLite's 32766-variable limit


# What binding or applying one row can raise (too-large integers, wrong types, constraint checks).
_ROW_ERRORS = (sqlite3.Error, OverflowError, TypeError, ValueError)


def _update_nodes(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> list[tuple[str, Exception]]:
    """Apply the rows; a chunk that fails is applied row by row, and rows that still fail are
    returned (node id, error) instead of failing every other node's row with them."""
    rejected: list[tuple[str, Exception]] = []
    step = _ROWS_PER_STATEMENT if _UPDATE_FROM else 1
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        try:
            if _UPDATE_FROM:
                values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
                conn.execute(_BATCH_UPDATE.format(values=values), [value for row in chunk for value in row])
            else:
                conn.execute(_ROW_UPDATE, chunk[0])
            continue
        except _ROW_ERRORS:
            pass  # one statement is atomic: nothing of the chunk was applied
        for row in chunk:
            try:
                conn.execute(_ROW_UPDATE, row)
            except _ROW_ERRORS as exc:
                rejected.append((str(row[-1]), exc))
    return rejected


_Accepted = tuple[str, int, LoggedReport | None]
"""(nonce, nonce expiry, the report or None for a health check or another RPC's credential)."""


def _write_batch(conn: sqlite3.Connection, accepted: list[_Accepted]) -> int | None:
    # Memory already decided uniqueness; the database only has to remember the nonces for the
    # next start, so they go in as one row (one B-tree insert instead of one per nonce), with the
    # reports they acknowledge. Returns the row's id (DurableLog never passes an empty batch).
    reports = [report for _, _, report in accepted if report is not None]
    cursor = conn.execute(
        "INSERT INTO report_log (expires_at, nonces, reports) VALUES (?, ?, ?)",
        (
            max(item[1] for item in accepted),
            json.dumps([item[0] for item in accepted]),
            encode_reports(reports) if reports else None,
        ),
    )
    return cursor.lastrowid


def _decode_logged(batch_id: int, value: object) -> list[LoggedReport]:
    """The reports of one log row; what cannot be decoded is quarantined (logged, skipped)."""
    try:
        reports, problems = decode_reports(value)
    except (ValueError, TypeError) as exc:
        log.error("quarantined report log row %d: cannot decode it (%s); its reports are skipped", batch_id, exc)
        return []
    for problem in problems:
        log.error("quarantined a report of report log row %d: %s", batch_id, problem)
    return reports


_Unfolded = dict[str, tuple[LoggedReport, int]]


def _fold_into(unfolded: _Unfolded, report: LoggedReport) -> None:
    # The node's latest report wins; the count of reports since the last fold adds up.
    node_id = report.request.node_id
    previous = unfolded.get(node_id)
    unfolded[node_id] = (report, 1 + (previous[1] if previous else 0))


# The supervisor's in-memory replay check is the same window the node's memory store uses.
RecentNonces = NonceWindow


@dataclass(slots=True)
class _Hot:
    agent_addr: str
    interval_override: int | None
    pushed_catalog_version: int


class ReportIngest:
    """Report and HealthCheck ingestion over a :class:`NodeRegistry` (see the module docstring).

    Call :meth:`load` before serving and :meth:`flush` before closing the database.
    """

    def __init__(self, registry: NodeRegistry, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self._db: Database = registry.database
        self._clock = clock
        self._hot: dict[str, _Hot] = {}
        self._maybe_directives: set[str] = set()
        self.nonces = RecentNonces()
        # Accepted requests reach the log as one operation per group commit.
        self._log = DurableLog(
            self._db,
            _write_batch,
            what="report(s)/nonce(s)",
            on_committed=self._logged,
            policy=REPORT_LOG_BATCHING,
            single_statement=True,  # one INSERT
        )
        # Reports committed to the log but not yet in the node rows, by node (latest, count).
        self._unfolded: _Unfolded = {}
        self._logged_through = 0  # the newest committed log row
        self._fold_at: asyncio.TimerHandle | None = None
        self._folding: asyncio.Task[None] | None = None
        registry.read_barrier = self.flush  # every read of the node rows folds first

    async def load(self) -> None:
        """Read the nodes, the nodes with queued directives and the unexpired nonces; fold the
        reports a previous run acknowledged but did not fold (it crashed)."""
        now = int(self._clock())
        unfolded: list[tuple[int, str]] = []

        def run(
            conn: sqlite3.Connection,
        ) -> tuple[list[tuple[str, str, int | None, int]], list[str], list[tuple[str, int]]]:
            nodes = rows_leniently(
                conn, "SELECT node_id, agent_addr, interval_override, pushed_catalog_version FROM nodes"
            )
            pending = [row[0] for row in conn.execute("SELECT DISTINCT node_id FROM directives")]
            # Every nonce the supervisor remembers (schema v6 moved the older per-row table here).
            nonces: list[tuple[str, int]] = []
            sql = "SELECT nonces, expires_at FROM report_log WHERE expires_at >= ?"
            for text, expires_at in conn.execute(sql, (now,)):
                nonces.extend((nonce, expires_at) for nonce in json.loads(text))
            (through,) = conn.execute("SELECT value FROM meta WHERE key = 'reports_folded_through'").fetchone()
            sql = (
                "SELECT batch_id, reports FROM report_log WHERE batch_id > ? AND reports IS NOT NULL ORDER BY batch_id"
            )
            unfolded.extend(conn.execute(sql, (through,)))
            return nodes, pending, nonces

        nodes, pending, nonces = await self._db.read(run)
        self._hot = {}
        for node_id, addr, override, pushed in nodes:
            if isinstance(node_id, str) and isinstance(addr, str):
                self._hot[node_id] = _Hot(addr, override, pushed)
            else:  # written by an older version; its reports take the registry's own path
                log.error("quarantined registry row of node %r at start-up: it is not valid UTF-8 text", node_id)
        self._maybe_directives = set(pending)
        for nonce, expires_at in nonces:
            self.nonces.consume(nonce, expires_at, now)
        for batch_id, text in unfolded:
            for report in _decode_logged(batch_id, text):
                _fold_into(self._unfolded, report)
            self._logged_through = batch_id
        if unfolded:
            log.info("folding %d report(s) acknowledged before the last stop into the registry", len(unfolded))
            await self._fold()
            if self._unfolded:
                # The database refused the write itself (rows that cannot be applied are
                # quarantined by the fold): serve anyway, the fold is retried in the background.
                log.error("cannot fold the acknowledged reports of the last run yet; retrying in the background")
        log.debug("ingest state: %d nodes, %d with directives, %d live nonces", len(nodes), len(pending), len(nonces))

    # -- hooks (called after the corresponding commit) -------------------------------------------

    def node_registered(self, node_id: str, registration: Registration) -> None:
        self._hot[node_id] = _Hot(
            registration.agent_addr, registration.interval_override, registration.pushed_catalog_version
        )

    def directive_queued(self, node_id: str) -> None:
        self._maybe_directives.add(node_id)

    async def before_registration(self, node_id: str) -> None:
        """Fold the node's acknowledged reports first: a later fold must not overwrite the
        registration with an older report."""
        if self._log.busy or node_id in self._unfolded:
            await self.flush()

    # -- the hot path ----------------------------------------------------------------------------

    async def consume_nonce(self, nonce: str, expires_at: int) -> None:
        """Refuse a nonce seen before (:class:`NonceReusedError`); else remember it durably.

        Returns once the nonce is committed; :class:`StorageError` if it could not be.
        """
        now = int(self._clock())
        if not self.nonces.consume(nonce, expires_at, now):
            raise NonceReusedError()
        await self._log.append((nonce, expires_at, None))

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
        """Record a verified report and say what to answer; None if the node is not registered.

        ``received`` is the request's bytes as they arrived, logged as they are (without them the
        request is encoded again). Raises :class:`NonceReusedError` for a replay and
        :class:`~supervit.StorageError` if a report that had to wait for its commit could not be
        stored.
        """
        node_id = request.node_id
        now = int(self._clock())
        if not self.nonces.consume(nonce, nonce_expires_at, now):
            raise NonceReusedError()
        hot = self._hot.get(node_id)
        if hot is None or (take_directive and node_id in self._maybe_directives):
            if self._log.busy or node_id in self._unfolded:
                # Earlier acknowledged reports go first, so a node's rows are written in order.
                await self.flush()
            outcome = await self.registry.ingest_report(
                request, nonce=nonce, nonce_expires_at=nonce_expires_at, interval_secs=interval_secs
            )
            if outcome is None:
                self._hot.pop(node_id, None)
                return None
            if outcome.directive is None:
                # The queue was empty when this report's transaction ran; a directive queued
                # after it marks the node again (its hook runs after this continuation).
                self._maybe_directives.discard(node_id)
            self._hot[node_id] = _Hot(outcome.agent_addr, outcome.interval_override, outcome.pushed_catalog_version)
            return outcome
        interval = hot.interval_override or interval_secs
        report = LoggedReport(received or request.SerializeToString(), request, now, interval)
        await self._log.append((nonce, nonce_expires_at, report))
        return ReportOutcome(interval, None, hot.agent_addr, hot.pushed_catalog_version, hot.interval_override)

    async def node_left(self, node_id: str) -> bool:
        """Record that ``node_id`` stopped on purpose, after its final report is in its row."""
        await self.flush()  # a later fold of that report must not mark the node online again
        return await self.registry.mark_stopped(node_id)

    async def cleanup(self, *, chunk: int = _CLEANUP_CHUNK_ROWS) -> int:
        """Delete expired log rows (folded, or holding nonces only) in chunks of ``chunk`` rows,
        each its own short write; returns how many nonces were forgotten."""
        removed = 0
        while True:
            now = int(self._clock())

            def run(conn: sqlite3.Connection, now: int = now) -> list[int]:
                return [int(n) for (n,) in conn.execute(_CLEANUP_SQL, (now, chunk)).fetchall()]

            counts = await self._db.write(run, single_statement=True)
            removed += sum(counts)
            if len(counts) < chunk:
                return removed

    async def count_nonces(self) -> int:
        """Nonces remembered in the report log (expired ones included until :meth:`cleanup`)."""
        return await self._db.read(lambda conn: int(conn.execute(_COUNT_SQL).fetchone()[0]))

    def _logged(self, accepted: list[_Accepted], batch_id: int | None) -> None:
        # The batch is committed: its reports now wait for the next fold.
        for _, _, report in accepted:
            if report is not None:
                _fold_into(self._unfolded, report)
        self._logged_through = batch_id or self._logged_through
        self._schedule_fold()

    def fold_lag_secs(self) -> float:
        """Age of the oldest acknowledged report not yet folded into the node rows (0 when none)."""
        if not self._unfolded:
            return 0.0
        oldest = min(report.received_at for report, _ in self._unfolded.values())
        return max(0.0, self._clock() - oldest)

    async def flush(self) -> None:
        """Wait until every report acknowledged or accepted so far is in the node rows.

        Failures are logged (the reports stay in the log and are folded later). Reports accepted
        after the call are not waited for, so this returns even under a constant stream of them.
        """
        await self._log.drain()
        if self._folding is not None:
            await asyncio.shield(self._folding)
        await self._fold()

    def _schedule_fold(self) -> None:
        if self._fold_at is None and self._folding is None and self._unfolded:
            self._fold_at = asyncio.get_running_loop().call_later(_FOLD_INTERVAL_SECS, self._start_fold)

    def _start_fold(self) -> None:
        self._fold_at = None
        if self._folding is None:
            self._folding = task = asyncio.get_running_loop().create_task(self._fold())
            task.add_done_callback(self._fold_done)

    def _fold_done(self, task: asyncio.Task[None]) -> None:
        self._folding = None
        self._schedule_fold()

    async def _fold(self) -> None:
        """One operation: every node's latest unfolded report into its row, and the watermark."""
        if self._fold_at is not None:
            self._fold_at.cancel()
            self._fold_at = None
        if not self._unfolded:
            return
        taken: _Unfolded = {}
        rejected: list[tuple[str, Exception]] = []

        def run(conn: sqlite3.Connection) -> None:
            rejected.clear()
            taken.update(self._unfolded)
            self._unfolded.clear()
            if not taken:  # an earlier fold took them
                return
            # The credential is dropped here, once per node and fold, not once per report.
            rows = [report.registry_row(count) for report, count in taken.values()]
            rejected.extend(_update_nodes(conn, rows))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'reports_folded_through'", (self._logged_through,))

        try:
            await self._db.write(run)
        except Exception as exc:
            # Nothing is lost: the reports are in the log, and folded at the next attempt.
            log.error("cannot fold %d node report(s) into the registry (retrying): %s", len(taken), exc)
            for node_id, (report, count) in taken.items():
                newer = self._unfolded.get(node_id)  # reports committed meanwhile are the latest
                self._unfolded[node_id] = (newer[0], newer[1] + count) if newer else (report, count)
            self._schedule_fold()
            return
        for node_id, error in rejected:
            # Kept in the log row (until it expires) for inspection; never retried, so one
            # unusable report cannot block every other node's.
            log.error("quarantined a report of node %r: cannot apply it to the registry (%s)", node_id, error)


class IngestNonceStorage(NonceStorage):
    """The supervisor's nonce store for every credential check: :class:`ReportIngest`'s memory window.

    RegisterNode, Report, HealthCheck and the admin service all consume through the same window
    (persisted through the same log), so a nonce is single-use across every RPC the supervisor
    answers, as the contract requires of a receiver. A consume returns once its nonce is committed
    to the report log; a storage failure raises :class:`NonceStorageError` (the nonce then stays
    refused in memory: never an accept).
    """

    def __init__(self, ingest: ReportIngest) -> None:
        self._ingest = ingest

    @property
    def remembered(self) -> int:
        """Nonces held in the window (expired ones until the next consume)."""
        return len(self._ingest.nonces)

    async def count(self) -> int:
        """Nonces stored in ``supervisor.db`` (expired ones included until cleaned up)."""
        return await self._ingest.count_nonces()

    async def cleanup(self) -> int:
        """Forget expired nonces (and folded report-log rows); returns how many nonces went."""
        return await self._ingest.cleanup()

    async def consume(self, nonce: str, expires_at: float) -> bool:
        try:
            await self._ingest.consume_nonce(nonce, int(expires_at))
        except NonceReusedError:
            return False
        except StorageError as exc:
            raise NonceStorageError(f"nonce store failed: {exc}") from exc
        return True
