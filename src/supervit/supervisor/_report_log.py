"""The reports of one report-log row (``report_log.reports``): how they are written and read back.

A row holds the reports that one group commit acknowledged. Since schema 7 they are one BLOB: a
format byte, then per report a header (the request's length, when it was received, the interval
it was answered with) and the request's bytes **as received**, credential included. Nothing is
decoded or re-encoded on the hot path; the credential is dropped once per node and fold, when the
registry row is written (:meth:`LoggedReport.registry_row`). Storing it is harmless: a credential
is single-use, and its nonce is in the same row, so it is refused as a replay for as long as its
timestamp could pass the window check.

Rows written before schema 7 hold JSON text (one array of registry-row values per report, the
request re-encoded without its credential in base64); :func:`decode_reports` reads both.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import NamedTuple

from google.protobuf.message import DecodeError

from supervit.protocol import supervisor_pb2
from supervit.supervisor._registry import encode_without_credential

__all__ = ["LoggedReport", "decode_reports", "encode_reports"]

_FORMAT_1 = 1
_HEADER = struct.Struct("<Iqq")  # request length, received at (Unix seconds), interval (seconds)


class LoggedReport(NamedTuple):
    """One acknowledged report: the request as received, and what the supervisor added to it."""

    raw: bytes
    """The request's bytes as received, credential included (read back from a row of schema 6:
    the copy that version stored, without it)."""
    request: supervisor_pb2.ReportRequest
    """The same request, parsed."""
    received_at: int
    """When the supervisor received it (Unix seconds): the node's ``last_report_at``."""
    interval_secs: int
    """The report interval it was answered with."""

    def registry_row(self, count: int) -> tuple[object, ...]:
        """The node row's values for this report (the node's latest) and ``count`` reports since
        the previous fold: name, location_tag, version, last_report, at, power, realm sync
        version, interval, count, node_id."""
        request = self.request
        return (
            request.name,
            request.location_tag,
            request.version,
            encode_without_credential(request),
            self.received_at,
            request.power_reserve_level,
            request.realm_sync_version,
            self.interval_secs,
            count,
            request.node_id,
        )


def encode_reports(reports: list[LoggedReport]) -> bytes:
    """One row's ``reports`` value (raises ``struct.error`` for a value out of its field's range)."""
    parts = [bytes((_FORMAT_1,))]
    pack = _HEADER.pack
    for raw, _, received_at, interval_secs in reports:
        parts.append(pack(len(raw), received_at, interval_secs))
        parts.append(raw)
    return b"".join(parts)


def decode_reports(value: object) -> tuple[list[LoggedReport], list[str]]:
    """The reports of a row's ``reports`` value, and why each one that could not be read was left out.

    Raises ``ValueError`` when the value as a whole cannot be read (then none of it can be trusted).
    """
    if isinstance(value, bytes):
        return _decode_binary(value)
    if isinstance(value, str):
        return _decode_json(value)
    raise ValueError(f"a {type(value).__name__}, neither bytes nor text")


def _decode_binary(blob: bytes) -> tuple[list[LoggedReport], list[str]]:
    if not blob or blob[0] != _FORMAT_1:
        raise ValueError(f"unknown format {blob[:1]!r}")
    reports: list[LoggedReport] = []
    problems: list[str] = []
    offset, end, size = 1, len(blob), _HEADER.size
    while offset < end:
        if offset + size > end:
            raise ValueError(f"truncated header at byte {offset}")
        length, received_at, interval_secs = _HEADER.unpack_from(blob, offset)
        offset += size
        if offset + length > end:
            raise ValueError(f"truncated report at byte {offset}")
        raw = blob[offset : offset + length]
        offset += length
        try:
            request = supervisor_pb2.ReportRequest.FromString(raw)
        except DecodeError as exc:
            problems.append(f"undecodable report of {length} bytes: {exc}")
            continue
        reports.append(LoggedReport(raw, request, received_at, interval_secs))
    return reports, problems


def _decode_json(text: str) -> tuple[list[LoggedReport], list[str]]:
    # Before schema 7: [name, location_tag, version, base64(request without credential), at,
    # power, realm sync version, interval, node_id] per report. The values beside the blob win
    # (they are what that version would have folded).
    rows = json.loads(text)
    if not isinstance(rows, list):
        raise ValueError("not a JSON array")
    reports: list[LoggedReport] = []
    problems: list[str] = []
    for row in rows:
        try:
            name, location_tag, version, blob, at, power, realm, interval, node_id = row
            raw = base64.b64decode(blob, validate=True)
            request = supervisor_pb2.ReportRequest.FromString(raw)
            request.name, request.location_tag, request.version, request.node_id = name, location_tag, version, node_id
            request.power_reserve_level, request.realm_sync_version = power, realm
            if not (isinstance(at, int) and isinstance(interval, int)):
                raise TypeError("time and interval must be integers")
        except (ValueError, TypeError, binascii.Error, DecodeError) as exc:
            node = row[-1] if isinstance(row, list) and row else "?"
            problems.append(f"unreadable report of node {str(node)[:100]!r}: {exc}")
            continue
        reports.append(LoggedReport(raw, request, at, interval))
    return reports, problems
