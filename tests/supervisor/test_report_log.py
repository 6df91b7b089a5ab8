"""The report log's row format (supervit/supervisor/_report_log.py): requests stored as received."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from supervit.protocol import supervisor_pb2
from supervit.supervisor._registry import encode_without_credential
from supervit.supervisor._report_log import LoggedReport, decode_reports, encode_reports


def _report(node_id: str, realm: int = 3) -> LoggedReport:
    request = supervisor_pb2.ReportRequest(
        node_id=node_id, timestamp=1_700_000_000, location_tag="lab", version="1.0", name=f"name-{node_id}",
        power_reserve_level=4, realm_sync_version=realm,
    )  # fmt: skip
    request.credential.nonce, request.credential.signature, request.credential.timestamp = "nonce", "c2ln", 1
    return LoggedReport(request.SerializeToString(), request, 1_700_000_005, 30)


def test_reports_come_back_as_they_were_written() -> None:
    written = [_report("a"), _report("b", realm=2**63)]
    read, problems = decode_reports(encode_reports(written))
    assert problems == []
    assert [(r.raw, r.received_at, r.interval_secs) for r in read] == [(w.raw, 1_700_000_005, 30) for w in written]
    assert [r.request for r in read] == [w.request for w in written]


def test_the_registry_row_drops_the_credential_and_counts() -> None:
    report = _report("a")
    row = report.registry_row(4)
    assert row == ("name-a", "lab", "1.0", row[3], 1_700_000_005, 4, 3, 30, 4, "a")
    stored = supervisor_pb2.ReportRequest.FromString(row[3])  # type: ignore[arg-type]
    assert not stored.HasField("credential") and stored.node_id == "a"


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        (b"", "unknown format"),
        (b"\x02" + b"rest", "unknown format"),
        (b"\x01" + struct.pack("<Iqq", 10, 1, 1)[:10], "truncated header"),
        (b"\x01" + struct.pack("<Iqq", 10, 1, 1) + b"short", "truncated report"),
    ],
)
def test_a_damaged_row_is_refused_as_a_whole(blob: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        decode_reports(blob)


def test_an_undecodable_request_is_left_out_alone() -> None:
    good = _report("a")
    blob = encode_reports([good]) + struct.pack("<Iqq", 2, 1, 1) + b"\xff\xff"
    read, problems = decode_reports(blob)
    assert [r.request.node_id for r in read] == ["a"]
    assert len(problems) == 1 and "undecodable report of 2 bytes" in problems[0]


def test_rows_of_schema_6_are_read_with_their_own_values() -> None:
    report = _report("a")
    legacy = [
        "old name", "old lab", "0.9", base64.b64encode(encode_without_credential(report.request)).decode(),
        1_600_000_000, 2, 8, 60, "a",
    ]  # fmt: skip
    unreadable = [*legacy[:5], "two", *legacy[6:8], "b"]
    read, problems = decode_reports(json.dumps([legacy, unreadable]))
    assert len(read) == 1 and (read[0].received_at, read[0].interval_secs) == (1_600_000_000, 60)
    assert read[0].registry_row(1)[:3] == ("old name", "old lab", "0.9")
    assert read[0].registry_row(1)[5:] == (2, 8, 60, 1, "a")
    assert len(problems) == 1 and "node 'b'" in problems[0]


@pytest.mark.parametrize("value", ['{"not": "a list"}', "[1, 2", 42])
def test_other_values_are_refused_as_a_whole(value: object) -> None:
    with pytest.raises(ValueError):
        decode_reports(value)
