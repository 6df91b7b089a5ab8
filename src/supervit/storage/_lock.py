"""One process per data directory: an OS file lock, released by the kernel when the process dies.

Two daemons on one SQLite data directory would each believe they own it: each keeps its own
in-memory nonce window, so a credential accepted by one is accepted again by the other, and
their writes interleave. :class:`DataDirLock` takes ``fcntl.flock`` on ``.supervit.lock`` in the
directory (exclusive, non-blocking) for the life of the process; a second process, or a second
daemon in the same process, is refused with one line naming the directory and the holder's pid.
A crash releases the lock (the kernel drops it with the file descriptor); the file itself stays.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from supervit._exceptions import ConfigError

__all__ = ["LOCK_FILE_NAME", "DataDirLock"]

LOCK_FILE_NAME = ".supervit.lock"


class DataDirLock:
    """An exclusive lock on ``data_dir`` held until :meth:`release` (or the process ends)."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path | str, *, key: str) -> DataDirLock:
        """Lock ``data_dir`` (created if missing); :class:`ConfigError` naming ``key`` if it is in use."""
        directory = Path(data_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(directory / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(key, f"cannot lock data directory {directory}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise ConfigError(
                key, f"data directory {directory} is in use by another supervit process{who}; one process per data dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return cls(directory / LOCK_FILE_NAME, fd)

    def release(self) -> None:
        """Give the directory up. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
