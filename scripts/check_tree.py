#!/usr/bin/env python3
"""Fail when git tracks something that must never be committed.

Virtualenvs, bytecode caches, databases and build output break clones elsewhere (a committed
virtualenv points at one machine's interpreter and checkout path). Run by ``dev.py check``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# One pattern per kind of artefact, matched against every tracked path.
FORBIDDEN = {
    "virtualenv": re.compile(r"(^|/)\.?venv/|(^|/)pyvenv\.cfg$"),
    "bytecode cache": re.compile(r"(^|/)__pycache__/|\.py[co]$"),
    "database": re.compile(r"\.(db|db-wal|db-shm|sqlite3?)$"),
    "build output": re.compile(r"(^|/)(dist|build)/|\.egg-info(/|$)|\.whl$"),
    "tool cache": re.compile(r"(^|/)\.(pytest_cache|mypy_cache|ruff_cache|hypothesis)/|(^|/)\.coverage$"),
    "benchmark results": re.compile(r"^bench/results/"),
}


def offending(paths: list[str]) -> list[tuple[str, str]]:
    """Return (kind, path) for every path that matches a forbidden pattern."""
    found = []
    for path in paths:
        for kind, pattern in FORBIDDEN.items():
            if pattern.search(path):
                found.append((kind, path))
                break
    return found


def main() -> int:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout.decode(
        "utf-8", "surrogateescape"
    )
    bad = offending([p for p in listed.split("\0") if p])
    if not bad:
        return 0
    for kind, path in bad[:20]:
        print(f"check_tree: error: tracked {kind}: {path}", file=sys.stderr)
    if len(bad) > 20:
        print(f"check_tree: error: ... and {len(bad) - 20} more", file=sys.stderr)
    print("check_tree: untrack them with `git rm -r --cached <path>`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
