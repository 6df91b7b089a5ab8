"""Daemon logging: ``text`` for people, ``json`` (one object per line) for log shippers.

A JSON line holds ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger`` and ``message``,
plus every field attached with ``extra=`` (supervit attaches ``node_id``, ``peer``, ``rpc`` and
``reason`` where it knows them) and ``exception`` with the traceback when there is one::

    {"level": "INFO", "logger": "supervit.node._auth_service", "message": "refused GetRealmRequest ...",
     "peer": "ipv4:127.0.0.1:50312", "reason": "replay", "rpc": "GetRealm", "time": "2026-11-29T17:00:00.123Z"}

gRPC's own Python loggers stay at WARNING or above whatever supervit's level is, so ``debug``
shows supervit's detail without grpc's internal chatter.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["LOG_FORMATS", "TEXT_FORMAT", "JsonFormatter", "configure_logging"]

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TRACE = 5

# Loggers of libraries whose debug output is noise for a supervit operator, with their floor.
_QUIET = {"grpc": logging.WARNING, "asyncio": logging.INFO}
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring); keys sorted, no newlines inside."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, sort_keys=True, default=str, ensure_ascii=False)


def configure_logging(level: int, log_format: str = "text") -> None:
    """Log to stderr (stdout carries only the daemons' machine-readable lines) at ``level``.

    The handler passes everything: logger levels alone decide, so a live LOG_LEVEL change
    (UpdateConfig) takes effect without touching handlers. ``log_format`` is ``text`` or ``json``.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    logging.addLevelName(TRACE, "TRACE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, floor in _QUIET.items():
        logging.getLogger(name).setLevel(max(level, floor))
