#!/usr/bin/env python3
"""One entry point for people and CI; needs only Python 3.11+ and pip.

    python3 scripts/dev.py demo      # supervisor + two nodes on loopback (installs into .venv first)
    python3 scripts/dev.py test      # the whole test suite
    python3 scripts/dev.py check     # ruff lint + format check, mypy strict, generated-code drift
    python3 scripts/dev.py bench     # the benchmark suite (see docs/performance.md)
    python3 scripts/dev.py protos    # regenerate src/supervit/_proto from proto/

Each command creates ``.venv`` beside this repository (or reuses it) and installs the project
with its dev extras when pyproject.toml changed since the last install. Extra arguments are passed
on (``dev.py test -k vectors``, ``dev.py demo --duration 20``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("SUPERVIT_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".supervit-install-stamp"


def ensure_env() -> None:
    if not PY.exists():
        print(f"creating virtualenv {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    print("installing supervit and its dev dependencies into the virtualenv", flush=True)
    run([str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([str(PY), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev]"])
    STAMP.write_text(digest)


def run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, cwd=ROOT, check=False)
    if result.returncode != 0:
        raise SystemExit(result.returncode)


def main(argv: list[str]) -> None:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return
    command, rest = argv[0], argv[1:]
    ensure_env()
    if command == "test":
        run([str(PY), "-m", "pytest", *rest])
    elif command == "demo":
        run([str(BIN / "supervit"), "demo", *rest])
    elif command == "check":
        run([str(PY), "-m", "ruff", "check", "src", "tests", "scripts", "bench"])
        run([str(PY), "-m", "ruff", "format", "--check", "src", "tests", "scripts", "bench"])
        run([str(PY), "-m", "mypy"])
        run([str(PY), "scripts/check_protos.py"])
    elif command == "bench":
        run([str(PY), "bench/run_all.py", *rest])
    elif command == "protos":
        run([str(PY), "scripts/gen_protos.py"])
    else:
        raise SystemExit(f"unknown command {command!r}; see python3 scripts/dev.py --help")


if __name__ == "__main__":
    main(sys.argv[1:])
