"""The .proto files and the generated code: contract shape, freshness, clean import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

from supervit.protocol import common_pb2, supervised_pb2, supervisor_pb2

ROOT = Path(__file__).resolve().parent.parent
LABEL = {1: "O", 2: "R", 3: "rep"}


def test_generated_code_matches_protos() -> None:
    """Regenerating from proto/ into a temp dir gives exactly the committed modules."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_protos.py")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_prints_no_warnings() -> None:
    """Importing the package (and its generated code) emits no warnings at all."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import supervit, supervit.protocol, supervit.cli"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def _fields(message: type) -> list[tuple[int, str, str, str]]:
    proto = descriptor_pb2.DescriptorProto()
    message.DESCRIPTOR.CopyToProto(proto)  # type: ignore[attr-defined]
    return [(f.number, LABEL[f.label], f.type_name.rsplit(".", 1)[-1] or str(f.type), f.name) for f in proto.field]


def test_files_package_and_syntax() -> None:
    """Three proto2 files in package supervisor.v1, named as the contract says."""
    for module, name in [
        (common_pb2, "common.proto"),
        (supervisor_pb2, "supervisor.proto"),
        (supervised_pb2, "supervised.proto"),
    ]:
        fd = module.DESCRIPTOR
        assert fd.name == name
        assert fd.package == "supervisor.v1"
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        assert proto.syntax in ("", "proto2")


def test_register_request_shape_and_reserved_field() -> None:
    """RegisterNodeRequest has the contract's fields and reserves 7."""
    proto = descriptor_pb2.DescriptorProto()
    supervisor_pb2.RegisterNodeRequest.DESCRIPTOR.CopyToProto(proto)
    assert [(r.start, r.end) for r in proto.reserved_range] == [(7, 8)]
    assert [(n, lab, name) for n, lab, _, name in _fields(supervisor_pb2.RegisterNodeRequest)] == [
        (1, "R", "node_id"),
        (2, "R", "name"),
        (3, "R", "location_tag"),
        (4, "R", "version"),
        (5, "R", "agent_addr"),
        (6, "R", "credential"),
        (8, "O", "location"),
        (9, "rep", "service_tags"),
        (10, "O", "power_reserve_level_init"),
        (11, "rep", "services"),
    ]


def test_service_method_names() -> None:
    """Full method names of both services."""
    sup = supervisor_pb2.DESCRIPTOR.services_by_name["SupervisorService"]
    assert [m.name for m in sup.methods] == ["RegisterNode", "Report", "HealthCheck"]
    sd = supervised_pb2.DESCRIPTOR.services_by_name["SupervisedService"]
    assert [m.name for m in sd.methods] == [
        "UpdateConfig",
        "GetConfig",
        "CreateRealm",
        "GetRealm",
        "UpdateRealm",
        "DeleteRealm",
        "ListRealms",
        "GetNodeInfo",
        "Shutdown",
    ]
    assert sd.methods_by_name["CreateRealm"].full_name == "supervisor.v1.SupervisedService.CreateRealm"


def test_enum_values() -> None:
    """Enum numbers, including CUSTOM = 99."""
    assert dict(common_pb2.ConfigType.items()) == {
        "CONFIG_TYPE_UNSPECIFIED": 0,
        "TURN_REALM": 1,
        "STUN_BIND_ADDRESS": 2,
        "LOG_LEVEL": 3,
        "SERVICE_ENABLED": 4,
        "CUSTOM": 99,
    }
    assert dict(supervisor_pb2.DirectiveType.items()) == {
        "DIRECTIVE_TYPE_UNSPECIFIED": 0,
        "ADJUST_INTERVAL": 1,
        "REQUEST_FULL_REPORT": 2,
        "GRACEFUL_SHUTDOWN": 3,
    }


def test_realm_info_shape() -> None:
    """RealmInfo fields with labels and types."""
    assert _fields(common_pb2.RealmInfo) == [
        (1, "R", "13", "realm_id"),
        (2, "R", "9", "name"),
        (3, "R", "8", "enabled"),
        (4, "R", "3", "created_at"),
        (5, "O", "3", "updated_at"),
        (6, "rep", "ResourceType", "use_servers"),
        (7, "R", "4", "version"),
        (8, "R", "4", "expires_at"),
        (9, "R", "9", "status"),
    ]
