"""Trust-boundary settings shared by the node (``[supervisor.security]``) and the supervisor (``[security]``).

See ``docs/security.md``: the limits tables, the body MAC and the threat model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from supervit._exceptions import ConfigError

__all__ = ["SecuritySection"]

_MAX_CONCURRENT_RPCS_CEILING = 100_000


@dataclass
class SecuritySection:
    """Request limits, concurrency and the body MAC of one process's servers.

    ``max_request_bytes`` overrides the served service's size limit (the built-in table's when
    unset); ``max_bytes`` / ``max_count`` override single entries of its limits table, keyed
    ``"Message.field"`` (e.g. ``"RegisterNodeRequest.name" = 512``). ``admin_max_request_bytes``
    is the supervisor's admin service limit (ignored by nodes).
    """

    require_body_mac: bool = False
    max_concurrent_rpcs: int = 256
    max_request_bytes: int | None = None
    admin_max_request_bytes: int | None = None
    max_bytes: dict[str, int] = field(default_factory=dict)
    max_count: dict[str, int] = field(default_factory=dict)

    def validate(self, prefix: str) -> None:
        """Raise :class:`ConfigError` naming ``prefix.<key>`` for an out-of-range value."""
        if not 1 <= self.max_concurrent_rpcs <= _MAX_CONCURRENT_RPCS_CEILING:
            raise ConfigError(
                f"{prefix}.max_concurrent_rpcs",
                f"must be 1..{_MAX_CONCURRENT_RPCS_CEILING}, got {self.max_concurrent_rpcs}",
            )
        for name in ("max_request_bytes", "admin_max_request_bytes"):
            value = getattr(self, name)
            if value is not None and value < 1024:
                raise ConfigError(f"{prefix}.{name}", f"must be at least 1024, got {value}")
        for table in ("max_bytes", "max_count"):
            for key, value in getattr(self, table).items():
                if value < 0:
                    raise ConfigError(f"{prefix}.{table}.{key}", f"must be >= 0, got {value}")
