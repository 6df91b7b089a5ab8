"""Signed payloads of the 12 RPCs and the registration fingerprint (PROTOCOL.md "Authentication").

Integers are decimal, enums their numeric value, ``{node_id}`` the node's id: on the
SupervisedService side the id the receiving node is configured with, on the SupervisorService
side the request's own ``node_id`` field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from google.protobuf.message import Message

from supervit.protocol import supervised_pb2, supervisor_pb2

__all__ = [
    "Action",
    "ServiceEntry",
    "build_payload",
    "fingerprint_input",
    "registration_fingerprint",
    "request_payload",
]


class Action(StrEnum):
    """The RPC actions, named by their payload prefix."""

    REGISTER = "register"
    REPORT = "report"
    HEALTH_CHECK = "health_check"
    UPDATE_CONFIG = "update_config"
    GET_CONFIG = "get_config"
    CREATE_REALM = "create_realm"
    GET_REALM = "get_realm"
    UPDATE_REALM = "update_realm"
    DELETE_REALM = "delete_realm"
    LIST_REALMS = "list_realms"
    NODE_INFO = "node_info"
    SHUTDOWN = "shutdown"

    @property
    def needs_subject(self) -> bool:
        """Whether the payload has a request-specific part after the node id."""
        return self not in _NODE_ONLY

    @property
    def needs_config_type(self) -> bool:
        return self in (Action.UPDATE_CONFIG, Action.GET_CONFIG)


_NODE_ONLY = frozenset({Action.HEALTH_CHECK, Action.LIST_REALMS, Action.NODE_INFO, Action.SHUTDOWN})


def build_payload(
    action: Action, node_id: str, subject: str | int | None = None, config_type: int | None = None
) -> str:
    """The signed payload for ``action``.

    ``subject`` is the fingerprint (register), the report timestamp (report), the realm id
    (realm actions) or the config key (config actions, which also take ``config_type``).
    """
    if not action.needs_subject:
        return f"{action.value}:{node_id}"
    if subject is None:
        raise ValueError(f"action {action.value} needs a subject")
    if action.needs_config_type:
        if config_type is None:
            raise ValueError(f"action {action.value} needs a config type")
        return f"{action.value}:{node_id}:{int(config_type)}:{subject}"
    return f"{action.value}:{node_id}:{subject}"


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """The fingerprinted fields of one ServiceAdvertisement."""

    name: str
    type: int
    domain_name: str
    port_info: str
    status: int
    url: str | None
    tags: Sequence[str]

    def encode(self) -> str:
        tags = ",".join(sorted(self.tags))  # sorted, deliberately NOT de-duplicated
        fields = (self.name, int(self.type), self.domain_name, self.port_info, int(self.status), self.url or "", tags)
        return "|".join(str(f) for f in fields)


def fingerprint_input(
    node_id: str,
    agent_addr: str,
    location_tag: str,
    location: str | None,
    power_reserve_level_init: int | None,
    service_tags: Iterable[str],
    services: Iterable[ServiceEntry],
) -> str:
    """The exact text hashed into the registration fingerprint (Python's ``sorted`` on ``str``
    orders by code point, which is the byte order of UTF-8 the contract requires)."""
    node_tags = ",".join(sorted(set(service_tags)))
    entries = ";".join(sorted(s.encode() for s in services))
    power = power_reserve_level_init or 0
    return f"{node_id}|{agent_addr}|{location_tag}|{location or ''}|{power}|{node_tags}|{entries}"


def registration_fingerprint(request: supervisor_pb2.RegisterNodeRequest) -> str:
    """Lowercase hex SHA-256 of the request's fingerprint input."""
    services = [
        ServiceEntry(
            name=s.name,
            type=s.type,
            domain_name=s.domain_name,
            port_info=s.port_info,
            status=s.status,
            url=s.url if s.HasField("url") else None,
            tags=list(s.tags),
        )
        for s in request.services
    ]
    text = fingerprint_input(
        request.node_id,
        request.agent_addr,
        request.location_tag,
        request.location if request.HasField("location") else None,
        request.power_reserve_level_init if request.HasField("power_reserve_level_init") else None,
        request.service_tags,
        services,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_payload(request: Message, node_id: str | None = None) -> str:
    """The payload a request's credential must sign.

    For SupervisedService requests ``node_id`` is the receiving node's configured id (required);
    SupervisorService requests carry their own ``node_id`` field, which is used.
    """
    rule = _COMPILED_RULES.get(type(request))
    if rule is None:  # a subclass of a protocol message
        rule = next((r for cls, r in _COMPILED_RULES.items() if isinstance(request, cls)), None)
        if rule is None:
            raise TypeError(f"no payload rule for {type(request).__name__}")
    own_id, head, subject, with_config_type = rule
    if own_id:
        node_id = request.node_id  # type: ignore[attr-defined]
    elif node_id is None:
        raise ValueError(f"{type(request).__name__} payloads need the receiving node's id")
    # build_payload's formats, spelled out: this runs for every request a server checks.
    if subject is None:
        return f"{head}{node_id}"
    if with_config_type:
        return f"{head}{node_id}:{int(request.config_type)}:{subject(request)}"  # type: ignore[attr-defined]
    return f"{head}{node_id}:{subject(request)}"


# Per request type (looked up by exact type: isinstance on protobuf classes goes through ABCMeta,
# measurably slow on the hot path): whether the request carries its own node_id, the action, and
# what the subject is.
_PayloadRule = tuple[bool, Action, Callable[[Any], object] | None]
_PAYLOAD_RULES: dict[type[Message], _PayloadRule] = {
    supervisor_pb2.RegisterNodeRequest: (True, Action.REGISTER, registration_fingerprint),
    supervisor_pb2.ReportRequest: (True, Action.REPORT, lambda r: r.timestamp),
    supervisor_pb2.HealthCheckRequest: (True, Action.HEALTH_CHECK, None),
    supervised_pb2.UpdateConfigRequest: (False, Action.UPDATE_CONFIG, lambda r: r.config_key),
    supervised_pb2.GetConfigRequest: (False, Action.GET_CONFIG, lambda r: r.config_key),
    supervised_pb2.CreateRealmRequest: (False, Action.CREATE_REALM, lambda r: r.realm_id),
    supervised_pb2.GetRealmRequest: (False, Action.GET_REALM, lambda r: r.realm_id),
    supervised_pb2.UpdateRealmRequest: (False, Action.UPDATE_REALM, lambda r: r.realm_id),
    supervised_pb2.DeleteRealmRequest: (False, Action.DELETE_REALM, lambda r: r.realm_id),
    supervised_pb2.ListRealmsRequest: (False, Action.LIST_REALMS, None),
    supervised_pb2.GetNodeInfoRequest: (False, Action.NODE_INFO, None),
    supervised_pb2.ShutdownRequest: (False, Action.SHUTDOWN, None),
}

# The same rules with each action's text prefix computed once (enum properties cost calls).
_COMPILED_RULES: dict[type[Message], tuple[bool, str, Callable[[Any], object] | None, bool]] = {
    cls: (own_id, f"{action.value}:", subject, action.needs_config_type)
    for cls, (own_id, action, subject) in _PAYLOAD_RULES.items()
}
