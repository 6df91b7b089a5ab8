"""``host:port`` listen addresses of the HTTP endpoints (metrics and probes)."""

from __future__ import annotations

import ipaddress

from supervit._exceptions import ConfigError

__all__ = ["check_listen", "format_host_port", "split_host_port", "split_listen"]


def split_host_port(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host without brackets, port 0..65535); ValueError says why not.

    The one parser of addresses in configs and requests (listen addresses, agent addresses).
    """
    text = address.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{address!r} is not [IPv6]:port")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{address!r} is not host:port")
        if ":" in host:
            raise ValueError(f"{address!r}: write an IPv6 address in brackets, e.g. [::1]:50051")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not a number between 0 and 65535")
    return host, int(port)


def split_listen(address: str) -> tuple[str, int]:
    """:func:`split_host_port` for an address to bind: the host must be an IP address or ``localhost``.

    Port 0 means "any free port".
    """
    host, port = split_host_port(address)
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"host must be an IP address (or localhost) to bind, got {host!r}") from None
    return host, port


def check_listen(address: str, key: str) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``address`` is "" (disabled) or valid."""
    if address == "":
        return
    try:
        split_listen(address)
    except ValueError as exc:
        raise ConfigError(key, f'{exc} (or "" to disable)') from None


def format_host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
