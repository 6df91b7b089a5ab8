"""RequestValidator: what each kind of check accepts and the exact message of each refusal."""

from __future__ import annotations

from dataclasses import replace

import pytest
from google.protobuf.message import Message

from supervit._exceptions import InvalidRequestError
from supervit.protocol import common_pb2, supervised_pb2, supervisor_pb2
from supervit.rpc import SUPERVISED_LIMITS, SUPERVISOR_LIMITS, RequestValidator, ServiceLimits


def _report(**fields: object) -> supervisor_pb2.ReportRequest:
    request = supervisor_pb2.ReportRequest(
        node_id="n-1", timestamp=1, location_tag="eu", version="1.0", name="node one", power_reserve_level=3
    )
    request.metrics.cpu_usage_percent = 1.0
    request.credential.CopyFrom(common_pb2.NonceCredential(timestamp=1, nonce="n" * 36, signature="s" * 44))
    request.services.add(name="turn", type=common_pb2.TURN, is_healthy=True)
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def _refusal(validator: RequestValidator, message: Message) -> str:
    with pytest.raises(InvalidRequestError) as info:
        validator.validate(message)
    return str(info.value)


REPORT = RequestValidator(supervisor_pb2.ReportRequest.DESCRIPTOR, SUPERVISOR_LIMITS)
REGISTER = RequestValidator(supervisor_pb2.RegisterNodeRequest.DESCRIPTOR, SUPERVISOR_LIMITS)
CREATE_REALM = RequestValidator(supervised_pb2.CreateRealmRequest.DESCRIPTOR, SUPERVISED_LIMITS)


def test_a_full_request_within_every_limit_passes() -> None:
    REPORT.validate(_report())
    REPORT.validate(_report(node_id="x" * 128, realm_sync_version=2**63 - 1))


def test_string_limits_count_utf8_bytes_not_characters() -> None:
    REPORT.validate(_report(node_id="é" * 64))  # 128 bytes
    assert _refusal(REPORT, _report(node_id="é" * 65)) == "ReportRequest.node_id is longer than 128 bytes"
    assert _refusal(REPORT, _report(node_id="x" * 129)) == "ReportRequest.node_id is longer than 128 bytes"


def test_a_field_the_table_does_not_name_gets_the_default_limit() -> None:
    validator = RequestValidator(
        supervisor_pb2.ReportRequest.DESCRIPTOR, replace(SUPERVISOR_LIMITS, max_bytes={}, default_string_bytes=10)
    )
    request = _report(location_tag="l" * 10)
    request.credential.nonce = "n" * 10
    request.credential.signature = "s" * 10
    validator.validate(request)
    request.services[0].domain = "d" * 11
    assert _refusal(validator, request) == "ReportRequest.services[0].domain is longer than 10 bytes"


def test_nested_and_repeated_paths_name_the_field() -> None:
    request = _report()
    request.credential.nonce = "n" * 65
    assert _refusal(REPORT, request) == "ReportRequest.credential.nonce is longer than 64 bytes"
    request = _report()
    request.services.add(name="n" * 129, type=common_pb2.STUN, is_healthy=False)
    assert _refusal(REPORT, request) == "ReportRequest.services[1].name is longer than 128 bytes"
    tags = supervisor_pb2.RegisterNodeRequest(service_tags=["ok", "t" * 65])
    assert _refusal(REGISTER, tags) == "RegisterNodeRequest.service_tags[1] is longer than 64 bytes"


def test_repeated_counts() -> None:
    request = _report()
    for i in range(63):
        request.services.add(name=f"s{i}", type=common_pb2.TURN, is_healthy=True)
    REPORT.validate(request)
    request.services.add(name="one too many", type=common_pb2.TURN, is_healthy=True)
    assert _refusal(REPORT, request) == "ReportRequest.services has more than 64 items (got 65)"
    realm = supervised_pb2.CreateRealmRequest(realm_id=1, name="r", enabled=True, version=1)
    realm.use_servers.extend([common_pb2.TURN] * 17)
    assert _refusal(CREATE_REALM, realm) == "CreateRealmRequest.use_servers has more than 16 items (got 17)"


def test_integer_columns_must_fit_a_signed_64_bit_integer() -> None:
    assert _refusal(REPORT, _report(realm_sync_version=2**63)) == (
        "ReportRequest.realm_sync_version must be between 0 and 9223372036854775807 (got 9223372036854775808)"
    )
    request = _report()
    request.credential.timestamp = 2**64 - 1
    assert _refusal(REPORT, request) == (
        "ReportRequest.credential.timestamp must be between 0 and 9223372036854775807 (got 18446744073709551615)"
    )
    realm = supervised_pb2.CreateRealmRequest(realm_id=1, name="r", enabled=True, version=2**63, expires_at=0)
    assert _refusal(CREATE_REALM, realm).startswith("CreateRealmRequest.version must be between 0 and")


def test_invalid_utf8_decoded_as_bytes_is_refused() -> None:
    # proto2 strings are not checked by the runtime: an invalid one decodes as bytes.
    raw = b"\x0a\x02\xff\xfe"  # field 1 (node_id), two bytes that are not UTF-8
    request = supervisor_pb2.HealthCheckRequest.FromString(raw)
    validator = RequestValidator(supervisor_pb2.HealthCheckRequest.DESCRIPTOR, SUPERVISOR_LIMITS)
    assert _refusal(validator, request) == "HealthCheckRequest.node_id is not valid UTF-8"


def test_explicit_ranges_and_overrides_apply() -> None:
    limits: ServiceLimits = replace(
        SUPERVISOR_LIMITS,
        ranges={"ReportRequest.power_reserve_level": (0, 5)},
        max_bytes={**SUPERVISOR_LIMITS.max_bytes, "ReportRequest.name": 4},
    )
    validator = RequestValidator(supervisor_pb2.ReportRequest.DESCRIPTOR, limits)
    validator.validate(_report(name="four", power_reserve_level=5))
    assert _refusal(validator, _report(name="fives")) == "ReportRequest.name is longer than 4 bytes"
    assert _refusal(validator, _report(name="ok", power_reserve_level=6)) == (
        "ReportRequest.power_reserve_level must be between 0 and 5 (got 6)"
    )


def test_the_first_violation_in_field_order_is_reported() -> None:
    request = _report(node_id="x" * 200, name="y" * 300)
    assert _refusal(REPORT, request) == "ReportRequest.node_id is longer than 128 bytes"
