"""The repository never tracks a virtualenv, caches, databases or build output."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _check_tree() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_tree", ROOT / "scripts" / "check_tree.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_forbidden_paths_are_recognised() -> None:
    check = _check_tree()
    bad = [
        ".venv/bin/python",
        "venv/pyvenv.cfg",
        "src/supervit/__pycache__/x.cpython-311.pyc",
        "tests/x.pyc",
        "data/actrix.db",
        "nonce.db-wal",
        "dist/supervit-0.1.0.whl",
        "src/supervit.egg-info/PKG-INFO",
        ".mypy_cache/3.11/x.json",
        "bench/results/fleet.json",
    ]
    assert [path for _, path in check.offending(bad)] == bad


def test_ordinary_paths_pass() -> None:
    check = _check_tree()
    good = ["src/supervit/_db.py", "docs/deploy.md", "tests/storage/test_db.py", "examples/node.toml", "LICENSE"]
    assert check.offending(good) == []


def test_this_checkout_tracks_nothing_forbidden() -> None:
    if not (ROOT / ".git").exists():
        return  # an unpacked sdist has no git metadata to check
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_tree.py")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
