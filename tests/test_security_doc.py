"""docs/security.md's limits tables say exactly what the code enforces."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from supervit.rpc import ADMIN_LIMITS, DEFAULT_MAX_CONCURRENT_RPCS, SUPERVISED_LIMITS, SUPERVISOR_LIMITS, ServiceLimits
from supervit.rpc._limits import DEFAULT_REPEATED, DEFAULT_STRING_BYTES, MAX_STORABLE_INT
from supervit.supervisor import SupervisorSecuritySection

DOC = (Path(__file__).resolve().parent.parent / "docs" / "security.md").read_text()


def _section(title: str) -> str:
    start = DOC.index(f"### {title}")
    end = DOC.find("\n### ", start + 1)
    return DOC[start : end if end != -1 else None]


@pytest.mark.parametrize(
    ("title", "limits"),
    [
        ("SupervisorService", SUPERVISOR_LIMITS),
        ("SupervisedService", SUPERVISED_LIMITS),
        ("SupervisorAdmin", ADMIN_LIMITS),
    ],
)
def test_the_doc_table_matches_the_code(title: str, limits: ServiceLimits) -> None:
    section = _section(title)
    assert f"max request {limits.max_request_bytes} bytes" in section
    for key in limits.integer_columns:
        assert f"`{key}`" in DOC
    documented: dict[str, tuple[int | None, int | None]] = {}
    for key, text in re.findall(r"^\| `([A-Za-z]+\.[a-z_]+)` \| ([^|]+) \|$", section, re.M):
        size = re.search(r"(\d+) bytes", text)
        count = re.search(r"(\d+) items", text)
        documented[key] = (int(size.group(1)) if size else None, int(count.group(1)) if count else None)
    expected = {key: (value, None) for key, value in limits.max_bytes.items()}
    for key, value in limits.max_count.items():
        expected[key] = (expected.get(key, (None, None))[0], value)
    assert documented == expected


def test_the_defaults_are_documented() -> None:
    assert f"**{DEFAULT_STRING_BYTES} bytes**, **{DEFAULT_REPEATED} items**" in DOC
    assert str(MAX_STORABLE_INT) in DOC
    assert f"({DEFAULT_MAX_CONCURRENT_RPCS} on a node, 4,096 on" in DOC
    assert SupervisorSecuritySection().max_concurrent_rpcs == 4096
