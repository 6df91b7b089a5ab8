"""Boundary limits: one declarative table per service, checked right after a request is decoded.

Every request is checked against its service's :class:`ServiceLimits` before anything is stored
or computed expensively (the registration fingerprint, the HMAC):

* the serialized size (``max_request_bytes``, also the gRPC receive limit of the server);
* every ``string`` field is valid UTF-8 (the Python runtime does not check this for proto2: an
  invalid one decodes as ``bytes``) and at most its byte limit long;
* every ``repeated`` field holds at most its count limit;
* every ``uint64`` field stored in an integer column fits a signed 64-bit integer (what SQLite
  stores), plus any explicit integer range of the table (values kept inside stored protobuf
  messages, such as a report's metrics, are stored losslessly whatever they are).

Fields missing from a table get the defaults (:data:`DEFAULT_STRING_BYTES`,
:data:`DEFAULT_REPEATED`), so a field added to a message later is bounded too. The tables are
documented in ``docs/security.md``; operators override single entries in the configuration.
Violations raise :class:`~supervit.InvalidRequestError` naming the field path and the limit.

Checks are compiled once per message type into a generated function, and a request reads only
the fields that have a check (sub-messages without anything to check, such as ``SystemMetrics``,
are skipped), so the hot path does no reflection, calls nothing per field and formats nothing.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf import descriptor_pool
from google.protobuf.message import Message

from supervit._exceptions import ConfigError, InvalidRequestError

__all__ = [
    "ADMIN_LIMITS",
    "DEFAULT_REPEATED",
    "DEFAULT_STRING_BYTES",
    "MAX_STORABLE_INT",
    "SUPERVISED_LIMITS",
    "SUPERVISOR_LIMITS",
    "RequestValidator",
    "ServiceLimits",
    "default_limits",
    "with_overrides",
]

DEFAULT_STRING_BYTES = 256
"""Byte limit of a string field the table does not name."""
DEFAULT_REPEATED = 64
"""Count limit of a repeated field the table does not name."""
MAX_STORABLE_INT = 2**63 - 1
"""The largest integer SQLite stores: the ceiling of every uint64 field."""

_FD = _descriptor.FieldDescriptor
_STRING = _FD.TYPE_STRING
_MESSAGE = _FD.TYPE_MESSAGE
_UINT64_TYPES = frozenset({_FD.TYPE_UINT64, _FD.TYPE_FIXED64})


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    """The limits of one gRPC service.

    ``max_bytes`` and ``max_count`` are keyed ``"Message.field"`` (the message's short name);
    ``ranges`` gives inclusive integer bounds; ``integer_columns`` names the ``uint64`` fields
    whose value is stored in an integer column, bounded by ``max_uint64`` (the other ``uint64``
    fields are kept inside stored protobuf messages, which hold any value).
    """

    service: str
    max_request_bytes: int
    max_bytes: Mapping[str, int] = field(default_factory=dict)
    max_count: Mapping[str, int] = field(default_factory=dict)
    ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    integer_columns: frozenset[str] = frozenset()
    default_string_bytes: int = DEFAULT_STRING_BYTES
    default_repeated: int = DEFAULT_REPEATED
    max_uint64: int = MAX_STORABLE_INT
    """Ceiling of every uint64 field: what the storage behind the service holds losslessly."""


# -- the tables (docs/security.md mirrors them) --------------------------------------------------

_CREDENTIAL = {"NonceCredential.nonce": 64, "NonceCredential.signature": 64}
# Checked against the uint64 ceiling in every service: it becomes a nonce expiry (an integer column).
_CREDENTIAL_INTEGERS = frozenset({"NonceCredential.timestamp"})
_SERVICE_STATUS = {"ServiceStatus.name": 128, "ServiceStatus.url": 512, "ServiceStatus.domain": 256}

SUPERVISOR_LIMITS = ServiceLimits(
    service="supervisor.v1.SupervisorService",
    max_request_bytes=256 * 1024,
    max_bytes={
        **_CREDENTIAL,
        **_SERVICE_STATUS,
        "RegisterNodeRequest.node_id": 128,
        "RegisterNodeRequest.name": 256,
        "RegisterNodeRequest.location_tag": 128,
        "RegisterNodeRequest.version": 64,
        "RegisterNodeRequest.agent_addr": 300,
        "RegisterNodeRequest.location": 256,
        "RegisterNodeRequest.service_tags": 64,
        "ServiceAdvertisement.name": 128,
        "ServiceAdvertisement.domain_name": 256,
        "ServiceAdvertisement.port_info": 128,
        "ServiceAdvertisement.description": 1024,
        "ServiceAdvertisement.url": 512,
        "ServiceAdvertisement.tags": 64,
        "ReportRequest.node_id": 128,
        "ReportRequest.location_tag": 128,
        "ReportRequest.version": 64,
        "ReportRequest.name": 256,
        "HealthCheckRequest.node_id": 128,
    },
    max_count={
        "RegisterNodeRequest.service_tags": 64,
        "RegisterNodeRequest.services": 64,
        "ServiceAdvertisement.tags": 32,
        "ReportRequest.services": 64,
    },
    integer_columns=_CREDENTIAL_INTEGERS | {"ReportRequest.realm_sync_version"},
)
"""``supervisor.v1.SupervisorService`` (served by the supervisor)."""

SUPERVISED_LIMITS = ServiceLimits(
    service="supervisor.v1.SupervisedService",
    max_request_bytes=128 * 1024,
    max_bytes={
        **_CREDENTIAL,
        "UpdateConfigRequest.config_key": 256,
        "UpdateConfigRequest.config_value": 64 * 1024,
        "GetConfigRequest.config_key": 256,
        "CreateRealmRequest.name": 256,
        "UpdateRealmRequest.name": 256,
        "ListRealmsRequest.page_token": 64,
        "ShutdownRequest.reason": 1024,
    },
    max_count={"CreateRealmRequest.use_servers": 16},
    integer_columns=_CREDENTIAL_INTEGERS | {"CreateRealmRequest.version", "CreateRealmRequest.expires_at"},
)
"""``supervisor.v1.SupervisedService`` (served by every node)."""

ADMIN_LIMITS = ServiceLimits(
    service="supervit.admin.v1.SupervisorAdmin",
    max_request_bytes=64 * 1024,
    max_bytes={
        **_CREDENTIAL,
        "ListNodesRequest.page_token": 256,
        "EnqueueDirectiveRequest.node_id": 128,
        "EnqueueDirectiveRequest.payload": 1024,
        "PutCatalogRealmRequest.name": 256,
    },
    max_count={"PutCatalogRealmRequest.use_servers": 16},
    integer_columns=_CREDENTIAL_INTEGERS | {"PutCatalogRealmRequest.expires_at"},
)
"""``supervit.admin.v1.SupervisorAdmin`` (the supervisor's operator API)."""

_DEFAULTS = {limits.service: limits for limits in (SUPERVISOR_LIMITS, SUPERVISED_LIMITS, ADMIN_LIMITS)}


def with_overrides(
    bases: Sequence[ServiceLimits],
    *,
    max_request_bytes: Mapping[str, int | None] | None = None,
    max_bytes: Mapping[str, int] | None = None,
    max_count: Mapping[str, int] | None = None,
    key_prefix: str = "security",
) -> tuple[ServiceLimits, ...]:
    """``bases`` with configured overrides applied (each entry to the services that have the field).

    ``max_request_bytes`` is keyed by service full name. A ``"Message.field"`` key no service of
    ``bases`` has (as a string, respectively repeated, field) is a :class:`ConfigError` naming it.
    """
    kinds = {base.service: _field_kinds(base.service) for base in bases}
    for table, index, name, what in ((max_bytes, 0, "max_bytes", "string"), (max_count, 1, "max_count", "repeated")):
        for key in table or {}:
            if not any(key in k[index] for k in kinds.values()):
                raise ConfigError(f"{key_prefix}.{name}.{key}", f"not a {what} field of a request (Message.field)")
    result = []
    for base in bases:
        strings, repeated = kinds[base.service]
        size = (max_request_bytes or {}).get(base.service)
        result.append(
            replace(
                base,
                max_request_bytes=base.max_request_bytes if size is None else size,
                max_bytes={**base.max_bytes, **{k: v for k, v in (max_bytes or {}).items() if k in strings}},
                max_count={**base.max_count, **{k: v for k, v in (max_count or {}).items() if k in repeated}},
            )
        )
    return tuple(result)


def default_limits(service: str) -> ServiceLimits | None:
    """The built-in table of the service with this full name, if supervit has one."""
    return _DEFAULTS.get(service)


# -- compiled validators -------------------------------------------------------------------------

# Each request type's checks become one generated Python function per message type (the way
# dataclasses writes __init__): the fields with a limit are read and tested inline, so a request
# costs a few attribute reads and comparisons instead of a call per field. Nothing is formatted
# unless something is wrong; a violation carries its path, prefixed on the way out.


class _Violation(Exception):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


class _Generator:
    """Writes the checking functions of one message type and every type reachable from it."""

    def __init__(self, limits: ServiceLimits) -> None:
        self.limits = limits
        self.names: dict[str, str | None] = {}  # message full name -> its function (None: nothing to check)
        self.sources: list[str] = []

    def function_for(self, descriptor: _descriptor.Descriptor) -> str | None:
        """The name of the function checking ``descriptor`` (None when none of its fields has a check)."""
        if descriptor.full_name in self.names:
            return self.names[descriptor.full_name]
        name = f"_check_{len(self.names)}"
        self.names[descriptor.full_name] = name  # before recursing: recursive messages terminate
        body: list[str] = []
        for fd in descriptor.fields:
            body += self._field(descriptor, fd)
        if not body:
            self.names[descriptor.full_name] = None
            return None
        self.sources.append(f"def {name}(m):\n" + "\n".join(f"    {line}" for line in body))
        return name

    def _item(self, key: str, fd: _FD) -> Callable[[str, str], list[str]] | None:
        """Lines that check one value ``v`` of the field ``key`` (``Message.field``), raising with
        ``path`` (a Python expression)."""
        limits = self.limits
        if fd.type == _STRING:
            limit = limits.max_bytes.get(key, limits.default_string_bytes)
            quick = limit // 4  # n characters are at most 4n UTF-8 bytes

            def string(v: str, path: str) -> list[str]:
                return [
                    f"if type({v}) is not str: raise _Violation({path}, 'is not valid UTF-8')",
                    f"if len({v}) > {quick} and (len({v}) > {limit}"
                    f" or (not {v}.isascii() and len({v}.encode()) > {limit})):",
                    f"    raise _Violation({path}, 'is longer than {limit} bytes')",
                ]

            return string
        if fd.type == _MESSAGE:
            assert fd.message_type is not None
            nested = self.function_for(fd.message_type)
            if nested is None:
                return None  # nothing to check in it: not even read

            def message(v: str, path: str) -> list[str]:
                return [
                    "try:",
                    f"    {nested}({v})",
                    "except _Violation as e:",
                    f"    raise _Violation({path} + e.path, e.problem) from None",
                ]

            return message
        if key in limits.ranges:
            low, high = limits.ranges[key]
        elif fd.type in _UINT64_TYPES and key in limits.integer_columns:
            low, high = 0, limits.max_uint64
        else:
            return None

        def bounded(v: str, path: str) -> list[str]:
            return [
                f"if not {low} <= {v} <= {high}:",
                f"    raise _Violation({path}, f'must be between {low} and {high} (got {{{v}}})')",
            ]

        return bounded

    def _field(self, descriptor: _descriptor.Descriptor, fd: _FD) -> list[str]:
        key = f"{descriptor.name}.{fd.name}"
        item = self._item(key, fd)
        path = repr(f".{fd.name}")
        read = f"v = getattr(m, {fd.name!r})" if keyword.iskeyword(fd.name) else f"v = m.{fd.name}"
        if fd.is_repeated:
            count = self.limits.max_count.get(key, self.limits.default_repeated)
            lines = [
                read,
                f"if len(v) > {count}:",
                f"    raise _Violation({path}, f'has more than {count} items (got {{len(v)}})')",
            ]
            if item is not None:
                lines.append("for i, x in enumerate(v):")
                lines += [f"    {line}" for line in item("x", f"{path} + f'[{{i}}]'")]
            return lines
        if item is None:
            return []  # fields without a check are not even read
        return [read, *item("v", path)]


def _generate(descriptor: _descriptor.Descriptor, limits: ServiceLimits) -> Callable[[Any], None]:
    generator = _Generator(limits)
    root = generator.function_for(descriptor)
    if root is None:
        return _nothing_to_check
    namespace: dict[str, Any] = {"_Violation": _Violation}
    exec("\n\n".join(generator.sources), namespace)  # our own text, written from descriptors
    check: Callable[[Any], None] = namespace[root]
    return check


def _nothing_to_check(message: Any) -> None:
    return None


class RequestValidator:
    """The compiled checks of one request type under one :class:`ServiceLimits`."""

    __slots__ = ("_check", "name")

    def __init__(self, descriptor: _descriptor.Descriptor, limits: ServiceLimits) -> None:
        self.name = descriptor.name
        self._check = _generate(descriptor, limits)

    def validate(self, message: Message) -> None:
        """Raise :class:`InvalidRequestError` naming the first field beyond its limit."""
        try:
            self._check(message)
        except _Violation as violation:
            raise InvalidRequestError(f"{self.name}{violation.path} {violation.problem}") from None


def _field_kinds(service: str) -> tuple[set[str], set[str]]:
    """``Message.field`` names of the string and of the repeated fields reachable from ``service``."""
    svc = descriptor_pool.Default().FindServiceByName(service)
    strings: set[str] = set()
    repeated: set[str] = set()
    seen: set[str] = set()
    todo = [m.input_type for m in svc.methods]
    while todo:
        desc = todo.pop()
        if desc.full_name in seen:
            continue
        seen.add(desc.full_name)
        for fd in desc.fields:
            key = f"{desc.name}.{fd.name}"
            if fd.type == _STRING:
                strings.add(key)
            if fd.is_repeated:
                repeated.add(key)
            if fd.type == _MESSAGE and fd.message_type is not None:
                todo.append(fd.message_type)
    return strings, repeated
