"""Shared pieces of ``supervit ctl``: output (tables or JSON), error lines, time formatting."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click
import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from supervit._exceptions import RpcError, SupervitError
from supervit.cli._secret_options import pick_secret

__all__ = [
    "ADDRESS_FORMS",
    "CtlError",
    "Target",
    "age",
    "echo_json",
    "failure",
    "json_option",
    "message_dict",
    "parse_enum",
    "parse_target",
    "pick_secret",
    "run",
    "table",
    "when",
]

T = TypeVar("T")


class CtlError(SupervitError):
    """A ctl command failed; the message is the one line shown to the user (exit status 1)."""


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine (the only ``asyncio.run`` of a ctl invocation)."""
    return asyncio.run(coro)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")


def message_dict(message: Message) -> dict[str, Any]:
    """A protobuf message as a JSON-ready dict with the .proto field names (enums by name).

    Repeated fields are always present (``[]`` when empty), so scripts see one shape.
    """
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


ADDRESS_FORMS = "host:port, [v6]:port or http(s)://host:port"


@dataclass(frozen=True)
class Target:
    """A parsed ``--node``/``--admin`` address: the grpc target and whether the scheme asked for TLS."""

    address: str
    tls: bool | None  # True for https://, False for http://, None when no scheme was given


def parse_target(text: str, option: str) -> Target:
    """Accept ``host:port``, ``[v6]:port`` or ``http(s)://host:port`` (the config's ``endpoint``
    form); a missing port is an error, a wildcard host means this host's loopback address."""
    raw = text.strip()
    tls: bool | None = None
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https"):
            raise click.BadParameter(f"{text!r}: scheme must be http:// or https://", param_hint=option)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise click.BadParameter(f"{text!r}: expected {ADDRESS_FORMS}, without a path", param_hint=option)
        tls = parts.scheme == "https"
        raw = parts.netloc
    if raw.startswith("["):
        host, sep, port = raw[1:].partition("]:")
        if not sep:
            close = raw.find("]")
            missing = close == len(raw) - 1 and close > 0
            why = "missing port" if missing else f"expected {ADDRESS_FORMS}"
            raise click.BadParameter(f"{text!r}: {why} (e.g. [::1]:50055)", param_hint=option)
    else:
        host, sep, port = raw.rpartition(":")
        if not sep or not host:
            raise click.BadParameter(
                f"{text!r}: missing port (expected {ADDRESS_FORMS}, e.g. 127.0.0.1:50055)", param_hint=option
            )
        if ":" in host:
            raise click.BadParameter(
                f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:50055", param_hint=option
            )
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise click.BadParameter(f"{text!r}: port must be a number 1-65535", param_hint=option)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if ip.is_unspecified:  # a listen address such as 0.0.0.0: reach it on this host
            host = "127.0.0.1" if ip.version == 4 else "::1"
    address = f"[{host}]:{int(port)}" if ":" in host else f"{host}:{int(port)}"
    return Target(address, tls)


def echo_json(document: object) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain left-aligned text table (no trailing spaces)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def age(seconds: float) -> str:
    """``4s``, ``3m 20s``, ``2h 5m``, ``3d 4h``: how long ago, compactly."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def when(timestamp: int | None, now: float | None = None) -> str:
    """``2026-05-09 07:35:25Z (4s ago)`` for a Unix timestamp; ``never`` for None/0."""
    if not timestamp:
        return "never"
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(timestamp))
    delta = now - timestamp
    return f"{stamp} ({age(delta)} ago)" if delta >= 0 else f"{stamp} (in {age(-delta)})"


def parse_enum(value: str, values: dict[str, int], what: str, *, drop_prefix: str = "") -> int:
    """An enum member by number or (case-insensitive, ``-`` for ``_``) name; BadParameter otherwise."""
    text = value.strip().upper().replace("-", "_")
    if text.isdigit() and int(text) in values.values():
        return int(text)
    for name, number in values.items():
        if text in (name, name.removeprefix(drop_prefix)):
            return number
    names = ", ".join(name.removeprefix(drop_prefix) for name in values)
    raise click.BadParameter(f"unknown {what} {value!r}; expected one of {names}")


def failure(error: grpc.aio.AioRpcError | RpcError, target: str, peer: str, timeout: float) -> CtlError:
    """One clear line for a failed call to ``target`` (e.g. ``node at 127.0.0.1:50055``)."""
    if isinstance(error, RpcError):
        code, details, method = error.code, error.details, error.method
    else:
        code, details, method = error.code(), error.details() or "", ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return CtlError(f"cannot reach {target}: {details or 'unavailable'}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CtlError(f"{target} did not answer within {timeout:g}s")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return CtlError(f"{target} refused the credential: {details} ({peer})")
    name = getattr(code, "name", str(code))
    return CtlError(f"{method + ' ' if method else ''}failed on {target}: {name}: {details}")
