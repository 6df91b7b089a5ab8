"""Node configuration values per ``(ConfigType, key)``, persisted in the node database.

:func:`validate_config_value` is the single place that decides what a valid value of each
``ConfigType`` is; :class:`ConfigStore` stores only values it accepted, in normalised form.
"""

from __future__ import annotations

import ipaddress
import re
import sqlite3
import time
from collections.abc import Callable

from supervit._exceptions import InvalidRequestError
from supervit.protocol import LOG_LEVELS, common_pb2
from supervit.storage._db import Database

__all__ = ["ConfigStore", "validate_config_value"]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")

_UPSERT_SQL = """
INSERT INTO config (config_type, key, value, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (config_type, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
"""


def validate_config_value(config_type: int, value: str) -> str:
    """Check ``value`` for ``config_type`` and return it normalised; ValueError says why not.

    * ``LOG_LEVEL``: trace, debug, info, warn, warning, error or critical (any case) → lower case.
    * ``SERVICE_ENABLED``: true/false, 1/0, yes/no, on/off (any case) → ``"true"``/``"false"``.
    * ``STUN_BIND_ADDRESS``: ``host:port`` with an IPv4 address, a bracketed IPv6 address or a
      host name, port 1-65535 → canonical address form, lower-case host, port without zeros.
    * ``TURN_REALM``, ``CUSTOM``: any string, unchanged.
    * ``CONFIG_TYPE_UNSPECIFIED`` and numbers that are not a ``ConfigType``: rejected.
    """
    if isinstance(config_type, bool) or not isinstance(config_type, int):
        raise ValueError(f"config type must be an integer, not {type(config_type).__name__}")
    if not isinstance(value, str):
        raise ValueError(f"config value must be a string, not {type(value).__name__}")
    if config_type in (common_pb2.TURN_REALM, common_pb2.CUSTOM):
        return value
    if config_type == common_pb2.LOG_LEVEL:
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            allowed = ", ".join(sorted(LOG_LEVELS))
            raise ValueError(f"log level {value!r} is not one of {allowed}")
        return level
    if config_type == common_pb2.SERVICE_ENABLED:
        flag = value.strip().lower()
        if flag in _TRUE:
            return "true"
        if flag in _FALSE:
            return "false"
        raise ValueError(f"{value!r} is not a boolean (use true/false, 1/0, yes/no or on/off)")
    if config_type == common_pb2.STUN_BIND_ADDRESS:
        return _normalise_host_port(value.strip())
    if config_type == common_pb2.CONFIG_TYPE_UNSPECIFIED:
        raise ValueError("config type is unspecified")
    raise ValueError(f"unknown config type {config_type}")


def _normalise_host_port(text: str) -> str:
    if text.startswith("["):
        host_part, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r} is not [IPv6]:port")
        try:
            host = f"[{ipaddress.IPv6Address(host_part).compressed}]"
        except ValueError:
            raise ValueError(f"{host_part!r} is not an IPv6 address") from None
    else:
        host_part, sep, port_text = text.rpartition(":")
        if not sep or not host_part:
            raise ValueError(f"{text!r} is not host:port")
        if ":" in host_part:
            raise ValueError(f"{text!r}: an IPv6 address must be written in brackets, e.g. [::1]:3478")
        host = _normalise_host(host_part)
    if not _PORT.match(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number between 1 and 65535")
    return f"{host}:{int(port_text)}"


def _normalise_host(host: str) -> str:
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    name = host.lower().removesuffix(".")
    labels = name.split(".")
    # An all-numeric last label means a mistyped IPv4 address (e.g. 10.0.0.256), not a name.
    if len(name) > 253 or labels[-1].isdigit() or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"{host!r} is neither an IPv4 address nor a valid host name")
    return name


class ConfigStore:
    """Validated configuration values in the node database; they persist across restarts."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        """``db`` must be at the node schema (:func:`open_node_database`); ``clock`` gives Unix seconds."""
        self._db = db
        self._clock = clock

    @property
    def database(self) -> Database:
        """The database this store writes (:meth:`set` is one transaction in it)."""
        return self._db

    async def get(self, config_type: int, key: str) -> str | None:
        """The stored value, or None if none was ever set."""

        def run(conn: sqlite3.Connection) -> str | None:
            sql = "SELECT value FROM config WHERE config_type = ? AND key = ?"
            row = conn.execute(sql, (config_type, key)).fetchone()
            return None if row is None else str(row[0])

        return await self._db.read(run)

    async def entries(self, config_type: int) -> list[tuple[str, str, int]]:
        """Every stored ``(key, value, updated_at)`` of ``config_type``, oldest change first."""

        def run(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
            sql = "SELECT key, value, updated_at FROM config WHERE config_type = ? ORDER BY updated_at, key"
            return [(str(k), str(v), int(t)) for k, v, t in conn.execute(sql, (config_type,))]

        return await self._db.read(run)

    async def set(self, config_type: int, key: str, value: str) -> str | None:
        """Validate and store ``value`` (normalised); return the previous value or None.

        Read-old and write-new happen in one transaction, so concurrent ``set`` calls each get
        the value the other replaced. Raises :class:`InvalidRequestError` (caused by the
        ``ValueError`` of :func:`validate_config_value`) for an invalid type, key or value.
        """
        if not isinstance(key, str):
            raise InvalidRequestError(f"config key must be a string, not {type(key).__name__}")
        try:
            normalised = validate_config_value(config_type, value)
        except ValueError as exc:
            raise InvalidRequestError(f"invalid {_type_name(config_type)} value: {exc}") from exc
        now = int(self._clock())

        def run(conn: sqlite3.Connection) -> str | None:
            sql = "SELECT value FROM config WHERE config_type = ? AND key = ?"
            row = conn.execute(sql, (config_type, key)).fetchone()
            conn.execute(_UPSERT_SQL, (config_type, key, normalised, now))
            return None if row is None else str(row[0])

        return await self._db.write(run)


def _type_name(config_type: object) -> str:
    try:
        return common_pb2.ConfigType.Name(config_type)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return "config"
