"""Per-node directive queues: each directive rides in exactly one ReportResponse.

Directives are rows of ``supervisor.db``; the Report handler takes the oldest one of the node
inside the same transaction that records the report (:func:`take_next`), so hand-over and
removal commit together: a directive is never delivered twice, and never dropped by a crash
before its response was built. (Whether the node then *receives* that response is up to the
network: delivery is at most once per directive, exactly once whenever the response arrives.)

Payload conventions (free text on the wire, checked here so a typo fails at enqueue time):

* ``ADJUST_INTERVAL``: the new report interval in whole seconds (1-86400). When the directive is
  delivered, the supervisor also adopts it as the node's interval (``next_report_interval_secs``
  and the offline deadline) until the node re-registers.
* ``REQUEST_FULL_REPORT``: no payload required; any text is passed through.
* ``GRACEFUL_SHUTDOWN``: optional reason text.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from supervit._exceptions import InvalidRequestError, NotFoundError
from supervit.protocol import supervisor_pb2
from supervit.storage import Database

__all__ = [
    "MAX_PAYLOAD_CHARS",
    "DirectiveQueue",
    "QueuedDirective",
    "adjusted_interval",
    "take_next",
    "validate_directive",
]

MAX_PAYLOAD_CHARS = 4096
_MAX_INTERVAL_SECS = 86_400
_TYPES = {v for v in supervisor_pb2.DirectiveType.values() if v != supervisor_pb2.DIRECTIVE_TYPE_UNSPECIFIED}


@dataclass(frozen=True, slots=True)
class QueuedDirective:
    """One queued directive; ``type`` is a ``DirectiveType`` number."""

    directive_id: int
    node_id: str
    type: int
    payload: str | None
    created_at: int

    def to_proto(self) -> supervisor_pb2.Directive:
        """The wire ``Directive`` (payload unset when None)."""
        directive = supervisor_pb2.Directive(type=self.type)  # type: ignore[arg-type]
        if self.payload is not None:
            directive.payload = self.payload
        return directive


def validate_directive(directive_type: int, payload: str | None) -> str | None:
    """Check a directive before it is queued; returns the payload to store (normalised).

    Raises :class:`InvalidRequestError` naming the problem.
    """
    if directive_type not in _TYPES:
        names = ", ".join(n for n in supervisor_pb2.DirectiveType.keys() if n != "DIRECTIVE_TYPE_UNSPECIFIED")  # noqa: SIM118
        raise InvalidRequestError(f"directive type must be one of {names}, got {directive_type}")
    if payload is not None and len(payload) > MAX_PAYLOAD_CHARS:
        raise InvalidRequestError(f"directive payload is longer than {MAX_PAYLOAD_CHARS} characters")
    if directive_type == supervisor_pb2.ADJUST_INTERVAL:
        text = (payload or "").strip()
        if not text.isdigit() or not 1 <= int(text) <= _MAX_INTERVAL_SECS:
            raise InvalidRequestError(
                f"ADJUST_INTERVAL needs the new interval in whole seconds (1-{_MAX_INTERVAL_SECS}) as payload, "
                f"got {payload!r}"
            )
        return str(int(text))
    return payload


def adjusted_interval(directive: QueuedDirective | None) -> int | None:
    """The interval an ADJUST_INTERVAL directive sets, else None."""
    if directive is None or directive.type != supervisor_pb2.ADJUST_INTERVAL or directive.payload is None:
        return None
    text = directive.payload.strip()
    return int(text) if text.isdigit() and 1 <= int(text) <= _MAX_INTERVAL_SECS else None


_TAKE_SQL = """
DELETE FROM directives
WHERE directive_id = (SELECT MIN(directive_id) FROM directives WHERE node_id = ?)
RETURNING directive_id, node_id, type, payload, created_at
"""


def take_next(conn: sqlite3.Connection, node_id: str) -> QueuedDirective | None:
    """Remove and return the node's oldest directive (call inside a write transaction)."""
    row = conn.execute(_TAKE_SQL, (node_id,)).fetchone()
    return None if row is None else QueuedDirective(*row)


class DirectiveQueue:
    """Enqueue and inspect directives in the supervisor database."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        on_enqueued: Callable[[str], None] | None = None,
    ) -> None:
        """``on_enqueued(node_id)`` is called after each enqueue has committed (the report path
        uses it to know which nodes must take the directive-aware, commit-waiting route)."""
        self._db = db
        self._clock = clock
        self._on_enqueued = on_enqueued

    async def enqueue(
        self, node_id: str, directive_type: int, payload: str | None = None
    ) -> tuple[QueuedDirective, int]:
        """Queue a directive for a *registered* node; returns it and its 1-based queue position.

        Raises :class:`InvalidRequestError` for an invalid type or payload, :class:`NotFoundError`
        if the registry does not know ``node_id``.
        """
        stored = validate_directive(directive_type, payload)
        now = int(self._clock())

        def run(conn: sqlite3.Connection) -> tuple[QueuedDirective, int]:
            if conn.execute("SELECT 1 FROM nodes WHERE node_id = ?", (node_id,)).fetchone() is None:
                raise NotFoundError("node", node_id)
            cur = conn.execute(
                "INSERT INTO directives (node_id, type, payload, created_at) VALUES (?, ?, ?, ?)",
                (node_id, directive_type, stored, now),
            )
            directive_id = int(cur.lastrowid or 0)
            (position,) = conn.execute("SELECT COUNT(*) FROM directives WHERE node_id = ?", (node_id,)).fetchone()
            return QueuedDirective(directive_id, node_id, directive_type, stored, now), int(position)

        result = await self._db.write(run)
        if self._on_enqueued is not None:
            self._on_enqueued(node_id)
        return result

    async def pending(self, node_id: str) -> list[QueuedDirective]:
        """The node's queued directives, oldest (next to be delivered) first."""

        def run(conn: sqlite3.Connection) -> list[QueuedDirective]:
            sql = (
                "SELECT directive_id, node_id, type, payload, created_at FROM directives "
                "WHERE node_id = ? ORDER BY directive_id"
            )
            return [QueuedDirective(*row) for row in conn.execute(sql, (node_id,))]

        return await self._db.read(run)
