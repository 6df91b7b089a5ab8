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

Checks are compiled once per message type into a list of (field, check), and a request
reads only the fields that have a check (sub-messages without anything to check, such as
``SystemMetrics``, are skipped), so the hot path does no reflection and formats nothing.
"""

from __future__ import annotations

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

# A check takes a field's value and raises _Violation (without the path: the hot path formats
# nothing unless something is wrong; the walk prefixes the path on the way out).
_Check = Callable[[Any], None]
_Checks = list[tuple[str, _Check]]  # (field name, check) of every field that has one


class _Violation(Exception):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


def _string_check(limit: int) -> _Check:
    quick = limit // 4  # n characters are at most 4n UTF-8 bytes

    def check(value: Any) -> None:
        if type(value) is not str:
            raise _Violation("", "is not valid UTF-8")
        n = len(value)
        if n > quick and (n > limit or (not value.isascii() and len(value.encode()) > limit)):
            raise _Violation("", f"is longer than {limit} bytes")

    return check


def _range_check(low: int, high: int) -> _Check:
    def check(value: Any) -> None:
        if not low <= value <= high:
            raise _Violation("", f"must be between {low} and {high} (got {value})")

    return check


def _repeated_check(limit: int, item: _Check | None) -> _Check:
    def check(values: Any) -> None:
        if len(values) > limit:
            raise _Violation("", f"has more than {limit} items (got {len(values)})")
        if item is not None:
            for i, value in enumerate(values):
                try:
                    item(value)
                except _Violation as violation:
                    raise _Violation(f"[{i}]{violation.path}", violation.problem) from None

    return check


def _walk(checks: _Checks, message: Any) -> None:
    # Only the fields that have a check are read; an unset one reads as its (valid) default.
    for name, check in checks:
        try:
            check(getattr(message, name))
        except _Violation as violation:
            raise _Violation(f".{name}{violation.path}", violation.problem) from None


class RequestValidator:
    """The compiled checks of one request type under one :class:`ServiceLimits`."""

    __slots__ = ("_checks", "name")

    def __init__(self, descriptor: _descriptor.Descriptor, limits: ServiceLimits) -> None:
        self.name = descriptor.name
        self._checks = _compile(descriptor, limits, {})

    def validate(self, message: Message) -> None:
        """Raise :class:`InvalidRequestError` naming the first field beyond its limit."""
        try:
            _walk(self._checks, message)
        except _Violation as violation:
            raise InvalidRequestError(f"{self.name}{violation.path} {violation.problem}") from None


def _compile(descriptor: _descriptor.Descriptor, limits: ServiceLimits, memo: dict[str, _Checks]) -> _Checks:
    known = memo.get(descriptor.full_name)
    if known is not None:
        return known
    checks: _Checks = []
    memo[descriptor.full_name] = checks  # before recursing: recursive messages terminate
    for fd in descriptor.fields:
        key = f"{descriptor.name}.{fd.name}"
        item: _Check | None = None
        if fd.type == _STRING:
            item = _string_check(limits.max_bytes.get(key, limits.default_string_bytes))
        elif fd.type == _MESSAGE:
            assert fd.message_type is not None
            nested = _compile(fd.message_type, limits, memo)
            if nested or fd.message_type.full_name == descriptor.full_name:  # nothing to check: not walked

                def item(value: Any, nested: _Checks = nested) -> None:
                    _walk(nested, value)

        elif key in limits.ranges:
            item = _range_check(*limits.ranges[key])
        elif fd.type in _UINT64_TYPES and key in limits.integer_columns:
            item = _range_check(0, limits.max_uint64)
        if fd.is_repeated:
            checks.append((fd.name, _repeated_check(limits.max_count.get(key, limits.default_repeated), item)))
        elif item is not None:  # fields without a check are not even read
            checks.append((fd.name, item))
    return checks


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
