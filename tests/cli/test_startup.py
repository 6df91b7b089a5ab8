"""What each command imports: a command loads only the libraries it uses (package roots are lazy).

Every ``supervit …`` start pays for its imports (operators' shells, health checks, the test
suite's subprocesses). Checked in a fresh interpreter, since this one has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("grpc", "google.protobuf", "psutil", "prometheus_client", "sqlite3", "asyncpg", "redis")

# Each step imports one more command's module; each needs all that the step before it loaded, so
# one interpreter checks them all: what is loaded after a step is what that command loads.
STEPS = (
    "import supervit",
    "import supervit.cli._gen_credential",
    "import supervit.cli._ctl",
    "import supervit.cli._supervisor",
    "import supervit.cli._node",
)
PROBE = f"""
import json, sys
heavy = {HEAVY!r}
before = [m for m in heavy if m in sys.modules]  # e.g. sqlite3, when coverage measures this process
after = []
for step in {STEPS!r}:
    exec(step)
    after.append([m for m in heavy if m in sys.modules])
print(json.dumps({{"before": before, "after": after}}))
"""


def test_each_command_imports_only_what_it_uses() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    found = json.loads(done.stdout)
    expected = [
        [],
        # gen-credential signs payloads (protobuf enums), no gRPC.
        ["google.protobuf"],
        # ctl is a gRPC client: none of the daemons' storage, system metrics or Prometheus client.
        ["grpc", "google.protobuf"],
        # The supervisor needs no system metrics; neither daemon loads the HA backends unless configured.
        ["grpc", "google.protobuf", "prometheus_client", "sqlite3"],
        ["grpc", "google.protobuf", "psutil", "prometheus_client", "sqlite3"],
    ]
    preloaded = set(found["before"])
    assert dict(zip(STEPS, found["after"], strict=True)) == {
        step: sorted({*names, *preloaded}, key=HEAVY.index) for step, names in zip(STEPS, expected, strict=True)
    }
