"""What each command imports: a command loads only the libraries it uses (package roots are lazy).

Every ``supervit …`` start pays for its imports (operators' shells, health checks, the test
suite's subprocesses). Checked in a fresh interpreter, since this one has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("grpc", "google.protobuf", "psutil", "prometheus_client", "sqlite3", "asyncpg", "redis")


def imported_after(statement: str) -> list[str]:
    """Which of HEAVY a fresh interpreter has imported after ``statement``."""
    probe = f"import sys\n{statement}\nimport json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("import supervit", []),
        # gen-credential signs payloads (protobuf enums), no gRPC.
        ("import supervit.cli._gen_credential", ["google.protobuf"]),
        # ctl is a gRPC client: none of the daemons' storage, system metrics or Prometheus client.
        ("import supervit.cli._ctl", ["grpc", "google.protobuf"]),
        # The supervisor needs no system metrics; neither daemon loads the HA backends unless configured.
        ("import supervit.cli._supervisor", ["grpc", "google.protobuf", "prometheus_client", "sqlite3"]),
        ("import supervit.cli._node", ["grpc", "google.protobuf", "psutil", "prometheus_client", "sqlite3"]),
    ],
)
def test_a_command_imports_only_what_it_uses(statement: str, expected: list[str]) -> None:
    assert imported_after(statement) == expected
