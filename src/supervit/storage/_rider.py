"""Riders: a small write that joins the caller's next write on one database, in its transaction.

A request whose receipt (its consumed nonce) must be durable before it is answered, and whose
handler writes to a database anyway, need not commit twice: the receipt *rides* on the handler's
write. :func:`riding` puts a :class:`Rider` in the current context (asyncio copies the context
into tasks started from there); the next :meth:`~supervit.storage.Database.write` from that
context on a database the rider :meth:`~Rider.board`-s runs :meth:`Rider.write` in the same
transaction, *outside* the write's own savepoint (so the rider is kept even when the write itself
fails and rolls back alone), and tells the rider with :meth:`Rider.landed` whether that
transaction committed, before the writer learns its own result. A rider that cannot be written
fails its write (which then does not run): the write never commits without it.
"""

from __future__ import annotations

import sqlite3
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from supervit.storage._db import Database

__all__ = ["Rider", "current_rider", "riding"]


class Rider(Protocol):
    """What rides on a write (see the module docstring)."""

    def board(self, db: Database) -> bool:
        """Whether a write on ``db`` starting now carries this rider; True commits the rider to
        that write until :meth:`landed` (a rider rides one write at a time)."""

    def write(self, conn: sqlite3.Connection) -> None:
        """Write the rider (on the event loop, inside the carrying write's transaction)."""

    def landed(self, committed: bool) -> None:
        """The carrying transaction committed (True) or failed (False: the rider is not stored)."""


_RIDER: ContextVar[Rider | None] = ContextVar("supervit_rider", default=None)


def current_rider() -> Rider | None:
    """The rider waiting in the current context, if any."""
    return _RIDER.get()


class riding:  # lower case: used like a function, ``with riding(ticket): ...``
    """Within the block (and tasks started from it), writes may carry ``rider``.

    A class rather than a generator context manager: it is entered once per write request.
    """

    __slots__ = ("_rider", "_token")

    def __init__(self, rider: Rider) -> None:
        self._rider = rider
        self._token: Token[Rider | None] | None = None

    def __enter__(self) -> None:
        self._token = _RIDER.set(self._rider)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _RIDER.reset(self._token)
            self._token = None
