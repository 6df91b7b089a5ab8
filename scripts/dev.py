#!/usr/bin/env python3
"""One entry point for people and CI; needs only Python 3.11+ and pip.

    python3 scripts/dev.py demo      # supervisor + two nodes on loopback (installs into .venv first)
    python3 scripts/dev.py test      # the whole test suite (6 workers, line coverage with a 90 % floor)
    python3 scripts/dev.py check     # ruff lint + format check, mypy strict, generated-code drift
    python3 scripts/dev.py bench     # the benchmark suite (see docs/performance.md)
    python3 scripts/dev.py protos    # regenerate src/supervit/_proto from proto/

Each command creates ``.venv`` beside this repository (or reuses it) and installs the project
with its dev extras when pyproject.toml changed since the last install. Extra arguments are passed
on (``dev.py test -k vectors`` runs plain pytest with them, ``dev.py demo --duration 20``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("SUPERVIT_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".supervit-install-stamp"


COMMANDS = ("test", "demo", "check", "bench", "protos")
MIN_PYTHON = (3, 11)


def venv_is_usable() -> bool:
    """A virtualenv is reusable only when its interpreter runs and is this Python's version.

    A venv copied from elsewhere (or left by an older Python) points at an interpreter that is gone
    or different; rebuilding beats a traceback from deep inside pip.
    """
    if not PY.exists():
        return False
    probe = subprocess.run(
        [str(PY), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0 and probe.stdout.strip() == "{}.{}".format(*sys.version_info[:2])


def ensure_env() -> None:
    if not venv_is_usable():
        if VENV.exists():
            print(f"rebuilding virtualenv {VENV} (its interpreter is missing or another version)", flush=True)
            shutil.rmtree(VENV)
        print(f"creating virtualenv {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    print("installing supervit and its dev dependencies into the virtualenv (about a minute)...", flush=True)
    print("  [1/2] upgrading pip", flush=True)
    run([str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    print("  [2/2] installing supervit[dev]", flush=True)
    run([str(PY), "-m", "pip", "install", "--quiet", "--progress-bar", "off", "-e", f"{ROOT}[dev]"])
    print("  done", flush=True)
    STAMP.write_text(digest)


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(cmd, cwd=ROOT, check=False, env=env)
    if result.returncode != 0:
        raise SystemExit(result.returncode)


def test_env() -> dict[str, str]:
    """The environment for pytest: bytecode caches on, kept in the virtualenv.

    Every test worker and each of the suite's ~200 ``python -m supervit`` subprocesses would
    otherwise compile supervit's sources again, and pytest re-rewrite every test module's asserts
    (about 3 s of CPU per worker), when PYTHONDONTWRITEBYTECODE is set. The caches go under
    ``.venv/pycache`` (PYTHONPYCACHEPREFIX), so the checkout stays free of ``__pycache__``.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(VENV / "pycache")
    return env


def main(argv: list[str]) -> None:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        raise SystemExit(f"dev.py: error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}")
    if sys.version_info[:2] < MIN_PYTHON:
        raise SystemExit(
            "dev.py: error: supervit needs Python {}.{} or newer; this is {}".format(
                *MIN_PYTHON, sys.version.split()[0]
            )
        )
    ensure_env()
    if command == "test":
        env = test_env()
        if rest:
            run([str(PY), "-m", "pytest", *rest], env)
        else:
            # The whole suite: parallel workers (tests use port 0 and temp dirs) and line coverage with its floor.
            # One collection pass first: it rewrites and caches every test module once, where each
            # worker would otherwise rewrite all of them itself on a fresh checkout (~3 s of CPU each).
            # Its failures, if any, are reported by the run itself.
            subprocess.run(
                [str(PY), "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                cwd=ROOT, env=env, check=False, capture_output=True,
            )  # fmt: skip
            # 6 workers on 2 cores: many tests wait on processes they started, so 4 left a core idle
            # (docs/performance.md, "The test suite": 82 s instead of 94 s; 8 were slower again).
            run([str(PY), "-m", "pytest", "-n", "6", "--cov", "--cov-report=term"], env)
    elif command == "demo":
        run([str(BIN / "supervit"), "demo", *rest])
    elif command == "check":
        run([str(PY), "-m", "ruff", "check", "src", "tests", "scripts", "bench", "examples"])
        run([str(PY), "-m", "ruff", "format", "--check", "src", "tests", "scripts", "bench", "examples"])
        run([str(PY), "-m", "mypy"])
        run([str(PY), "scripts/check_protos.py"])
        run([str(PY), "scripts/check_tree.py"])
    elif command == "bench":
        run([str(PY), "bench/run_all.py", *rest])
    elif command == "protos":
        run([str(PY), "scripts/gen_protos.py"])


if __name__ == "__main__":
    main(sys.argv[1:])
