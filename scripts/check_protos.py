"""Fail if the committed generated code differs from a fresh generation (run by CI and a test)."""

from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_protos import DEFAULT_OUT, generate


def drift() -> list[str]:
    """Names of generated files that are missing, extra or different."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "_proto"
        generate(fresh)
        want = {p.name for p in fresh.iterdir() if p.is_file()}
        have = {p.name for p in DEFAULT_OUT.iterdir() if p.is_file() and p.suffix in {".py", ".pyi"}}
        problems = [f"missing: {n}" for n in sorted(want - have)] + [f"extra: {n}" for n in sorted(have - want)]
        problems += [
            f"differs: {n}" for n in sorted(want & have) if not filecmp.cmp(fresh / n, DEFAULT_OUT / n, shallow=False)
        ]
        return problems


if __name__ == "__main__":
    found = drift()
    for line in found:
        print(line)
    if found:
        print("generated code is stale: run python3 scripts/dev.py protos and commit", file=sys.stderr)
        sys.exit(1)
    print("generated code is up to date")
